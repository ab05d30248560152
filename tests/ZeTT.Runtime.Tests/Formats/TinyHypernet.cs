using ZeTT.Ops;
using ZeTT.Runtime.Formats;
using ZeTT.Runtime.Tensors;

namespace ZeTT.Runtime.Tests.Formats;

/// <summary>A small random hypernetwork with every parameter of the PyTorch port (ZETT.md §3):
/// untied (source width 2·n_embd), rescaling, bias head, three languages, four extra tokens.</summary>
internal static class TinyHypernet
{
    public const int N = 6, H = 8, I = 16, Layers = 2, Extra = 4, Langs = 3, D = 2 * N;

    public const string Config = """
        {"model_type": "zett_hypernetwork", "n_embd": 6, "hn_hidden_size": 8,
         "hn_intermediate_size": 16, "hn_n_layers": 2, "hn_num_attention_heads": 2,
         "hn_surface_maxlen": 3, "hn_rescale_embeddings": true, "hn_predict_bias": true,
         "hn_single_head": false, "hn_embed_lang_id": true, "n_langs": 3,
         "langs": ["en", "de", "fr"], "hn_n_extra_tokens": 4, "original_vocab_size": 20,
         "pad_token_id": 1, "separate_out_embeddings": true,
         "hn_concat_last_hidden_state": false, "hn_embed_using_source_embeddings": true}
        """;

    /// <summary>Every parameter of the PyTorch port for <see cref="Config"/> (ZETT.md §3).</summary>
    public static List<(string Name, int[] Shape)> PyTorchLayout()
    {
        var p = new List<(string, int[])>
        {
            ("model.embeddings.position_embeddings.weight", [6, H]),
            ("model.embeddings.token_type_embeddings.weight", [1, H]),
            ("model.embeddings.LayerNorm.weight", [H]),
            ("model.embeddings.LayerNorm.bias", [H]),
        };
        void Lin(string n, int i, int o)
        {
            p.Add((n + ".weight", [o, i]));
            p.Add((n + ".bias", [o]));
        }
        void Ln(string n)
        {
            p.Add((n + ".weight", [H]));
            p.Add((n + ".bias", [H]));
        }
        void Block(string n)
        {
            Lin(n + ".dense1", H, I);
            Lin(n + ".dense2", I, H);
            Ln(n + ".ln");
        }
        for (int l = 0; l < Layers; l++)
        {
            string s = $"model.encoder.layer.{l}.";
            Lin(s + "attention.self.query", H, H);
            Lin(s + "attention.self.key", H, H);
            Lin(s + "attention.self.value", H, H);
            Lin(s + "attention.output.dense", H, H);
            Ln(s + "attention.output.LayerNorm");
            Lin(s + "intermediate.dense", H, I);
            Lin(s + "output.dense", I, H);
            Ln(s + "output.LayerNorm");
        }
        p.Add(("fallback_embeddings.weight", [Extra, D]));
        p.Add(("lang_embeddings.weight", [Langs, H]));
        Lin("input_projection.0", D, H);
        Block("input_projection.1");
        Block("output_projection.0");
        Lin("output_projection.1", H, N);
        Block("output_projection_out.0");
        Lin("output_projection_out.1", H, N);
        foreach ((string s, int w) in new[] { ("in_scaler", D), ("scaler", N), ("out_scaler", N) })
        {
            p.Add((s + ".w", [1, w]));
            p.Add((s + ".b", [1, w]));
        }
        Lin("bias_projection", H, 1);
        return p;
    }

    public static Dictionary<string, HostTensor> RandomPyTorch(int seed)
    {
        var rng = new Random(seed);
        var result = new Dictionary<string, HostTensor>(StringComparer.Ordinal);
        foreach ((string name, int[] shape) in PyTorchLayout())
        {
            // bf16-representable values, so a bfloat16 leaf in the Flax file converts exactly.
            float[] data = new float[shape.Aggregate(1, (a, b) => a * b)];
            for (int i = 0; i < data.Length; i++)
            {
                data[i] = BFloat16.Round((float)(rng.NextDouble() * 2 - 1));
            }
            result[name] = new HostTensor(name, shape, data);
        }
        return result;
    }

    /// <summary>Writes config.json and model.safetensors of a random hypernetwork.</summary>
    public static void Write(string dir, int seed = 1)
    {
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "config.json"), Config);
        SafetensorsWriter.Write(Path.Combine(dir, "model.safetensors"),
            RandomPyTorch(seed).Values.Select(t => SafetensorsEntry.FromTensor(t)).ToList());
    }
}
