using ZeTT.Ops;
using ZeTT.Runtime.Formats;
using ZeTT.Runtime.Hypernetwork;
using ZeTT.Runtime.IO;
using ZeTT.Runtime.Tensors;
using ZeTT.Runtime.Tokenizers;

namespace ZeTT.Runtime.Transfer;

/// <summary>Inputs of <see cref="EmbeddingPrediction.Run"/> (<c>zett predict</c>). Exactly one
/// of <see cref="SourceEmbeddingsFile"/> / <see cref="ModelDirectory"/> and one of
/// <see cref="SurfaceFormsFile"/> / <see cref="TokensFile"/> is set.</summary>
public sealed record PredictOptions
{
    /// <summary>The hypernetwork directory.</summary>
    public required string HypernetDirectory { get; init; }

    /// <summary>safetensors with <c>embeddings_in</c> [V, n_embd] and, for untied models,
    /// <c>embeddings_out</c> [V, n_embd].</summary>
    public string? SourceEmbeddingsFile { get; init; }

    /// <summary>A Hugging Face model directory to read the source embeddings from.</summary>
    public string? ModelDirectory { get; init; }

    /// <summary>safetensors with <c>surface_forms</c> I32 [N, L].</summary>
    public string? SurfaceFormsFile { get; init; }

    /// <summary>A text file of byte-level tokens, one per line; their surface forms are made
    /// with the hypernetwork's own tokenizer converted to byte level.</summary>
    public string? TokensFile { get; init; }

    /// <summary>The output safetensors file.</summary>
    public required string OutputFile { get; init; }

    /// <summary>Replace an existing <see cref="OutputFile"/>.</summary>
    public bool Overwrite { get; init; }

    /// <summary>Language code of a multilingual hypernetwork.</summary>
    public string? Language { get; init; }

    /// <summary>auto, cpu or cuda.</summary>
    public string Device { get; init; } = "auto";

    /// <summary>CUDA device ordinal.</summary>
    public int Gpu { get; init; }

    /// <summary>Precision of the forward pass.</summary>
    public HypernetPrecision Precision { get; init; } = HypernetPrecision.Float32;

    /// <summary>Rows per batch; 0 lets the backend choose.</summary>
    public int BatchSize { get; init; }
}

/// <summary>What <see cref="EmbeddingPrediction.Run"/> produced.</summary>
/// <param name="Rows">Tokens predicted.</param>
/// <param name="Backend">The backend's name.</param>
/// <param name="TruncatedTokens">Tokens whose surface form was cut (--tokens only).</param>
/// <param name="Output">The prediction.</param>
public sealed record PredictResult(int Rows, string Backend, int TruncatedTokens, HypernetOutput Output);

/// <summary><c>zett predict</c>: the hypernetwork over given surface forms (or tokens) with given
/// source embeddings (or a model's), written as safetensors.</summary>
public static class EmbeddingPrediction
{
    /// <summary>Runs the prediction and writes <see cref="PredictOptions.OutputFile"/>:
    /// <c>embeddings_in</c> F32 [N, n_embd], <c>embeddings_out</c> F32 [N, n_embd] when
    /// predicted, <c>bias</c> F32 [N] when predicted.</summary>
    public static PredictResult Run(PredictOptions options, IProgress<ProgressUpdate>? progress = null,
        Action<string>? log = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        if ((options.SourceEmbeddingsFile is null) == (options.ModelDirectory is null))
        {
            throw new ZettException("give exactly one of --source-embeddings FILE and --model DIR");
        }
        if ((options.SurfaceFormsFile is null) == (options.TokensFile is null))
        {
            throw new ZettException("give exactly one of --surface-forms FILE and --tokens FILE");
        }
        OutputTarget.Check(options.OutputFile, OutputKind.File, options.Overwrite,
            [options.HypernetDirectory, options.SourceEmbeddingsFile, options.ModelDirectory,
                options.SurfaceFormsFile, options.TokensFile]);
        HypernetConfig config = HypernetConfig.Load(options.HypernetDirectory);
        int lang = config.ResolveLanguage(options.Language);
        HypernetCheckpoint checkpoint = HypernetCheckpoint.Load(options.HypernetDirectory);

        int truncated = 0;
        int[] ids;
        int rows;
        if (options.SurfaceFormsFile is { } sfFile)
        {
            (ids, rows) = ReadSurfaceForms(sfFile, config);
        }
        else
        {
            string[] tokens = ReadTokens(options.TokensFile!);
            HfTokenizer hn = ByteLevelConverter.Convert(HfTokenizer.Load(checkpoint.Directory));
            if (hn.SpecialTokens.Pad is null)
            {
                hn = hn.WithPadToken(hn.SpecialTokens.Eos);
            }
            SurfaceFormMatrix sf = SurfaceFormMatrix.BuildForTokens(tokens, hn, config.SurfaceMaxLen);
            (ids, rows, truncated) = (sf.Ids, sf.Rows, sf.TruncatedCount);
        }

        HypernetPredictor backend;
        // The checkpoint's weights are not used again: each host tensor is released once the
        // backend holds its own copy, so the hypernetwork is never held twice.
        if (options.ModelDirectory is { } modelDir)
        {
            using HfModelDirectory model = HfModelDirectory.Open(modelDir);
            if (model.HiddenSize != config.NEmbd)
            {
                throw new ZettException($"{modelDir}: hidden size {model.HiddenSize} but the "
                    + $"hypernetwork's n_embd is {config.NEmbd}");
            }
            // E as a tensor with 64-bit sizes (a model's E may pass 2^31 elements); the graph
            // copies the rows it needs, so it is freed before predicting.
            using Tensor source = SourceEmbeddings.ReadStackedTensor(model, config.SeparateOutEmbeddings);
            backend = HypernetPredictor.Create(options.Device, checkpoint.Weights,
                source, options.Precision, options.BatchSize, log, options.Gpu, consumeWeights: true);
        }
        else
        {
            backend = HypernetPredictor.Create(options.Device, checkpoint.Weights,
                ReadSourceEmbeddings(options.SourceEmbeddingsFile!, config), options.Precision,
                options.BatchSize, log, options.Gpu, consumeWeights: true);
        }
        using HypernetPredictor owned = backend;
        HypernetOutput output = HypernetBatching.PredictAll(backend, ids, rows, lang,
            done => progress?.Report(new ProgressUpdate("predict", done, rows, "tokens")));

        var entries = new List<SafetensorsEntry>
        {
            SafetensorsEntry.FromFloat32("embeddings_in", [rows, config.NEmbd], output.EmbeddingsIn),
        };
        if (output.EmbeddingsOut is { } eOut)
        {
            entries.Add(SafetensorsEntry.FromFloat32("embeddings_out", [rows, config.NEmbd], eOut));
        }
        if (output.Bias is { } bias)
        {
            entries.Add(SafetensorsEntry.FromFloat32("bias", [rows], bias));
        }
        SafetensorsWriter.Write(options.OutputFile, entries);
        return new PredictResult(rows, backend.Name, truncated, output);
    }

    private static (int[] Ids, int Rows) ReadSurfaceForms(string file, HypernetConfig config)
    {
        using SafetensorsFile st = OpenFile(file);
        if (!st.Contains("surface_forms"))
        {
            throw new ZettException($"{file}: no tensor 'surface_forms' (expected I32 [N, "
                + $"{config.SurfaceMaxLen}]); found {string.Join(", ", st.Tensors.Select(t => t.Name))}");
        }
        SafetensorsTensorInfo info = st.Tensors.First(t => t.Name == "surface_forms");
        if (info.DType != DType.I32 || info.Shape.Length != 2 || info.Shape[1] != config.SurfaceMaxLen)
        {
            throw new ZettException($"{file}: tensor 'surface_forms' is "
                + $"{DTypes.ToSafetensorsName(info.DType)} {HostTensor.ShapeToString(info.Shape)}, expected "
                + $"I32 [N, {config.SurfaceMaxLen}] (hn_surface_maxlen)");
        }
        int[] ids = st.ReadInt32("surface_forms", out int[] shape);
        int limit = config.OriginalVocabSize + config.NumExtraTokens;
        int bad = Array.FindIndex(ids, id => id < 0 || id >= limit);
        if (bad >= 0)
        {
            throw new ZettException($"{file}: tensor 'surface_forms' row {bad / shape[1]}, position "
                + $"{bad % shape[1]}: id {ids[bad]} is outside the hypernetwork's vocabulary "
                + $"0..{limit - 1}");
        }
        return (ids, shape[0]);
    }

    private static HostTensor ReadSourceEmbeddings(string file, HypernetConfig config)
    {
        using SafetensorsFile st = OpenFile(file);
        HostTensor Read(string name)
        {
            if (!st.Contains(name))
            {
                throw new ZettException($"{file}: no tensor '{name}' (expected [V, {config.NEmbd}]"
                    + (name == "embeddings_out" ? "; the hypernetwork has separate_out_embeddings" : "")
                    + ")");
            }
            HostTensor t = st.ReadFloat32(name).RequireFinite(file);
            if (t.Rank != 2 || t.Shape[1] != config.NEmbd)
            {
                throw new ZettException($"{file}: tensor '{name}' has shape "
                    + $"{HostTensor.ShapeToString(t.Shape)}, expected [V, {config.NEmbd}] (n_embd)");
            }
            return t;
        }
        HostTensor eIn = Read("embeddings_in");
        if (!config.SeparateOutEmbeddings)
        {
            return eIn;
        }
        HostTensor eOut = Read("embeddings_out");
        if (eOut.Shape[0] != eIn.Shape[0])
        {
            throw new ZettException($"{file}: embeddings_in has {eIn.Shape[0]} rows but "
                + $"embeddings_out has {eOut.Shape[0]}");
        }
        int v = eIn.Shape[0], n = config.NEmbd;
        var stacked = new float[(long)v * 2 * n];
        for (int r = 0; r < v; r++)
        {
            Array.Copy(eIn.Data, (long)r * n, stacked, (long)r * 2 * n, n);
            Array.Copy(eOut.Data, (long)r * n, stacked, (long)r * 2 * n + n, n);
        }
        return new HostTensor("embeddings_in+embeddings_out", [v, 2 * n], stacked);
    }

    private static SafetensorsFile OpenFile(string file)
    {
        InputFile.RequireRegularFile(file, "safetensors file");
        return SafetensorsFile.Open(file);
    }

    private static string[] ReadTokens(string file)
    {
        string[] lines = InputFile.ReadAllText(file, InputFile.TokenListLimit, "token list")
            .Split('\n');
        for (int i = 0; i < lines.Length; i++)
        {
            lines[i] = lines[i].TrimEnd('\r');
            if (lines[i].Length > TokenizerLimits.MaxTokenLength)
            {
                throw new ZettException($"{file}:{i + 1}: a token of {lines[i].Length} "
                    + $"characters, more than the {TokenizerLimits.MaxTokenLength} a token may have");
            }
        }
        int count = lines.Length;
        while (count > 0 && lines[count - 1].Length == 0)
        {
            count--;
        }
        for (int i = 0; i < count; i++)
        {
            if (lines[i].Length == 0)
            {
                throw new ZettException($"{file}:{i + 1}: empty line (one byte-level token per line)");
            }
        }
        return count > 0 ? lines[..count]
            : throw new ZettException($"{file}: no tokens (one byte-level token per line)");
    }
}
