using ZeTT.Kernels.Reference;

namespace ZeTT.Kernels.Tests;

/// <summary>The CPU twins the GEMM parity tests compare with: erf, GELU, bf16 rounding.</summary>
public sealed class CpuTwinTests
{
    [Theory]
    [InlineData(0.0, 0.0)]
    [InlineData(0.5, 0.5204998778130465)]
    [InlineData(1.0, 0.8427007929497149)]
    [InlineData(-2.0, -0.9953222650189527)]
    [InlineData(2.9, 0.9999589021219005)]
    [InlineData(3.5, 0.9999992569016276)]
    [InlineData(-4.5, -0.9999999998033839)]
    public void Erf_matches_known_values(double x, double expected) =>
        Assert.Equal(expected, CpuMath.Erf(x), 1e-13);

    [Fact]
    public void Gelu_variants_match_pytorch_values()
    {
        // torch.nn.functional.gelu(torch.tensor(1.0, dtype=float64)) and approximate="tanh".
        Assert.Equal(0.8413447460685429f, CpuKernels.GeluErf(1f), 1e-7f);
        Assert.Equal(0.8411919906082768f, CpuKernels.GeluTanh(1f), 1e-7f);
        Assert.Equal(-0.04550026389635842f, CpuKernels.GeluErf(-2f), 1e-7f);
        Assert.Equal(0f, CpuKernels.GeluErf(-20f), 1e-7f);
    }

    [Fact]
    public void Bf16_rounding_is_to_nearest_even()
    {
        Assert.Equal(1f, CpuKernels.RoundBFloat16(1f + 1f / 512));          // tie → even
        Assert.Equal(1f + 1f / 64, CpuKernels.RoundBFloat16(1f + 3f / 256)); // tie → even (up)
        Assert.Equal(1f + 1f / 128, CpuKernels.RoundBFloat16(1f + 1f / 128 + 1f / 1024));
    }
}
