using ZeTT.Ops;
using ZeTT.Ops.Cpu;
using ZeTT.Runtime.Hypernetwork;
using ZeTT.Runtime.Tensors;

namespace ZeTT.Runtime.Tests.Hypernetwork;

/// <summary>
/// The hypernetwork graph on the op layer: its forward against the PyTorch fixtures, its
/// inference pass against its training forward, its backward against central finite
/// differences on the float64 path.
/// </summary>
public sealed class HypernetGraphTests
{
    private static readonly CpuBackend Cpu = new();

    [Theory]
    [MemberData(nameof(CpuHypernetParityTests.Cases), MemberType = typeof(CpuHypernetParityTests))]
    public void Forward_matches_pytorch(string set, string name)
    {
        HypernetFixture f = HypernetFixture.LoadOrSkip(set, name);
        using HypernetParameters p = HypernetParameters.FromWeights(f.Weights, Cpu, DType.F32);
        using Tensor e = Source(f.SourceEmbeddings);
        using var graph = new HypernetGraph(f.Config, p, e);
        using HypernetPass pass = graph.Forward(f.SurfaceForms, f.Rows, f.LangIndex);
        CpuHypernetParityTests.AssertClose(f, pass.Download(), CpuHypernetParityTests.Fp32Tolerance);
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void Predict_equals_forward_on_awkward_rows(string name)
    {
        HypernetFixture f = HypernetFixture.LoadOrSkip(HypernetFixture.ReconstructionSet, name);
        int[] sf = WithAwkwardRows(f);
        int rows = sf.Length / f.Config.SurfaceMaxLen;
        using HypernetParameters p = HypernetParameters.FromWeights(f.Weights, Cpu, DType.F32);
        using Tensor e = Source(f.SourceEmbeddings);
        using var graph = new HypernetGraph(f.Config, p, e);
        HypernetOutput expected;
        using (HypernetPass pass = graph.Forward(sf, rows, f.LangIndex))
        {
            expected = pass.Download();
        }
        // Inference keeps nothing and reuses its workspaces: the same bits, twice.
        for (int round = 0; round < 2; round++)
        {
            HypernetOutput actual = graph.Predict(sf, rows, f.LangIndex);
            Assert.Equal(expected.EmbeddingsIn, actual.EmbeddingsIn);
            Assert.Equal(expected.EmbeddingsOut, actual.EmbeddingsOut);
            Assert.Equal(expected.Bias, actual.Bias);
        }
    }

    public static TheoryData<string> Names() => new(HypernetFixture.CaseNames);

    /// <summary>Every trainable parameter's gradient (a sample of its elements) equals the
    /// central finite difference of L = Σ r·outputs in float64: |a − fd| ≤ 1e-7 + 1e-5·|fd|
    /// (h = 1e-5 on weights of size ~0.1–1: truncation ~1e-10, rounding ~1e-11).</summary>
    [Theory]
    [MemberData(nameof(Names))]
    public void Backward_matches_finite_differences(string name)
    {
        HypernetFixture f = HypernetFixture.LoadOrSkip(HypernetFixture.ReconstructionSet, name);
        int[] sf = WithAwkwardRows(f, take: 5);
        int rows = sf.Length / f.Config.SurfaceMaxLen;
        using HypernetParameters p = HypernetParameters.FromWeights(f.Weights, Cpu, DType.F64);
        using Tensor e = Source(f.SourceEmbeddings);
        using var graph = new HypernetGraph(f.Config, p, e);
        var rng = new Random(7);
        double[]? rIn = null, rOut = null, rBias = null;
        double Loss()
        {
            using HypernetPass pass = graph.Forward(sf, rows, f.LangIndex);
            double[] ein = pass.EmbeddingsIn.ToDoubles();
            rIn ??= Random(rng, ein.Length);
            double loss = Dot(rIn, ein);
            if (pass.EmbeddingsOut is not null)
            {
                double[] eo = pass.EmbeddingsOut.ToDoubles();
                rOut ??= Random(rng, eo.Length);
                loss += Dot(rOut, eo);
            }
            if (pass.Bias is not null)
            {
                double[] b = pass.Bias.ToDoubles();
                rBias ??= Random(rng, b.Length);
                loss += Dot(rBias, b);
            }
            return loss;
        }
        Loss();
        using HypernetParameters grads = p.ZerosLike(n => !n.StartsWith("in_scaler", StringComparison.Ordinal));
        using (HypernetPass pass = graph.Forward(sf, rows, f.LangIndex))
        {
            using Tensor dIn = Tensor.FromDoubles(rIn!, pass.EmbeddingsIn.Shape);
            using Tensor? dOut = rOut is null ? null : Tensor.FromDoubles(rOut, pass.EmbeddingsOut!.Shape);
            using Tensor? dBias = rBias is null ? null : Tensor.FromDoubles(rBias, pass.Bias!.Shape);
            graph.Backward(pass, dIn, dOut, dBias, grads);
        }
        const double H = 1e-5;
        int checkedCount = 0;
        foreach (string param in grads.Names)
        {
            Span<double> x = p[param].AsSpan<double>();
            double[] g = grads[param].AsSpan<double>().ToArray();
            int step = Math.Max(1, x.Length / 3);
            for (int i = (param.Length * 7) % step; i < x.Length; i += step)
            {
                double saved = x[i];
                x[i] = saved + H;
                double plus = Loss();
                x[i] = saved - H;
                double minus = Loss();
                x[i] = saved;
                double fd = (plus - minus) / (2 * H);
                Assert.True(Math.Abs(g[i] - fd) <= 1e-7 + 1e-5 * Math.Abs(fd),
                    $"{param}[{i}]: backward {g[i]:R}, finite difference {fd:R}");
                checkedCount++;
            }
        }
        Assert.True(checkedCount > 30, $"only {checkedCount} elements checked");
    }

    /// <summary>The fixture's first rows plus a row of padding only, a row with padding
    /// between real ids, and a row starting with padding: the mask layouts the graph reorders.
    /// </summary>
    private static int[] WithAwkwardRows(HypernetFixture f, int take = int.MaxValue)
    {
        int l = f.Config.SurfaceMaxLen, pad = f.Config.PadTokenId;
        int rows = Math.Min(take, f.Rows);
        var list = f.SurfaceForms.Take(rows * l).ToList();
        list.AddRange(Enumerable.Repeat(pad, l));
        int extraId = f.Config.OriginalVocabSize + f.Config.NumExtraTokens - 1;
        for (int variant = 0; variant < 2 && l > 1; variant++)
        {
            var row = Enumerable.Repeat(pad, l).ToArray();
            row[variant] = 5;
            row[Math.Min(2 + variant, l - 1)] = extraId;
            list.AddRange(row);
        }
        return [.. list];
    }

    private static Tensor Source(HostTensor e) => Tensor.FromFloats(e.Data,
        Array.ConvertAll(e.Shape, d => (long)d));

    private static double[] Random(Random rng, int n) =>
        Enumerable.Range(0, n).Select(_ => rng.NextDouble() * 2 - 1).ToArray();

    private static double Dot(double[] a, double[] b) => a.Zip(b, (x, y) => x * y).Sum();
}
