using ZeTT.Kernels;

namespace ZeTT.Ops.Cuda;

/// <summary>Copies that do not wait for the device: host → device through pinned staging on the
/// compute stream, device → host on a copy stream of its own, so that a batch's results travel
/// while the next batch computes.</summary>
public sealed partial class CudaBackend
{
    /// <summary>Pinned download buffers kept for reuse (the pipeline needs two at a time).</summary>
    private const int DownloadPoolSize = 4;

    private readonly UploadSlot[] _uploads = [new(), new(), new(), new()];
    private readonly List<PinnedBuffer<byte>> _downloadPool = [];
    private int _nextUpload;
    private CudaStream? _copyStream;

    private sealed class UploadSlot
    {
        public PinnedBuffer<byte>? Buffer;
        public CudaEvent? Done;
    }

    /// <inheritdoc />
    public unsafe void CopyFromHost(Tensor host, Tensor destination)
    {
        HostFallback.CheckCopyFromHost(host, destination);
        RequireDevice(destination);
        if (host.DType is not (DType.F32 or DType.BF16 or DType.I32))
        {
            throw new ArgumentException($"tensor '{host.Name}' is {host.DType}; the CUDA backend "
                + "holds F32, BF16 and I32", nameof(host));
        }
        long bytes = host.Count * host.ElementSize;
        if (bytes == 0)
        {
            return;
        }
        int size = ToInt(bytes, host, "bytes");
        // A ring of staging buffers: a slot is written again only once its last copy is done.
        UploadSlot slot = _uploads[_nextUpload];
        _nextUpload = (_nextUpload + 1) % _uploads.Length;
        slot.Done?.Synchronize();
        if (slot.Buffer is null || slot.Buffer.Length < size)
        {
            slot.Buffer?.Dispose();
            slot.Buffer = null;
            slot.Buffer = new PinnedBuffer<byte>(_context, Math.Max(size, 64 << 10));
        }
        new ReadOnlySpan<byte>((void*)host.Address, size).CopyTo(slot.Buffer.Span);
        ((CudaStorage)destination.Storage).Buffer.CopyFromHostAsync(slot.Buffer, size, _stream,
            destination.Offset * destination.ElementSize);
        slot.Done ??= new CudaEvent(_context, timing: false);
        slot.Done.Record(_stream);
    }

    /// <inheritdoc />
    public PendingDownload BeginDownload(Tensor source)
    {
        ArgumentNullException.ThrowIfNull(source);
        RequireDevice(source);
        long bytes = source.Count * source.ElementSize;
        if (source.DType != DType.F32 || !source.IsContiguous || bytes == 0
            || bytes > int.MaxValue)
        {
            // Anything but a dense fp32 tensor: downloaded now, through Download's conversions.
            return new ImmediateDownload(this, source);
        }
        _copyStream ??= new CudaStream(_context);
        using (var ready = new CudaEvent(_context, timing: false))
        {
            // Destroying a recorded event is safe: the wait keeps what it needs.
            ready.Record(_stream);
            _copyStream.Wait(ready);
        }
        PinnedBuffer<byte> pinned = RentPinned((int)bytes);
        try
        {
            ((CudaStorage)source.Storage).Buffer.CopyToHostAsync(pinned, (int)bytes, _copyStream,
                source.Offset * source.ElementSize);
            var done = new CudaEvent(_context, timing: false);
            done.Record(_copyStream);
            return new StreamDownload(this, source.Shape, pinned, done);
        }
        catch
        {
            ReturnPinned(pinned);
            throw;
        }
    }

    private PinnedBuffer<byte> RentPinned(int bytes)
    {
        int best = -1;
        for (int i = 0; i < _downloadPool.Count; i++)
        {
            if (_downloadPool[i].Length >= bytes
                && (best < 0 || _downloadPool[i].Length < _downloadPool[best].Length))
            {
                best = i;
            }
        }
        if (best >= 0)
        {
            PinnedBuffer<byte> b = _downloadPool[best];
            _downloadPool.RemoveAt(best);
            return b;
        }
        return new PinnedBuffer<byte>(_context, bytes);
    }

    private void ReturnPinned(PinnedBuffer<byte> buffer)
    {
        if (_disposed)
        {
            buffer.Dispose();
            return;
        }
        _downloadPool.Add(buffer);
        if (_downloadPool.Count > DownloadPoolSize)
        {
            // Keep the largest: the pipeline's outputs come back at one size.
            _downloadPool.Sort((a, b) => b.Length.CompareTo(a.Length));
            _downloadPool[^1].Dispose();
            _downloadPool.RemoveAt(_downloadPool.Count - 1);
        }
    }

    /// <summary>Throws when an embedding kernel saw an id outside its table (the flag the
    /// kernels set; read without waiting for the compute stream).</summary>
    private void CheckEmbeddingError()
    {
        var flag = new int[1];
        _embeddingError.CopyToHost<int>(flag);
        if (flag[0] != 0)
        {
            _embeddingError.ZeroAsync(_stream);
            _stream.Synchronize();
            throw new ArgumentException($"embedding: the id at position {flag[0] - 1} is outside "
                + "the table (detected on the device; the output row was zeroed)");
        }
    }

    private void DisposeTransfers()
    {
        _copyStream?.Synchronize();
        foreach (UploadSlot slot in _uploads)
        {
            slot.Done?.Synchronize();
            slot.Done?.Dispose();
            slot.Buffer?.Dispose();
        }
        foreach (PinnedBuffer<byte> b in _downloadPool)
        {
            b.Dispose();
        }
        _downloadPool.Clear();
        _copyStream?.Dispose();
    }

    /// <summary>Floats one thread copies at a time (below one chunk the copy is serial).
    /// </summary>
    private const int CopyChunkFloats = 1 << 20;

    /// <summary>Copies a large download out of pinned memory on all cores: one thread moves
    /// ~10 GB/s into fresh pages, so at the hypernetwork's output sizes (hundreds of MB per
    /// transfer) a serial copy would take longer than the device's next batch.</summary>
    private static unsafe void ParallelCopy(ReadOnlySpan<float> source, Span<float> destination)
    {
        int chunks = (source.Length + CopyChunkFloats - 1) / CopyChunkFloats;
        if (chunks <= 1)
        {
            source.CopyTo(destination);
            return;
        }
        fixed (float* src = source, dst = destination)
        {
            float* s = src, d = dst;
            int n = source.Length;
            Parallel.For(0, chunks, c =>
            {
                long at = (long)c * CopyChunkFloats;
                long count = Math.Min(CopyChunkFloats, n - at);
                Buffer.MemoryCopy(s + at, d + at, count * sizeof(float), count * sizeof(float));
            });
        }
    }

    /// <summary>A download made at once (non-dense or non-fp32 sources).</summary>
    private sealed class ImmediateDownload : PendingDownload
    {
        private readonly float[] _values;

        public ImmediateDownload(CudaBackend backend, Tensor source)
            : base(source.Shape)
        {
            using Tensor host = Tensor.Host(DType.F32, source.Shape, source.Name);
            backend.Download(source, host);
            _values = host.AsSpan<float>().ToArray();
        }

        protected override void WaitCore(Span<float> destination) => _values.CopyTo(destination);
    }

    /// <summary>A copy queued on the copy stream into pinned memory.</summary>
    private sealed class StreamDownload(CudaBackend backend, long[] shape,
        PinnedBuffer<byte> pinned, CudaEvent done) : PendingDownload(shape)
    {
        private PinnedBuffer<byte>? _pinned = pinned;

        protected override void WaitCore(Span<float> destination)
        {
            done.Synchronize();
            // The kernels that wrote the source are done: their id checks have landed too.
            backend.CheckEmbeddingError();
            ParallelCopy(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(
                _pinned!.Span[..checked((int)(Count * sizeof(float)))]), destination);
        }

        protected override void Release()
        {
            done.Synchronize();
            done.Dispose();
            if (_pinned is not null)
            {
                backend.ReturnPinned(_pinned);
                _pinned = null;
            }
        }
    }
}
