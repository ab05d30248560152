using System.Text.Json.Nodes;
using ZeTT.Ops;
using ZeTT.Runtime.Formats;
using ZeTT.Runtime.Tensors;

namespace ZeTT.Runtime.Tests.Formats;

/// <summary>A tiny model directory with the tensor layout of one Hugging Face family, written
/// by our own writer: names, shapes and config keys as the real checkpoints have them.</summary>
internal sealed record TinyModel(string Directory, string Family, int Vocab, int Hidden,
    Dictionary<string, float[]> Tensors, string Input, string? Output, string? Bias);

internal static class TinyModels
{
    public static readonly string[] Families =
        ["llama", "mistral", "qwen2", "gemma", "gpt2", "gpt_neox", "roberta", "xlm-roberta"];

    /// <summary>Writes a model of <paramref name="family"/>; <paramref name="baseModel"/> drops
    /// the task-head prefix (AutoModel layout); <paramref name="maxShardBytes"/> shards it.</summary>
    public static TinyModel Write(string dir, string family, int vocab = 11, int hidden = 8,
        DType dtype = DType.F32, long maxShardBytes = long.MaxValue, int seed = 1,
        bool baseModel = false)
    {
        var rng = new Random(seed);
        var shapes = new List<(string Name, int[] Shape)>();
        var config = new JsonObject { ["model_type"] = family, ["vocab_size"] = vocab };
        string input, layer;
        string? output = null, bias = null;
        switch (family)
        {
            case "gpt2":
                string t = baseModel ? "" : "transformer.";
                input = t + "wte.weight";
                layer = t + "h.0.";
                shapes.Add((t + "wpe.weight", [16, hidden]));
                shapes.Add((layer + "attn.c_attn.weight", [hidden, 3 * hidden]));
                shapes.Add((layer + "attn.c_attn.bias", [3 * hidden]));
                shapes.Add((t + "ln_f.weight", [hidden]));
                config["n_embd"] = hidden;
                config["bos_token_id"] = 0;
                config["eos_token_id"] = 0;
                break;
            case "gpt_neox":
                string g = baseModel ? "" : "gpt_neox.";
                input = g + "embed_in.weight";
                shapes.Add((g + "layers.0.attention.query_key_value.weight", [3 * hidden, hidden]));
                shapes.Add((g + "final_layer_norm.weight", [hidden]));
                output = baseModel ? null : "embed_out.weight";
                config["hidden_size"] = hidden;
                config["tie_word_embeddings"] = false;
                break;
            case "roberta" or "xlm-roberta":
                string r = baseModel ? "" : "roberta.";
                input = r + "embeddings.word_embeddings.weight";
                shapes.Add((r + "embeddings.position_embeddings.weight", [16, hidden]));
                shapes.Add((r + "encoder.layer.0.attention.self.query.weight", [hidden, hidden]));
                shapes.Add((r + "encoder.layer.0.attention.self.query.bias", [hidden]));
                if (!baseModel)
                {
                    shapes.Add(("lm_head.dense.weight", [hidden, hidden]));
                    shapes.Add(("lm_head.layer_norm.weight", [hidden]));
                    bias = "lm_head.bias";
                }
                config["hidden_size"] = hidden;
                config["pad_token_id"] = 1;
                config["bos_token_id"] = 0;
                config["eos_token_id"] = 2;
                break;
            default:
                string m = baseModel ? "" : "model.";
                input = m + "embed_tokens.weight";
                shapes.Add((m + "layers.0.self_attn.q_proj.weight", [hidden, hidden]));
                if (family == "qwen2")
                {
                    shapes.Add((m + "layers.0.self_attn.q_proj.bias", [hidden]));
                }
                shapes.Add((m + "layers.0.mlp.up_proj.weight", [2 * hidden, hidden]));
                shapes.Add((m + "norm.weight", [hidden]));
                config["hidden_size"] = hidden;
                config["bos_token_id"] = 1;
                config["eos_token_id"] = 2;
                if (family == "qwen2")
                {
                    config["tie_word_embeddings"] = true;
                }
                else if (family != "gemma" && !baseModel)
                {
                    output = "lm_head.weight";
                }
                break;
        }
        shapes.Insert(0, (input, [vocab, hidden]));
        if (output is not null)
        {
            shapes.Add((output, [vocab, hidden]));
        }
        if (bias is not null)
        {
            shapes.Add((bias, [vocab]));
        }
        var tensors = new Dictionary<string, float[]>(StringComparer.Ordinal);
        var entries = new List<SafetensorsEntry>();
        foreach ((string name, int[] shape) in shapes)
        {
            float[] data = new float[shape.Aggregate(1, (a, b) => a * b)];
            for (int i = 0; i < data.Length; i++)
            {
                data[i] = dtype switch
                {
                    DType.BF16 => BFloat16.Round((float)(rng.NextDouble() * 2 - 1)),
                    DType.F16 => (float)(Half)(rng.NextDouble() * 2 - 1),
                    _ => (float)(rng.NextDouble() * 2 - 1),
                };
            }
            tensors[name] = data;
            entries.Add(SafetensorsEntry.FromFloat32(name, shape, data, dtype));
        }
        System.IO.Directory.CreateDirectory(dir);
        SafetensorsWriter.WriteSharded(dir, entries, maxShardBytes);
        HfModelWriter.WriteJson(Path.Combine(dir, "config.json"), config);
        File.WriteAllText(Path.Combine(dir, "generation_config.json"), "{\"do_sample\": false}\n");
        File.WriteAllText(Path.Combine(dir, "tokenizer.json"), "{\"model\": {\"type\": \"BPE\"}}\n");
        File.WriteAllText(Path.Combine(dir, "pytorch_model.bin"), "stale weights");
        return new TinyModel(dir, family, vocab, hidden, tensors, input, output, bias);
    }

    public static HostTensor Random(string name, int rows, int cols, int seed)
    {
        var rng = new Random(seed);
        int[] shape = cols == 0 ? [rows] : [rows, cols];
        float[] data = new float[rows * Math.Max(cols, 1)];
        for (int i = 0; i < data.Length; i++)
        {
            data[i] = BFloat16.Round((float)(rng.NextDouble() - 0.5));
        }
        return new HostTensor(name, shape, data);
    }
}
