using System.Security.Cryptography;
using System.Text;
using ZeTT.Ops;
using ZeTT.Ops.Cuda;

namespace ZeTT.Runtime.Training;

/// <summary>Data-parallel training across processes (<c>zett train --world-size R --rank r
/// --dist-dir DIR</c>).</summary>
/// <param name="WorldSize">Ranks (processes, one device each).</param>
/// <param name="Rank">This process's rank, in [0, WorldSize).</param>
/// <param name="Directory">The rendezvous directory every rank can reach (one job at a time).
/// </param>
/// <param name="TimeoutSeconds">How long a rank waits for the others at a collective before it
/// stops with an error naming the rank that did not arrive (rank 0 validates and writes
/// checkpoints while the others wait, so this must cover a validation).</param>
public sealed record DistributedOptions(int WorldSize, int Rank, string Directory,
    double TimeoutSeconds = DistributedOptions.DefaultTimeoutSeconds)
{
    /// <summary>The default wait at a collective: 30 minutes.</summary>
    public const double DefaultTimeoutSeconds = 1800;

    /// <summary>Throws a <see cref="ZettException"/> unless the values are usable.</summary>
    public void Validate()
    {
        if (WorldSize < 1)
        {
            throw new ZettException($"--world-size {WorldSize}: at least 1 rank");
        }
        if (Rank < 0 || Rank >= WorldSize)
        {
            throw new ZettException($"--rank {Rank}: must be in [0, {WorldSize}) for "
                + $"--world-size {WorldSize}");
        }
        if (string.IsNullOrWhiteSpace(Directory))
        {
            throw new ZettException("--dist-dir: a rendezvous directory is needed");
        }
        if (!(TimeoutSeconds > 0) || !double.IsFinite(TimeoutSeconds))
        {
            throw new ZettException(FormattableString.Invariant(
                $"--dist-timeout {TimeoutSeconds}: must be a positive number of seconds"));
        }
    }
}

/// <summary>
/// The collectives data-parallel training needs: an in-place sum of one flat gradient buffer
/// over all ranks (every rank gets the same values, bit for bit), a sum of a few host numbers
/// (losses, token counts, a budget decision), and an agreement check that every rank holds the
/// same text (options, hypernetwork config, a digest of the initial state). Collectives are
/// called by every rank in the same order; a rank that does not arrive makes the others stop
/// with an error naming it, never wait for ever (the NCCL transport excepted: see
/// <see cref="NcclGradientReducer"/>).
/// </summary>
public interface IGradientReducer : IDisposable
{
    /// <summary>This process's rank.</summary>
    int Rank { get; }

    /// <summary>Ranks in the job.</summary>
    int WorldSize { get; }

    /// <summary>What carries the sums, for the log ("files in DIR", "NCCL 2.x").</summary>
    string Transport { get; }

    /// <summary>Replaces contiguous <paramref name="flat"/> (on the reducer's backend) by its
    /// sum over all ranks.</summary>
    void Sum(Tensor flat);

    /// <summary>Replaces <paramref name="values"/> by their element-wise sum over all ranks
    /// (the same length on every rank).</summary>
    void Sum(double[] values);

    /// <summary>Throws a <see cref="ZettException"/> on every rank unless every rank passed the
    /// same <paramref name="text"/>; the message names <paramref name="what"/>, the first rank
    /// that differs from rank 0 and the first line where it differs.</summary>
    void Agree(string what, string text);

    /// <summary>Tells the other ranks that this one stopped with <paramref name="message"/>, so
    /// that they stop at their next collective instead of waiting for it.</summary>
    void Abort(string message);
}

/// <summary>Opens the reducer for a backend and the helpers on top of the collectives.
/// </summary>
public static class GradientReducer
{
    /// <summary>NCCL on the CUDA backend (the unique id exchanged through the rendezvous
    /// directory); the rendezvous directory itself on the CPU backend. The ranks meet, and
    /// <paramref name="fingerprint"/> (the run's options) must agree, before this returns.
    /// </summary>
    public static IGradientReducer Open(DistributedOptions options, IOpBackend backend,
        string fingerprint)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(backend);
        options.Validate();
        FileRendezvous rendezvous = FileRendezvous.Join(options);
        try
        {
            IGradientReducer reducer = backend is CudaBackend cuda
                ? new NcclGradientReducer(rendezvous, cuda)
                : new FileGradientReducer(rendezvous, backend);
            try
            {
                reducer.Agree("options", fingerprint);
            }
            catch
            {
                reducer.Dispose();
                throw;
            }
            return reducer;
        }
        catch (Exception e)
        {
            rendezvous.Abort(e.Message);
            rendezvous.Dispose();
            throw;
        }
    }

    /// <summary>Rank 0's <paramref name="values"/> on every rank (a sum to which the other ranks
    /// add zeros): decisions that depend on one rank's clock.</summary>
    public static double[] FromRankZero(this IGradientReducer reducer, params double[] values)
    {
        ArgumentNullException.ThrowIfNull(reducer);
        ArgumentNullException.ThrowIfNull(values);
        double[] v = reducer.Rank == 0 ? (double[])values.Clone() : new double[values.Length];
        reducer.Sum(v);
        return v;
    }

    /// <summary>SHA-256 (hex) of the bits of every tensor of the sets, by name, in order: one
    /// line per set, for an agreement check of the state every rank holds.</summary>
    public static unsafe string Digest(
        IEnumerable<(string Label, Hypernetwork.HypernetParameters? Set)> sets)
    {
        ArgumentNullException.ThrowIfNull(sets);
        var text = new StringBuilder();
        foreach ((string label, Hypernetwork.HypernetParameters? set) in sets)
        {
            if (set is null)
            {
                continue;
            }
            using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            foreach (string name in set.Names)
            {
                Tensor t = set[name];
                using Tensor host = Tensor.Host(t.DType, t.Shape, name);
                set.Backend.Download(t, host);
                sha.AppendData(Encoding.UTF8.GetBytes(name));
                sha.AppendData(new ReadOnlySpan<byte>((void*)host.Address,
                    checked((int)(host.Count * host.ElementSize))));
            }
            text.Append(label).Append(' ').Append(Convert.ToHexStringLower(sha.GetHashAndReset()))
                .Append('\n');
        }
        return text.ToString();
    }
}

/// <summary>
/// Collectives through the rendezvous directory, for processes on one machine (or sharing a
/// file system) on the CPU backend: each rank writes its buffer to a file of the collective's
/// generation and reads the others'; the sum runs in rank order 0 … R − 1 in float64 and is
/// rounded once, so every rank computes the same bits.
/// </summary>
public sealed class FileGradientReducer : IGradientReducer
{
    private readonly FileRendezvous _rendezvous;
    private readonly IOpBackend _ops;

    internal FileGradientReducer(FileRendezvous rendezvous, IOpBackend backend)
    {
        _rendezvous = rendezvous;
        _ops = backend;
    }

    /// <inheritdoc />
    public int Rank => _rendezvous.Rank;

    /// <inheritdoc />
    public int WorldSize => _rendezvous.WorldSize;

    /// <inheritdoc />
    public string Transport => $"files in {_rendezvous.Directory}";

    /// <inheritdoc />
    public unsafe void Sum(Tensor flat)
    {
        ArgumentNullException.ThrowIfNull(flat);
        if (!flat.IsContiguous || flat.DType is not (DType.F32 or DType.F64))
        {
            throw new ArgumentException($"tensor '{flat.Name}': the sum takes a contiguous F32 or "
                + $"F64 buffer, not {flat.DType}{(flat.IsContiguous ? "" : " (a view)")}",
                nameof(flat));
        }
        Tensor host = flat.Device == TensorDevice.Host ? flat : Tensor.Host(flat.DType, flat.Shape,
            flat.Name);
        try
        {
            if (!ReferenceEquals(host, flat))
            {
                _ops.Download(flat, host);
            }
            long bytes = host.Count * host.ElementSize;
            var mine = new ReadOnlySpan<byte>((void*)host.Address, checked((int)bytes));
            var acc = new double[host.Count];
            bool f32 = host.DType == DType.F32;
            _rendezvous.Exchange(mine, $"the gradient sum ({host.Count} values)", (data, q) =>
            {
                if (data.Length != bytes)
                {
                    throw new ZettException($"{_rendezvous.Directory}: rank {q} sent {data.Length} "
                        + $"bytes of gradients, this rank has {bytes} (different hypernetworks?)");
                }
                if (f32)
                {
                    ReadOnlySpan<float> x = System.Runtime.InteropServices.MemoryMarshal
                        .Cast<byte, float>(data);
                    for (int i = 0; i < x.Length; i++)
                    {
                        acc[i] += x[i];
                    }
                }
                else
                {
                    ReadOnlySpan<double> x = System.Runtime.InteropServices.MemoryMarshal
                        .Cast<byte, double>(data);
                    for (int i = 0; i < x.Length; i++)
                    {
                        acc[i] += x[i];
                    }
                }
            });
            if (f32)
            {
                Span<float> y = host.AsSpan<float>();
                for (int i = 0; i < y.Length; i++)
                {
                    y[i] = (float)acc[i];
                }
            }
            else
            {
                acc.CopyTo(host.AsSpan<double>());
            }
            if (!ReferenceEquals(host, flat))
            {
                using Tensor up = _ops.Upload(host);
                _ops.Copy(up, flat);
            }
        }
        finally
        {
            if (!ReferenceEquals(host, flat))
            {
                host.Dispose();
            }
        }
    }

    /// <inheritdoc />
    public void Sum(double[] values) => _rendezvous.SumDoubles(values);

    /// <inheritdoc />
    public void Agree(string what, string text) => _rendezvous.Agree(what, text);

    /// <inheritdoc />
    public void Abort(string message) => _rendezvous.Abort(message);

    /// <inheritdoc />
    public void Dispose() => _rendezvous.Dispose();
}
