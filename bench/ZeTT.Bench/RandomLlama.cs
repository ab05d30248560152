using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using ZeTT.Ops;
using ZeTT.Runtime.Formats;

namespace ZeTT.Bench;

/// <summary>The shape of a Llama-family model (values never matter to a throughput
/// benchmark).</summary>
internal sealed record LlamaShape(string Name, string ModelType, int Vocab, int Hidden,
    int Intermediate, int Layers, int Heads, int KvHeads, int MaxPositions, int SlidingWindow)
{
    /// <summary>≈106 M parameters: GPT-2-small widths on a Llama block, Llama's vocabulary.
    /// </summary>
    public static readonly LlamaShape Llama100M =
        new("llama-100m", "llama", 32000, 768, 2048, 8, 12, 12, 2048, 0);

    /// <summary>Llama-2-7B (Llama-1-7B is the same): 6.74 B parameters.</summary>
    public static readonly LlamaShape Llama7B =
        new("llama-7b", "llama", 32000, 4096, 11008, 32, 32, 32, 4096, 0);

    /// <summary>TinyLlama-1.1B: 1.10 B parameters, 4 key heads.</summary>
    public static readonly LlamaShape TinyLlama =
        new("tinyllama-1.1b", "llama", 32000, 2048, 5632, 22, 32, 4, 2048, 0);

    /// <summary>Mistral-7B-v0.1: 7.24 B parameters, 8 key heads, a 4096-token window.</summary>
    public static readonly LlamaShape Mistral7B =
        new("mistral-7b", "mistral", 32000, 4096, 14336, 32, 32, 8, 32768, 4096);

    public static readonly LlamaShape[] All = [Llama100M, Llama7B, TinyLlama, Mistral7B];

    public int HeadDim => Hidden / Heads;

    /// <summary>Every tensor: name and shape, in the order Hugging Face stores them.</summary>
    public IEnumerable<(string Name, long[] Shape)> Tensors()
    {
        long d = Hidden, f = Intermediate, kv = (long)KvHeads * HeadDim;
        yield return ("model.embed_tokens.weight", [Vocab, d]);
        for (int l = 0; l < Layers; l++)
        {
            string p = $"model.layers.{l}.";
            yield return (p + "input_layernorm.weight", [d]);
            yield return (p + "self_attn.q_proj.weight", [d, d]);
            yield return (p + "self_attn.k_proj.weight", [kv, d]);
            yield return (p + "self_attn.v_proj.weight", [kv, d]);
            yield return (p + "self_attn.o_proj.weight", [d, d]);
            yield return (p + "post_attention_layernorm.weight", [d]);
            yield return (p + "mlp.gate_proj.weight", [f, d]);
            yield return (p + "mlp.up_proj.weight", [f, d]);
            yield return (p + "mlp.down_proj.weight", [d, f]);
        }
        yield return ("model.norm.weight", [d]);
        yield return ("lm_head.weight", [Vocab, d]);
    }

    public long Parameters => Tensors().Sum(t => t.Shape.Aggregate(1L, (a, b) => a * b));
}

/// <summary>
/// Writes a Hugging Face directory (config.json, safetensors sharded at 5 GB as
/// <c>save_pretrained</c> does) with random weights of a <see cref="LlamaShape"/>, streaming
/// from one 4 Mi-element block so that memory stays small even at 7 B parameters. Matrices
/// are uniform with standard deviation 0.02 (Hugging Face's initializer_range), norm gains 1:
/// activations then stay in the range a trained model has. Deterministic; the disk is the
/// limit (Llama-7B bf16: ~50 s here).
/// </summary>
internal static class RandomLlama
{
    private const int Chunk = 1 << 22;

    /// <summary>Creates <paramref name="directory"/> (which must not exist) holding the model;
    /// returns its parameter count.</summary>
    public static long Write(string directory, LlamaShape shape, DType dtype, int seed = 1)
    {
        if (Directory.Exists(directory))
        {
            throw new IOException($"{directory} exists already");
        }
        Directory.CreateDirectory(directory);
        var entries = new List<SafetensorsEntry>();
        int index = 0;
        foreach ((string name, long[] dims) in shape.Tensors())
        {
            bool norm = dims.Length == 1;
            int tensorSeed = seed * 100003 + ++index;
            entries.Add(new SafetensorsEntry(name, dtype, dims,
                stream => WriteData(stream, dims.Aggregate(1L, (a, b) => a * b), dtype, norm,
                    tensorSeed)));
        }
        SafetensorsWriter.WriteSharded(directory, entries, 5_000_000_000L);
        var config = new Dictionary<string, object?>
        {
            ["architectures"] = new[]
            {
                shape.ModelType == "mistral" ? "MistralForCausalLM" : "LlamaForCausalLM",
            },
            ["model_type"] = shape.ModelType,
            ["vocab_size"] = shape.Vocab,
            ["hidden_size"] = shape.Hidden,
            ["intermediate_size"] = shape.Intermediate,
            ["num_hidden_layers"] = shape.Layers,
            ["num_attention_heads"] = shape.Heads,
            ["num_key_value_heads"] = shape.KvHeads,
            ["max_position_embeddings"] = shape.MaxPositions,
            ["hidden_act"] = "silu",
            ["rms_norm_eps"] = 1e-5,
            ["rope_theta"] = 10000.0,
            ["tie_word_embeddings"] = false,
            ["bos_token_id"] = 1,
            ["eos_token_id"] = 2,
            ["torch_dtype"] = dtype == DType.BF16 ? "bfloat16" : "float32",
        };
        if (shape.SlidingWindow > 0)
        {
            config["sliding_window"] = shape.SlidingWindow;
        }
        File.WriteAllText(Path.Combine(directory, "config.json"),
            JsonSerializer.Serialize(config, new JsonSerializerOptions { WriteIndented = true }));
        return shape.Parameters;
    }

    private static void WriteData(Stream stream, long count, DType dtype, bool norm, int seed)
    {
        int size = dtype == DType.BF16 ? 2 : 4;
        byte[] block = norm ? Ones(dtype) : Block(dtype);
        // Each tensor starts at its own place in the block, so that no two share their values.
        long at = (long)(uint)seed * 7919 % Chunk;
        for (long left = count; left > 0;)
        {
            int n = (int)Math.Min(left, Chunk - at);
            stream.Write(block, (int)(at * size), n * size);
            left -= n;
            at = 0;
        }
    }

    /// <summary>One block of <see cref="Chunk"/> uniform values with standard deviation 0.02
    /// (xorshift, fixed seed), repeated through every matrix: computing fresh values for 7 B
    /// parameters took longer than writing them on the loaded 2-core machine (13 MB/s
    /// against the disk's 287 MB/s).</summary>
    private static byte[] Block(DType dtype)
    {
        var values = new float[Chunk];
        // std 0.02 uniform: half-width 0.02·√3.
        const float HalfWidth = 0.034641016f;
        uint x = 2463534242;
        for (int k = 0; k < Chunk; k++)
        {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            values[k] = HalfWidth * ((x >> 8) * (2f / (1 << 24)) - 1f);
        }
        return Encode(values, dtype);
    }

    private static byte[] Ones(DType dtype)
    {
        var values = new float[Chunk];
        Array.Fill(values, 1f);
        return Encode(values, dtype);
    }

    private static byte[] Encode(float[] values, DType dtype)
    {
        if (dtype == DType.F32)
        {
            return MemoryMarshal.AsBytes(values.AsSpan()).ToArray();
        }
        if (dtype != DType.BF16)
        {
            throw new ArgumentException($"random llama: {dtype} is not stored here");
        }
        var bytes = new byte[values.Length * 2];
        Span<ushort> half = MemoryMarshal.Cast<byte, ushort>(bytes.AsSpan());
        for (int k = 0; k < values.Length; k++)
        {
            half[k] = BFloat16.FromFloat(values[k]);
        }
        return bytes;
    }

    /// <summary>The shape named <paramref name="name"/> (<see cref="LlamaShape.Name"/>).</summary>
    public static LlamaShape Shape(string name) =>
        LlamaShape.All.FirstOrDefault(s => s.Name == name)
        ?? throw new ArgumentException($"unknown shape '{name}' (known: "
            + string.Join(", ", LlamaShape.All.Select(s => s.Name)) + ")");

    public static string Millions(long parameters) =>
        (parameters / 1e6).ToString("F1", CultureInfo.InvariantCulture) + " M";
}
