using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using ZeTT.Ops;
using ZeTT.Runtime.Hypernetwork;
using ZeTT.Runtime.IO;
using ZeTT.Runtime.Tensors;
using ZeTT.Runtime.Tokenizers;

namespace ZeTT.Runtime.Formats;

/// <summary>
/// Describes what a path is, for <c>zett inspect</c>: a <c>.safetensors</c> file or shard index,
/// a Hugging Face model directory, a hypernetwork directory, a Flax <c>.msgpack</c> or a
/// <c>tokenizer.json</c>. Bad input is a <see cref="ZettException"/> whose message starts with
/// the offending file.
/// </summary>
public static class FormatInspector
{
    /// <summary>Writes a description of <paramref name="path"/> to <paramref name="output"/>;
    /// <paramref name="listTensors"/> lists every tensor of a model directory too.</summary>
    public static void Describe(string path, TextWriter output, bool listTensors = false)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(output);
        if (Directory.Exists(path))
        {
            string config = Path.Combine(path, "config.json");
            string tokenizer = Path.Combine(path, "tokenizer.json");
            if (!Path.Exists(config) && File.Exists(tokenizer))
            {
                DescribeTokenizer(tokenizer, output);
            }
            else if (File.Exists(config) && IsHypernetConfig(config))
            {
                DescribeHypernet(path, output);
            }
            else
            {
                DescribeModel(path, output, listTensors);
            }
            return;
        }
        if (!File.Exists(path))
        {
            throw new ZettException($"{path}: no such file or directory");
        }
        if (path.EndsWith(".safetensors", StringComparison.Ordinal)
            || path.EndsWith(".index.json", StringComparison.Ordinal))
        {
            using SafetensorsCollection c = SafetensorsCollection.Open(path);
            output.WriteLine($"{path}: safetensors, {c.Files.Count} file(s), {c.Tensors.Count} tensors, "
                + $"{Bytes(c.TotalBytes)}");
            foreach (KeyValuePair<string, string> kv in c.Files[0].Metadata.OrderBy(k => k.Key, StringComparer.Ordinal))
            {
                output.WriteLine($"  metadata {kv.Key} = {kv.Value}");
            }
            ListTensors(c, output);
            return;
        }
        if (path.EndsWith(".gguf", StringComparison.Ordinal))
        {
            DescribeGguf(path, output);
            return;
        }
        if (path.EndsWith(".msgpack", StringComparison.Ordinal))
        {
            Dictionary<string, HostTensor> tensors = FlaxMsgpack.ReadTensors(path);
            output.WriteLine($"{path}: Flax msgpack, {tensors.Count} float arrays, "
                + $"{tensors.Values.Sum(t => (long)t.Data.Length)} parameters");
            foreach (HostTensor t in tensors.Values.OrderBy(t => t.Name, StringComparer.Ordinal))
            {
                output.WriteLine($"  {t.Name} {HostTensor.ShapeToString(t.Shape)}");
            }
            return;
        }
        if (path.EndsWith(".json", StringComparison.Ordinal))
        {
            DescribeTokenizer(path, output);
            return;
        }
        throw new ZettException($"{path}: not a .safetensors, .index.json, .gguf, .msgpack or tokenizer.json "
            + "file, nor a model or hypernetwork directory");
    }

    private static void DescribeGguf(string path, TextWriter o)
    {
        GgufFile g = GgufFile.Open(path);
        o.WriteLine($"{path}: GGUF v{g.Version}, {g.Metadata.Count} metadata keys, {g.Tensors.Count} "
            + $"tensors, {Bytes(g.FileLength)}");
        foreach (KeyValuePair<string, GgufValue> kv in g.Metadata)
        {
            o.WriteLine($"  {kv.Key} = {kv.Value}");
        }
        foreach (GgufTensorInfo t in g.Tensors)
        {
            string type = GgmlTypes.IsKnown(t.Type) ? ((GgmlType)t.Type).ToString()
                : $"type {t.Type}";
            o.WriteLine($"  {t.Name} {type} {HostTensor.ShapeToString(t.Shape)}");
        }
    }

    private static bool IsHypernetConfig(string config) =>
        HfModelDirectory.ReadJsonObject(config)["model_type"]?.GetValueKind() == JsonValueKind.String
        && (string?)HfModelDirectory.ReadJsonObject(config)["model_type"] == "zett_hypernetwork";

    private static void DescribeModel(string path, TextWriter o, bool listTensors)
    {
        using HfModelDirectory m = HfModelDirectory.Open(path);
        SafetensorsCollection w = m.Weights;
        o.WriteLine($"{path}: Hugging Face model, model_type {m.ModelType}"
            + (m.IsBaseModel ? " (base model, no LM head)" : ""));
        o.WriteLine($"  vocab size        {m.VocabSize}");
        o.WriteLine($"  hidden size       {m.HiddenSize}");
        o.WriteLine($"  tied embeddings   {(m.TieWordEmbeddings ? "yes" : "no")}");
        o.WriteLine($"  input embedding   {Tensor(w, m.InputEmbeddingName)}");
        if (m.OutputEmbeddingName is not null)
        {
            o.WriteLine($"  output embedding  {Tensor(w, m.OutputEmbeddingName)}");
        }
        if (m.OutputBiasName is not null)
        {
            o.WriteLine($"  output bias       {Tensor(w, m.OutputBiasName)}");
        }
        o.WriteLine($"  special ids       bos {Id(m.BosTokenId)}, eos {Id(m.EosTokenId)}, pad {Id(m.PadTokenId)}");
        o.WriteLine($"  weights           {w.Tensors.Count} tensors, {Bytes(w.TotalBytes)} in "
            + (w.IsSharded ? $"{w.Files.Count} shards" : Path.GetFileName(w.Path)));
        string tokenizer = Path.Combine(path, "tokenizer.json");
        if (File.Exists(tokenizer))
        {
            o.Write("  tokenizer         ");
            DescribeTokenizer(tokenizer, o, brief: true);
        }
        if (listTensors)
        {
            ListTensors(w, o);
        }
    }

    private static void DescribeHypernet(string path, TextWriter o)
    {
        HypernetCheckpoint h = HypernetCheckpoint.Load(path);
        HypernetConfig c = h.Config;
        long parameters = h.Weights.Tensors.Values.Sum(t => (long)t.Data.Length);
        o.WriteLine($"{path}: ZeTT hypernetwork ({Path.GetFileName(h.WeightsPath)}, {parameters} parameters)");
        o.WriteLine($"  n_embd {c.NEmbd}, hidden {c.HiddenSize}, intermediate {c.IntermediateSize}, "
            + $"layers {c.NumLayers}, heads {c.NumAttentionHeads}, surface maxlen {c.SurfaceMaxLen}");
        o.WriteLine($"  source width {c.SourceWidth} ({(c.SeparateOutEmbeddings ? "untied: in+out" : "tied")}), "
            + $"original vocab {c.OriginalVocabSize}, extra tokens {c.NumExtraTokens}, pad id {c.PadTokenId}");
        o.WriteLine($"  rescale {YesNo(c.RescaleEmbeddings)}, predict bias {YesNo(c.PredictBias)}, "
            + $"single head {YesNo(c.SingleHead)}, concat last hidden state {YesNo(c.ConcatLastHiddenState)}");
        o.WriteLine(c.EmbedLangId
            ? $"  languages ({c.NumLangs}): {(c.Langs.Count > 0 ? string.Join(", ", c.Langs) : "unnamed")}"
            : "  languages: none (monolingual)");
        o.WriteLine($"  hn tokenizer: {(h.TokenizerJsonPath is null ? "missing" : "tokenizer.json")}");
    }

    private static void DescribeTokenizer(string path, TextWriter o, bool brief = false)
    {
        JsonObject root;
        try
        {
            byte[] bytes = InputFile.ReadAllBytes(path, InputFile.TokenizerJsonLimit, "tokenizer.json");
            JsonInput.Validate(bytes, path, JsonInput.TokenizerDepth);
            root = JsonNode.Parse(bytes,
                documentOptions: new JsonDocumentOptions { MaxDepth = JsonInput.TokenizerDepth }) as JsonObject
                ?? throw new ZettException($"{path}: not a tokenizer.json (not a JSON object)");
        }
        catch (JsonException e)
        {
            throw new ZettException($"{path}: not valid JSON: {e.Message}");
        }
        if (root["model"] is not JsonObject model)
        {
            throw new ZettException($"{path}: not a tokenizer.json (no \"model\" object)");
        }
        int vocab = model["vocab"] switch
        {
            JsonObject obj => obj.Count,
            JsonArray arr => arr.Count,
            _ => 0,
        };
        JsonArray added = root["added_tokens"] as JsonArray ?? [];
        int special = added.Count(t => t?["special"] is JsonValue sv && sv.TryGetValue(out bool s) && s);
        int outside = added.Count(t => t?["id"] is JsonValue iv && iv.TryGetValue(out int id) && id >= vocab);
        string line = $"{TokenizerModel.TypeOf(model)}, vocab size {vocab}, {added.Count} added "
            + $"tokens ({special} special, {outside} beyond the model's vocabulary)";
        o.WriteLine(brief ? line : $"{path}: tokenizer.json, {line}");
    }

    private static void ListTensors(SafetensorsCollection c, TextWriter o)
    {
        foreach (SafetensorsTensorInfo t in c.Tensors)
        {
            o.WriteLine($"  {t.Name} {DTypes.ToSafetensorsName(t.DType)} {HostTensor.ShapeToString(t.Shape)} "
                + Bytes(t.ByteLength));
        }
    }

    private static string Tensor(SafetensorsCollection w, string name)
    {
        SafetensorsTensorInfo t = w.GetInfo(name);
        return $"{name} {DTypes.ToSafetensorsName(t.DType)} {HostTensor.ShapeToString(t.Shape)}";
    }

    private static string Id(int? id) => id?.ToString(CultureInfo.InvariantCulture) ?? "-";

    private static string YesNo(bool b) => b ? "yes" : "no";

    private static string Bytes(long n) => n switch
    {
        >= 1L << 30 => $"{n / (double)(1L << 30):0.00} GiB",
        >= 1L << 20 => $"{n / (double)(1L << 20):0.00} MiB",
        >= 1L << 10 => $"{n / 1024.0:0.0} KiB",
        _ => $"{n} B",
    };
}
