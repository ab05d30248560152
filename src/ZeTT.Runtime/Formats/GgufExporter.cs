using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using ZeTT.Runtime.IO;
using ZeTT.Runtime.Transfer;

namespace ZeTT.Runtime.Formats;

/// <summary>What <see cref="GgufExporter.Export"/> wrote.</summary>
/// <param name="Path">The GGUF file.</param>
/// <param name="Architecture">llama.cpp's architecture name (<c>general.architecture</c>).</param>
/// <param name="Tensors">Tensors written.</param>
/// <param name="Bytes">File size.</param>
/// <param name="Notes">What llama.cpp will do differently from Hugging Face, and tensors stored
/// in another type than asked (one sentence each).</param>
/// <param name="PrependsSpace">True when llama.cpp callers must tokenize <c>" " + text</c>
/// (see <see cref="GgufTokenizerMetadata.PrependsSpace"/>).</param>
public sealed record GgufExportResult(string Path, string Architecture, int Tensors, long Bytes,
    IReadOnlyList<string> Notes, bool PrependsSpace);

/// <summary>
/// Writes a Hugging Face model directory (llama, mistral, qwen2, gemma, gpt2, gpt_neox) as one
/// GGUF v3 file that llama.cpp loads: the architecture's hyperparameters under llama.cpp's keys,
/// the tokenizer (<see cref="GgufTokenizer"/>), and every tensor under llama.cpp's name and in
/// the layout its converter writes (q/k rows permuted from Hugging Face's rotate-half order to
/// llama.cpp's interleaved one for llama and mistral, GPT-2's Conv1D weights transposed,
/// GPT-NeoX's per-head fused QKV regrouped into Q, K, V, Gemma's RMSNorm weights stored as
/// 1 + w). Matrices and the embeddings are stored as the requested type; vectors (norms, biases)
/// stay F32, as llama.cpp's converter keeps them; a matrix whose rows are not a multiple of 32
/// falls back from Q8_0 to F16 as there. Tensors are converted one chunk of rows at a time from
/// the memory-mapped safetensors and the file is written atomically.
/// </summary>
public static class GgufExporter
{
    /// <summary>model_type → llama.cpp architecture name.</summary>
    public static IReadOnlyDictionary<string, string> Architectures { get; } =
        new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["llama"] = "llama",
            ["mistral"] = "llama",
            ["qwen2"] = "qwen2",
            ["gemma"] = "gemma",
            ["gpt2"] = "gpt2",
            ["gpt_neox"] = "gptneox",
        };

    /// <summary>Writes <paramref name="modelDirectory"/> to <paramref name="outputFile"/> with
    /// matrices stored as <paramref name="type"/>; <paramref name="progress"/> gets one update
    /// per tensor written (phase "write gguf").</summary>
    public static GgufExportResult Export(string modelDirectory, string outputFile, GgmlType type,
        IProgress<ProgressUpdate>? progress = null, bool overwrite = false)
    {
        ArgumentNullException.ThrowIfNull(modelDirectory);
        ArgumentNullException.ThrowIfNull(outputFile);
        OutputTarget.Check(outputFile, OutputKind.File, overwrite, [modelDirectory]);
        return ExportChecked(modelDirectory, outputFile, type, progress);
    }

    /// <summary><see cref="Export"/> for a caller that has applied the output policy itself
    /// (a transfer writing model.gguf inside its own unpublished output directory).</summary>
    internal static GgufExportResult ExportChecked(string modelDirectory, string outputFile,
        GgmlType type, IProgress<ProgressUpdate>? progress)
    {
        using HfModelDirectory model = HfModelDirectory.Open(modelDirectory);
        string arch = Architectures.TryGetValue(model.ModelType, out string? a) ? a
            : throw new ZettException($"{model.ConfigPath}: model_type '{model.ModelType}' has no "
                + "llama.cpp architecture zett can write (it writes "
                + string.Join(", ", Architectures.Keys) + ")");
        if (model.IsBaseModel)
        {
            throw new ZettException($"{modelDirectory}: a base model without its LM head; llama.cpp "
                + "needs a causal LM checkpoint");
        }
        var hp = new Hyperparameters(model);
        var notes = new List<string>();
        var metadata = new List<KeyValuePair<string, GgufValue>>
        {
            new("general.architecture", GgufValue.String(arch)),
            new("general.name", GgufValue.String(ModelName(modelDirectory))),
            new("general.file_type", GgufValue.UInt32(GgmlTypes.FileType(type))),
            new("general.quantization_version", GgufValue.UInt32(2)),
        };
        metadata.AddRange(ArchitectureKeys(arch, hp, model.VocabSize));
        GgufTokenizerMetadata tokenizer = GgufTokenizer.FromDirectory(modelDirectory, model.VocabSize);
        metadata.AddRange(tokenizer.Metadata);
        notes.AddRange(tokenizer.Notes);

        List<GgufTensor> tensors = Tensors(model, arch, hp, type, notes);
        int done = 0;
        GgufWriter.Write(outputFile, metadata, tensors,
            _ => progress?.Report(new ProgressUpdate("write gguf", ++done, tensors.Count, "tensors")));
        return new GgufExportResult(outputFile, arch, tensors.Count, new FileInfo(outputFile).Length,
            notes, tokenizer.PrependsSpace);
    }

    private static string ModelName(string directory) =>
        Path.GetFileName(Path.GetFullPath(directory).TrimEnd('/', '\\'));

    /// <summary>Hyperparameters read from config.json, with errors naming the file and key.</summary>
    private sealed class Hyperparameters(HfModelDirectory model)
    {
        public int Int(string key, params string[] fallbacks)
        {
            foreach (string k in fallbacks.Prepend(key))
            {
                if (model.GetConfigValue(k) is JsonValue v && v.GetValueKind() == JsonValueKind.Number
                    && v.TryGetValue(out int i))
                {
                    return i;
                }
            }
            throw new ZettException($"{model.ConfigPath}: needs an integer {key}"
                + (fallbacks.Length > 0 ? $" (or {string.Join(", ", fallbacks)})" : ""));
        }

        public int? OptionalInt(string key) =>
            model.GetConfigValue(key) is JsonValue v && v.GetValueKind() == JsonValueKind.Number
            && v.TryGetValue(out int i) ? i : null;

        public float Float(string key, float? fallback = null)
        {
            JsonNode? node = model.GetConfigValue(key);
            if (node is JsonValue v && v.GetValueKind() == JsonValueKind.Number)
            {
                return (float)v.GetValue<double>();
            }
            return fallback ?? throw new ZettException($"{model.ConfigPath}: needs a number {key}");
        }

        public bool Bool(string key, bool fallback) =>
            model.GetConfigValue(key) is JsonValue v && v.TryGetValue(out bool b) ? b : fallback;

        public JsonNode? Node(string key) => model.GetConfigValue(key);

        public string ConfigPath => model.ConfigPath;

        public int Heads => Int("num_attention_heads", "n_head");

        public int KvHeads => OptionalInt("num_key_value_heads") ?? Heads;

        public int Hidden => model.HiddenSize;

        public int HeadDim => OptionalInt("head_dim") ?? Hidden / Heads;
    }

    private static IEnumerable<KeyValuePair<string, GgufValue>> ArchitectureKeys(string arch,
        Hyperparameters hp, int vocab)
    {
        KeyValuePair<string, GgufValue> U(string key, int value) =>
            new($"{arch}.{key}", GgufValue.UInt32(checked((uint)value)));
        KeyValuePair<string, GgufValue> F(string key, float value) =>
            new($"{arch}.{key}", GgufValue.Float32(value));
        var kv = new List<KeyValuePair<string, GgufValue>>();
        switch (arch)
        {
            case "llama" or "qwen2" or "gemma":
                kv.Add(U("context_length", hp.Int("max_position_embeddings")));
                kv.Add(U("embedding_length", hp.Hidden));
                kv.Add(U("block_count", hp.Int("num_hidden_layers")));
                kv.Add(U("feed_forward_length", hp.Int("intermediate_size")));
                kv.Add(U("attention.head_count", hp.Heads));
                kv.Add(U("attention.head_count_kv", hp.KvHeads));
                kv.Add(F("rope.freq_base", hp.Float("rope_theta", 10000f)));
                kv.Add(F("attention.layer_norm_rms_epsilon", hp.Float("rms_norm_eps")));
                if (arch == "llama")
                {
                    kv.Add(U("vocab_size", vocab));
                    kv.Add(U("rope.dimension_count", hp.HeadDim));
                }
                if (arch == "gemma" || hp.HeadDim * hp.Heads != hp.Hidden)
                {
                    kv.Add(U("attention.key_length", hp.HeadDim));
                    kv.Add(U("attention.value_length", hp.HeadDim));
                }
                kv.AddRange(RopeScaling(arch, hp));
                break;
            case "gpt2":
                kv.Add(U("context_length", hp.Int("n_ctx", "n_positions")));
                kv.Add(U("embedding_length", hp.Hidden));
                kv.Add(U("block_count", hp.Int("n_layer")));
                kv.Add(U("feed_forward_length", hp.OptionalInt("n_inner") ?? 4 * hp.Hidden));
                kv.Add(U("attention.head_count", hp.Int("n_head")));
                kv.Add(F("attention.layer_norm_epsilon", hp.Float("layer_norm_epsilon", 1e-5f)));
                break;
            case "gptneox":
                kv.Add(U("context_length", hp.Int("max_position_embeddings")));
                kv.Add(U("embedding_length", hp.Hidden));
                kv.Add(U("block_count", hp.Int("num_hidden_layers")));
                kv.Add(U("feed_forward_length", hp.Int("intermediate_size")));
                kv.Add(U("rope.dimension_count",
                    (int)(hp.Float("rotary_pct", 1f) * (hp.Hidden / hp.Heads))));
                kv.Add(U("attention.head_count", hp.Heads));
                kv.Add(new("gptneox.use_parallel_residual",
                    GgufValue.Bool(hp.Bool("use_parallel_residual", true))));
                kv.Add(F("attention.layer_norm_epsilon", hp.Float("layer_norm_eps", 1e-5f)));
                kv.Add(F("rope.freq_base", hp.Float("rotary_emb_base", 10000f)));
                break;
        }
        return kv;
    }

    private static IEnumerable<KeyValuePair<string, GgufValue>> RopeScaling(string arch, Hyperparameters hp)
    {
        if (hp.Node("rope_scaling") is not JsonObject scaling)
        {
            yield break;
        }
        string? kind = (scaling["rope_type"] ?? scaling["type"]) is JsonValue v && v.TryGetValue(out string? s)
            ? s : null;
        if (kind is "default" or null)
        {
            yield break;
        }
        if (kind != "linear" || scaling["factor"] is not JsonValue f || f.GetValueKind() != JsonValueKind.Number)
        {
            throw new ZettException($"{hp.ConfigPath}: rope_scaling {scaling.ToJsonString()} is not "
                + "written by zett's GGUF export (only linear scaling is)");
        }
        yield return new($"{arch}.rope.scaling.type", GgufValue.String("linear"));
        yield return new($"{arch}.rope.scaling.factor", GgufValue.Float32((float)f.GetValue<double>()));
    }

    /// <summary>How one Hugging Face tensor becomes one GGUF tensor.</summary>
    private sealed record Mapping(string Name, Func<long, long>? SourceRow = null, bool Transpose = false,
        float Add = 0);

    private static readonly Regex LlamaLayer = new(
        @"^(?:model\.)?layers\.(\d+)\.(.+)\.(weight|bias)$", RegexOptions.CultureInvariant);

    private static readonly Regex Gpt2Layer = new(
        @"^(?:transformer\.)?h\.(\d+)\.(.+)\.(weight|bias)$", RegexOptions.CultureInvariant);

    private static readonly Regex NeoxLayer = new(
        @"^(?:gpt_neox\.)?layers\.(\d+)\.(.+)\.(weight|bias)$", RegexOptions.CultureInvariant);

    private static List<GgufTensor> Tensors(HfModelDirectory model, string arch, Hyperparameters hp,
        GgmlType type, List<string> notes)
    {
        var tensors = new List<GgufTensor>();
        var fallbacks = new List<string>();
        SafetensorsCollection weights = model.Weights;
        foreach (SafetensorsTensorInfo info in weights.Tensors)
        {
            if (!DTypeConverter.IsConvertibleFloat(info.DType))
            {
                if (IsIgnored(arch, info.Name))
                {
                    continue;
                }
                throw new ZettException($"{weights.FileOf(info.Name).Path}: tensor '{info.Name}' is "
                    + $"{ZeTT.Ops.DTypes.ToSafetensorsName(info.DType)}, not a float tensor");
            }
            Mapping? map = Map(model, arch, hp, info.Name);
            if (map is null)
            {
                continue;
            }
            long[] shape = map.Transpose ? [info.Shape[1], info.Shape[0]] : (long[])info.Shape.Clone();
            GgmlType stored = shape.Length == 1 ? GgmlType.F32 : type;
            if (stored == GgmlType.Q8_0 && shape[^1] % GgmlTypes.Q8BlockSize != 0)
            {
                stored = GgmlType.F16;
                fallbacks.Add(map.Name);
            }
            Action<long, Span<float>> rows = Finite(Reader(weights, info, map),
                weights.FileOf(info.Name).Path, info.Name, shape[^1]);
            tensors.Add(GgufTensor.FromFloatRows(map.Name, stored, shape, rows));
            if (arch == "gpt2" && map.Name == "token_embd.weight")
            {
                // llama.cpp's converter stores GPT-2's tied LM head as a copy of wte.
                tensors.Add(GgufTensor.FromFloatRows("output.weight", stored, shape, rows));
            }
        }
        if (fallbacks.Count > 0)
        {
            notes.Add($"{fallbacks.Count} matrices have rows that are not a multiple of 32 and are "
                + $"stored as F16 instead of Q8_0 (as llama.cpp's converter does): "
                + string.Join(", ", fallbacks.Take(4)) + (fallbacks.Count > 4 ? ", …" : ""));
        }
        return tensors;
    }

    /// <summary>Rows that must be finite: a NaN or infinity would be copied into the GGUF and
    /// from there into every token llama.cpp predicts. The error names the file, the tensor and
    /// the row.</summary>
    private static Action<long, Span<float>> Finite(Action<long, Span<float>> read, string file,
        string tensor, long cols) => (first, destination) =>
    {
        read(first, destination);
        if (float.IsFinite(System.Numerics.Tensors.TensorPrimitives.Sum(destination)))
        {
            return;
        }
        for (int i = 0; i < destination.Length; i++)
        {
            if (!float.IsFinite(destination[i]))
            {
                throw new ZettException($"{file}: tensor '{tensor}': row {first + i / cols} holds "
                    + $"{destination[i]} (values must be finite)");
            }
        }
    };

    private static Action<long, Span<float>> Reader(SafetensorsCollection weights,
        SafetensorsTensorInfo info, Mapping map)
    {
        SafetensorsFile file = weights.FileOf(info.Name);
        long cols = info.Shape.Length == 1 ? info.Shape[0] : info.Shape[^1];
        if (map.Transpose)
        {
            long rows = info.Shape[0];
            return (first, destination) =>
            {
                // A transposed row gathers one column of the source: read the source once per
                // chunk (GPT-2 Conv1D weights, at most 6400 × 1600 floats each).
                float[] whole = new float[rows * cols];
                file.ReadFloat32(info.Name, 0, whole);
                int outCols = (int)rows;
                int n = destination.Length / outCols;
                for (int r = 0; r < n; r++)
                {
                    long c = first + r;
                    for (int k = 0; k < outCols; k++)
                    {
                        destination[r * outCols + k] = whole[k * cols + c];
                    }
                }
                AddConstant(destination, map.Add);
            };
        }
        if (info.Shape.Length == 1 && map.SourceRow is { } vectorRow)
        {
            return (first, destination) =>
            {
                float[] whole = new float[cols];
                file.ReadFloat32(info.Name, 0, whole);
                for (int i = 0; i < destination.Length; i++)
                {
                    destination[i] = whole[vectorRow(i)];
                }
                AddConstant(destination, map.Add);
            };
        }
        return (first, destination) =>
        {
            if (map.SourceRow is { } sourceRow)
            {
                int n = (int)(destination.Length / cols);
                for (int r = 0; r < n; r++)
                {
                    file.ReadFloat32(info.Name, sourceRow(first + r) * cols,
                        destination.Slice((int)(r * cols), (int)cols));
                }
            }
            else
            {
                file.ReadFloat32(info.Name, first * cols, destination);
            }
            AddConstant(destination, map.Add);
        };
    }

    private static void AddConstant(Span<float> values, float add)
    {
        if (add != 0)
        {
            System.Numerics.Tensors.TensorPrimitives.Add(values, add, values);
        }
    }

    private static bool IsIgnored(string arch, string name) => arch switch
    {
        "gpt2" => name.EndsWith(".attn.bias", StringComparison.Ordinal)
            || name.EndsWith(".attn.masked_bias", StringComparison.Ordinal),
        "gptneox" => name.EndsWith(".attention.bias", StringComparison.Ordinal)
            || name.EndsWith(".attention.masked_bias", StringComparison.Ordinal)
            || name.EndsWith(".rotary_emb.inv_freq", StringComparison.Ordinal),
        _ => name.EndsWith(".rotary_emb.inv_freq", StringComparison.Ordinal),
    };

    /// <summary>llama.cpp's name and layout for Hugging Face tensor <paramref name="name"/>, or
    /// null for tensors llama.cpp does not use; anything unknown is refused.</summary>
    private static Mapping? Map(HfModelDirectory model, string arch, Hyperparameters hp, string name)
    {
        if (IsIgnored(arch, name) || model.InputEmbeddingCopies.Contains(name))
        {
            return null;
        }
        if (name == model.InputEmbeddingName)
        {
            return new Mapping("token_embd.weight");
        }
        if (name == model.OutputEmbeddingName)
        {
            return arch == "gemma" ? null : new Mapping("output.weight");
        }
        Mapping? mapped = arch switch
        {
            "llama" or "qwen2" or "gemma" => MapLlamaFamily(arch, hp, name),
            "gpt2" => MapGpt2(name),
            _ => MapNeox(hp, name),
        };
        return mapped ?? throw new ZettException($"{model.Weights.FileOf(name).Path}: tensor '{name}' "
            + $"has no place in llama.cpp's {arch} architecture (refusing to drop it)");
    }

    private static Mapping? MapLlamaFamily(string arch, Hyperparameters hp, string name)
    {
        float add = arch == "gemma" && name.EndsWith("norm.weight", StringComparison.Ordinal) ? 1f : 0f;
        if (name is "model.norm.weight" or "norm.weight")
        {
            return new Mapping("output_norm.weight", Add: add);
        }
        Match m = LlamaLayer.Match(name);
        if (!m.Success)
        {
            return null;
        }
        string block = "blk." + m.Groups[1].Value + ".", part = m.Groups[2].Value, kind = m.Groups[3].Value;
        string? target = part switch
        {
            "input_layernorm" => "attn_norm",
            "self_attn.q_proj" => "attn_q",
            "self_attn.k_proj" => "attn_k",
            "self_attn.v_proj" => "attn_v",
            "self_attn.o_proj" => "attn_output",
            "post_attention_layernorm" => "ffn_norm",
            "mlp.gate_proj" => "ffn_gate",
            "mlp.up_proj" => "ffn_up",
            "mlp.down_proj" => "ffn_down",
            _ => null,
        };
        if (target is null)
        {
            return null;
        }
        Func<long, long>? permute = null;
        if (arch == "llama" && target is "attn_q" or "attn_k")
        {
            // Hugging Face's Llama rotates halves of each head (rotate_half); llama.cpp's
            // llama architecture rotates adjacent pairs, so rows are interleaved per head.
            permute = RopePermutation(hp.HeadDim);
        }
        return new Mapping(block + target + "." + kind, permute, Add: add);
    }

    /// <summary>Output row → source row of llama.cpp's q/k permutation: within each head of
    /// <paramref name="headDim"/> rows, output row 2i+j is source row j·headDim/2 + i.</summary>
    internal static Func<long, long> RopePermutation(int headDim)
    {
        int half = headDim / 2;
        return row =>
        {
            long head = row / headDim;
            long within = row % headDim;
            return head * headDim + (within % 2) * half + within / 2;
        };
    }

    private static Mapping? MapGpt2(string name)
    {
        switch (name)
        {
            case "transformer.wpe.weight" or "wpe.weight":
                return new Mapping("position_embd.weight");
            case "transformer.ln_f.weight" or "ln_f.weight":
                return new Mapping("output_norm.weight");
            case "transformer.ln_f.bias" or "ln_f.bias":
                return new Mapping("output_norm.bias");
        }
        Match m = Gpt2Layer.Match(name);
        if (!m.Success)
        {
            return null;
        }
        string block = "blk." + m.Groups[1].Value + ".", part = m.Groups[2].Value, kind = m.Groups[3].Value;
        (string? target, bool conv1d) = part switch
        {
            "ln_1" => ("attn_norm", false),
            "attn.c_attn" => ("attn_qkv", true),
            "attn.c_proj" => ("attn_output", true),
            "ln_2" => ("ffn_norm", false),
            "mlp.c_fc" => ("ffn_up", true),
            "mlp.c_proj" => ("ffn_down", true),
            _ => ((string?)null, false),
        };
        return target is null ? null
            : new Mapping(block + target + "." + kind, Transpose: conv1d && kind == "weight");
    }

    private static Mapping? MapNeox(Hyperparameters hp, string name)
    {
        switch (name)
        {
            case "gpt_neox.final_layer_norm.weight" or "final_layer_norm.weight":
                return new Mapping("output_norm.weight");
            case "gpt_neox.final_layer_norm.bias" or "final_layer_norm.bias":
                return new Mapping("output_norm.bias");
        }
        Match m = NeoxLayer.Match(name);
        if (!m.Success)
        {
            return null;
        }
        string block = "blk." + m.Groups[1].Value + ".", part = m.Groups[2].Value, kind = m.Groups[3].Value;
        string? target = part switch
        {
            "input_layernorm" => "attn_norm",
            "attention.query_key_value" => "attn_qkv",
            "attention.dense" => "attn_output",
            "post_attention_layernorm" => "ffn_norm",
            "mlp.dense_h_to_4h" => "ffn_up",
            "mlp.dense_4h_to_h" => "ffn_down",
            _ => null,
        };
        if (target is null)
        {
            return null;
        }
        Func<long, long>? regroup = null;
        if (target == "attn_qkv")
        {
            // GPT-NeoX fuses QKV per head ([head][q|k|v][dim]); llama.cpp's gptneox expects all
            // of Q, then K, then V, as its converter writes them.
            int hidden = hp.Hidden, headDim = hp.Hidden / hp.Heads;
            regroup = row =>
            {
                long part3 = row / hidden, rem = row % hidden;
                return (rem / headDim) * 3 * headDim + part3 * headDim + rem % headDim;
            };
        }
        return new Mapping(block + target + "." + kind, regroup);
    }
}
