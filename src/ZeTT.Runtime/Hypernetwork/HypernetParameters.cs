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

    /// <summary>The parameters of <paramref name="weights"/> as writable tensors of
    /// <paramref name="dtype"/> on <paramref name="backend"/>.</summary>
    public static HypernetParameters FromWeights(HypernetWeights weights, IOpBackend backend,
        DType dtype)
    {
        ArgumentNullException.ThrowIfNull(weights);
        var set = new HypernetParameters(backend, dtype);
        try
        {
            foreach ((string name, Tensors.HostTensor t) in weights.Tensors.OrderBy(p => p.Key,
                StringComparer.Ordinal))
            {
                long[] shape = Array.ConvertAll(t.Shape, d => (long)d);
                using Tensor host = Tensor.FromFloats(t.Data, shape);
                Tensor dev = backend.Zeros(dtype, shape, name);
                Tensor up = backend.Upload(host);
                backend.Copy(up, dev);
                if (!ReferenceEquals(up, host))
                {
                    up.Dispose();
                }
                set.Add(name, dev);
            }
        }
        catch
        {
            set.Dispose();
            throw;
        }
        return set;
    }

    /// <summary>A set with the same names and shapes, zero-filled (gradients, moments), for the
    /// names <paramref name="include"/> accepts (all when null).</summary>
    public HypernetParameters ZerosLike(Func<string, bool>? include = null)
    {
        var set = new HypernetParameters(Backend, DType);
        foreach (string name in _names)
        {
            if (include is null || include(name))
            {
                set.Add(name, Backend.Zeros(DType, _tensors[name].Shape, name));
            }
        }
        return set;
    }

    /// <summary>Sets every tensor to zero.</summary>
    public void Clear()
    {
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
        foreach (Tensor t in _tensors.Values)
        {
            t.Dispose();
        }
        _tensors.Clear();
        _names.Clear();
    }
}
