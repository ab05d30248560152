using ZeTT.Ops.Cpu;
using static ZeTT.Ops.Tests.FiniteDifferences;

namespace ZeTT.Ops.Tests;

/// <summary>The training ops (per-column scale and shift, AdamW): gradients by finite
/// differences in float64, and the host round-trip defaults that every backend inherits
/// against the CPU backend's own implementation.</summary>
public class TrainingOpTests
{
    private readonly CpuBackend _ops = new();

    private static Tensor D(double[] a, params long[] shape) => Tensor.FromDoubles(a, shape);

    private Tensor Z(params long[] shape) => _ops.Zeros(DType.F64, shape);

    [Fact]
    public void ScaleShift_gradients()
    {
        var rng = new Random(11);
        const int N = 5, W = 19;
        double[] x = Random(rng, N * W, 2), w = Random(rng, W), b = Random(rng, W);
        double[] r = Random(rng, N * W);
        double Loss()
        {
            using Tensor y = Z(N, W);
            _ops.ScaleShift(D(x, N, W), D(w, W), D(b, W), y);
            return Weighted(r, y.ToDoubles());
        }
        using Tensor dx = Z(N, W), dw = Z(W), db = Z(W);
        _ops.ScaleShiftBackward(D(r, N, W), D(x, N, W), D(w, W), dx, dw, db);
        Check("dx", x, Loss, dx.ToDoubles());
        Check("dscale", w, Loss, dw.ToDoubles());
        Check("dshift", b, Loss, db.ToDoubles());
    }

    [Fact]
    public void ScaleShift_on_a_column_view_leaves_the_other_columns()
    {
        using Tensor x = Tensor.FromFloats([1, 2, 3, 4, 5, 6], 2, 3);
        using Tensor w = Tensor.FromFloats([10, 100], 2), b = Tensor.FromFloats([1, -1], 2);
        _ops.ScaleShift(x.Slice(1, 1, 2), w, b, x.Slice(1, 1, 2));
        Assert.Equal([1f, 21, 299, 4, 51, 599], x.ToFloats());
    }

    [Fact]
    public void Host_fallbacks_equal_the_cpu_backend()
    {
        var rng = new Random(12);
        const int N = 4, W = 9;
        float[] x = Array.ConvertAll(Random(rng, N * W), v => (float)v);
        float[] w = Array.ConvertAll(Random(rng, W), v => (float)v);
        float[] g = Array.ConvertAll(Random(rng, N * W), v => (float)v);
        using Tensor tx = Tensor.FromFloats(x, N, W), tw = Tensor.FromFloats(w, W);
        using Tensor tg = Tensor.FromFloats(g, N, W);
        using Tensor y1 = Tensor.Host(DType.F32, N, W), y2 = Tensor.Host(DType.F32, N, W);
        _ops.ScaleShift(tx, tw, tw, y1);
        HostFallback.ScaleShift(_ops, tx, tw, tw, y2);
        Assert.Equal(y1.ToFloats(), y2.ToFloats());
        using Tensor dx1 = Tensor.Host(DType.F32, N, W), dx2 = Tensor.Host(DType.F32, N, W);
        using Tensor dw1 = Tensor.Host(DType.F32, W), dw2 = Tensor.Host(DType.F32, W);
        _ops.ScaleShiftBackward(tg, tx, tw, dx1, dw1, null);
        HostFallback.ScaleShiftBackward(_ops, tg, tx, tw, dx2, dw2, null);
        Assert.Equal(dx1.ToFloats(), dx2.ToFloats());
        Assert.Equal(dw1.ToFloats(), dw2.ToFloats());
        using Tensor p1 = Tensor.FromFloats(x, N * W), p2 = Tensor.FromFloats(x, N * W);
        using Tensor gg = Tensor.FromFloats(g, N * W);
        using Tensor m1 = Tensor.Host(DType.F32, N * W), m2 = Tensor.Host(DType.F32, N * W);
        using Tensor v1 = Tensor.Host(DType.F32, N * W), v2 = Tensor.Host(DType.F32, N * W);
        var step = new AdamWStep(1e-3, 0.9, 0.95, 1e-8, 0.01, 1, 0.5);
        _ops.AdamW(p1, gg, m1, v1, step);
        HostFallback.AdamW(_ops, p2, gg, m2, v2, step);
        Assert.Equal(p1.ToFloats(), p2.ToFloats());
        Assert.NotEqual(x, p1.ToFloats());
        Assert.Equal(v1.ToFloats(), v2.ToFloats());
    }
}
