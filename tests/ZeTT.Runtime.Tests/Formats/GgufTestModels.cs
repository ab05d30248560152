using System.Text.Json.Nodes;
using ZeTT.Runtime.Formats;

namespace ZeTT.Runtime.Tests.Formats;

/// <summary>Complete tiny causal LMs of each family llama.cpp runs (every tensor its loader
/// requires, real config keys), random weights, the default model's 512-token tokenizer: small
/// enough to write and load in llama.cpp in a second. Hidden 64 and FFN 96 keep rows a
/// multiple of 32 for Q8_0.</summary>
internal static class GgufTestModels
{
    public static readonly string[] Families = ["llama", "mistral", "qwen2", "gemma", "gpt2", "gpt_neox"];

    public const int Vocab = 512, Hidden = 64, Heads = 4, KvHeads = 2, Ffn = 96, Layers = 2;

    public static string DefaultModelDir => Path.Combine(GgufTestData.RepoRoot, "assets", "stories260K");

    /// <summary>Writes a model of <paramref name="family"/> into <paramref name="dir"/> and
    /// returns its tensors by Hugging Face name.</summary>
    public static Dictionary<string, (int[] Shape, float[] Data)> Write(string dir, string family, int seed = 7)
    {
        var rng = new Random(seed);
        var tensors = new Dictionary<string, (int[], float[])>(StringComparer.Ordinal);
        void Add(string name, params int[] shape)
        {
            float[] data = new float[shape.Aggregate(1, (a, b) => a * b)];
            bool norm = name.Contains("norm", StringComparison.Ordinal) || name.Contains("ln_", StringComparison.Ordinal);
            for (int i = 0; i < data.Length; i++)
            {
                data[i] = norm && name.EndsWith("weight", StringComparison.Ordinal)
                    ? 1f + (float)(rng.NextDouble() * 0.2 - 0.1)
                    : (float)(rng.NextDouble() * 0.2 - 0.1);
            }
            tensors[name] = (shape, data);
        }
        int headDim = Hidden / Heads;
        var config = new JsonObject
        {
            ["model_type"] = family,
            ["vocab_size"] = Vocab,
            ["bos_token_id"] = 1,
            ["eos_token_id"] = 2,
        };
        switch (family)
        {
            case "gpt2":
                Add("transformer.wte.weight", Vocab, Hidden);
                Add("transformer.wpe.weight", 128, Hidden);
                for (int l = 0; l < Layers; l++)
                {
                    string p = $"transformer.h.{l}.";
                    Add(p + "ln_1.weight", Hidden);
                    Add(p + "ln_1.bias", Hidden);
                    Add(p + "attn.c_attn.weight", Hidden, 3 * Hidden);
                    Add(p + "attn.c_attn.bias", 3 * Hidden);
                    Add(p + "attn.c_proj.weight", Hidden, Hidden);
                    Add(p + "attn.c_proj.bias", Hidden);
                    Add(p + "ln_2.weight", Hidden);
                    Add(p + "ln_2.bias", Hidden);
                    Add(p + "mlp.c_fc.weight", Hidden, 4 * Hidden);
                    Add(p + "mlp.c_fc.bias", 4 * Hidden);
                    Add(p + "mlp.c_proj.weight", 4 * Hidden, Hidden);
                    Add(p + "mlp.c_proj.bias", Hidden);
                }
                Add("transformer.ln_f.weight", Hidden);
                Add("transformer.ln_f.bias", Hidden);
                config["n_embd"] = Hidden;
                config["n_layer"] = Layers;
                config["n_head"] = Heads;
                config["n_ctx"] = 128;
                config["n_positions"] = 128;
                config["layer_norm_epsilon"] = 1e-5;
                break;
            case "gpt_neox":
                Add("gpt_neox.embed_in.weight", Vocab, Hidden);
                for (int l = 0; l < Layers; l++)
                {
                    string p = $"gpt_neox.layers.{l}.";
                    Add(p + "input_layernorm.weight", Hidden);
                    Add(p + "input_layernorm.bias", Hidden);
                    Add(p + "post_attention_layernorm.weight", Hidden);
                    Add(p + "post_attention_layernorm.bias", Hidden);
                    Add(p + "attention.query_key_value.weight", 3 * Hidden, Hidden);
                    Add(p + "attention.query_key_value.bias", 3 * Hidden);
                    Add(p + "attention.dense.weight", Hidden, Hidden);
                    Add(p + "attention.dense.bias", Hidden);
                    Add(p + "mlp.dense_h_to_4h.weight", Ffn, Hidden);
                    Add(p + "mlp.dense_h_to_4h.bias", Ffn);
                    Add(p + "mlp.dense_4h_to_h.weight", Hidden, Ffn);
                    Add(p + "mlp.dense_4h_to_h.bias", Hidden);
                }
                Add("gpt_neox.final_layer_norm.weight", Hidden);
                Add("gpt_neox.final_layer_norm.bias", Hidden);
                Add("embed_out.weight", Vocab, Hidden);
                config["hidden_size"] = Hidden;
                config["num_attention_heads"] = Heads;
                config["num_hidden_layers"] = Layers;
                config["intermediate_size"] = Ffn;
                config["max_position_embeddings"] = 128;
                config["rotary_pct"] = 0.25;
                config["layer_norm_eps"] = 1e-5;
                config["use_parallel_residual"] = true;
                config["tie_word_embeddings"] = false;
                break;
            default:
                int kv = family == "gemma" ? Heads : KvHeads;
                Add("model.embed_tokens.weight", Vocab, Hidden);
                for (int l = 0; l < Layers; l++)
                {
                    string p = $"model.layers.{l}.";
                    Add(p + "input_layernorm.weight", Hidden);
                    Add(p + "self_attn.q_proj.weight", Heads * headDim, Hidden);
                    Add(p + "self_attn.k_proj.weight", kv * headDim, Hidden);
                    Add(p + "self_attn.v_proj.weight", kv * headDim, Hidden);
                    if (family == "qwen2")
                    {
                        Add(p + "self_attn.q_proj.bias", Heads * headDim);
                        Add(p + "self_attn.k_proj.bias", kv * headDim);
                        Add(p + "self_attn.v_proj.bias", kv * headDim);
                    }
                    Add(p + "self_attn.o_proj.weight", Hidden, Heads * headDim);
                    Add(p + "post_attention_layernorm.weight", Hidden);
                    Add(p + "mlp.gate_proj.weight", Ffn, Hidden);
                    Add(p + "mlp.up_proj.weight", Ffn, Hidden);
                    Add(p + "mlp.down_proj.weight", Hidden, Ffn);
                }
                Add("model.norm.weight", Hidden);
                bool tied = family is "gemma" or "qwen2";
                if (!tied)
                {
                    Add("lm_head.weight", Vocab, Hidden);
                }
                config["hidden_size"] = Hidden;
                config["num_attention_heads"] = Heads;
                config["num_key_value_heads"] = kv;
                config["num_hidden_layers"] = Layers;
                config["intermediate_size"] = Ffn;
                config["max_position_embeddings"] = 128;
                config["rms_norm_eps"] = 1e-6;
                config["rope_theta"] = 10000.0;
                config["tie_word_embeddings"] = tied;
                if (family == "gemma")
                {
                    config["head_dim"] = headDim;
                }
                break;
        }
        Directory.CreateDirectory(dir);
        SafetensorsWriter.Write(Path.Combine(dir, "model.safetensors"),
            [.. tensors.Select(t => SafetensorsEntry.FromFloat32(t.Key, t.Value.Item1, t.Value.Item2))]);
        HfModelWriter.WriteJson(Path.Combine(dir, "config.json"), config);
        foreach (string f in new[] { "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json" })
        {
            File.Copy(Path.Combine(DefaultModelDir, f), Path.Combine(dir, f));
        }
        return tensors;
    }
}
