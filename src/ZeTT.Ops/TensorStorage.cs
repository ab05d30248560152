using System.Runtime.InteropServices;

namespace ZeTT.Ops;

/// <summary>Where a tensor's bytes live. Model code never branches on it: a backend accepts
/// the tensors of its own device (and, for read-only weights, host memory it can map or
/// upload once).</summary>
public enum TensorDevice
{
    /// <summary>Host memory: allocated here or memory-mapped from a file.</summary>
    Host,
    /// <summary>CUDA device memory.</summary>
    Cuda,
}

/// <summary>A block of bytes a tensor views. Views share their storage; whoever created the
/// storage disposes it.</summary>
public abstract class TensorStorage : IDisposable
{
    /// <summary>The device holding the bytes.</summary>
    public abstract TensorDevice Device { get; }

    /// <summary>Address of the first byte: a host address, or a device address
    /// (CUdeviceptr) for <see cref="TensorDevice.Cuda"/>.</summary>
    public abstract nint Address { get; }

    /// <summary>Size in bytes.</summary>
    public abstract long ByteLength { get; }

    /// <summary>False for storage that must not be written (a read-only memory map).</summary>
    public virtual bool IsWritable => true;

    /// <summary>Releases the bytes (idempotent).</summary>
    public void Dispose()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    /// <summary>Releases the bytes; <paramref name="disposing"/> is false from a finalizer.
    /// </summary>
    protected virtual void Dispose(bool disposing)
    {
    }
}

/// <summary>Host memory owned by this object: 64-byte aligned, zero-filled, freed by
/// <see cref="TensorStorage.Dispose()"/> or, for host memory only, by the finalizer.</summary>
public sealed unsafe class HostStorage : TensorStorage
{
    private void* _pointer;
    private readonly long _bytes;

    /// <summary>Allocates <paramref name="bytes"/> zeroed bytes.</summary>
    public HostStorage(long bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bytes);
        _bytes = bytes;
        _pointer = NativeMemory.AlignedAlloc((nuint)Math.Max(bytes, 1), 64);
        NativeMemory.Clear(_pointer, (nuint)bytes);
        if (bytes > 0)
        {
            GC.AddMemoryPressure(bytes);
        }
    }

    /// <summary>Finalizer: host memory may be reclaimed without an explicit dispose.</summary>
    ~HostStorage() => Dispose(false);

    /// <inheritdoc />
    public override TensorDevice Device => TensorDevice.Host;

    /// <inheritdoc />
    public override nint Address => _pointer != null
        ? (nint)_pointer
        : throw new ObjectDisposedException(nameof(HostStorage));

    /// <inheritdoc />
    public override long ByteLength => _bytes;

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (_pointer != null)
        {
            NativeMemory.AlignedFree(_pointer);
            _pointer = null;
            if (_bytes > 0)
            {
                GC.RemoveMemoryPressure(_bytes);
            }
        }
    }
}

/// <summary>Host bytes owned by someone else (a memory-mapped safetensors file): this storage
/// keeps <see cref="Owner"/> reachable and never frees anything.</summary>
public sealed class MappedStorage : TensorStorage
{
    /// <summary>Wraps <paramref name="bytes"/> bytes at <paramref name="address"/>, valid while
    /// <paramref name="owner"/> is alive and undisposed.</summary>
    public MappedStorage(nint address, long bytes, object owner)
    {
        ArgumentNullException.ThrowIfNull(owner);
        ArgumentOutOfRangeException.ThrowIfNegative(bytes);
        Address = address;
        ByteLength = bytes;
        Owner = owner;
    }

    /// <summary>The object whose lifetime bounds the bytes' validity.</summary>
    public object Owner { get; }

    /// <inheritdoc />
    public override TensorDevice Device => TensorDevice.Host;

    /// <inheritdoc />
    public override nint Address { get; }

    /// <inheritdoc />
    public override long ByteLength { get; }

    /// <inheritdoc />
    public override bool IsWritable => false;
}
