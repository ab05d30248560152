using ZeTT.Ops.Cpu;
using static ZeTT.Ops.Tests.FiniteDifferences;

namespace ZeTT.Ops.Tests;

/// <summary>Every backward of the op layer against central finite differences of its forward,
/// in float64 on the CPU backend, on sizes that are not multiples of any vector width.</summary>
public class GradientTests
{
    private readonly CpuBackend _ops = new();

    private static Tensor D(double[] a, params long[] shape) => Tensor.FromDoubles(a, shape);

    private Tensor Z(params long[] shape) => _ops.Zeros(DType.F64, shape);

    [Theory]
    [InlineData(false, true)]
    [InlineData(true, false)]
    [InlineData(false, false)]
    public void Linear(bool weightInOut, bool withBias)
    {
        var rng = new Random(1);
        const int N = 5, In = 7, Out = 3;
        double[] x = Random(rng, N * In), w = Random(rng, In * Out), b = Random(rng, Out);
        double[] r = Random(rng, N * Out);
        long[] wShape = weightInOut ? [In, Out] : [Out, In];
        double Loss()
        {
            using Tensor y = Z(N, Out);
            _ops.Linear(D(x, N, In), D(w, wShape), withBias ? D(b, Out) : null, y, weightInOut);
            return Weighted(r, y.ToDoubles());
        }
        using Tensor dx = Z(N, In), dw = Z(wShape), db = Z(Out);
        ((IOpBackend)_ops).LinearBackward(D(r, N, Out), D(x, N, In), D(w, wShape), weightInOut, dx, dw,
            withBias ? db : null);
        Check("dx", x, Loss, dx.ToDoubles());
        Check("dW", w, Loss, dw.ToDoubles());
        if (withBias)
        {
            Check("db", b, Loss, db.ToDoubles());
        }
    }

    [Fact]
    public void LayerNorm()
    {
        var rng = new Random(2);
        const int N = 4, W = 13;
        double[] x = Random(rng, N * W, 3), w = Random(rng, W), b = Random(rng, W);
        double[] r = Random(rng, N * W);
        double Loss()
        {
            using Tensor y = Z(N, W), m = Z(N), s = Z(N);
            _ops.LayerNormForward(D(x, N, W), D(w, W), D(b, W), 1e-5f, y, m, s);
            return Weighted(r, y.ToDoubles());
        }
        using Tensor y0 = Z(N, W), mean = Z(N), rstd = Z(N);
        _ops.LayerNormForward(D(x, N, W), D(w, W), D(b, W), 1e-5f, y0, mean, rstd);
        using Tensor dx = Z(N, W), dw = Z(W), db = Z(W);
        _ops.LayerNormBackward(D(r, N, W), D(x, N, W), D(w, W), mean, rstd, dx, dw, db);
        Check("dx", x, Loss, dx.ToDoubles());
        Check("dw", w, Loss, dw.ToDoubles());
        Check("db", b, Loss, db.ToDoubles());
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void RmsNorm(bool unitOffset)
    {
        var rng = new Random(3);
        const int N = 3, W = 17;
        double[] x = Random(rng, N * W, 2), w = Random(rng, W), r = Random(rng, N * W);
        double Loss()
        {
            using Tensor y = Z(N, W), s = Z(N);
            _ops.RmsNormForward(D(x, N, W), D(w, W), 1e-6f, unitOffset, y, s);
            return Weighted(r, y.ToDoubles());
        }
        using Tensor y0 = Z(N, W), rstd = Z(N);
        _ops.RmsNormForward(D(x, N, W), D(w, W), 1e-6f, unitOffset, y0, rstd);
        using Tensor dx = Z(N, W), dw = Z(W);
        _ops.RmsNormBackward(D(r, N, W), D(x, N, W), D(w, W), unitOffset, rstd, dx, dw);
        Check("dx", x, Loss, dx.ToDoubles());
        Check("dw", w, Loss, dw.ToDoubles());
    }

    [Theory]
    [InlineData(ActivationFunction.Silu)]
    [InlineData(ActivationFunction.GeluErf)]
    [InlineData(ActivationFunction.GeluTanh)]
    public void Activations_and_gated_activations(ActivationFunction f)
    {
        var rng = new Random(4);
        const int N = 37;
        double[] x = Random(rng, N, 4), u = Random(rng, N, 2), r = Random(rng, N);
        double Act()
        {
            using Tensor y = Z(N);
            _ops.Activation(f, D(x, N), y);
            return Weighted(r, y.ToDoubles());
        }
        using Tensor dx = Z(N);
        _ops.ActivationBackward(f, D(r, N), D(x, N), dx);
        Check("dx", x, Act, dx.ToDoubles());
        double Gated()
        {
            using Tensor y = Z(N);
            _ops.GatedActivation(f, D(x, N), D(u, N), y);
            return Weighted(r, y.ToDoubles());
        }
        using Tensor dg = Z(N), du = Z(N);
        _ops.GatedActivationBackward(f, D(r, N), D(x, N), D(u, N), dg, du);
        Check("dGate", x, Gated, dg.ToDoubles());
        Check("dUp", u, Gated, du.ToDoubles());
    }

    [Theory]
    [InlineData(RotaryStyle.HalfSplit, 10)]
    [InlineData(RotaryStyle.HalfSplit, 4)]
    [InlineData(RotaryStyle.Interleaved, 6)]
    public void Rotary_backward_is_the_inverse_rotation(RotaryStyle style, int dims)
    {
        var rng = new Random(5);
        const int N = 5, H = 3, Dh = 10;
        double[] x = Random(rng, N * H * Dh), r = Random(rng, N * H * Dh);
        var o = new RotaryOptions(style, dims, 10000);
        using Tensor pos = Tensor.FromInts([0, 3, 7, 1, 250]);
        double Loss()
        {
            using Tensor y = Z(N, H, Dh);
            _ops.Rotary(D(x, N, H, Dh), pos, o, y);
            return Weighted(r, y.ToDoubles());
        }
        using Tensor dx = Z(N, H, Dh);
        _ops.Rotary(D(r, N, H, Dh), pos, o, dx, inverse: true);
        Check("dx", x, Loss, dx.ToDoubles(), samples: 150);
    }

    [Theory]
    [InlineData(true, 0, 1, 5, 5, 4, 2, false)]
    [InlineData(true, 3, 2, 6, 6, 2, 1, false)]
    [InlineData(true, 0, 1, 3, 7, 4, 4, false)]
    [InlineData(false, 0, 2, 5, 5, 2, 2, true)]
    public void Attention(bool causal, int window, int b, int tq, int tk, int hq, int hkv,
        bool lengths)
    {
        var rng = new Random(6);
        const int Dh = 5;
        double[] q = Random(rng, b * tq * hq * Dh), k = Random(rng, b * tk * hkv * Dh);
        double[] v = Random(rng, b * tk * hkv * Dh), r = Random(rng, b * tq * hq * Dh);
        using Tensor? keyLengths = lengths ? Tensor.FromInts([tk, tk - 2]) : null;
        var o = new AttentionOptions(1f / MathF.Sqrt(Dh), causal, window, keyLengths);
        double Loss()
        {
            using Tensor y = Z(b, tq, hq, Dh), l = Z(b, hq, tq);
            _ops.AttentionForward(D(q, b, tq, hq, Dh), D(k, b, tk, hkv, Dh), D(v, b, tk, hkv, Dh),
                o, y, l);
            return Weighted(r, y.ToDoubles());
        }
        using Tensor y0 = Z(b, tq, hq, Dh), lse = Z(b, hq, tq);
        _ops.AttentionForward(D(q, b, tq, hq, Dh), D(k, b, tk, hkv, Dh), D(v, b, tk, hkv, Dh), o,
            y0, lse);
        Assert.Equal(Naive.Attention(q, k, v, b, tq, tk, hq, hkv, Dh, o,
            lengths ? [tk, tk - 2] : null), y0.ToDoubles(), new Tolerance(1e-12));
        using Tensor dq = Z(b, tq, hq, Dh), dk = Z(b, tk, hkv, Dh), dv = Z(b, tk, hkv, Dh);
        _ops.AttentionBackward(D(r, b, tq, hq, Dh), D(q, b, tq, hq, Dh), D(k, b, tk, hkv, Dh),
            D(v, b, tk, hkv, Dh), y0, lse, o, dq, dk, dv);
        Check("dq", q, Loss, dq.ToDoubles());
        Check("dk", k, Loss, dk.ToDoubles());
        Check("dv", v, Loss, dv.ToDoubles());
    }

    [Theory]
    [InlineData(1 << 22, true)]
    [InlineData(7, true)]
    [InlineData(7, false)]
    public void Lm_head_cross_entropy_over_vocabulary_chunks(long chunkElements, bool bias)
    {
        var ops = new CpuBackend { LogitChunkElements = chunkElements };
        var rng = new Random(7);
        const int N = 4, Dm = 6, V = 11;
        double[] h = Random(rng, N * Dm, 2), w = Random(rng, V * Dm), bs = Random(rng, V);
        double[] r = Random(rng, N);
        using Tensor targets = Tensor.FromInts([3, -1, 10, 0]);
        double Loss()
        {
            using Tensor losses = Z(N), l = Z(N);
            ops.LmHeadCrossEntropy(D(h, N, Dm), D(w, V, Dm), bias ? D(bs, V) : null, targets,
                losses, l);
            return Weighted(r, losses.ToDoubles());
        }
        using Tensor losses0 = Z(N), lse = Z(N);
        ops.LmHeadCrossEntropy(D(h, N, Dm), D(w, V, Dm), bias ? D(bs, V) : null, targets, losses0,
            lse);
        Assert.Equal(Naive.CrossEntropy(h, w, bias ? bs : null, [3, -1, 10, 0], N, Dm, V),
            losses0.ToDoubles(), new Tolerance(1e-12));
        using Tensor dh = Z(N, Dm), dw = Z(V, Dm), db = Z(V);
        ops.LmHeadCrossEntropyBackward(D(h, N, Dm), D(w, V, Dm), bias ? D(bs, V) : null, targets,
            lse, D(r, N), dh, dw, bias ? db : null);
        Check("dHidden", h, Loss, dh.ToDoubles());
        Check("dW", w, Loss, dw.ToDoubles());
        if (bias)
        {
            Check("db", bs, Loss, db.ToDoubles());
        }
    }

    /// <summary>A bias of −100000 on some rows (the padded vocabulary of training) is a row
    /// mask: the losses equal the cross-entropy over the other rows alone, across vocabulary
    /// chunks; the gradients match finite differences and are exactly 0 on the masked rows.
    /// </summary>
    [Fact]
    public void Lm_head_cross_entropy_with_masked_rows()
    {
        var ops = new CpuBackend { LogitChunkElements = 9 };
        var rng = new Random(17);
        const int N = 4, Dm = 5, V = 13;
        int[] masked = [2, 6, 7, 12], t = [3, -1, 10, 0];
        double[] h = Random(rng, N * Dm, 2), w = Random(rng, V * Dm), bs = Random(rng, V);
        foreach (int v in masked)
        {
            bs[v] = -100_000;
        }
        double[] r = Random(rng, N);
        using Tensor targets = Tensor.FromInts(t);
        double Loss()
        {
            using Tensor losses = Z(N), l = Z(N);
            ops.LmHeadCrossEntropy(D(h, N, Dm), D(w, V, Dm), D(bs, V), targets, losses, l);
            return Weighted(r, losses.ToDoubles());
        }
        using Tensor losses0 = Z(N), lse = Z(N);
        ops.LmHeadCrossEntropy(D(h, N, Dm), D(w, V, Dm), D(bs, V), targets, losses0, lse);
        int[] keep = [.. Enumerable.Range(0, V).Except(masked)];
        double[] wk = [.. keep.SelectMany(v => w.Skip(v * Dm).Take(Dm))];
        double[] bk = [.. keep.Select(v => bs[v])];
        int[] tk = [.. t.Select(x => x < 0 ? -1 : Array.IndexOf(keep, x))];
        Assert.Equal(Naive.CrossEntropy(h, wk, bk, tk, N, Dm, keep.Length), losses0.ToDoubles(),
            new Tolerance(1e-12));
        using Tensor dh = Z(N, Dm), dw = Z(V, Dm), db = Z(V);
        ops.LmHeadCrossEntropyBackward(D(h, N, Dm), D(w, V, Dm), D(bs, V), targets, lse, D(r, N),
            dh, dw, db);
        Check("dHidden", h, Loss, dh.ToDoubles());
        Check("dW", w, Loss, dw.ToDoubles());
        Check("db", bs, Loss, db.ToDoubles());
        double[] g = db.ToDoubles();
        Assert.All(masked, v => Assert.Equal(0, g[v]));
    }

    [Fact]
    public void Embedding_scatter_adds_repeated_ids()
    {
        var rng = new Random(8);
        const int V = 6, Dm = 9;
        int[] ids = [2, 5, 2, 0, 2];
        double[] table = Random(rng, V * Dm), r = Random(rng, ids.Length * Dm);
        using Tensor idt = Tensor.FromInts(ids);
        double Loss()
        {
            using Tensor y = Z(ids.Length, Dm);
            _ops.EmbeddingForward(D(table, V, Dm), idt, y, 1.5f);
            return Weighted(r, y.ToDoubles());
        }
        using Tensor dt = Z(V, Dm);
        _ops.EmbeddingBackward(D(r, ids.Length, Dm), idt, dt, 1.5f);
        Check("dTable", table, Loss, dt.ToDoubles(), samples: V * Dm);
        using Tensor bad = Tensor.FromInts([6]);
        using Tensor y1 = Z(1, Dm);
        Assert.Contains("outside the vocabulary",
            Assert.Throws<ArgumentException>(() => _ops.EmbeddingForward(D(table, V, Dm), bad, y1))
                .Message);
    }
}
