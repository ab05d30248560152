using ZeTT.Kernels.Native;

namespace ZeTT.Kernels;

/// <summary>A non-blocking CUDA stream (does not synchronise with the legacy default stream).
/// </summary>
public sealed class CudaStream : IDisposable
{
    private const uint NonBlocking = 1;
    private readonly CudaContext _context;
    private IntPtr _handle;

    /// <summary>Creates a stream in <paramref name="context"/>.</summary>
    public CudaStream(CudaContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        context.MakeCurrent();
        CudaDriver.Check(CudaDriver.cuStreamCreate(out _handle, NonBlocking));
        _context = context;
    }

    /// <summary>The context the stream belongs to.</summary>
    public CudaContext Context => _context;

    internal IntPtr Handle
    {
        get
        {
            ObjectDisposedException.ThrowIf(_handle == IntPtr.Zero, this);
            return _handle;
        }
    }

    /// <summary>Waits until all queued work is done; a failed kernel surfaces here.</summary>
    public void Synchronize() => CudaDriver.Check(CudaDriver.cuStreamSynchronize(Handle));

    /// <summary>Makes later work on this stream wait for <paramref name="cudaEvent"/>.</summary>
    public void Wait(CudaEvent cudaEvent)
    {
        ArgumentNullException.ThrowIfNull(cudaEvent);
        CudaDriver.Check(CudaDriver.cuStreamWaitEvent(Handle, cudaEvent.Handle, 0));
    }

    /// <summary>Destroys the stream.</summary>
    public void Dispose()
    {
        if (_handle != IntPtr.Zero)
        {
            _context.MakeCurrent();
            IntPtr h = _handle;
            _handle = IntPtr.Zero;
            CudaDriver.Check(CudaDriver.cuStreamDestroy(h));
        }
    }
}

/// <summary>A CUDA event, for ordering streams and timing (cuEventElapsedTime).</summary>
public sealed class CudaEvent : IDisposable
{
    private const uint DisableTiming = 2;
    private readonly CudaContext _context;
    private IntPtr _handle;

    /// <summary>Creates an event; <paramref name="timing"/> false makes it cheaper.</summary>
    public CudaEvent(CudaContext context, bool timing = true)
    {
        ArgumentNullException.ThrowIfNull(context);
        context.MakeCurrent();
        CudaDriver.Check(CudaDriver.cuEventCreate(out _handle, timing ? 0 : DisableTiming));
        _context = context;
    }

    internal IntPtr Handle
    {
        get
        {
            ObjectDisposedException.ThrowIf(_handle == IntPtr.Zero, this);
            return _handle;
        }
    }

    /// <summary>Records the event at the current end of <paramref name="stream"/>.</summary>
    public void Record(CudaStream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        CudaDriver.Check(CudaDriver.cuEventRecord(Handle, stream.Handle));
    }

    /// <summary>Waits until the event has completed.</summary>
    public void Synchronize() => CudaDriver.Check(CudaDriver.cuEventSynchronize(Handle));

    /// <summary>Milliseconds between two completed events.</summary>
    public static float ElapsedMilliseconds(CudaEvent start, CudaEvent end)
    {
        ArgumentNullException.ThrowIfNull(start);
        ArgumentNullException.ThrowIfNull(end);
        CudaDriver.Check(CudaDriver.cuEventElapsedTime(out float ms, start.Handle, end.Handle));
        return ms;
    }

    /// <summary>Destroys the event.</summary>
    public void Dispose()
    {
        if (_handle != IntPtr.Zero)
        {
            _context.MakeCurrent();
            IntPtr h = _handle;
            _handle = IntPtr.Zero;
            CudaDriver.Check(CudaDriver.cuEventDestroy(h));
        }
    }
}
