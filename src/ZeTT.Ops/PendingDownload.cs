namespace ZeTT.Ops;

/// <summary>A download started by <see cref="IOpBackend.BeginDownload"/>: the values of one
/// tensor on their way to host memory. Dispose it (after <see cref="Wait"/>, or instead of it
/// to drop the values) to release its staging memory.</summary>
public abstract class PendingDownload : IDisposable
{
    /// <summary>Starts a download of <paramref name="shape"/>.</summary>
    protected PendingDownload(long[] shape)
    {
        ArgumentNullException.ThrowIfNull(shape);
        Shape = shape;
        long count = 1;
        foreach (long d in shape)
        {
            count *= d;
        }
        Count = count;
    }

    /// <summary>The source tensor's shape.</summary>
    public long[] Shape { get; }

    /// <summary>Elements.</summary>
    public long Count { get; }

    /// <summary>Blocks until the values have arrived and writes them, row-major, into
    /// <paramref name="destination"/> (exactly <see cref="Count"/> elements). Once only.
    /// </summary>
    public void Wait(Span<float> destination)
    {
        ObjectDisposedException.ThrowIf(Disposed, this);
        if (Waited)
        {
            throw new InvalidOperationException("this download has already been waited for");
        }
        if (destination.Length != Count)
        {
            throw new ArgumentException($"the download holds {Count} values, the destination "
                + $"{destination.Length}", nameof(destination));
        }
        Waited = true;
        WaitCore(destination);
    }

    /// <summary>Whether <see cref="Wait"/> has run.</summary>
    protected bool Waited { get; private set; }

    /// <summary>Whether the download has been disposed.</summary>
    protected bool Disposed { get; private set; }

    /// <summary>Waits and writes the values (the length is checked).</summary>
    protected abstract void WaitCore(Span<float> destination);

    /// <summary>Releases staging memory (waiting for the copy first where it is still running).
    /// </summary>
    protected virtual void Release()
    {
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (!Disposed)
        {
            Disposed = true;
            Release();
        }
        GC.SuppressFinalize(this);
    }
}

/// <summary>A synchronous backend's download: the source is read when waited for (the
/// contract keeps it unchanged until then).</summary>
internal sealed class DeferredDownload(IOpBackend ops, Tensor source)
    : PendingDownload((source ?? throw new ArgumentNullException(nameof(source))).Shape)
{
    protected override void WaitCore(Span<float> destination)
    {
        if (source.Device == TensorDevice.Host && source.DType == DType.F32 && source.IsContiguous)
        {
            source.AsSpan<float>().CopyTo(destination);
            return;
        }
        using Tensor host = Tensor.Host(DType.F32, Shape, source.Name);
        ops.Download(source, host);
        host.AsSpan<float>().CopyTo(destination);
    }
}
