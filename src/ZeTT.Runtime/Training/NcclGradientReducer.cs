using ZeTT.Kernels;
using ZeTT.Ops;
using ZeTT.Ops.Cuda;

namespace ZeTT.Runtime.Training;

/// <summary>
/// Collectives over NCCL for ranks on the CUDA backend, one device each: rank 0's
/// ncclGetUniqueId reaches the others through the rendezvous directory, every rank joins with
/// ncclCommInitRank, and the gradient sum is one in-place ncclAllReduce (sum, fp32) queued on
/// the backend's stream, so it follows the backward and precedes the update without a host
/// synchronisation. The host sums (losses) are a fp64 all-reduce; the agreement checks and the
/// abort notice go through the directory. Unlike the directory's waits, an all-reduce whose
/// peer died waits inside NCCL (it has no timeout of its own).
/// </summary>
public sealed class NcclGradientReducer : IGradientReducer
{
    private readonly FileRendezvous _rendezvous;
    private readonly CudaBackend _cuda;
    private readonly NcclCommunicator _comm;

    internal NcclGradientReducer(FileRendezvous rendezvous, CudaBackend cuda)
    {
        _rendezvous = rendezvous;
        _cuda = cuda;
        if (!NcclCommunicator.IsAvailable)
        {
            throw new ZettException($"--world-size with --device cuda sums the gradients with "
                + $"NCCL, which is not available here: {NcclCommunicator.UnavailableReason}");
        }
        byte[] id = rendezvous.Rank == 0 ? NcclCommunicator.UniqueId() : [];
        byte[] shared = [];
        rendezvous.Exchange(id, "the NCCL unique id", (data, q) =>
        {
            if (q == 0)
            {
                shared = data.ToArray();
            }
        });
        _comm = NcclCommunicator.Create(cuda.Context, shared, rendezvous.Rank,
            rendezvous.WorldSize);
        int v = NcclCommunicator.Version;
        Transport = FormattableString.Invariant(
            $"NCCL {v / 10000}.{v / 100 % 100}.{v % 100} (rendezvous in {rendezvous.Directory})");
    }

    /// <inheritdoc />
    public int Rank => _rendezvous.Rank;

    /// <inheritdoc />
    public int WorldSize => _rendezvous.WorldSize;

    /// <inheritdoc />
    public string Transport { get; }

    /// <inheritdoc />
    public void Sum(Tensor flat)
    {
        ArgumentNullException.ThrowIfNull(flat);
        if (flat.Device != TensorDevice.Cuda || flat.DType != DType.F32 || !flat.IsContiguous)
        {
            throw new ArgumentException($"tensor '{flat.Name}': the NCCL sum takes a contiguous "
                + $"F32 CUDA buffer, not {flat.DType} on {flat.Device}", nameof(flat));
        }
        _comm.SumFloat32((ulong)flat.Address, flat.Count, _cuda.Stream);
    }

    /// <inheritdoc />
    public void Sum(double[] values) => _comm.SumFloat64(values, _cuda.Stream);

    /// <inheritdoc />
    public void Agree(string what, string text) => _rendezvous.Agree(what, text);

    /// <inheritdoc />
    public void Abort(string message) => _rendezvous.Abort(message);

    /// <inheritdoc />
    public void Dispose()
    {
        _comm?.Dispose();
        _rendezvous.Dispose();
    }
}
