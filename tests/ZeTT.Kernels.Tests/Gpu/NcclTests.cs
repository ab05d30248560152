namespace ZeTT.Kernels.Tests.Gpu;

/// <summary>The NCCL binding: a clear error where libnccl is missing; on a GPU with NCCL, a
/// one-rank communicator whose in-place sums are copies (fp32 on the stream, fp64 of host
/// values), and a rank outside the world refused.</summary>
[Collection("gpu")]
public sealed class NcclTests(GpuSession session)
{
    [Fact]
    public void A_missing_library_is_a_clear_error()
    {
        Assert.SkipWhen(NcclCommunicator.IsAvailable, "libnccl is installed here");
        Assert.Contains("libnccl", NcclCommunicator.UnavailableReason, StringComparison.Ordinal);
        NcclException e = Assert.Throws<NcclException>(() => NcclCommunicator.UniqueId());
        Assert.StartsWith("NCCL is not available: libnccl not found", e.Message, StringComparison.Ordinal);
        Assert.Contains("libnccl2", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void One_rank_sums_are_copies()
    {
        GpuSession.Parts g = session.Require();
        Assert.SkipUnless(NcclCommunicator.IsAvailable, NcclCommunicator.UnavailableReason);
        Assert.True(NcclCommunicator.Version >= 20000, $"{NcclCommunicator.Version}");
        byte[] id = NcclCommunicator.UniqueId();
        Assert.Equal(128, id.Length);
        Assert.Throws<ArgumentOutOfRangeException>(() => NcclCommunicator.Create(g.Context, id, 1, 1));
        using NcclCommunicator comm = NcclCommunicator.Create(g.Context, id, 0, 1);
        float[] data = [.. Enumerable.Range(0, 1000).Select(i => (i * 0.37f) - 100)];
        using DeviceBuffer buffer = DeviceBuffer.FromHost<float>(g.Context, KernelDType.F32, data);
        comm.SumFloat32(buffer.Address, data.Length, g.Stream);
        g.Stream.Synchronize();
        var back = new float[data.Length];
        buffer.CopyToHost<float>(back);
        Assert.Equal(data, back);
        double[] host = [1.5, -2.25, 1e300];
        comm.SumFloat64(host, g.Stream);
        Assert.Equal([1.5, -2.25, 1e300], host);
    }
}
