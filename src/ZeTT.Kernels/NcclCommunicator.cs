using ZeTT.Kernels.Native;

namespace ZeTT.Kernels;

/// <summary>
/// One rank's NCCL communicator (ncclCommInitRank) on a device context: in-place sums of fp32
/// or fp64 device buffers over all ranks, queued on a stream. Every rank gets the same sum
/// (NCCL's ring and tree all-reduces broadcast each reduced chunk). The ranks meet through a
/// <see cref="UniqueId"/> that rank 0 makes and the others receive by other means (here: a
/// rendezvous directory).
/// </summary>
public sealed class NcclCommunicator : IDisposable
{
    private readonly CudaContext _context;
    private IntPtr _comm;

    private NcclCommunicator(CudaContext context, IntPtr comm, int rank, int worldSize)
    {
        _context = context;
        _comm = comm;
        Rank = rank;
        WorldSize = worldSize;
    }

    /// <summary>This rank (0 … <see cref="WorldSize"/> − 1).</summary>
    public int Rank { get; }

    /// <summary>Ranks in the communicator.</summary>
    public int WorldSize { get; }

    /// <summary>Whether libnccl.so.2 loads here; <see cref="UnavailableReason"/> says why not.
    /// </summary>
    public static bool IsAvailable => NativeLibraries.TryLoad(NativeLibraries.Nccl).Handle != 0;

    /// <summary>Why NCCL cannot be loaded (empty when it can).</summary>
    public static string UnavailableReason =>
        NativeLibraries.TryLoad(NativeLibraries.Nccl).Error ?? "";

    /// <summary>NCCL's version code (e.g. 22304 for 2.23.4).</summary>
    public static int Version
    {
        get
        {
            RequireLibrary();
            Nccl.Check(Nccl.ncclGetVersion(out int v));
            return v;
        }
    }

    /// <summary>A new unique id (rank 0 makes it; 128 opaque bytes).</summary>
    public static unsafe byte[] UniqueId()
    {
        RequireLibrary();
        Nccl.Check(Nccl.ncclGetUniqueId(out NcclUniqueId id));
        return new ReadOnlySpan<byte>(id.Internal, NcclUniqueId.Bytes).ToArray();
    }

    /// <summary>Joins the communicator of <paramref name="uniqueId"/> as
    /// <paramref name="rank"/> of <paramref name="worldSize"/> on
    /// <paramref name="context"/>'s device; blocks until every rank has joined.</summary>
    public static unsafe NcclCommunicator Create(CudaContext context, byte[] uniqueId,
        int rank, int worldSize)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(uniqueId);
        if (uniqueId.Length != NcclUniqueId.Bytes)
        {
            throw new ArgumentException($"an NCCL unique id has {NcclUniqueId.Bytes} bytes, not "
                + uniqueId.Length, nameof(uniqueId));
        }
        ArgumentOutOfRangeException.ThrowIfLessThan(worldSize, 1);
        if (rank < 0 || rank >= worldSize)
        {
            throw new ArgumentOutOfRangeException(nameof(rank), rank,
                $"rank must be in [0, {worldSize})");
        }
        RequireLibrary();
        NcclUniqueId id = default;
        uniqueId.CopyTo(new Span<byte>(id.Internal, NcclUniqueId.Bytes));
        context.MakeCurrent();
        Nccl.Check(Nccl.ncclCommInitRank(out IntPtr comm, worldSize, id, rank));
        return new NcclCommunicator(context, comm, rank, worldSize);
    }

    /// <summary>Queues the in-place sum over all ranks of <paramref name="count"/> fp32
    /// elements at device address <paramref name="address"/> on <paramref name="stream"/>.
    /// </summary>
    public void SumFloat32(ulong address, long count, CudaStream stream) =>
        Sum(address, count, NcclDataType.Float32, stream);

    /// <summary>Sums host <paramref name="values"/> over all ranks in place (fp64, through a
    /// device buffer; synchronises <paramref name="stream"/>).</summary>
    public void SumFloat64(double[] values, CudaStream stream)
    {
        ArgumentNullException.ThrowIfNull(values);
        ArgumentNullException.ThrowIfNull(stream);
        if (values.Length == 0)
        {
            return;
        }
        int bytes = checked(values.Length * sizeof(double));
        using var pinned = new PinnedBuffer<byte>(_context, bytes);
        using DeviceBuffer buffer = DeviceBuffer.Allocate(_context, KernelDType.U8, bytes);
        System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()).CopyTo(pinned.Span);
        // Both copies on the stream: a synchronous pageable copy would not be ordered with the
        // non-blocking stream's all-reduce.
        buffer.CopyFromHostAsync(pinned, bytes, stream);
        Sum(buffer.Address, values.Length, NcclDataType.Float64, stream);
        buffer.CopyToHostAsync(pinned, bytes, stream);
        stream.Synchronize();
        pinned.Span.CopyTo(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()));
    }

    private void Sum(ulong address, long count, NcclDataType type, CudaStream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ObjectDisposedException.ThrowIf(_comm == IntPtr.Zero, this);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        _context.MakeCurrent();
        Nccl.Check(Nccl.ncclAllReduce(address, address, (nuint)count, type, NcclRedOp.Sum, _comm,
            stream.Handle));
    }

    private static void RequireLibrary()
    {
        (IntPtr handle, string? error) = NativeLibraries.TryLoad(NativeLibraries.Nccl);
        if (handle == IntPtr.Zero)
        {
            throw new NcclException($"NCCL is not available: {error} (data-parallel training on "
                + "CUDA needs NCCL 2; install libnccl2 or the nvidia-nccl Python wheel)");
        }
    }

    /// <summary>Destroys the communicator.</summary>
    public void Dispose()
    {
        if (_comm != IntPtr.Zero)
        {
            _context.MakeCurrent();
            IntPtr c = _comm;
            _comm = IntPtr.Zero;
            Nccl.Check(Nccl.ncclCommDestroy(c));
        }
    }
}
