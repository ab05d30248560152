using System.Runtime.CompilerServices;
using ZeTT.Kernels.Native;

namespace ZeTT.Kernels;

/// <summary>
/// Device memory owned by this object (cuMemAlloc), typed by <see cref="KernelDType"/>.
/// Freed by <see cref="Dispose"/> only, never by a finalizer. Copies from/to managed spans are
/// synchronous; the <c>Async</c> copies take pinned host buffers and a stream and do not wait.
/// </summary>
public sealed class DeviceBuffer : IDisposable
{
    private readonly CudaContext _context;
    private ulong _address;

    private DeviceBuffer(CudaContext context, ulong address, long length, KernelDType type)
    {
        _context = context;
        _address = address;
        Length = length;
        DType = type;
    }

    /// <summary>Number of elements.</summary>
    public long Length { get; }

    /// <summary>Element type.</summary>
    public KernelDType DType { get; }

    /// <summary>Size in bytes.</summary>
    public long Bytes => Length * KernelDTypes.SizeOf(DType);

    /// <summary>Device address (throws once disposed).</summary>
    public ulong Address
    {
        get
        {
            ObjectDisposedException.ThrowIf(_address == 0, this);
            return _address;
        }
    }

    /// <summary>A view of the whole buffer.</summary>
    public DeviceView View => new(Address, Length, DType);

    /// <summary>Allocates <paramref name="length"/> elements (at least one byte is allocated, so
    /// an empty buffer still has an address). Out of memory throws
    /// <see cref="CudaOutOfMemoryException"/>.</summary>
    public static DeviceBuffer Allocate(CudaContext context, KernelDType type, long length)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        context.MakeCurrent();
        long bytes = Math.Max(1, length * KernelDTypes.SizeOf(type));
        CudaDriver.Check(CudaDriver.cuMemAlloc(out ulong address, (nuint)bytes));
        return new DeviceBuffer(context, address, length, type);
    }

    /// <summary>Allocates a buffer and copies <paramref name="data"/> into it.</summary>
    public static DeviceBuffer FromHost<T>(CudaContext context, KernelDType type,
        ReadOnlySpan<T> data) where T : unmanaged
    {
        var buffer = Allocate(context, type, data.Length);
        try
        {
            buffer.CopyFromHost(data);
            return buffer;
        }
        catch
        {
            buffer.Dispose();
            throw;
        }
    }

    private void CheckElement<T>(int count, long offset) where T : unmanaged
    {
        if (Unsafe.SizeOf<T>() != KernelDTypes.SizeOf(DType))
        {
            throw new ArgumentException($"host element {typeof(T).Name} ({Unsafe.SizeOf<T>()} "
                + $"bytes) does not match the buffer's {DType}");
        }
        if (offset < 0 || offset + count > Length)
        {
            throw new ArgumentOutOfRangeException(nameof(offset), $"copy of {count} elements at "
                + $"{offset} does not fit a buffer of {Length}");
        }
    }

    private ulong At(long offset) => Address + (ulong)(offset * KernelDTypes.SizeOf(DType));

    /// <summary>Synchronous copy host → device at element <paramref name="offset"/>.</summary>
    public unsafe void CopyFromHost<T>(ReadOnlySpan<T> source, long offset = 0)
        where T : unmanaged
    {
        CheckElement<T>(source.Length, offset);
        if (source.IsEmpty)
        {
            return;
        }
        _context.MakeCurrent();
        fixed (T* p = source)
        {
            CudaDriver.Check(CudaDriver.cuMemcpyHtoD(At(offset), p,
                (nuint)(source.Length * sizeof(T))));
        }
    }

    /// <summary>Synchronous copy device → host from element <paramref name="offset"/>.</summary>
    public unsafe void CopyToHost<T>(Span<T> destination, long offset = 0) where T : unmanaged
    {
        CheckElement<T>(destination.Length, offset);
        if (destination.IsEmpty)
        {
            return;
        }
        _context.MakeCurrent();
        fixed (T* p = destination)
        {
            CudaDriver.Check(CudaDriver.cuMemcpyDtoH(p, At(offset),
                (nuint)(destination.Length * sizeof(T))));
        }
    }

    /// <summary>Queues a copy of <paramref name="count"/> elements from pinned memory.</summary>
    public unsafe void CopyFromHostAsync<T>(PinnedBuffer<T> source, int count, CudaStream stream,
        long offset = 0) where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(stream);
        CheckElement<T>(count, offset);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(count, source.Length);
        if (count > 0)
        {
            CudaDriver.Check(CudaDriver.cuMemcpyHtoDAsync(At(offset), source.Pointer,
                (nuint)(count * sizeof(T)), stream.Handle));
        }
    }

    /// <summary>Queues a copy of <paramref name="count"/> elements into pinned memory.</summary>
    public unsafe void CopyToHostAsync<T>(PinnedBuffer<T> destination, int count,
        CudaStream stream, long offset = 0) where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(destination);
        ArgumentNullException.ThrowIfNull(stream);
        CheckElement<T>(count, offset);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(count, destination.Length);
        if (count > 0)
        {
            CudaDriver.Check(CudaDriver.cuMemcpyDtoHAsync(destination.Pointer, At(offset),
                (nuint)(count * sizeof(T)), stream.Handle));
        }
    }

    /// <summary>Queues zero-filling the whole buffer.</summary>
    public void ZeroAsync(CudaStream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        CudaDriver.Check(CudaDriver.cuMemsetD8Async(Address, 0, (nuint)Bytes, stream.Handle));
    }

    /// <summary>Frees the memory.</summary>
    public void Dispose()
    {
        if (_address != 0)
        {
            _context.MakeCurrent();
            ulong address = _address;
            _address = 0;
            CudaDriver.Check(CudaDriver.cuMemFree(address));
        }
    }
}

/// <summary>Page-locked host memory (cuMemAllocHost) for asynchronous copies. Freed by
/// <see cref="Dispose"/> only.</summary>
public sealed unsafe class PinnedBuffer<T> : IDisposable where T : unmanaged
{
    private readonly CudaContext _context;
    private void* _pointer;

    /// <summary>Allocates <paramref name="length"/> pinned elements.</summary>
    public PinnedBuffer(CudaContext context, int length)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        context.MakeCurrent();
        CudaDriver.Check(CudaDriver.cuMemAllocHost(out void* p,
            (nuint)Math.Max(1L, (long)length * sizeof(T))));
        _context = context;
        _pointer = p;
        Length = length;
    }

    /// <summary>Number of elements.</summary>
    public int Length { get; }

    internal void* Pointer
    {
        get
        {
            ObjectDisposedException.ThrowIf(_pointer == null, this);
            return _pointer;
        }
    }

    /// <summary>The memory as a span (valid until disposed).</summary>
    public Span<T> Span => new(Pointer, Length);

    /// <summary>Frees the pinned memory.</summary>
    public void Dispose()
    {
        if (_pointer != null)
        {
            _context.MakeCurrent();
            void* p = _pointer;
            _pointer = null;
            CudaDriver.Check(CudaDriver.cuMemFreeHost(p));
        }
    }
}
