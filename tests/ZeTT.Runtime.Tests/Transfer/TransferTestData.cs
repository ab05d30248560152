using System.Text.Json.Nodes;
using ZeTT.Runtime.Formats;
using ZeTT.Runtime.Tensors;
using ZeTT.Runtime.Tests.Formats;
using ZeTT.Runtime.Tokenizers;

namespace ZeTT.Runtime.Tests.Transfer;

/// <summary>Small model, hypernetwork and tokenizer directories for transfer tests: a byte-level
/// BPE "model" tokenizer (256 byte symbols, 5 merges, specials &lt;s&gt; &lt;/s&gt; &lt;pad&gt;
/// at 261..263) that is also the hypernetwork's tokenizer, and a byte-level BPE target with
/// other merges and its own special token.</summary>
internal static class TransferTestData
{
    public const int Vocab = 264, Hidden = TinyHypernet.N;

    public static readonly (string, string)[] ModelMerges =
        [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("a", "n"), ("Ġ", "an")];

    public static readonly (string, string)[] TargetMerges =
        [("Ġ", "w"), ("o", "r"), ("Ġw", "or"), ("l", "d"), ("Ġwor", "ld"), ("Ġ", "t"), ("h", "e"),
         ("Ġt", "he")];

    public static readonly string[] ModelSpecials = ["<s>", "</s>", "<pad>"];

    /// <summary>Writes a byte-level BPE tokenizer.json (+ tokenizer_config.json when given).</summary>
    public static void WriteBpe(string dir, (string, string)[] merges, string[] specials,
        JsonObject? tokenizerConfig = null)
    {
        Directory.CreateDirectory(dir);
        var vocab = new JsonObject();
        int id = 0;
        foreach (char c in ByteLevelAlphabet.Chars)
        {
            vocab[c.ToString()] = id++;
        }
        foreach ((string a, string b) in merges)
        {
            if (!vocab.ContainsKey(a + b))
            {
                vocab[a + b] = id++;
            }
        }
        var added = new JsonArray();
        foreach (string s in specials)
        {
            added.Add((JsonNode)new JsonObject
            {
                ["id"] = id,
                ["content"] = s,
                ["single_word"] = false,
                ["lstrip"] = false,
                ["rstrip"] = false,
                ["normalized"] = false,
                ["special"] = true,
            });
            vocab[s] = id++;
        }
        var root = new JsonObject
        {
            ["version"] = "1.0",
            ["truncation"] = null,
            ["padding"] = null,
            ["added_tokens"] = added,
            ["normalizer"] = null,
            ["pre_tokenizer"] = new JsonObject
            {
                ["type"] = "ByteLevel",
                ["add_prefix_space"] = false,
                ["trim_offsets"] = true,
                ["use_regex"] = true,
            },
            ["post_processor"] = null,
            ["decoder"] = new JsonObject
            {
                ["type"] = "ByteLevel",
                ["add_prefix_space"] = true,
                ["trim_offsets"] = true,
                ["use_regex"] = true,
            },
            ["model"] = new JsonObject
            {
                ["type"] = "BPE",
                ["dropout"] = null,
                ["unk_token"] = null,
                ["continuing_subword_prefix"] = null,
                ["end_of_word_suffix"] = null,
                ["fuse_unk"] = false,
                ["byte_fallback"] = false,
                ["vocab"] = vocab,
                ["merges"] = new JsonArray([.. merges.Select(m => (JsonNode)(m.Item1 + " " + m.Item2))]),
            },
        };
        HfModelWriter.WriteJson(Path.Combine(dir, "tokenizer.json"), root);
        if (tokenizerConfig is not null)
        {
            HfModelWriter.WriteJson(Path.Combine(dir, "tokenizer_config.json"), tokenizerConfig);
        }
    }

    public static JsonObject ModelTokenizerConfig() => new()
    {
        ["tokenizer_class"] = "LlamaTokenizerFast",
        ["bos_token"] = "<s>",
        ["eos_token"] = "</s>",
        ["pad_token"] = "<pad>",
        ["add_bos_token"] = true,
        ["legacy"] = false,
        ["chat_template"] = "{% for m in messages %}{{ m['content'] }}{% endfor %}",
        ["model_max_length"] = 2048,
    };

    /// <summary>A model of <paramref name="family"/> with the model tokenizer and its special
    /// ids in config.json and generation_config.json.</summary>
    public static TinyModel WriteModel(string dir, string family, long maxShardBytes = long.MaxValue)
    {
        TinyModel m = TinyModels.Write(dir, family, Vocab, Hidden, maxShardBytes: maxShardBytes);
        WriteBpe(dir, ModelMerges, ModelSpecials, ModelTokenizerConfig());
        JsonObject config = HfModelDirectory.ReadJsonObject(Path.Combine(dir, "config.json"));
        config["bos_token_id"] = 261;
        config["eos_token_id"] = 262;
        config["pad_token_id"] = 263;
        HfModelWriter.WriteJson(Path.Combine(dir, "config.json"), config);
        File.WriteAllText(Path.Combine(dir, "generation_config.json"),
            "{\"bos_token_id\": 261, \"eos_token_id\": [262], \"do_sample\": false}\n");
        File.WriteAllText(Path.Combine(dir, "vocab.json"), "{}");
        return m;
    }

    /// <summary>The target tokenizer directory.</summary>
    public static string WriteTarget(string dir)
    {
        WriteBpe(dir, TargetMerges, ["<|endoftext|>"]);
        return dir;
    }

    /// <summary>A random hypernetwork for the model tokenizer (original_vocab_size 264), tied or
    /// untied, with three languages.</summary>
    public static string WriteHypernet(string dir, bool untied, int seed = 3)
    {
        Directory.CreateDirectory(dir);
        string config = TinyHypernet.Config
            .Replace("\"original_vocab_size\": 20", $"\"original_vocab_size\": {Vocab}", StringComparison.Ordinal)
            .Replace("\"separate_out_embeddings\": true", $"\"separate_out_embeddings\": {(untied ? "true" : "false")}",
                StringComparison.Ordinal);
        File.WriteAllText(Path.Combine(dir, "config.json"), config);
        Dictionary<string, HostTensor> tensors = TinyHypernet.RandomPyTorch(seed);
        if (!untied)
        {
            var rng = new Random(seed + 100);
            foreach ((string name, int[] shape) in new (string, int[])[]
            {
                ("fallback_embeddings.weight", [TinyHypernet.Extra, Hidden]),
                ("input_projection.0.weight", [TinyHypernet.H, Hidden]),
                ("in_scaler.w", [1, Hidden]), ("in_scaler.b", [1, Hidden]),
            })
            {
                float[] data = new float[shape[0] * shape[1]];
                for (int i = 0; i < data.Length; i++)
                {
                    data[i] = (float)(rng.NextDouble() * 2 - 1);
                }
                tensors[name] = new HostTensor(name, shape, data);
            }
            foreach (string k in tensors.Keys.Where(k => k.StartsWith("output_projection_out", StringComparison.Ordinal)
                || k.StartsWith("out_scaler", StringComparison.Ordinal)).ToList())
            {
                tensors.Remove(k);
            }
        }
        SafetensorsWriter.Write(Path.Combine(dir, "model.safetensors"),
            tensors.Values.Select(t => SafetensorsEntry.FromTensor(t)).ToList());
        WriteBpe(dir, ModelMerges, ModelSpecials, ModelTokenizerConfig());
        return dir;
    }

    public static bool IsUntied(string family) => family is "llama" or "mistral" or "gpt_neox";
}
