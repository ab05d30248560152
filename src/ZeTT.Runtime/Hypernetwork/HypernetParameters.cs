using ZeTT.Ops;

namespace ZeTT.Runtime.Hypernetwork;

/// <summary>
/// Named tensors on one backend, in a fixed order: a hypernetwork's parameters (names as in
/// the PyTorch port, ZETT.md §3), or their gradients or optimizer moments (the same names and
/// shapes). Owns its tensors.
/// </summary>
public sealed class HypernetParameters : IDisposable
{
    private readonly List<string> _names = [];
    private readonly Dictionary<string, Tensor> _tensors = new(StringComparer.Ordinal);
    private readonly List<Tensor> _storage = []; // tensors that parameters are views of

    /// <summary>An empty set whose tensors will have <paramref name="dtype"/>.</summary>
    public HypernetParameters(IOpBackend backend, DType dtype)
    {
        ArgumentNullException.ThrowIfNull(backend);
        Backend = backend;
        DType = dtype;
    }

    /// <summary>The backend holding the tensors.</summary>
    public IOpBackend Backend { get; }

    /// <summary>The tensors' element type (F32, or F64 on the test path).</summary>
    public DType DType { get; }

    /// <summary>The names, in insertion order (the order of the checkpoint).</summary>
    public IReadOnlyList<string> Names => _names;

    /// <summary>The tensor called <paramref name="name"/>.</summary>
    public Tensor this[string name] => _tensors.TryGetValue(name, out Tensor? t)
        ? t
        : throw new KeyNotFoundException($"hypernetwork parameter '{name}' is not in this set");

    /// <summary>The tensor called <paramref name="name"/>, or null when absent.</summary>
    public Tensor? Find(string? name) =>
        name is not null && _tensors.TryGetValue(name, out Tensor? t) ? t : null;

    /// <summary>Number of elements over all tensors.</summary>
    public long Count => _tensors.Values.Sum(t => t.Count);

    /// <summary>Adds a tensor the set then owns.</summary>
    public void Add(string name, Tensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        if (!_tensors.TryAdd(name, tensor))
        {
            throw new ArgumentException($"hypernetwork parameter '{name}' is already in the set");
        }
        _names.Add(name);
    }

    private readonly HashSet<string> _borrowed = new(StringComparer.Ordinal);

    /// <summary>Adds a tensor the set does not own (the caller disposes it): e.g. a language
    /// model's trainable weights, trained beside the hypernetwork's.</summary>
    public void AddBorrowed(string name, Tensor tensor)
    {
        Add(name, tensor);
        _borrowed.Add(name);
    }

    /// <summary>The parameters of <paramref name="weights"/> as writable tensors of
    /// <paramref name="dtype"/> on <paramref name="backend"/>.</summary>
    public static HypernetParameters FromWeights(HypernetWeights weights, IOpBackend backend,
        DType dtype) => FromWeights(weights, backend, dtype, dtype, consume: false,
            fuseAttention: false);

    /// <summary>The parameters of <paramref name="weights"/> on <paramref name="backend"/>:
    /// the GEMM weight matrices in <paramref name="matrixDType"/> (BF16: read in place by the
    /// matrix products), every other tensor in <paramref name="dtype"/>. Each tensor is
    /// converted on the host and uploaded once (the CPU backend keeps the host tensor itself);
    /// with <paramref name="consume"/> each source tensor is released as soon as it is copied,
    /// so the hypernetwork is never held twice. With <paramref name="fuseAttention"/> each
    /// layer's query, key and value weights (and biases) are stored back to back in one
    /// tensor, their parameters views of it, and so are the two output heads' first dense
    /// layers, so that inference computes each group in one GEMM (<see cref="HypernetGraph"/>
    /// looks for adjacent storage).</summary>
    public static HypernetParameters FromWeights(HypernetWeights weights, IOpBackend backend,
        DType dtype, DType matrixDType, bool consume, bool fuseAttention)
    {
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentNullException.ThrowIfNull(backend);
        var matrices = new HashSet<Tensors.HostTensor>(weights.Linears().Select(l => l.Weight),
            ReferenceEqualityComparer.Instance);
        var set = new HypernetParameters(backend, dtype);
        var done = new HashSet<string>(StringComparer.Ordinal);
        long released = 0;
        void Release(Tensors.HostTensor t)
        {
            released += 4L * t.Data.LongLength;
            t.Release();
            // The released arrays are garbage, but nothing else allocates on the managed heap
            // while the weights are copied (the copies are native memory): without a
            // collection that hands the memory back to the OS, the hypernetwork is held twice
            // until the transfer ends.
            if (released >= 256L << 20)
            {
                GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true);
                released = 0;
            }
        }
        try
        {
            if (fuseAttention)
            {
                // Linears that read the same input, stored back to back: each layer's query,
                // key and value, and the two output heads' first dense layers (both read the
                // pooled z).
                var groups = new List<(string[] Names, string What)>();
                for (int li = 0; li < weights.Config.NumLayers; li++)
                {
                    groups.Add((Array.ConvertAll(new[] { "query", "key", "value" },
                        n => $"model.encoder.layer.{li}.attention.self.{n}"), "fused q, k, v"));
                }
                if (weights.Tensors.ContainsKey("output_projection_out.0.dense1.weight"))
                {
                    groups.Add((["output_projection.0.dense1", "output_projection_out.0.dense1"],
                        "fused heads"));
                }
                foreach ((string[] layers, string what) in groups)
                {
                    foreach (string part in new[] { "weight", "bias" })
                    {
                        string[] names = Array.ConvertAll(layers, n => $"{n}.{part}");
                        Tensors.HostTensor[] parts = Array.ConvertAll(names,
                            n => weights.Tensors[n]);
                        // One exact array (a spread of SelectMany grows a list by doubling:
                        // twice the garbage of a layer's q, k, v).
                        float[] data = new float[parts.Sum(t => t.Data.LongLength)];
                        long at = 0;
                        foreach (Tensors.HostTensor t in parts)
                        {
                            t.Data.CopyTo(data, at);
                            at += t.Data.LongLength;
                        }
                        long rows = parts[0].Shape[0];
                        long[] shape = part == "weight"
                            ? [parts.Length * rows, parts[0].Shape[1]] : [parts.Length * rows];
                        Tensor fused = Upload(backend, data, shape,
                            part == "weight" ? matrixDType : dtype, $"{names[0]} ({what})");
                        set._storage.Add(fused);
                        for (int k = 0; k < parts.Length; k++)
                        {
                            set.Add(names[k], fused.Slice(0, k * rows, rows));
                            done.Add(names[k]);
                            if (consume)
                            {
                                Release(parts[k]);
                            }
                        }
                    }
                }
            }
            foreach ((string name, Tensors.HostTensor t) in weights.Tensors.OrderBy(p => p.Key,
                StringComparer.Ordinal))
            {
                if (done.Contains(name))
                {
                    continue;
                }
                set.Add(name, Upload(backend, t.Data, Array.ConvertAll(t.Shape, d => (long)d),
                    matrices.Contains(t) ? matrixDType : dtype, name));
                if (consume)
                {
                    Release(t);
                }
            }
            if (released > 0)
            {
                GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true);
            }
        }
        catch
        {
            set.Dispose();
            throw;
        }
        return set;
    }

    /// <summary><paramref name="data"/> as a tensor of <paramref name="dtype"/> on
    /// <paramref name="backend"/> (on the CPU the host tensor itself).</summary>
    private static Tensor Upload(IOpBackend backend, float[] data, long[] shape, DType dtype,
        string name)
    {
        Tensor host = HostCopy(data, shape, dtype, name);
        Tensor up;
        try
        {
            up = backend.Upload(host);
        }
        catch
        {
            host.Dispose();
            throw;
        }
        if (!ReferenceEquals(up, host))
        {
            host.Dispose();
        }
        return up;
    }

    /// <summary>A contiguous host tensor of <paramref name="dtype"/> holding
    /// <paramref name="data"/> (bf16: round to nearest even).</summary>
    private static Tensor HostCopy(float[] data, long[] shape, DType dtype, string name)
    {
        Tensor t = Tensor.Host(dtype, shape, name);
        switch (dtype)
        {
            case DType.F32:
                data.CopyTo(t.AsSpan<float>());
                break;
            case DType.F64:
                Span<double> d = t.AsSpan<double>();
                for (int i = 0; i < data.Length; i++)
                {
                    d[i] = data[i];
                }
                break;
            case DType.BF16:
                Span<ushort> b = t.AsSpan<ushort>();
                for (int i = 0; i < data.Length; i++)
                {
                    b[i] = BFloat16.FromFloat(data[i]);
                }
                break;
            default:
                t.Dispose();
                throw new ArgumentException($"hypernetwork parameters are F32, F64 or BF16, not "
                    + dtype, nameof(dtype));
        }
        return t;
    }

    /// <summary>Elements between the starts of consecutive tensors of a <see cref="Flat"/>
    /// buffer are a multiple of this (256 bytes of fp32), so every view is as aligned as an
    /// allocation for the kernels' vector loads.</summary>
    public const int FlatAlignment = 64;

    /// <summary>With <see cref="ZerosLike"/>'s <c>flat</c>: the one contiguous tensor every
    /// named tensor of the set is a view of (in name order, each start aligned to
    /// <see cref="FlatAlignment"/> elements, the gaps zero), so that clearing, a global norm or
    /// a data-parallel all-reduce touches one buffer; null for a set of separate tensors.</summary>
    public Tensor? Flat { get; private set; }

    /// <summary>Offset of tensor <paramref name="name"/> in <see cref="Flat"/>, in
    /// elements.</summary>
    public long FlatOffset(string name)
    {
        if (Flat is null)
        {
            throw new InvalidOperationException("the set has no flat buffer");
        }
        return this[name].Offset - Flat.Offset;
    }

    /// <summary>A set with the same names and shapes, zero-filled (gradients, moments), for the
    /// names <paramref name="include"/> accepts (all when null). With <paramref name="flat"/>
    /// the tensors are views of one buffer (<see cref="Flat"/>).</summary>
    public HypernetParameters ZerosLike(Func<string, bool>? include = null, bool flat = false)
    {
        var set = new HypernetParameters(Backend, DType);
        string[] names = [.. _names.Where(n => include is null || include(n))];
        if (!flat)
        {
            foreach (string name in names)
            {
                set.Add(name, Backend.Zeros(DType, _tensors[name].Shape, name));
            }
            return set;
        }
        var offsets = new long[names.Length];
        long total = 0;
        for (int i = 0; i < names.Length; i++)
        {
            offsets[i] = total;
            total += (_tensors[names[i]].Count + FlatAlignment - 1) / FlatAlignment * FlatAlignment;
        }
        Tensor buffer = Backend.Zeros(DType, [Math.Max(total, 1)], "flat buffer");
        set._storage.Add(buffer);
        set.Flat = buffer.Slice(0, 0, total);
        for (int i = 0; i < names.Length; i++)
        {
            Tensor t = _tensors[names[i]];
            set.Add(names[i], buffer.Slice(0, offsets[i], t.Count).View(t.Shape).Named(names[i]));
        }
        return set;
    }

    /// <summary>Sets every tensor to zero (one fill of the <see cref="Flat"/> buffer when
    /// there is one).</summary>
    public void Clear()
    {
        if (Flat is not null)
        {
            Backend.Fill(Flat, 0);
            return;
        }
        foreach (Tensor t in _tensors.Values)
        {
            Backend.Fill(t, 0);
        }
    }

    /// <summary>A host copy of tensor <paramref name="name"/> widened to float64.</summary>
    public double[] ToDoubles(string name)
    {
        Tensor t = this[name];
        using Tensor host = Tensor.Host(DType, t.Shape, name);
        Backend.Download(t, host);
        return host.ToDoubles();
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (KeyValuePair<string, Tensor> kv in _tensors)
        {
            if (!_borrowed.Contains(kv.Key))
            {
                kv.Value.Dispose();
            }
        }
        foreach (Tensor t in _storage)
        {
            t.Dispose();
        }
        _borrowed.Clear();
        Flat?.Dispose();
        Flat = null;
        _tensors.Clear();
        _storage.Clear();
        _names.Clear();
    }
}
