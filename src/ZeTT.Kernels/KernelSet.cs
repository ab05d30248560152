namespace ZeTT.Kernels;

/// <summary>
/// Every embedded kernel module loaded into one context, with the entry points the launchers
/// use. Create one per context (loading JIT-compiles PTX once, a few hundred ms) and dispose it
/// before the context.
/// </summary>
public sealed class KernelSet : IDisposable
{
    private readonly List<CudaModule> _modules = [];

    /// <summary>Loads every module: gather, norm, activation, rotary, residual,
    /// flash_attention, cross_entropy, training.</summary>
    public KernelSet(CudaContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        Context = context;
        try
        {
            CudaModule gather = Load("gather");
            EmbeddingForward = gather.GetFunction("zett_embedding_forward");
            EmbeddingBackward = gather.GetFunction("zett_embedding_backward");
            CudaModule norm = Load("norm");
            RmsNormForward = norm.GetFunction("zett_rmsnorm_forward");
            LayerNormForward = norm.GetFunction("zett_layernorm_forward");
            NormBackward = norm.GetFunction("zett_norm_backward");
            NormBackwardParams = norm.GetFunction("zett_norm_backward_params");
            CudaModule act = Load("activation");
            ActForward = act.GetFunction("zett_act_forward");
            ActBackward = act.GetFunction("zett_act_backward");
            GluForward = act.GetFunction("zett_glu_forward");
            GluBackward = act.GetFunction("zett_glu_backward");
            Rotary = Load("rotary").GetFunction("zett_rotary");
            CudaModule residual = Load("residual");
            Axpby = residual.GetFunction("zett_axpby");
            SumRows = residual.GetFunction("zett_sum_rows");
            CopyStrided = residual.GetFunction("zett_copy_strided");
            CudaModule flash = Load("flash_attention");
            FlashForward = flash.GetFunction("zett_flash_attn_forward");
            FlashForwardMma64 = flash.GetFunction("zett_flash_attn_forward_mma64");
            FlashForwardMma128 = flash.GetFunction("zett_flash_attn_forward_mma128");
            FlashBwdPreprocess = flash.GetFunction("zett_flash_attn_bwd_preprocess");
            FlashBwdDq = flash.GetFunction("zett_flash_attn_bwd_dq");
            FlashBwdDkdv = flash.GetFunction("zett_flash_attn_bwd_dkdv");
            CudaModule ce = Load("cross_entropy");
            CeChunkStats = ce.GetFunction("zett_ce_chunk_stats");
            CeFinish = ce.GetFunction("zett_ce_finish");
            CeChunkGrad = ce.GetFunction("zett_ce_chunk_grad");
            CudaModule training = Load("training");
            ScaleShift = training.GetFunction("zett_scale_shift");
            ScaleShiftParams = training.GetFunction("zett_scale_shift_params");
            AdamW = training.GetFunction("zett_adamw");
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>The context the modules live in.</summary>
    public CudaContext Context { get; }

    /// <summary>"gather: ptx, norm: ptx, ..." — which image each module came from.</summary>
    public string Images => string.Join(", ", _modules.Select(m => $"{m.Name}: {m.Image}"));

    internal CudaFunction EmbeddingForward { get; }

    internal CudaFunction EmbeddingBackward { get; }

    internal CudaFunction RmsNormForward { get; }

    internal CudaFunction LayerNormForward { get; }

    internal CudaFunction NormBackward { get; }

    internal CudaFunction NormBackwardParams { get; }

    internal CudaFunction ActForward { get; }

    internal CudaFunction ActBackward { get; }

    internal CudaFunction GluForward { get; }

    internal CudaFunction GluBackward { get; }

    internal CudaFunction Rotary { get; }

    internal CudaFunction Axpby { get; }

    internal CudaFunction SumRows { get; }

    internal CudaFunction CopyStrided { get; }

    internal CudaFunction FlashForward { get; }

    internal CudaFunction FlashForwardMma64 { get; }

    internal CudaFunction FlashForwardMma128 { get; }

    internal CudaFunction FlashBwdPreprocess { get; }

    internal CudaFunction FlashBwdDq { get; }

    internal CudaFunction FlashBwdDkdv { get; }

    internal CudaFunction CeChunkStats { get; }

    internal CudaFunction CeFinish { get; }

    internal CudaFunction CeChunkGrad { get; }

    internal CudaFunction ScaleShift { get; }

    internal CudaFunction ScaleShiftParams { get; }

    internal CudaFunction AdamW { get; }

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
