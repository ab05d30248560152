using ZeTT.Runtime.Hypernetwork;
using ZeTT.Runtime.Tensors;

namespace ZeTT.Runtime.Formats;

/// <summary>Which file a hypernetwork's weights came from.</summary>
public enum HypernetCheckpointFormat
{
    /// <summary><c>model.safetensors</c> with the PyTorch port's parameter names.</summary>
    Safetensors,

    /// <summary><c>flax_model.msgpack</c> with the Flax original's names and layouts.</summary>
    FlaxMsgpack,
}

/// <summary>
/// A hypernetwork directory (ZETT.md §3): <c>config.json</c>, the weights as
/// <c>model.safetensors</c> (preferred) or <c>flax_model.msgpack</c>, both mapped to the
/// PyTorch-port names and layouts and bound by <see cref="HypernetWeights"/>, and the hn
/// tokenizer files beside them.
/// </summary>
public sealed class HypernetCheckpoint
{
    private HypernetCheckpoint(string directory, HypernetConfig config, HypernetWeights weights,
        string weightsPath, HypernetCheckpointFormat format)
    {
        Directory = directory;
        Config = config;
        Weights = weights;
        WeightsPath = weightsPath;
        Format = format;
        TokenizerJsonPath = Beside("tokenizer.json");
        TokenizerConfigPath = Beside("tokenizer_config.json");
        SpecialTokensMapPath = Beside("special_tokens_map.json");
    }

    /// <summary>The checkpoint directory.</summary>
    public string Directory { get; }

    /// <summary>The parsed config.json.</summary>
    public HypernetConfig Config { get; }

    /// <summary>Every parameter, PyTorch names and layouts, shape-checked against the config.</summary>
    public HypernetWeights Weights { get; }

    /// <summary>The weights file that was read.</summary>
    public string WeightsPath { get; }

    /// <summary>Which format the weights were read from.</summary>
    public HypernetCheckpointFormat Format { get; }

    /// <summary>The hn tokenizer's tokenizer.json, or null when absent.</summary>
    public string? TokenizerJsonPath { get; }

    /// <summary>The hn tokenizer's tokenizer_config.json, or null when absent.</summary>
    public string? TokenizerConfigPath { get; }

    /// <summary>The hn tokenizer's special_tokens_map.json, or null when absent.</summary>
    public string? SpecialTokensMapPath { get; }

    private string? Beside(string name)
    {
        string path = Path.Combine(Directory, name);
        return File.Exists(path) ? path : null;
    }

    /// <summary>Loads the hypernetwork in <paramref name="directory"/>.</summary>
    /// <exception cref="ZettException">Missing files, malformed weights, or a missing or
    /// mis-shaped parameter (named, with expected and found shape).</exception>
    public static HypernetCheckpoint Load(string directory)
    {
        ArgumentNullException.ThrowIfNull(directory);
        HypernetConfig config = HypernetConfig.Load(directory);
        string safetensors = Path.Combine(directory, "model.safetensors");
        string flax = Path.Combine(directory, "flax_model.msgpack");
        if (File.Exists(safetensors))
        {
            Dictionary<string, HostTensor> tensors = ReadSafetensors(safetensors);
            RequireFinite(tensors, safetensors);
            return new HypernetCheckpoint(directory, config,
                HypernetWeights.FromTensors(config, tensors, safetensors), safetensors,
                HypernetCheckpointFormat.Safetensors);
        }
        if (File.Exists(flax))
        {
            Dictionary<string, HostTensor> tensors = FlaxToPyTorch(
                FlaxMsgpack.ReadTensors(flax, name => FlaxName.IsUsed(StripParams(name))), flax);
            RequireFinite(tensors, flax);
            return new HypernetCheckpoint(directory, config,
                HypernetWeights.FromTensors(config, tensors, flax), flax, HypernetCheckpointFormat.FlaxMsgpack);
        }
        throw new ZettException($"{directory}: no model.safetensors or flax_model.msgpack beside "
            + "config.json");
    }

    private static void RequireFinite(Dictionary<string, HostTensor> tensors, string file)
    {
        foreach (HostTensor t in tensors.Values)
        {
            t.RequireFinite(file);
        }
    }

    /// <summary>Parameters of the PyTorch port that the forward pass never reads: the
    /// (unused) word embeddings RoBERTa allocates and its position-id buffer.</summary>
    private static bool IsUnusedPyTorch(string name) =>
        name is "model.embeddings.word_embeddings.weight" or "model.embeddings.position_ids"
        || name.StartsWith("model.pooler.", StringComparison.Ordinal);

    private static Dictionary<string, HostTensor> ReadSafetensors(string path)
    {
        using SafetensorsFile file = SafetensorsFile.Open(path);
        var tensors = new Dictionary<string, HostTensor>(StringComparer.Ordinal);
        foreach (SafetensorsTensorInfo t in file.Tensors)
        {
            if (!IsUnusedPyTorch(t.Name) && DTypeConverter.IsConvertibleFloat(t.DType))
            {
                tensors[t.Name] = file.ReadFloat32(t.Name);
            }
        }
        return tensors;
    }

    private static string StripParams(string flaxName) =>
        flaxName.StartsWith("params.", StringComparison.Ordinal) ? flaxName["params.".Length..] : flaxName;

    /// <summary>
    /// Maps Flax parameter names and layouts to the PyTorch port's (what the reference's
    /// conversion script does): an optional top-level <c>params</c> is dropped,
    /// <c>nn.Sequential</c>'s <c>layers_N</c> becomes <c>N</c>, Dense <c>kernel</c> [in, out]
    /// becomes <c>weight</c> [out, in], LayerNorm <c>scale</c> and Embed <c>embedding</c> become
    /// <c>weight</c>, and the language embedding moves from
    /// <c>model.embeddings.lang_embedding</c> to <c>lang_embeddings</c>.
    /// </summary>
    public static Dictionary<string, HostTensor> FlaxToPyTorch(
        IReadOnlyDictionary<string, HostTensor> flax, string source)
    {
        ArgumentNullException.ThrowIfNull(flax);
        var result = new Dictionary<string, HostTensor>(StringComparer.Ordinal);
        foreach ((string flaxName, HostTensor tensor) in flax)
        {
            string name = StripParams(flaxName);
            if (!FlaxName.IsUsed(name))
            {
                continue;
            }
            string[] parts = name.Split('.');
            for (int i = 0; i < parts.Length; i++)
            {
                if (parts[i].StartsWith("layers_", StringComparison.Ordinal)
                    && int.TryParse(parts[i].AsSpan("layers_".Length), out int index))
                {
                    parts[i] = index.ToString(System.Globalization.CultureInfo.InvariantCulture);
                }
            }
            HostTensor value = tensor;
            switch (parts[^1])
            {
                case "kernel":
                    parts[^1] = "weight";
                    if (tensor.Rank != 2)
                    {
                        throw new ZettException($"{source}: parameter '{flaxName}' is a Dense kernel of "
                            + $"shape {HostTensor.ShapeToString(tensor.Shape)}, expected [in, out]");
                    }
                    value = Transpose(tensor);
                    break;
                case "scale" or "embedding":
                    parts[^1] = "weight";
                    break;
            }
            string pyName = string.Join('.', parts);
            if (pyName == "model.embeddings.lang_embedding.weight")
            {
                pyName = "lang_embeddings.weight";
            }
            if (!result.TryAdd(pyName, new HostTensor(pyName, value.Shape, value.Data)))
            {
                throw new ZettException($"{source}: two Flax parameters map to '{pyName}'");
            }
        }
        return result;
    }

    private static HostTensor Transpose(HostTensor t)
    {
        int rows = t.Shape[0], cols = t.Shape[1];
        float[] result = new float[t.Data.Length];
        const int Block = 32;
        for (int r0 = 0; r0 < rows; r0 += Block)
        {
            for (int c0 = 0; c0 < cols; c0 += Block)
            {
                int r1 = Math.Min(rows, r0 + Block), c1 = Math.Min(cols, c0 + Block);
                for (int r = r0; r < r1; r++)
                {
                    for (int c = c0; c < c1; c++)
                    {
                        result[((long)c * rows) + r] = t.Data[((long)r * cols) + c];
                    }
                }
            }
        }
        return new HostTensor(t.Name, [cols, rows], result);
    }

    /// <summary>Flax parameters the forward pass never reads (skipped without decoding).</summary>
    private static class FlaxName
    {
        public static bool IsUsed(string name) =>
            !name.StartsWith("model.embeddings.word_embeddings.", StringComparison.Ordinal)
            && !name.StartsWith("model.embeddings.target_priors_projection.", StringComparison.Ordinal)
            && !name.StartsWith("model.pooler.", StringComparison.Ordinal)
            && name != "model.encoder.layer.inter_token_blocks";
    }
}
