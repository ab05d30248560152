namespace ZeTT.Kernels.Tests;

public sealed class CudaProbeTests
{
    [Fact]
    public void Probe_reports_a_reason_exactly_when_unavailable()
    {
        if (Cuda.IsAvailable)
        {
            Assert.Empty(Cuda.UnavailableReason);
            Assert.Contains("sm_", Cuda.DeviceSummary, StringComparison.Ordinal);
        }
        else
        {
            Assert.NotEmpty(Cuda.UnavailableReason);
            Assert.Empty(Cuda.DeviceSummary);
        }
    }
}
