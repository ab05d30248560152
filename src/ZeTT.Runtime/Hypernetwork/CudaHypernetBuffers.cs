using ZeTT.Kernels;
using ZeTT.Ops;
using ZeTT.Runtime.Tensors;

namespace ZeTT.Runtime.Hypernetwork;

/// <summary>A Linear layer on the device: weight [out, in] in the GEMM dtype, bias fp32.</summary>
internal sealed record LinearWeights(DeviceView Weight, DeviceView Bias, int In, int Out);

/// <summary>A ProjectorBlock on the device.</summary>
internal sealed record ProjectorWeights(LinearWeights Dense1, LinearWeights Dense2,
    DeviceView LnW, DeviceView LnB);

/// <summary>An encoder layer on the device, with Q, K and V fused into one [3H, H] Linear
/// (rows: Q, then K, then V — the column order <c>zett_attention</c> reads).</summary>
internal sealed record LayerWeights(LinearWeights Qkv, LinearWeights AttentionOutput,
    DeviceView AttentionLnW, DeviceView AttentionLnB, LinearWeights Intermediate,
    LinearWeights Output, DeviceView OutputLnW, DeviceView OutputLnB);

/// <summary>Every parameter and the source embeddings, uploaded once.</summary>
internal sealed class DeviceWeights : IDisposable
{
    private const int UploadChunk = 1 << 22;
    private readonly List<DeviceBuffer> _buffers = [];
    private readonly CudaContext _context;
    private readonly KernelDType _gemmType;

    public DeviceWeights(CudaContext context, HypernetWeights w, HostTensor source,
        KernelDType gemmType)
    {
        _context = context;
        _gemmType = gemmType;
        try
        {
            HypernetConfig c = w.Config;
            Source = Upload(source.Data, gemmType);
            Fallback = Upload(w.FallbackEmbeddings.Data);
            FallbackRows = w.FallbackEmbeddings.Shape[0];
            InScalerW = Optional(w.InScaler?.W);
            InScalerB = Optional(w.InScaler?.B);
            InputProjection = Linear(w.InputProjection);
            InputBlock = Projector(w.InputBlock);
            Positions = Upload(w.PositionEmbeddings.Data);
            Type0 = Upload(w.TokenTypeEmbeddings.Data.AsSpan(0, c.HiddenSize).ToArray());
            Lang = Optional(w.LangEmbeddings);
            EmbeddingsLnW = Upload(w.EmbeddingsLn.Weight.Data);
            EmbeddingsLnB = Upload(w.EmbeddingsLn.Bias.Data);
            Layers = [.. w.Layers.Select(Layer)];
            OutputBlock = Projector(w.OutputBlock);
            OutputLinear = Linear(w.OutputLinear);
            OutputOutBlock = w.OutputOutBlock is null ? null : Projector(w.OutputOutBlock);
            OutputOutLinear = w.OutputOutLinear is null ? null : Linear(w.OutputOutLinear);
            ScalerW = Optional(w.Scaler?.W);
            ScalerB = Optional(w.Scaler?.B);
            OutScalerW = Optional(w.OutScaler?.W);
            OutScalerB = Optional(w.OutScaler?.B);
            BiasProjection = w.BiasProjection is null ? null : Linear(w.BiasProjection);
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public DeviceView Source { get; }
    public DeviceView Fallback { get; }
    public int FallbackRows { get; }
    public DeviceView InScalerW { get; }
    public DeviceView InScalerB { get; }
    public LinearWeights InputProjection { get; }
    public ProjectorWeights InputBlock { get; }
    public DeviceView Positions { get; }
    public DeviceView Type0 { get; }
    public DeviceView Lang { get; }
    public DeviceView EmbeddingsLnW { get; }
    public DeviceView EmbeddingsLnB { get; }
    public IReadOnlyList<LayerWeights> Layers { get; }
    public ProjectorWeights OutputBlock { get; }
    public LinearWeights OutputLinear { get; }
    public ProjectorWeights? OutputOutBlock { get; }
    public LinearWeights? OutputOutLinear { get; }
    public DeviceView ScalerW { get; }
    public DeviceView ScalerB { get; }
    public DeviceView OutScalerW { get; }
    public DeviceView OutScalerB { get; }
    public LinearWeights? BiasProjection { get; }

    private DeviceView Optional(HostTensor? t) => t is null ? default : Upload(t.Data);

    private LinearWeights Linear(LinearParams p) =>
        new(Upload(p.Weight.Data, _gemmType), Upload(p.Bias.Data), p.In, p.Out);

    private ProjectorWeights Projector(ProjectorBlockParams p) =>
        new(Linear(p.Dense1), Linear(p.Dense2), Upload(p.Ln.Weight.Data), Upload(p.Ln.Bias.Data));

    private LayerWeights Layer(EncoderLayerParams p)
    {
        int h = p.Query.Out;
        float[] w = [.. p.Query.Weight.Data, .. p.Key.Weight.Data, .. p.Value.Weight.Data];
        float[] b = [.. p.Query.Bias.Data, .. p.Key.Bias.Data, .. p.Value.Bias.Data];
        var qkv = new LinearWeights(Upload(w, _gemmType), Upload(b), h, 3 * h);
        return new LayerWeights(qkv, Linear(p.AttentionOutput),
            Upload(p.AttentionLn.Weight.Data), Upload(p.AttentionLn.Bias.Data),
            Linear(p.Intermediate), Linear(p.Output), Upload(p.OutputLn.Weight.Data),
            Upload(p.OutputLn.Bias.Data));
    }

    /// <summary>Uploads fp32 data as <paramref name="type"/>, converting to bf16 (round to
    /// nearest even) chunk by chunk so no second full-size host copy is made.</summary>
    private DeviceView Upload(float[] data, KernelDType type = KernelDType.F32)
    {
        DeviceBuffer buffer = DeviceBuffer.Allocate(_context, type, data.LongLength);
        _buffers.Add(buffer);
        if (type == KernelDType.F32)
        {
            buffer.CopyFromHost<float>(data);
            return buffer.View;
        }
        var bits = new ushort[Math.Min(UploadChunk, data.Length)];
        for (int start = 0; start < data.Length; start += UploadChunk)
        {
            int n = Math.Min(UploadChunk, data.Length - start);
            for (int i = 0; i < n; i++)
            {
                bits[i] = BFloat16.FromFloat(data[start + i]);
            }
            buffer.CopyFromHost<ushort>(bits.AsSpan(0, n), start);
        }
        return buffer.View;
    }

    public void Dispose()
    {
        foreach (DeviceBuffer b in _buffers)
        {
            b.Dispose();
        }
        _buffers.Clear();
    }
}

/// <summary>Activation buffers for a batch of <see cref="Rows"/> surface forms, sized for the
/// worst case (every row full, nothing packed away), plus two <see cref="Staging"/> slots of
/// pinned host buffers for the packed batch and the results.</summary>
internal sealed class Workspace : IDisposable
{
    private readonly List<IDisposable> _owned = [];
    private readonly DeviceBuffer _wide;
    private readonly DeviceBuffer? _wideGemm;

    public Workspace(CudaContext context, HypernetConfig c, KernelDType gemmType, int rows)
    {
        Rows = rows;
        try
        {
            long l = c.SurfaceMaxLen, n = (long)rows * c.SequenceLength, h = c.HiddenSize;
            long i = c.IntermediateSize;
            int nEmbd = c.NEmbd;
            int nOut = Math.Max(c.SingleHead ? c.SourceWidth : nEmbd, 1);
            bool bf16 = gemmType == KernelDType.BF16;
            long layout = HypernetPacking.Capacity(c, rows);
            Layout = Own(DeviceBuffer.Allocate(context, KernelDType.I32, layout));
            Gathered = Own(DeviceBuffer.Allocate(context, gemmType, rows * l * c.SourceWidth));
            Hidden = Own(DeviceBuffer.Allocate(context, KernelDType.F32, n * h)).View;
            H1 = Own(DeviceBuffer.Allocate(context, KernelDType.F32, n * h)).View;
            H2 = Own(DeviceBuffer.Allocate(context, KernelDType.F32, n * h)).View;
            Temp = Own(DeviceBuffer.Allocate(context, KernelDType.F32, n * h)).View;
            HiddenGemm = bf16 ? Own(DeviceBuffer.Allocate(context, gemmType, n * h)).View : default;
            Attention = Own(DeviceBuffer.Allocate(context, gemmType, n * h));
            _wide = Own(DeviceBuffer.Allocate(context, KernelDType.F32, n * Math.Max(3 * h, i)));
            _wideGemm = bf16 ? Own(DeviceBuffer.Allocate(context, gemmType, n * i)) : null;
            HeadOut = Own(DeviceBuffer.Allocate(context, KernelDType.F32,
                (long)rows * Math.Max(nOut, nEmbd)));
            Slots = [Own(new Staging(context, c, rows, layout)),
                Own(new Staging(context, c, rows, layout))];
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public int Rows { get; }
    /// <summary>The packed batch (<see cref="HypernetPacking.Pack"/>) on the device.</summary>
    public DeviceBuffer Layout { get; }
    public DeviceBuffer Gathered { get; }
    public DeviceView Hidden { get; }
    public DeviceView H1 { get; }
    public DeviceView H2 { get; }
    public DeviceView Temp { get; }
    public DeviceView HiddenGemm { get; }
    public DeviceBuffer Attention { get; }
    public DeviceView Wide => _wide.View;
    public DeviceBuffer HeadOut { get; }
    /// <summary>Two sets of pinned host buffers: while the device computes one batch the host
    /// packs the next into the other set and copies the last one's results out.</summary>
    public Staging[] Slots { get; } = [];

    /// <summary>The GEMM-dtype copy of a wide activation: its own bf16 buffer, or (fp32) the
    /// fp32 buffer itself, updated in place.</summary>
    public DeviceView WideGemm(long count) =>
        (_wideGemm?.View ?? _wide.View).Slice(0, count);

    private T Own<T>(T item) where T : IDisposable
    {
        _owned.Add(item);
        return item;
    }

    public void Dispose()
    {
        foreach (IDisposable d in _owned)
        {
            d.Dispose();
        }
        _owned.Clear();
    }
}

/// <summary>One batch in flight: the packed layout going up (pinned), the heads' results on the
/// device and their pinned host copies, and the events that order compute and copy streams.
/// </summary>
internal sealed class Staging : IDisposable
{
    private readonly List<IDisposable> _owned = [];

    public Staging(CudaContext context, HypernetConfig c, int rows, long layout)
    {
        try
        {
            int nEmbd = c.NEmbd;
            HostLayout = Own(new PinnedBuffer<int>(context, checked((int)layout)));
            EmbeddingsIn = Own(new PinnedBuffer<float>(context, checked(rows * nEmbd)));
            EmbeddingsOut = c.SeparateOutEmbeddings
                ? Own(new PinnedBuffer<float>(context, checked(rows * nEmbd)))
                : null;
            Bias = c.PredictBias ? Own(new PinnedBuffer<float>(context, rows)) : null;
            EmbeddingsInDevice = Own(DeviceBuffer.Allocate(context, KernelDType.F32,
                (long)rows * nEmbd));
            EmbeddingsOutDevice = c.SeparateOutEmbeddings
                ? Own(DeviceBuffer.Allocate(context, KernelDType.F32, (long)rows * nEmbd))
                : null;
            BiasDevice = c.PredictBias
                ? Own(DeviceBuffer.Allocate(context, KernelDType.F32, rows))
                : null;
            HeadsDone = Own(new CudaEvent(context, timing: false));
            Done = Own(new CudaEvent(context, timing: false));
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public PinnedBuffer<int> HostLayout { get; } = null!;
    public PinnedBuffer<float> EmbeddingsIn { get; } = null!;
    public PinnedBuffer<float>? EmbeddingsOut { get; }
    public PinnedBuffer<float>? Bias { get; }

    /// <summary>The heads' results on the device, downloaded on the copy stream while the
    /// compute stream goes on with the next batch.</summary>
    public DeviceBuffer EmbeddingsInDevice { get; } = null!;
    public DeviceBuffer? EmbeddingsOutDevice { get; }
    public DeviceBuffer? BiasDevice { get; }

    /// <summary>Recorded on the compute stream when this slot's device results are written.
    /// </summary>
    public CudaEvent HeadsDone { get; } = null!;

    /// <summary>Recorded on the copy stream after this slot's downloads.</summary>
    public CudaEvent Done { get; } = null!;

    private T Own<T>(T item) where T : IDisposable
    {
        _owned.Add(item);
        return item;
    }

    public void Dispose()
    {
        foreach (IDisposable d in _owned)
        {
            d.Dispose();
        }
        _owned.Clear();
    }
}
