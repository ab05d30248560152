using ZeTT.Kernels;
using ZeTT.Kernels.Blas;
using ZeTT.Kernels.Launch;

namespace ZeTT.Ops.Cuda;

/// <summary>
/// The op layer on an NVIDIA GPU: every op of <see cref="IOpBackend"/> as a launch of
/// kernels/*.cu through the typed launchers of ZeTT.Kernels, and matrix products through the
/// one cuBLASLt wrapper (<see cref="Gemm"/>). All work is queued on one stream, in call order.
/// <para>Dtypes: activations F32 or BF16 (fp32 arithmetic and accumulation inside every
/// kernel); weights F32 or BF16 on the device (an F16 host weight is widened to F32 on upload,
/// which is exact). A matrix product whose operands differ in dtype rounds the F32 operand to
/// BF16 in a scratch buffer first (cuBLAS multiplies like with like); the result and
/// accumulation stay fp32. F64, the CPU backend's test path, is not supported here.</para>
/// <para>Layouts: the kernels take rows with a row stride (matrix operands, gated
/// activations, rotary, attention, copies); norms, element-wise ops, embeddings and the loss
/// take contiguous tensors and say so when given a view.</para>
/// <para>Scratch (dtype conversions, attention's delta, the loss's logit chunks, norm partial
/// sums) is kept per purpose and grows to the largest request; it is freed with the backend.
/// </para>
/// </summary>
public sealed partial class CudaBackend : IOpBackend
{
    private readonly CudaContext _context;
    private readonly CudaStream _stream;
    private readonly KernelSet _kernels;
    private readonly BlasHandle _blas;
    private readonly Dictionary<string, DeviceBuffer> _scratch = [];
    private readonly Dictionary<(int, double), DeviceBuffer> _invFreq = [];
    private readonly DeviceBuffer _embeddingError;
    private bool _disposed;

    /// <summary>Creates a context on <paramref name="device"/>, a stream, the kernels and the
    /// BLAS handles. Fails where there is no driver or device; check
    /// <see cref="ZeTT.Kernels.Cuda.IsAvailable"/> first.</summary>
    public CudaBackend(int device = 0)
    {
        _context = CudaContext.Create(device);
        try
        {
            _stream = new CudaStream(_context);
            _kernels = new KernelSet(_context);
            _blas = new BlasHandle(_stream);
            _embeddingError = DeviceBuffer.Allocate(_context, KernelDType.I32, 1);
            _embeddingError.ZeroAsync(_stream);
        }
        catch
        {
            _blas?.Dispose();
            _kernels?.Dispose();
            _stream?.Dispose();
            _context.Dispose();
            throw;
        }
    }

    /// <inheritdoc />
    public string Name => "cuda";

    /// <inheritdoc />
    public TensorDevice Device => TensorDevice.Cuda;

    /// <summary>Budget of one fp32 logits chunk of the fused LM-head loss (tests shrink it to
    /// force several chunks).</summary>
    internal long LossChunkBytes { get; init; } = Kernels.Launch.LmHeadCrossEntropy.DefaultChunkBytes;

    /// <summary>The device's name and compute capability.</summary>
    public string DeviceName => _context.ToString();

    /// <summary>Device memory free now, bytes (cuMemGetInfo).</summary>
    public long FreeMemory => _context.GetMemoryInfo().Free;

    /// <summary>The context every buffer of this backend lives in.</summary>
    internal CudaContext Context => _context;

    /// <summary>The stream all work is queued on (collectives join it, in call order).</summary>
    internal CudaStream Stream => _stream;

    // ---- memory -----------------------------------------------------------------------------

    /// <inheritdoc />
    public Tensor Empty(DType dtype, long[] shape, string? name = null)
    {
        ArgumentNullException.ThrowIfNull(shape);
        long count = 1;
        foreach (long d in shape)
        {
            if (d < 0)
            {
                throw new ArgumentException($"tensor '{name ?? "tensor"}': negative dimension in "
                    + Tensor.ShapeText(shape), nameof(shape));
            }
            count = checked(count * d);
        }
        _context.MakeCurrent();
        DeviceBuffer buffer = DeviceBuffer.Allocate(_context, KernelDType.U8,
            count * DTypes.SizeOf(dtype));
        return Tensor.Over(new CudaStorage(buffer), dtype, shape, ownsStorage: true, name);
    }

    /// <inheritdoc />
    public Tensor Zeros(DType dtype, long[] shape, string? name = null)
    {
        Tensor t = Empty(dtype, shape, name);
        ((CudaStorage)t.Storage).Buffer.ZeroAsync(_stream);
        return t;
    }

    /// <inheritdoc />
    public unsafe Tensor Upload(Tensor host)
    {
        ArgumentNullException.ThrowIfNull(host);
        if (host.Device != TensorDevice.Host)
        {
            throw new ArgumentException($"tensor '{host.Name}' is on {host.Device}; Upload takes "
                + "host tensors", nameof(host));
        }
        if (!host.IsContiguous)
        {
            throw new ArgumentException($"tensor '{host.Name}': Upload takes a contiguous host "
                + "tensor", nameof(host));
        }
        switch (host.DType)
        {
            case DType.F32 or DType.BF16 or DType.I32:
                {
                    Tensor t = Empty(host.DType, host.Shape, host.Name);
                    var bytes = new ReadOnlySpan<byte>((void*)host.Address,
                        checked((int)(host.Count * host.ElementSize)));
                    ((CudaStorage)t.Storage).Buffer.CopyFromHost(bytes);
                    return t;
                }
            case DType.F16:
                {
                    // Widening fp16 to fp32 is exact; the kernels read F32 and BF16 only.
                    var wide = new float[host.Count];
                    var src = new ReadOnlySpan<Half>((void*)host.Address, wide.Length);
                    for (int i = 0; i < wide.Length; i++)
                    {
                        wide[i] = (float)src[i];
                    }
                    Tensor t = Empty(DType.F32, host.Shape, host.Name);
                    ((CudaStorage)t.Storage).Buffer.CopyFromHost<byte>(
                        System.Runtime.InteropServices.MemoryMarshal.AsBytes(wide.AsSpan()));
                    return t;
                }
            default:
                throw new ArgumentException($"tensor '{host.Name}' is {host.DType}; the CUDA "
                    + "backend holds F32, BF16 (F16 widened to F32) and I32", nameof(host));
        }
    }

    /// <inheritdoc />
    public unsafe void Download(Tensor source, Tensor hostDestination)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(hostDestination);
        RequireDevice(source);
        if (hostDestination.Device != TensorDevice.Host || !hostDestination.IsContiguous)
        {
            throw new ArgumentException($"tensor '{hostDestination.Name}': a download target "
                + "must be a contiguous host tensor", nameof(hostDestination));
        }
        RequireSameShape(source, hostDestination);
        Synchronize();
        if (source.DType == DType.I32 || hostDestination.DType == DType.I32)
        {
            if (source.DType != hostDestination.DType || !source.IsContiguous)
            {
                throw new ArgumentException($"tensor '{source.Name}': I32 downloads need a "
                    + "contiguous source and an I32 target", nameof(source));
            }
            CopyRaw(source, hostDestination);
            return;
        }
        if (source.IsContiguous && source.DType == hostDestination.DType)
        {
            CopyRaw(source, hostDestination);
            return;
        }
        // Widen to a dense F32 copy on the device, then convert on the host.
        DeviceView dense = Scratch("download", KernelDType.F32, source.Count);
        ResidualKernels.CopyStrided(_kernels, _stream, View(source), source.Strides, dense,
            Tensor.ContiguousStrides(source.Shape), source.Shape);
        var values = new float[source.Count];
        _stream.Synchronize();
        CudaDriverCopy(values, dense);
        switch (hostDestination.DType)
        {
            case DType.F32:
                values.CopyTo(hostDestination.AsSpan<float>());
                break;
            case DType.F64:
                {
                    Span<double> d = hostDestination.AsSpan<double>();
                    for (int i = 0; i < values.Length; i++)
                    {
                        d[i] = values[i];
                    }
                    break;
                }
            case DType.BF16:
                {
                    Span<ushort> d = hostDestination.AsSpan<ushort>();
                    for (int i = 0; i < values.Length; i++)
                    {
                        d[i] = BFloat16.FromFloat(values[i]);
                    }
                    break;
                }
            default:
                throw new ArgumentException($"tensor '{hostDestination.Name}' is "
                    + $"{hostDestination.DType}; downloads write F32, F64, BF16 or I32",
                    nameof(hostDestination));
        }
    }

    /// <inheritdoc />
    public void Copy(Tensor source, Tensor destination)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(destination);
        RequireDevice(source);
        RequireDevice(destination);
        RequireSameShape(source, destination);
        ResidualKernels.CopyStrided(_kernels, _stream, View(source), source.Strides,
            View(destination), destination.Strides, source.Shape);
    }

    /// <inheritdoc />
    public void Fill(Tensor tensor, double value)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        RequireDevice(tensor);
        ResidualKernels.CopyStrided(_kernels, _stream, default, tensor.Strides, View(tensor),
            tensor.Strides, tensor.Shape, (float)value);
    }

    /// <inheritdoc />
    public void Synchronize()
    {
        _stream.Synchronize();
        _copyStream?.Synchronize();
        CheckEmbeddingError();
    }

    // ---- helpers ------------------------------------------------------------------------------

    private static void RequireDevice(Tensor t)
    {
        if (t.Device != TensorDevice.Cuda)
        {
            throw new ArgumentException($"tensor '{t.Name}' is on {t.Device}; the CUDA backend "
                + "computes on device tensors (Upload host tensors first)");
        }
    }

    private static void RequireSameShape(Tensor a, Tensor b)
    {
        if (!a.Shape.AsSpan().SequenceEqual(b.Shape))
        {
            throw new ArgumentException($"tensors '{a.Name}' {Tensor.ShapeText(a.Shape)} and "
                + $"'{b.Name}' {Tensor.ShapeText(b.Shape)} must have the same shape");
        }
    }

    private static KernelDType KernelType(Tensor t) => t.DType switch
    {
        DType.F32 => KernelDType.F32,
        DType.BF16 => KernelDType.BF16,
        DType.I32 => KernelDType.I32,
        _ => throw new ArgumentException($"tensor '{t.Name}' is {t.DType}; the CUDA kernels take "
            + "F32, BF16 and I32"),
    };

    /// <summary>The tensor's memory from its first element to the end of its storage (the
    /// launchers check every access against that length).</summary>
    private static DeviceView View(Tensor t)
    {
        RequireDevice(t);
        KernelDType k = KernelType(t);
        long length = (t.Storage.ByteLength - t.Offset * t.ElementSize) / t.ElementSize;
        return new DeviceView((ulong)t.Address, length, k);
    }

    private static DeviceView ViewOrNone(Tensor? t) => t is null ? default : View(t);

    /// <summary>(rows, width, row stride) of a tensor read as rows of its last dimension.
    /// </summary>
    private static (long Rows, long Width, long Ld) Rows(Tensor t)
    {
        if (t.Rank == 0)
        {
            return (1, 1, 1);
        }
        long width = t.Shape[^1];
        if (t.Strides[^1] != 1 && width > 1)
        {
            throw new ArgumentException($"tensor '{t.Name}': the last dimension must be "
                + $"contiguous (strides {Tensor.ShapeText(t.Strides)})");
        }
        if (t.Rank == 1)
        {
            return (1, width, width);
        }
        long rows = 1;
        for (int d = 0; d < t.Rank - 1; d++)
        {
            rows *= t.Shape[d];
        }
        for (int d = 0; d < t.Rank - 2; d++)
        {
            if (t.Shape[d] > 1 && t.Strides[d] != t.Strides[d + 1] * t.Shape[d + 1])
            {
                throw new ArgumentException($"tensor '{t.Name}': leading dimensions "
                    + $"{Tensor.ShapeText(t.Shape)} with strides {Tensor.ShapeText(t.Strides)} "
                    + "do not flatten into rows");
            }
        }
        return (rows, width, Math.Max(t.Strides[^2], 1));
    }

    /// <summary>Rows of a tensor that must be contiguous.</summary>
    private static (int Rows, int Width) DenseRows(Tensor t, string op)
    {
        if (!t.IsContiguous)
        {
            throw new ArgumentException($"{op}: tensor '{t.Name}' must be contiguous on the "
                + $"CUDA backend (strides {Tensor.ShapeText(t.Strides)})");
        }
        (long rows, long width, _) = Rows(t);
        return (ToInt(rows, t, "rows"), ToInt(width, t, "width"));
    }

    private static int ToInt(long value, Tensor t, string what) => value <= int.MaxValue
        ? (int)value
        : throw new ArgumentException($"tensor '{t.Name}': {what} {value} exceed one launch's "
            + $"{int.MaxValue}");

    private DeviceView Scratch(string purpose, KernelDType type, long length)
    {
        long bytes = Math.Max(1, length) * KernelDTypes.SizeOf(type);
        if (!_scratch.TryGetValue(purpose, out DeviceBuffer? b) || b.Bytes < bytes)
        {
            if (b is not null)
            {
                _stream.Synchronize();  // the old buffer may still be in use by queued work
                b.Dispose();
            }
            b = DeviceBuffer.Allocate(_context, KernelDType.U8, bytes);
            _scratch[purpose] = b;
        }
        return new DeviceView(b.Address, length, type);
    }

    private static unsafe void CopyRaw(Tensor source, Tensor host)
    {
        var span = new Span<byte>((void*)host.Address, checked((int)(host.Count * host.ElementSize)));
        DeviceBuffer buffer = ((CudaStorage)source.Storage).Buffer;
        buffer.CopyToHost(span, source.Offset * source.ElementSize);
    }

    private void CudaDriverCopy(float[] values, DeviceView dense)
    {
        DeviceBuffer owner = _scratch["download"];
        owner.CopyToHost<byte>(System.Runtime.InteropServices.MemoryMarshal.AsBytes(
            values.AsSpan()), (long)(dense.Address - owner.Address));
    }

    /// <summary>Frees scratch, the kernels, the BLAS handles, the stream and the context.
    /// Tensors this backend made must be disposed first.</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }
        _disposed = true;
        _stream.Synchronize();
        DisposeTransfers();
        foreach (DeviceBuffer b in _scratch.Values)
        {
            b.Dispose();
        }
        foreach (DeviceBuffer b in _invFreq.Values)
        {
            b.Dispose();
        }
        _embeddingError.Dispose();
        _blas.Dispose();
        _kernels.Dispose();
        _stream.Dispose();
        _context.Dispose();
    }
}
