using ZeTT.Kernels;
using ZeTT.Kernels.Blas;
using ZeTT.Kernels.Launch;
using ZeTT.Runtime.Tensors;

namespace ZeTT.Runtime.Hypernetwork;

/// <summary>
/// The hypernetwork forward pass (ZETT.md §3) on one CUDA device: our kernels (kernels/*.cu)
/// for gathers, epilogues, attention, pooling and heads, cuBLASLt for every matmul. Weights are
/// uploaded once (GEMM weights in the precision's dtype; biases, norms, embeddings tables in
/// fp32); activations live in a workspace preallocated for <see cref="MaxBatchSize"/> rows.
/// <para>
/// Precision: <see cref="HypernetPrecision.Float32"/> runs fp32 GEMMs without TF32 (parity);
/// <see cref="HypernetPrecision.BFloat16"/> feeds bf16 weights and activations to the GEMMs with
/// fp32 accumulation, keeps the residual stream, LayerNorm statistics and softmax in fp32, and
/// stores the source embeddings in bf16.
/// </para>
/// Out of device memory (while sizing the workspace or during a batch) halves the batch and
/// retries, with a note through the log callback; it never fails a prediction that fits in one
/// row.
/// </summary>
public sealed class CudaHypernetBackend : IStreamingHypernetBackend
{
    /// <summary>Largest batch chosen automatically (the transfer's default batch).</summary>
    public const int DefaultBatchCap = 16384;

    private readonly HypernetConfig _config;
    private readonly Action<string>? _log;
    private readonly CudaContext _context;
    private readonly CudaStream _stream;
    private readonly CudaStream _copyStream;
    private readonly KernelSet _kernels;
    private readonly BlasHandle _blas;
    private readonly DeviceWeights _weights;
    private readonly KernelDType _gemmType;
    private readonly int _sourceRows;
    private Workspace? _workspace;

    /// <summary>Uploads the weights and source embeddings and sizes the workspace.</summary>
    /// <param name="weights">The hypernetwork's parameters.</param>
    /// <param name="sourceEmbeddings">E [V, D_in] (for untied models [E_in, E_out] per row).
    /// </param>
    /// <param name="precision">fp32 (parity) or bf16 (speed).</param>
    /// <param name="maxBatchSize">Rows per batch; 0 chooses from free device memory.</param>
    /// <param name="device">CUDA device ordinal (after CUDA_VISIBLE_DEVICES).</param>
    /// <param name="log">Receives notes (batch size chosen, out-of-memory retries).</param>
    public CudaHypernetBackend(HypernetWeights weights, HostTensor sourceEmbeddings,
        HypernetPrecision precision, int maxBatchSize = 0, int device = 0,
        Action<string>? log = null)
    {
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentNullException.ThrowIfNull(sourceEmbeddings);
        ArgumentOutOfRangeException.ThrowIfNegative(maxBatchSize);
        _config = weights.Config;
        _log = log;
        CheckSupported(_config);
        if (sourceEmbeddings.Rank != 2 || sourceEmbeddings.Shape[1] != _config.SourceWidth
            || sourceEmbeddings.Shape[0] < _config.OriginalVocabSize)
        {
            throw new ZettException($"source embeddings '{sourceEmbeddings.Name}' have shape "
                + $"{HostTensor.ShapeToString(sourceEmbeddings.Shape)}, expected "
                + $"[≥ {_config.OriginalVocabSize}, {_config.SourceWidth}] (original_vocab_size "
                + "rows of width n_embd, or 2·n_embd for untied models)");
        }
        _sourceRows = sourceEmbeddings.Shape[0];
        _gemmType = precision == HypernetPrecision.BFloat16 ? KernelDType.BF16 : KernelDType.F32;
        Precision = precision;
        _context = CudaContext.Create(device);
        try
        {
            _stream = new CudaStream(_context);
            _copyStream = new CudaStream(_context);
            _kernels = new KernelSet(_context);
            _blas = new BlasHandle(_stream);
            _weights = new DeviceWeights(_context, weights, sourceEmbeddings, _gemmType);
            int rows = maxBatchSize > 0 ? maxBatchSize : ChooseBatchSize();
            AllocateWorkspace(rows);
            MaxBatchSize = rows;
            Name = $"cuda: {_context}";
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <inheritdoc />
    public string Name { get; } = "cuda";

    /// <inheritdoc />
    public int MaxBatchSize { get; }

    /// <summary>The precision the backend runs in.</summary>
    public HypernetPrecision Precision { get; }

    /// <summary>Rows the workspace currently holds (≤ <see cref="MaxBatchSize"/>; smaller after
    /// an out-of-memory retry).</summary>
    public int WorkspaceRows => _workspace?.Rows ?? 0;

    /// <summary>When false, every row computes all L positions (the unpacked layout), for tests
    /// and the benchmark to compare against; results are the same either way (see
    /// <see cref="HypernetPacking.Positions"/>).</summary>
    internal bool SkipPadding { get; set; } = true;

    /// <summary>Throws <see cref="NotSupportedException"/> for configurations this backend
    /// does not run, before touching the device.</summary>
    public static void CheckSupported(HypernetConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        if (config.ConcatLastHiddenState)
        {
            throw new NotSupportedException("the CUDA backend does not implement "
                + "hn_concat_last_hidden_state (pooling all positions); use the CPU backend");
        }
        if (config.SequenceLength > AttentionKernel.MaxSequence)
        {
            throw new NotSupportedException($"the CUDA backend's fused attention holds at most "
                + $"{AttentionKernel.MaxSequence} positions; this hypernetwork has "
                + $"{config.SequenceLength} (hn_surface_maxlen + language position)");
        }
        if (config.HeadDim > AttentionKernel.MaxHeadDim)
        {
            throw new NotSupportedException($"the CUDA backend's attention takes head dimensions "
                + $"up to {AttentionKernel.MaxHeadDim}; this hypernetwork has {config.HeadDim}");
        }
    }

    /// <summary>Device bytes the workspace needs per batch row.</summary>
    public static long WorkspaceBytesPerRow(HypernetConfig config, HypernetPrecision precision)
    {
        ArgumentNullException.ThrowIfNull(config);
        long g = precision == HypernetPrecision.BFloat16 ? 2 : 4;
        bool bf16 = precision == HypernetPrecision.BFloat16;
        long l = config.SurfaceMaxLen, s = config.SequenceLength, h = config.HiddenSize;
        long i = config.IntermediateSize, wide = Math.Max(3 * h, i);
        long nOut = Math.Max(config.SingleHead ? config.SourceWidth : config.NEmbd, 1);
        return (l + 3 * s + 1) * 4                     // packed batch (ids, layout)
            + l * config.SourceWidth * g               // gathered source rows (GEMM input)
            + 4 * s * h * 4                            // fp32 hidden, two scratch, GEMM out
            + (bf16 ? s * h * g : 0)                   // bf16 copy of the hidden state
            + s * h * g                                // attention output
            + s * wide * 4                             // QKV / FFN intermediate, fp32
            + (bf16 ? s * i * g : 0)                   // FFN intermediate, bf16
            + nOut * 4                                 // head output
            + 2 * (2 * config.NEmbd * 4 + 4);          // results and bias, two staging slots
    }

    /// <summary>Rows that fit in <paramref name="freeBytes"/>: 80 % of it, less a 512 MiB
    /// reserve for cuBLAS and the driver, capped at <see cref="DefaultBatchCap"/>.</summary>
    public static int BatchSizeFor(long freeBytes, long bytesPerRow)
    {
        long usable = freeBytes / 5 * 4 - (512L << 20);
        return (int)Math.Clamp(usable / Math.Max(bytesPerRow, 1), 1, DefaultBatchCap);
    }

    private int ChooseBatchSize()
    {
        var (free, _) = _context.GetMemoryInfo();
        long perRow = WorkspaceBytesPerRow(_config, Precision);
        int rows = BatchSizeFor(free, perRow);
        _log?.Invoke($"cuda: batch of {rows} rows ({perRow * rows / (1 << 20)} MiB workspace, "
            + $"{free / (1 << 20)} MiB free)");
        return rows;
    }

    private void AllocateWorkspace(int rows)
    {
        while (true)
        {
            try
            {
                _workspace?.Dispose();
                _workspace = null;
                _workspace = new Workspace(_context, _config, _gemmType, rows);
                return;
            }
            catch (CudaOutOfMemoryException e) when (rows > 1)
            {
                _workspace?.Dispose();
                _workspace = null;
                _log?.Invoke($"cuda: out of memory for a batch of {rows} rows ({e.CodeName}); "
                    + $"retrying with {rows / 2}");
                rows /= 2;
            }
        }
    }

    /// <inheritdoc />
    public HypernetOutput Predict(ReadOnlySpan<int> surfaceForms, int rows, int langIndex)
    {
        if (rows < 0 || rows > MaxBatchSize)
        {
            throw new ArgumentOutOfRangeException(nameof(rows), rows,
                $"rows must be in [0, {MaxBatchSize}]");
        }
        return PredictAll(surfaceForms, rows, langIndex, progress: null);
    }

    /// <summary>
    /// Predicts any number of rows, in batches of the workspace's size, pipelined: while the
    /// device computes batch k, the host packs batch k + 1 into the other pinned slot and then
    /// copies batch k − 1's results out (on all cores). <paramref name="progress"/> gets the
    /// rows done after each batch.
    /// </summary>
    public HypernetOutput PredictAll(ReadOnlySpan<int> surfaceForms, int rows, int langIndex,
        Action<int>? progress)
    {
        int len = _config.SurfaceMaxLen;
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        if (surfaceForms.Length != (long)rows * len)
        {
            throw new ArgumentException($"surface forms hold {surfaceForms.Length} ids, expected "
                + $"{rows} rows × {len}", nameof(surfaceForms));
        }
        CheckIds(surfaceForms);
        CheckLanguage(langIndex);
        int nEmbd = _config.NEmbd;
        long start = System.Diagnostics.Stopwatch.GetTimestamp();
        // Every element is written below; zeroing 2 × rows × n_embd floats first would cost as
        // much as copying them.
        var result = new HypernetOutput(
            GC.AllocateUninitializedArray<float>(checked(rows * nEmbd)),
            _config.SeparateOutEmbeddings
                ? GC.AllocateUninitializedArray<float>(checked(rows * nEmbd)) : null,
            _config.PredictBias ? GC.AllocateUninitializedArray<float>(rows) : null);
        _context.MakeCurrent();
        var pending = new Queue<(Staging Slot, int Start, int Count)>(2);
        int next = 0, done = 0, slot = 0;
        double enqueue = 0, wait = 0, copy = 0;
        while (done < rows)
        {
            Workspace ws = _workspace!;
            try
            {
                while (pending.Count < ws.Slots.Length && next < rows)
                {
                    int count = Math.Min(ws.Rows, rows - next);
                    Staging s = ws.Slots[slot];
                    slot = (slot + 1) % ws.Slots.Length;
                    long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
                    RunChunk(ws, s, surfaceForms.Slice(next * len, count * len), count, langIndex);
                    enqueue += System.Diagnostics.Stopwatch.GetElapsedTime(t0).TotalSeconds;
                    pending.Enqueue((s, next, count));
                    next += count;
                }
                (Staging oldest, int first, int n) = pending.Dequeue();
                long t1 = System.Diagnostics.Stopwatch.GetTimestamp();
                oldest.Done.Synchronize();
                long t2 = System.Diagnostics.Stopwatch.GetTimestamp();
                CopyOut(oldest, first, n, result);
                wait += System.Diagnostics.Stopwatch.GetElapsedTime(t1, t2).TotalSeconds;
                copy += System.Diagnostics.Stopwatch.GetElapsedTime(t2).TotalSeconds;
                done += n;
                progress?.Invoke(done);
            }
            catch (CudaOutOfMemoryException e) when (ws.Rows > 1)
            {
                // Batches in flight are dropped and recomputed with the smaller workspace.
                _log?.Invoke($"cuda: out of memory during a batch of {ws.Rows} rows "
                    + $"({e.CodeName} in {e.Expression}); retrying with {ws.Rows / 2}");
                _stream.Synchronize();
                _copyStream.Synchronize();
                pending.Clear();
                next = done;
                AllocateWorkspace(ws.Rows / 2);
            }
        }
        LastTimings = new PipelineTimings(enqueue, wait, copy,
            System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalSeconds);
        return result;
    }

    /// <summary>Where the last <see cref="PredictAll"/> spent its host time: packing and
    /// enqueueing batches, waiting for the device, copying results out (seconds).</summary>
    internal PipelineTimings LastTimings { get; private set; }

    /// <summary>Copies one slot's results into the output arrays at row
    /// <paramref name="first"/>, in pieces of 1 Mi floats on all cores.</summary>
    private void CopyOut(Staging slot, int first, int rows, HypernetOutput result)
    {
        int nEmbd = _config.NEmbd;
        Copy(slot.EmbeddingsIn, result.EmbeddingsIn, (long)first * nEmbd, (long)rows * nEmbd);
        if (slot.EmbeddingsOut is not null)
        {
            Copy(slot.EmbeddingsOut, result.EmbeddingsOut!, (long)first * nEmbd, (long)rows * nEmbd);
        }
        if (slot.Bias is not null)
        {
            slot.Bias.Span[..rows].CopyTo(result.Bias.AsSpan(first));
        }

        static void Copy(PinnedBuffer<float> source, float[] destination, long offset, long count)
        {
            const int Piece = 1 << 20;
            int pieces = (int)((count + Piece - 1) / Piece);
            if (pieces <= 1)
            {
                source.Span[..(int)count].CopyTo(destination.AsSpan((int)offset));
                return;
            }
            Parallel.For(0, pieces, k =>
            {
                int a = k * Piece, n = (int)Math.Min(Piece, count - a);
                source.Span.Slice(a, n).CopyTo(destination.AsSpan((int)offset + a, n));
            });
        }
    }

    private void CheckIds(ReadOnlySpan<int> ids)
    {
        int limit = _config.OriginalVocabSize + _weights.FallbackRows;
        for (int i = 0; i < ids.Length; i++)
        {
            if ((uint)ids[i] >= (uint)limit)
            {
                throw new ArgumentException($"surface form id {ids[i]} (row {i / _config.SurfaceMaxLen}, "
                    + $"position {i % _config.SurfaceMaxLen}) is outside [0, {limit}): "
                    + $"original_vocab_size {_config.OriginalVocabSize} + {_weights.FallbackRows} "
                    + "fallback embeddings", "surfaceForms");
            }
        }
    }

    private void CheckLanguage(int langIndex)
    {
        if (_config.EmbedLangId)
        {
            if (langIndex < 0 || langIndex >= _config.NumLangs)
            {
                throw new ArgumentOutOfRangeException(nameof(langIndex), langIndex,
                    $"this hypernetwork embeds a language: index must be in [0, "
                    + $"{_config.NumLangs})");
            }
        }
        else if (langIndex != -1)
        {
            throw new ArgumentOutOfRangeException(nameof(langIndex), langIndex,
                "this hypernetwork has no language embeddings: pass -1");
        }
    }

    private void Linear(DeviceView x, int rows, LinearWeights w, DeviceView y) =>
        Gemm.Run(_blas, rows, w.Out, w.In, x, w.In, w.Weight, w.In, transB: true, y, w.Out);

    /// <summary>ProjectorBlock: LN_1e-6(gelu_tanh(dense2(gelu_tanh(dense1(u)))) + u). u is fp32
    /// (residual) with its GEMM copy ug; writes y (fp32) and, when given, yg.</summary>
    private void Projector(Workspace ws, DeviceView u, DeviceView ug, int rows, ProjectorWeights p,
        DeviceView y, DeviceView yg)
    {
        int h = p.Dense1.In, i = p.Dense1.Out;
        DeviceView wide = ws.Wide.Slice(0, (long)rows * i);
        DeviceView wideG = ws.WideGemm(rows * i);
        Linear(ug, rows, p.Dense1, wide);
        EpilogueKernels.BiasActivation(_kernels, _stream, wide, p.Dense1.Bias, rows, i,
            Activation.GeluTanh, wideG);
        DeviceView t = ws.Temp.Slice(0, (long)rows * h);
        Linear(wideG, rows, p.Dense2, t);
        EpilogueKernels.BiasActivationResidualLayerNorm(_kernels, _stream, t, p.Dense2.Bias, u,
            p.LnW, p.LnB, _config.ProjectorLayerNormEps, Activation.GeluTanh, rows, h, y, yg);
    }

    /// <summary>Enqueues one batch on the stream: upload of the packed layout from
    /// <paramref name="slot"/>, the forward pass, downloads into <paramref name="slot"/>, then
    /// its <see cref="Staging.Done"/> event. Nothing here waits for the device unless
    /// <see cref="Profile"/> is on.</summary>
    private void RunChunk(Workspace ws, Staging slot, ReadOnlySpan<int> ids, int rows, int langIndex)
    {
        HypernetConfig c = _config;
        DeviceWeights w = _weights;
        int len = c.SurfaceMaxLen, h = c.HiddenSize, nEmbd = c.NEmbd;
        bool bf16 = _gemmType == KernelDType.BF16;

        // Packed layout: `tokens` surface positions (each row up to its last non-padding id,
        // HypernetPacking.Positions), then `n` sequence tokens (those plus each row's language
        // position). Every matrix below is [tokens or n, ·].
        Mark("start");
        PackedSizes packed = HypernetPacking.Pack(ids, rows, c, SkipPadding, slot.HostLayout.Span);
        ws.Layout.CopyFromHostAsync(slot.HostLayout, packed.Total, _stream);
        DeviceView layout = ws.Layout.View;
        int tokens = packed.SurfaceTokens, n = packed.Tokens;
        DeviceView idsView = layout.Slice(0, tokens);
        DeviceView srcView = layout.Slice(packed.SourceOffset, n);
        DeviceView posView = layout.Slice(packed.PositionOffset, n);
        DeviceView seqIds = layout.Slice(packed.IdsOffset, n);
        DeviceView rowStart = layout.Slice(packed.RowStartOffset, rows + 1);

        // 1–3: gather (+ in-scaler / fallback), input projection, input ProjectorBlock.
        DeviceView x0 = ws.Gathered.View.Slice(0, (long)tokens * c.SourceWidth);
        EmbeddingKernels.SurfaceEmbed(_kernels, _stream, idsView, tokens, w.Source,
            c.SourceWidth, c.OriginalVocabSize, w.Fallback, w.InScalerW, w.InScalerB, x0);
        Mark("pack, upload, gather");
        DeviceView u = ws.H1.Slice(0, (long)tokens * h);
        Linear(x0, tokens, w.InputProjection, u);
        DeviceView ug = bf16 ? ws.HiddenGemm.Slice(0, (long)tokens * h) : u;
        EpilogueKernels.BiasActivation(_kernels, _stream, u, w.InputProjection.Bias, tokens, h,
            Activation.None, u);
        if (bf16)
        {
            EpilogueKernels.BiasActivation(_kernels, _stream, u, default, tokens, h,
                Activation.None, ug);
        }
        Mark("input projection");
        DeviceView projected = ws.H2.Slice(0, (long)tokens * h);
        Projector(ws, u, ug, tokens, w.InputBlock, projected, default);
        Mark("input block");

        // 4: RoBERTa embeddings + language position + LayerNorm.
        DeviceView hs = ws.Hidden.Slice(0, (long)n * h);
        DeviceView hg = bf16 ? ws.HiddenGemm.Slice(0, (long)n * h) : hs;
        EmbeddingKernels.RobertaEmbedLayerNorm(_kernels, _stream, projected, tokens, srcView,
            posView, n, h, w.Positions, len, w.Type0,
            c.EmbedLangId ? w.Lang.Slice((long)langIndex * h, h) : default,
            w.EmbeddingsLnW, w.EmbeddingsLnB, c.EncoderLayerNormEps, hs, bf16 ? hg : default);
        Mark("embeddings");

        // 5–6: encoder layers (post-LN), each row attending over its own packed tokens.
        DeviceView attn = ws.Attention.View.Slice(0, (long)n * h);
        foreach (LayerWeights layer in w.Layers)
        {
            DeviceView qkv = ws.Wide.Slice(0, (long)n * 3 * h);
            Linear(hg, n, layer.Qkv, qkv);
            Mark("encoder qkv");
            AttentionKernel.Run(_kernels, _stream, qkv, layer.Qkv.Bias, seqIds, srcView, rowStart,
                rows, n, c.SequenceLength, c.NumAttentionHeads, c.HeadDim, c.PadTokenId, attn);
            Mark("encoder attention");
            DeviceView t = ws.Temp.Slice(0, (long)n * h);
            Linear(attn, n, layer.AttentionOutput, t);
            EpilogueKernels.BiasActivationResidualLayerNorm(_kernels, _stream, t,
                layer.AttentionOutput.Bias, hs, layer.AttentionLnW, layer.AttentionLnB,
                c.EncoderLayerNormEps, Activation.None, n, h, hs, bf16 ? hg : default);
            Mark("encoder attention output");
            int inter = layer.Intermediate.Out;
            DeviceView f = ws.Wide.Slice(0, (long)n * inter);
            DeviceView fg = ws.WideGemm(n * inter);
            Linear(hg, n, layer.Intermediate, f);
            EpilogueKernels.BiasActivation(_kernels, _stream, f, layer.Intermediate.Bias, n,
                inter, Activation.GeluErf, fg);
            Mark("encoder ffn1");
            Linear(fg, n, layer.Output, t);
            EpilogueKernels.BiasActivationResidualLayerNorm(_kernels, _stream, t,
                layer.Output.Bias, hs, layer.OutputLnW, layer.OutputLnB, c.EncoderLayerNormEps,
                Activation.None, n, h, hs, bf16 ? hg : default);
            Mark("encoder ffn2");
        }

        // 7: pool position 0 (each row's first packed token).
        DeviceView z = ws.H1.Slice(0, (long)rows * h);
        DeviceView zg = bf16 ? ws.Attention.View.Slice(0, (long)rows * h) : z;
        HeadKernels.PoolFirst(_kernels, _stream, hs, rowStart, rows, n, h, z,
            bf16 ? zg : default);

        // 8: heads, scalers, bias, into the slot's device buffers once the copy stream has
        // downloaded what the slot's previous batch left there.
        _stream.Wait(slot.Done);
        DeviceView y = ws.H2.Slice(0, (long)rows * h);
        DeviceView yg = bf16 ? ws.HiddenGemm.Slice(0, (long)rows * h) : y;
        Projector(ws, z, zg, rows, w.OutputBlock, y, bf16 ? yg : default);
        int nOut = w.OutputLinear.Out;
        DeviceView o = ws.HeadOut.View.Slice(0, (long)rows * nOut);
        Linear(yg, rows, w.OutputLinear, o);
        HeadKernels.BiasRescale(_kernels, _stream, o, nOut, 0, w.OutputLinear.Bias, w.ScalerW,
            w.ScalerB, rows, nEmbd, slot.EmbeddingsInDevice.View.Slice(0, (long)rows * nEmbd));
        if (c.SeparateOutEmbeddings)
        {
            DeviceView eOut = slot.EmbeddingsOutDevice!.View.Slice(0, (long)rows * nEmbd);
            if (c.SingleHead)
            {
                HeadKernels.BiasRescale(_kernels, _stream, o, nOut, nEmbd, w.OutputLinear.Bias,
                    w.OutScalerW, w.OutScalerB, rows, nEmbd, eOut);
            }
            else
            {
                Projector(ws, z, zg, rows, w.OutputOutBlock!, y, bf16 ? yg : default);
                DeviceView o2 = ws.HeadOut.View.Slice(0, (long)rows * nEmbd);
                Linear(yg, rows, w.OutputOutLinear!, o2);
                HeadKernels.BiasRescale(_kernels, _stream, o2, nEmbd, 0, w.OutputOutLinear!.Bias,
                    w.OutScalerW, w.OutScalerB, rows, nEmbd, eOut);
            }
        }
        if (c.PredictBias)
        {
            DeviceView b = ws.HeadOut.View.Slice(0, rows);
            Linear(zg, rows, w.BiasProjection!, b);
            HeadKernels.BiasRescale(_kernels, _stream, b, 1, 0, w.BiasProjection!.Bias, default,
                default, rows, 1, slot.BiasDevice!.View.Slice(0, rows));
        }
        Mark("heads");

        // 9: downloads on the copy stream, overlapping the next batch's compute.
        slot.HeadsDone.Record(_stream);
        _copyStream.Wait(slot.HeadsDone);
        slot.EmbeddingsInDevice.CopyToHostAsync(slot.EmbeddingsIn, rows * nEmbd, _copyStream);
        slot.EmbeddingsOutDevice?.CopyToHostAsync(slot.EmbeddingsOut!, rows * nEmbd, _copyStream);
        slot.BiasDevice?.CopyToHostAsync(slot.Bias!, rows, _copyStream);
        slot.Done.Record(_copyStream);
        Mark("download");
    }

    /// <summary>When set, every phase of a batch is waited for and timed (host clock, device
    /// synchronised), into <see cref="PhaseSeconds"/>: a diagnostic for the benchmark; it
    /// serialises host and device.</summary>
    internal bool Profile { get; set; }

    /// <summary>Seconds per phase accumulated while <see cref="Profile"/> is on.</summary>
    internal Dictionary<string, double> PhaseSeconds { get; } = new(StringComparer.Ordinal);

    private long _markAt;

    private void Mark(string phase)
    {
        if (!Profile)
        {
            return;
        }
        _stream.Synchronize();
        _copyStream.Synchronize();
        long now = System.Diagnostics.Stopwatch.GetTimestamp();
        if (_markAt != 0 && phase != "start")
        {
            PhaseSeconds[phase] = PhaseSeconds.GetValueOrDefault(phase)
                + System.Diagnostics.Stopwatch.GetElapsedTime(_markAt, now).TotalSeconds;
        }
        _markAt = now;
    }

    /// <summary>Frees the workspace, weights, handles and context.</summary>
    public void Dispose()
    {
        _context?.MakeCurrent();
        _stream?.Synchronize();
        _copyStream?.Synchronize();
        _workspace?.Dispose();
        _workspace = null;
        _weights?.Dispose();
        _blas?.Dispose();
        _kernels?.Dispose();
        _stream?.Dispose();
        _copyStream?.Dispose();
        _context?.Dispose();
    }
}

/// <summary>Host seconds of one <see cref="CudaHypernetBackend.PredictAll"/>: packing and
/// enqueueing, waiting for the device, copying results out, and the whole call.</summary>
internal readonly record struct PipelineTimings(double Enqueue, double Wait, double Copy,
    double Total);
