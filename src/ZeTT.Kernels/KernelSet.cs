namespace ZeTT.Kernels;

/// <summary>
/// Every embedded kernel module loaded into one context, with the entry points the launchers
/// use. Create one per context (loading JIT-compiles PTX once, a few hundred ms) and dispose it
/// before the context.
/// </summary>
public sealed class KernelSet : IDisposable
{
    private readonly List<CudaModule> _modules = [];

    /// <summary>Loads the embedding, epilogue, attention and heads modules.</summary>
    public KernelSet(CudaContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        Context = context;
        try
        {
            CudaModule embedding = Load("embedding");
            SurfaceEmbed = embedding.GetFunction("zett_surface_embed");
            RobertaEmbedLn = embedding.GetFunction("zett_roberta_embed_ln");
            CudaModule epilogue = Load("epilogue");
            BiasAct = epilogue.GetFunction("zett_bias_act");
            ResidualLn = epilogue.GetFunction("zett_bias_act_residual_ln");
            Attention = Load("attention").GetFunction("zett_attention");
            CudaModule heads = Load("heads");
            PoolFirst = heads.GetFunction("zett_pool_first");
            BiasRescale = heads.GetFunction("zett_bias_rescale");
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>The context the modules live in.</summary>
    public CudaContext Context { get; }

    /// <summary>"embedding: ptx, epilogue: ptx, ..." — which image each module came from.</summary>
    public string Images => string.Join(", ", _modules.Select(m => $"{m.Name}: {m.Image}"));

    internal CudaFunction SurfaceEmbed { get; }

    internal CudaFunction RobertaEmbedLn { get; }

    internal CudaFunction BiasAct { get; }

    internal CudaFunction ResidualLn { get; }

    internal CudaFunction Attention { get; }

    internal CudaFunction PoolFirst { get; }

    internal CudaFunction BiasRescale { get; }

    private CudaModule Load(string name)
    {
        CudaModule m = CudaModule.Load(Context, name);
        _modules.Add(m);
        return m;
    }

    /// <summary>Unloads the modules.</summary>
    public void Dispose()
    {
        foreach (CudaModule m in _modules)
        {
            m.Dispose();
        }
        _modules.Clear();
    }
}
