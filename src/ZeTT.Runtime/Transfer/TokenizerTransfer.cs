using System.Globalization;
using System.Text.Json.Nodes;
using ZeTT.Ops;
using ZeTT.Ops.Cpu;
using ZeTT.Runtime.Formats;
using ZeTT.Runtime.Hypernetwork;
using ZeTT.Runtime.IO;
using ZeTT.Runtime.Models;
using ZeTT.Runtime.Tensors;
using ZeTT.Runtime.Tokenizers;

namespace ZeTT.Runtime.Transfer;

/// <summary>What a transfer did, for the summary.</summary>
public sealed record TransferResult
{
    /// <summary>The output directory written.</summary>
    public required string OutputDirectory { get; init; }

    /// <summary>How embeddings were made.</summary>
    public required TransferMethod Method { get; init; }

    /// <summary>The backend that ran the hypernetwork ("cpu", "cuda: …"), or "fvt".</summary>
    public required string Backend { get; init; }

    /// <summary>The hypernetwork's precision as run ("bf16", "fp32"); null for FVT.</summary>
    public string? Precision { get; init; }

    /// <summary>The model's vocabulary size before.</summary>
    public required int SourceVocabSize { get; init; }

    /// <summary>The new vocabulary size (length of the new tokenizer).</summary>
    public required int VocabSize { get; init; }

    /// <summary>Embedding width.</summary>
    public required int HiddenSize { get; init; }

    /// <summary>Surface forms cut to the hypernetwork's length (hypernet method).</summary>
    public int TruncatedTokens { get; init; }

    /// <summary>Rows set from the source rows of the model tokenizer's special tokens.</summary>
    public required int SpecialTokenRows { get; init; }

    /// <summary>The special tokens whose rows were copied, in the model tokenizer's order: the
    /// token, its id in the base model and its id in the new tokenizer.</summary>
    public IReadOnlyList<(string Token, int SourceId, int TargetId)> SpecialTokens { get; init; } = [];

    /// <summary>Whether the new tokenizer's normalizer prepends a space to the text (what the
    /// byte-level conversion sets), so "Hello" encodes as "ĠHello".</summary>
    public bool PrependsSpace { get; init; }

    /// <summary>How placing the base model's special tokens at their ids moved the target
    /// tokenizer's own ids, or null when nothing was matched.</summary>
    public SpecialTokenMatch? TargetIds { get; init; }

    /// <summary>FVT: rows copied from identical source tokens.</summary>
    public int FvtCopied { get; init; }

    /// <summary>FVT: rows that are means of pieces.</summary>
    public int FvtAveraged { get; init; }

    /// <summary>FVT: rows with no usable piece (mean of all source rows).</summary>
    public int FvtFallback { get; init; }

    /// <summary>The tensor the predicted bias was written to (a masked LM's output bias, e.g.
    /// "lm_head.bias"), or null: FVT or a hypernetwork without a bias head, or a causal LM or
    /// base model, which have no bias parameter to read it.</summary>
    public string? BiasDestination { get; init; }

    /// <summary>The hypernetwork predicted a bias that was not written because the model has no
    /// output bias to put it in (causal LMs, base models).</summary>
    public bool BiasNotWritten { get; init; }

    /// <summary>New tokens per second of the embedding phase.</summary>
    public required double TokensPerSecond { get; init; }

    /// <summary>Time per phase.</summary>
    public required PhaseTimes Times { get; init; }

    /// <summary>Peak resident memory of the process, bytes.</summary>
    public required long PeakResidentBytes { get; init; }

    /// <summary>Peak anonymous (heap) resident memory, bytes: what the run itself allocated,
    /// without the page cache of the memory-mapped model.</summary>
    public required long PeakHeapBytes { get; init; }

    /// <summary>Size of the fp32 embedding matrices held, bytes: the new rows, plus the
    /// hypernetwork's fp32 source matrix E while the graph is built (FVT reads the source rows
    /// from the memory map and holds no copy of them).</summary>
    public required long EmbeddingBytes { get; init; }

    /// <summary>With <see cref="TransferOptions.EvalData"/>: <c>zett eval</c>'s numbers for the
    /// base model and then the transferred model, on the same text; empty otherwise.</summary>
    public IReadOnlyList<LmEvalResult> Evaluation { get; init; } = [];

    /// <summary>The GGUF file written (formats gguf and both), or null.</summary>
    public GgufExportResult? Gguf { get; init; }

    /// <summary>The summary as printed by the CLI, one line per entry.</summary>
    public IEnumerable<string> SummaryLines()
    {
        CultureInfo c = CultureInfo.InvariantCulture;
        yield return Gguf is { } g && g.Path == OutputDirectory ? $"wrote {OutputDirectory} (GGUF)"
            : $"wrote {OutputDirectory}";
        if (Gguf is { } gguf)
        {
            yield return $"  gguf            {gguf.Path}: {gguf.Architecture}, {gguf.Tensors} tensors, "
                + string.Create(c, $"{gguf.Bytes / 1048576.0:F1} MiB");
            foreach (string note in gguf.Notes)
            {
                yield return $"  gguf note       {note}";
            }
        }
        yield return Method == TransferMethod.Fvt
            ? $"  method          fvt ({Backend}, on the cpu)"
            : $"  method          hypernet ({Backend}, {Precision})";
        yield return $"  vocab size      {SourceVocabSize} -> {VocabSize} (hidden {HiddenSize})";
        if (Method == TransferMethod.Hypernet)
        {
            yield return $"  truncated       {TruncatedTokens} tokens (surface form longer than the hypernetwork's maxlen)";
        }
        else
        {
            yield return $"  fvt rows        {FvtCopied} copied, {FvtAveraged} averaged, {FvtFallback} without pieces (mean row)";
        }
        yield return $"  special tokens  {SpecialTokenRows} rows copied from the source";
        if (SpecialTokens.Count > 0)
        {
            // The converter inserts the base model's special tokens at the model's ids, so the
            // pairs normally agree; a pair that differs is shown as old->new. Listed by new id.
            const int Shown = 8;
            IEnumerable<string> pairs = SpecialTokens.OrderBy(s => s.TargetId).Take(Shown)
                .Select(s => s.SourceId == s.TargetId
                ? $"{s.Token}={s.TargetId}" : $"{s.Token}={s.SourceId}->{s.TargetId}");
            string more = SpecialTokens.Count > Shown ? $" (+{SpecialTokens.Count - Shown} more)" : "";
            string where = SpecialTokens.All(s => s.SourceId == s.TargetId)
                ? "at the base model's ids" : "base model id -> new id";
            yield return $"  special ids     {where}: {string.Join(' ', pairs)}{more}";
        }
        if (TargetIds is { } ids)
        {
            (int lo, int hi) = ids.Offsets;
            string by = lo == hi ? $"{lo:+#;-#}" : $"{lo:+#;-#;0} to {hi:+#;-#;0}";
            yield return ids.Shifted == 0
                ? $"  target ids      the target tokenizer's ids are unchanged ({ids.Removed} of "
                    + $"its {ids.OriginalVocabSize} tokens removed)"
                : $"  target ids      {ids.Shifted} of the target tokenizer's {ids.OriginalVocabSize} "
                    + $"tokens have a new id (shifted by {by}) and {ids.Removed} were removed: "
                    + "encode with the new tokenizer, not the original";
        }
        if (PrependsSpace)
        {
            yield return "  normalizer      the new tokenizer prepends a space to the text (byte-level conversion)";
        }
        if (BiasDestination is not null)
        {
            yield return $"  bias            predicted output bias written to {BiasDestination}";
        }
        else if (BiasNotWritten)
        {
            yield return "  bias            predicted but not written: the model has no output bias "
                + "(causal LM heads read none)";
        }
        foreach (LmEvalResult e in Evaluation)
        {
            yield return string.Create(c, $"  eval            {e.BitsPerByte:F4} bits/byte, "
                + $"{e.TokensPerByte:F4} tokens/byte, perplexity {e.Perplexity:F3} ({e.Tokens} "
                + $"tokens, {e.Bytes} bytes, context {e.Context}): {e.Model}");
        }
        yield return string.Create(c, $"  speed           {TokensPerSecond:F0} tokens/s");
        yield return "  time            " + string.Join(", ", Times.Phases.Select(p =>
            string.Create(c, $"{p.Phase} {p.Time.TotalSeconds:F2} s")));
        yield return string.Create(c, $"  peak memory     {PeakHeapBytes / 1048576.0:F0} MiB heap, "
            + $"{PeakResidentBytes / 1048576.0:F0} MiB resident incl. mapped model pages "
            + $"(embedding matrices {EmbeddingBytes / 1048576.0:F0} MiB)");
    }
}

/// <summary>
/// <c>zett transfer</c> (ZETT.md §4): new embeddings for a model under a new tokenizer, predicted
/// by a hypernetwork or made by FVT, written as a Hugging Face directory. The model's weights are
/// memory-mapped and only its embeddings read; host memory is the embedding matrices, the
/// hypernetwork and one batch. The output appears only when complete.
/// </summary>
public static class TokenizerTransfer
{
    /// <summary>With <see cref="TransferFormat.Gguf"/>: the intermediate Hugging Face directory
    /// is a temporary of <c>&lt;out&gt;.hf</c>, i.e. <c>&lt;out&gt;.hf.tmp-&lt;pid&gt;</c>.
    /// </summary>
    private const string IntermediateSuffix = ".hf";

    /// <summary>Name of the GGUF file inside the output directory of
    /// <see cref="TransferFormat.Both"/>.</summary>
    public const string GgufFileName = "model.gguf";

    /// <summary>Runs a transfer.</summary>
    /// <param name="options">What to transfer.</param>
    /// <param name="progress">Progress of the long phases.</param>
    /// <param name="log">Notes (backend chosen, ids that could not be mapped).</param>
    public static TransferResult Run(TransferOptions options, IProgress<ProgressUpdate>? progress = null,
        Action<string>? log = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        var times = new PhaseTimes();
        using var memory = new MemorySampler();
        CheckOptions(options);
        // The evaluation text is read before any heavy work: a bad file fails the run at once.
        IReadOnlyList<EvalDocument> evalDocs = options.EvalData.Count == 0 ? []
            : EvalText.Read(options.EvalData, options.EvalMaxBytes);
        if (options.EvalData.Count > 0 && evalDocs.Sum(doc => doc.Bytes) == 0)
        {
            throw new ZettException($"{string.Join(", ", options.EvalData)}: no text to evaluate");
        }

        // Hypernetwork config first: language errors come before any heavy work.
        HypernetConfig? hnConfig = null;
        int langIndex = -1;
        if (options.Method == TransferMethod.Hypernet)
        {
            hnConfig = HypernetConfig.Load(options.HypernetDirectory!);
            langIndex = hnConfig.ResolveLanguage(options.Language);
        }

        using HfModelDirectory model = times.Measure("load model", () => HfModelDirectory.Open(options.ModelDirectory));
        ModelClass modelClass = ResolveModelClass(model, options.ModelClass);
        if (!File.Exists(Path.Combine(model.Directory, "tokenizer.json")))
        {
            throw new ZettException($"{model.Directory}: the model directory has no tokenizer.json "
                + "(its tokenizer is needed to place the special tokens)");
        }

        HfTokenizer modelTokenizer, target;
        SpecialTokenMatch? targetMatch;
        HypernetCheckpoint? checkpoint = null;
        TransferTokenizers? prepared = null;
        if (hnConfig is not null)
        {
            CheckHypernetFits(hnConfig, model, options.HypernetDirectory!);
            checkpoint = Stage(times, progress, "load hypernet", () => HypernetCheckpoint.Load(options.HypernetDirectory!));
            if (checkpoint.TokenizerJsonPath is null)
            {
                throw new ZettException($"{options.HypernetDirectory}: the hypernetwork directory has "
                    + "no tokenizer.json (its tokenizer spells the surface forms)");
            }
            (modelTokenizer, prepared) = Stage(times, progress, "tokenizers", () => (
                HfTokenizer.Load(model.Directory),
                TransferTokenizers.Prepare(checkpoint.Directory, options.Tokenizer, model.Directory,
                    hnConfig.SurfaceMaxLen)));
            target = prepared.TargetTokenizer;
            targetMatch = prepared.TargetMatch;
        }
        else
        {
            (modelTokenizer, target, targetMatch) = Stage(times, progress, "tokenizers", () =>
            {
                HfTokenizer m = HfTokenizer.Load(model.Directory);
                HfTokenizer t = ByteLevelConverter.Convert(HfTokenizer.Load(options.Tokenizer),
                    makeWhitespaceConsistent: true, matchSpecialTokensTo: m, out SpecialTokenMatch? match);
                return (m, t, match);
            });
        }
        LmEvalResult? baseEval = evalDocs.Count == 0 ? null : Stage(times, progress, "eval base",
            () => EvaluateBase(options, model, modelClass, modelTokenizer, evalDocs, progress));
        int rows = target.VocabSize, d = model.HiddenSize, v = model.VocabSize;
        string[] targetTokens = new string[rows];
        for (int id = 0; id < rows; id++)
        {
            targetTokens[id] = target.TryIdToToken(id) ?? throw new ZettException(
                $"{options.Tokenizer}: the converted tokenizer has no token with id {id} (of {rows})");
        }

        NativeMatrix newIn;
        NativeMatrix? newOut;
        float[]? newBias;
        string backendName;
        long embeddingBytes;
        var result = new TransferResult
        {
            OutputDirectory = options.OutputDirectory,
            Method = options.Method,
            Backend = "",
            SourceVocabSize = v,
            VocabSize = rows,
            HiddenSize = d,
            SpecialTokenRows = 0,
            TokensPerSecond = 0,
            Times = times,
            PeakResidentBytes = 0,
            PeakHeapBytes = 0,
            EmbeddingBytes = 0,
        };
        double embedSeconds;
        // The source rows are read from the memory map in their stored dtype (64-bit offsets),
        // the new rows live in native matrices: no step holds a matrix in one host array, so an
        // embedding past 2^31 elements (256k vocabulary × 8192) transfers like any other.
        var sourceIn = new SafetensorsRows(model.Weights, model.InputEmbeddingName);
        SafetensorsRows? sourceOut = model.OutputEmbeddingName is null ? null
            : new SafetensorsRows(model.Weights, model.OutputEmbeddingName);
        if (checkpoint is not null)
        {
            HypernetConfig config = checkpoint.Config;
            HypernetPredictor backend;
            long sourceBytes;
            // E is only needed while the graph copies the original vocabulary's rows.
            using (Tensor source = Stage(times, progress, "read embeddings",
                () => SourceEmbeddings.ReadStackedTensor(model, config.SeparateOutEmbeddings)))
            {
                sourceBytes = source.Count * 4;
                // The checkpoint's weights are not used again: each host tensor is released once
                // the backend holds its own copy, so the hypernetwork is never held twice.
                backend = HypernetPredictor.Create(options.Device, checkpoint.Weights,
                    source, options.Precision, options.BatchSize, log, options.Gpu, consumeWeights: true);
            }
            using (backend)
            {
                backendName = backend.Name;
                result = result with
                {
                    Precision = options.Precision == HypernetPrecision.Float32 ? "fp32" : "bf16",
                };
                SurfaceFormMatrix sf = prepared!.SurfaceForms;
                PredictedRows output = times.Measure("predict", () => HypernetBatching.PredictRows(backend,
                    sf.Ids, rows, langIndex,
                    done => progress?.Report(new ProgressUpdate("predict", done, rows, "tokens"))));
                embedSeconds = times.Seconds("predict");
                (newIn, newOut, newBias) = (output.EmbeddingsIn, output.EmbeddingsOut, output.Bias);
                embeddingBytes = sourceBytes + 4 * (newIn.ElementCount + (newOut?.ElementCount ?? 0));
                result = result with { TruncatedTokens = sf.TruncatedCount };
            }
        }
        else
        {
            HfTokenizer sourceByteLevel = ByteLevelConverter.Convert(modelTokenizer);
            HostTensor? biasT = Stage(times, progress, "read embeddings", () => model.ReadOutputBias());
            FvtEmbeddings fvt = times.Measure("fvt", () => FastVocabularyTransfer.Compute(targetTokens,
                sourceByteLevel, sourceIn, sourceOut, biasT,
                done => progress?.Report(new ProgressUpdate("fvt", done, rows, "tokens"))));
            embedSeconds = times.Seconds("fvt");
            backendName = "mean of source pieces";
            (newIn, newOut, newBias) = (fvt.EmbeddingsIn, fvt.EmbeddingsOut, fvt.Bias);
            embeddingBytes = 4 * (newIn.ElementCount + (newOut?.ElementCount ?? 0));
            result = result with
            {
                FvtCopied = fvt.Copied,
                FvtAveraged = fvt.Averaged,
                FvtFallback = fvt.Fallback,
            };
        }
        using NativeMatrix ownedIn = newIn;
        using NativeMatrix? ownedOut = newOut;

        // Special tokens keep the source rows of the model tokenizer's special tokens.
        int special = 0;
        var placed = new List<(string Token, int SourceId, int TargetId)>();
        foreach ((string token, int oldId) in modelTokenizer.AllSpecialTokens)
        {
            if (oldId < 0 || oldId >= v || target.TokenToId(token) is not int newId || newId >= rows)
            {
                log?.Invoke($"special token '{token}' (id {oldId}) has no row to copy; left as predicted");
                continue;
            }
            sourceIn.ReadRows(oldId, 1, newIn.Row(newId));
            if (newOut is not null && sourceOut is not null)
            {
                sourceOut.ReadRows(oldId, 1, newOut.Row(newId));
            }
            special++;
            placed.Add((token, oldId, newId));
        }

        int? MapId(int old) => modelTokenizer.TryIdToToken(old) is string t ? target.TokenToId(t) : null;
        result = result with
        {
            Backend = backendName,
            SpecialTokenRows = special,
            SpecialTokens = placed,
            TargetIds = targetMatch,
            PrependsSpace = target.Components["normalizer"] is JsonObject norm
                && (string?)norm["type"] == "Prepend" && (string?)norm["prepend"] == " ",
        };
        TransferResult described = result;
        GgufExportResult? gguf = null;
        LmEvalResult? newEval = null;
        Func<string, LmEvalResult>? evaluate = baseEval is null ? null : EvaluateTransferred;
        LmEvalResult EvaluateTransferred(string dir)
        {
            using LanguageModel lm = LanguageModel.Open(dir, new CpuBackend());
            var scored = LmEvaluation.Evaluate(lm, HfTokenizer.Load(dir), evalDocs,
                options.EvalContext, 0, progress);
            newEval = scored with { Model = TransferredLabel(options) };
            return newEval;
        }
        string? biasDestination = times.Measure("write model", () => WriteOutput(options, model,
            modelClass, target, newIn, newOut, newBias, MapId, progress, log, evaluate,
            (bias, eval) => ModelCard.Render(options, described with
            {
                BiasDestination = bias,
                Evaluation = eval is null ? [] : [baseEval!, eval],
            }), out gguf));

        return result with
        {
            BiasDestination = biasDestination,
            BiasNotWritten = newBias is not null && biasDestination is null,
            Evaluation = newEval is null ? [] : [baseEval!, newEval],
            TokensPerSecond = rows / Math.Max(embedSeconds, 1e-9),
            PeakResidentBytes = PhaseTimes.PeakResidentBytes(),
            PeakHeapBytes = memory.PeakAnonymousBytes,
            EmbeddingBytes = embeddingBytes,
            Gguf = gguf,
        };
    }

    /// <summary>A phase without a count of its own (loading, converting tokenizers, reading
    /// embeddings): timed, and reported when it starts and ends, so that a phase of seconds
    /// shows on stderr.</summary>
    private static T Stage<T>(PhaseTimes times, IProgress<ProgressUpdate>? progress, string phase, Func<T> work)
    {
        progress?.Report(new ProgressUpdate(phase, 0, 1, "step"));
        T value = times.Measure(phase, work);
        progress?.Report(new ProgressUpdate(phase, 1, 1, "step"));
        return value;
    }

    /// <summary>The base model on the evaluation text (<c>zett eval</c>'s protocol, CPU),
    /// before any output is made: a model that cannot be evaluated fails the run early.
    /// </summary>
    private static LmEvalResult EvaluateBase(TransferOptions options, HfModelDirectory model,
        ModelClass modelClass, HfTokenizer tokenizer, IReadOnlyList<EvalDocument> docs,
        IProgress<ProgressUpdate>? progress)
    {
        if (modelClass == ModelClass.Base)
        {
            throw new ZettException($"--eval-data: {model.Directory} is a base model without an LM "
                + "head; bits per byte need a causal or masked LM");
        }
        using LanguageModel lm = LanguageModel.Create(model, new CpuBackend());
        LmEvalResult result = LmEvaluation.Evaluate(lm, tokenizer, docs, options.EvalContext, 0,
            progress);
        return result with { Model = BaseLabel(options) };
    }

    private static string BaseLabel(TransferOptions o) => o.ModelLabel ?? Path.GetFileName(
        Path.TrimEndingDirectorySeparator(Path.GetFullPath(o.ModelDirectory)));

    private static string TransferredLabel(TransferOptions o) =>
        $"{BaseLabel(o)} → {o.TokenizerLabel ?? o.Tokenizer} (transferred)";

    private static void CheckOptions(TransferOptions o)
    {
        if (o.EvalContext is < 2)
        {
            throw new ZettException($"--eval-context {o.EvalContext}: a window needs at least 2 tokens");
        }
        if (o.EvalMaxBytes is < 1)
        {
            throw new ZettException($"--eval-max-bytes must be at least 1, got {o.EvalMaxBytes}");
        }
        if (o.Method == TransferMethod.Hypernet && o.HypernetDirectory is null)
        {
            throw new ZettException("--hypernet DIR is required for --method hypernet "
                + "(or use --method fvt, which needs no hypernetwork)");
        }
        if (o.Method == TransferMethod.Fvt && o.HypernetDirectory is not null)
        {
            throw new ZettException("--hypernet is not used by --method fvt");
        }
        if (o.Method == TransferMethod.Fvt && o.Language is not null)
        {
            throw new ZettException("--lang is not used by --method fvt");
        }
        string output = OutputTarget.Check(o.OutputDirectory,
            o.Format == TransferFormat.Gguf ? OutputKind.File : OutputKind.Directory, o.Overwrite,
            [o.ModelDirectory, o.Tokenizer, o.HypernetDirectory, .. o.EvalData]);
        if (o.Format == TransferFormat.Gguf)
        {
            OutputTarget.CleanStale(output + IntermediateSuffix);
        }
    }

    private static ModelClass ResolveModelClass(HfModelDirectory model, ModelClass? requested)
    {
        ModelClass actual = model.OutputBiasName is not null ? ModelClass.Masked
            : model.IsBaseModel ? ModelClass.Base : ModelClass.Causal;
        if (requested is { } r && r != actual)
        {
            string what = actual switch
            {
                ModelClass.Masked => $"a masked LM (output bias '{model.OutputBiasName}')",
                ModelClass.Base => $"a base model without a head ('{model.InputEmbeddingName}')",
                _ => "a model with an LM head and no output bias (causal)",
            };
            throw new ZettException($"--model-class {r.ToString().ToLowerInvariant()}: "
                + $"{model.Directory} holds {what}");
        }
        return actual;
    }

    private static void CheckHypernetFits(HypernetConfig config, HfModelDirectory model, string dir)
    {
        if (config.NEmbd != model.HiddenSize)
        {
            throw new ZettException($"{dir}: the hypernetwork predicts embeddings of width "
                + $"{config.NEmbd} (n_embd) but the model's hidden size is {model.HiddenSize}");
        }
        if (config.SeparateOutEmbeddings && model.OutputEmbeddingName is null)
        {
            throw new ZettException($"{dir}: the hypernetwork predicts output embeddings "
                + "(separate_out_embeddings) but the model has none (tied embeddings or a base model)");
        }
        if (!config.SeparateOutEmbeddings && model.OutputEmbeddingName is not null)
        {
            throw new ZettException($"{dir}: the model has untied output embeddings "
                + $"('{model.OutputEmbeddingName}') but the hypernetwork predicts only input "
                + "embeddings (separate_out_embeddings is false)");
        }
        if (config.OriginalVocabSize > model.VocabSize)
        {
            throw new ZettException($"{dir}: the hypernetwork was made for a vocabulary of "
                + $"{config.OriginalVocabSize} (original_vocab_size) but the model has "
                + $"{model.VocabSize} embedding rows");
        }
        if (model.OutputBiasName is not null && !config.PredictBias)
        {
            throw new ZettException($"{dir}: the model has an output bias ('{model.OutputBiasName}') "
                + "but the hypernetwork does not predict one (hn_predict_bias is false)");
        }
    }

    private static string? WriteOutput(TransferOptions options, HfModelDirectory model,
        ModelClass modelClass, HfTokenizer target, NativeMatrix newIn, NativeMatrix? newOut, float[]? newBias,
        Func<int, int?> mapId, IProgress<ProgressUpdate>? progress, Action<string>? log,
        Func<string, LmEvalResult>? evaluate, Func<string?, LmEvalResult?, string> modelCard,
        out GgufExportResult? gguf)
    {
        gguf = null;
        GgufExportResult? written = null;
        int rows = target.VocabSize, d = model.HiddenSize;
        string staging = Directory.CreateTempSubdirectory("zett-transfer-").FullName;
        try
        {
            Dictionary<string, string?> files = TransferredTokenizerFiles.Write(target, model.Directory,
                staging, mapId);
            // A predicted bias goes where the model reads one: a masked LM's output bias. A
            // causal LM or a base model has no bias parameter (transformers' LlamaForCausalLM,
            // GPT2LMHeadModel, ... compute logits without one), so nothing would read it and it
            // is not written.
            string? biasDestination = null;
            HostTensor? outputBias = null;
            if (newBias is not null && modelClass == ModelClass.Masked)
            {
                outputBias = new HostTensor(model.OutputBiasName!, [rows], newBias);
                biasDestination = model.OutputBiasName;
            }
            // The card is written into the finished, unpublished directory: an evaluation runs
            // the transferred model from there, and its numbers go into the card.
            void Describe(string dir) => File.WriteAllText(Path.Combine(dir, "README.md"),
                modelCard(biasDestination, evaluate?.Invoke(dir)));
            Dictionary<string, JsonNode?> configUpdates = TransferredTokenizerFiles.MapIds(model.CloneConfig(), mapId);
            foreach ((string key, JsonNode? value) in configUpdates)
            {
                if (value is null)
                {
                    log?.Invoke($"config.json {key}: the token has no id in the new tokenizer; removed");
                }
            }
            int total = model.Weights.Tensors.Count - model.EmbeddingTensorNames.Count, done = 0;
            var edit = new HfModelEdit
            {
                InputEmbeddings = newIn,
                OutputEmbeddings = newOut,
                OutputBias = outputBias,
                ConfigUpdates = configUpdates,
                Files = files,
                TransformTensor = (_, info) =>
                {
                    options.OnTensorWritten?.Invoke(info.Name);
                    progress?.Report(new ProgressUpdate("write model", ++done, Math.Max(total, done), "tensors"));
                    return null;
                },
            };
            void Export(string hfDirectory, string file)
            {
                written = GgufExporter.ExportChecked(hfDirectory, file, options.GgufType, progress);
                if (options.Format == TransferFormat.Gguf)
                {
                    written = written with { Path = options.OutputDirectory };
                }
            }
            switch (options.Format)
            {
                case TransferFormat.Hf:
                    HfModelWriter.Write(model, options.OutputDirectory, edit with
                    {
                        BeforePublish = Describe,
                    }, options.Overwrite);
                    break;
                case TransferFormat.Both:
                    // Written inside the unpublished directory: both appear together or neither.
                    HfModelWriter.Write(model, options.OutputDirectory, edit with
                    {
                        BeforePublish = dir =>
                    {
                        Describe(dir);
                        Export(dir, Path.Combine(dir, GgufFileName));
                    },
                    }, options.Overwrite);
                    written = written! with
                    {
                        Path = Path.Combine(options.OutputDirectory, GgufFileName),
                    };
                    break;
                default:
                    // The Hugging Face directory is only a step: written beside the .gguf (same
                    // file system, no copy of a large model to /tmp) inside a temporary of the
                    // output policy that is never committed, so a failure, a signal or the next
                    // run after a SIGKILL removes it.
                    string full = Path.GetFullPath(options.OutputDirectory);
                    using (OutputTarget step = OutputTarget.Begin(full + IntermediateSuffix,
                        OutputKind.Directory))
                    {
                        string hf = Path.Combine(step.TempPath, "model");
                        HfModelWriter.Write(model, hf, edit with { BeforePublish = Describe });
                        Export(hf, full);
                    }
                    break;
            }
            gguf = written;
            return biasDestination;
        }
        finally
        {
            Directory.Delete(staging, recursive: true);
        }
    }
}
