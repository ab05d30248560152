using ZeTT.Kernels;

namespace ZeTT.Ops.Cuda;

/// <summary>Device memory of a <see cref="Tensor"/> on <see cref="TensorDevice.Cuda"/>: one
/// <see cref="DeviceBuffer"/> of raw bytes, freed by <see cref="TensorStorage.Dispose()"/>
/// (never by a finalizer: device memory belongs to a context that may be gone).</summary>
public sealed class CudaStorage : TensorStorage
{
    private DeviceBuffer? _buffer;

    internal CudaStorage(DeviceBuffer buffer)
    {
        _buffer = buffer;
        ByteLength = buffer.Bytes;
    }

    /// <inheritdoc />
    public override TensorDevice Device => TensorDevice.Cuda;

    /// <inheritdoc />
    public override nint Address => (nint)(_buffer ?? throw new ObjectDisposedException(
        nameof(CudaStorage))).Address;

    /// <inheritdoc />
    public override long ByteLength { get; }

    internal DeviceBuffer Buffer => _buffer ?? throw new ObjectDisposedException(
        nameof(CudaStorage));

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _buffer?.Dispose();
            _buffer = null;
        }
    }
}
