using ZeTT.Runtime.Formats;

namespace ZeTT.Runtime.Tests.Formats;

/// <summary>Hugging Face directories written as GGUF: llama.cpp's keys and tensor names, the
/// layouts its converter writes (q/k permutation, Conv1D transpose, NeoX QKV regrouping, Gemma's
/// 1 + w norms), the requested types with llama.cpp's fallbacks, and refusals.</summary>
public sealed class GgufExporterTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("zett-gguf-x-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static float[] Rows(float[] data, int cols, Func<long, long> sourceRow, int rows)
    {
        float[] result = new float[rows * cols];
        for (int r = 0; r < rows; r++)
        {
            Array.Copy(data, sourceRow(r) * cols, result, r * cols, cols);
        }
        return result;
    }

    [Fact]
    public void The_default_model_is_written_with_llama_cpp_keys_and_permuted_q_k()
    {
        string path = Path.Combine(_dir, "s.gguf");
        GgufExportResult result = GgufExporter.Export(GgufTestModels.DefaultModelDir, path, GgmlType.F32);
        Assert.Equal("llama", result.Architecture);
        Assert.False(result.PrependsSpace);
        GgufFile g = GgufFile.Open(path);
        Assert.Equal("llama", g.Require("general.architecture").AsString());
        Assert.Equal(0L, g.Require("general.file_type").AsInt64());
        Assert.Equal(64L, g.Require("llama.embedding_length").AsInt64());
        Assert.Equal(5L, g.Require("llama.block_count").AsInt64());
        Assert.Equal(172L, g.Require("llama.feed_forward_length").AsInt64());
        Assert.Equal(8L, g.Require("llama.attention.head_count").AsInt64());
        Assert.Equal(4L, g.Require("llama.attention.head_count_kv").AsInt64());
        Assert.Equal(8L, g.Require("llama.rope.dimension_count").AsInt64());
        Assert.Equal(512L, g.Require("llama.context_length").AsInt64());
        Assert.Equal(1e-5f, g.Require("llama.attention.layer_norm_rms_epsilon").Value);
        Assert.Equal(512, g.Require("tokenizer.ggml.tokens").Count);
        // Tied embeddings: no output tensor; llama.cpp uses token_embd for the head.
        Assert.DoesNotContain(g.Tensors, t => t.Name == "output.weight");
        Assert.Equal(2 + 5 * 9, g.Tensors.Count);

        using HfModelDirectory model = HfModelDirectory.Open(GgufTestModels.DefaultModelDir);
        Assert.Equal(model.ReadInputEmbeddings().Data, g.ReadFloat32("token_embd.weight"));
        float[] q = model.Weights.ReadFloat32("model.layers.3.self_attn.q_proj.weight").Data;
        float[] k = model.Weights.ReadFloat32("model.layers.3.self_attn.k_proj.weight").Data;
        Func<long, long> perm = GgufExporter.RopePermutation(8);
        Assert.Equal(Rows(q, 64, perm, 64), g.ReadFloat32("blk.3.attn_q.weight"));
        Assert.Equal(Rows(k, 64, perm, 32), g.ReadFloat32("blk.3.attn_k.weight"));
        Assert.Equal(model.Weights.ReadFloat32("model.layers.3.self_attn.v_proj.weight").Data,
            g.ReadFloat32("blk.3.attn_v.weight"));
        // Row 1 of a head comes from row headDim/2 (the second half's first element).
        Assert.Equal(new long[] { 0, 4, 1, 5, 2, 6, 3, 7, 8, 12 }, Enumerable.Range(0, 10).Select(r => perm(r)));
    }

    [Theory]
    [InlineData("llama", "llama")]
    [InlineData("mistral", "llama")]
    [InlineData("qwen2", "qwen2")]
    [InlineData("gemma", "gemma")]
    [InlineData("gpt2", "gpt2")]
    [InlineData("gpt_neox", "gptneox")]
    public void Each_family_gets_llama_cpp_names_and_layouts(string family, string arch)
    {
        string model = Path.Combine(_dir, family);
        Dictionary<string, (int[] Shape, float[] Data)> hf = GgufTestModels.Write(model, family);
        string path = Path.Combine(_dir, family + ".gguf");
        GgufExportResult result = GgufExporter.Export(model, path, GgmlType.F32);
        Assert.Equal(arch, result.Architecture);
        GgufFile g = GgufFile.Open(path);
        Assert.Equal(arch, g.Require("general.architecture").AsString());
        Assert.Equal((long)GgufTestModels.Hidden, g.Require($"{arch}.embedding_length").AsInt64());
        Assert.Equal((long)GgufTestModels.Layers, g.Require($"{arch}.block_count").AsInt64());
        var names = g.Tensors.Select(t => t.Name).ToHashSet();
        Assert.Contains("token_embd.weight", names);
        Assert.Contains("output_norm.weight", names);
        Assert.Contains("blk.1.ffn_down.weight", names);
        Assert.All(names, n => Assert.Matches(@"^(token_embd|position_embd|output_norm|output|blk\.\d+\.\w+)\.(weight|bias)$", n));
        int h = GgufTestModels.Hidden;
        switch (family)
        {
            case "gpt2":
                // Conv1D [in, out] transposed to [out, in]; the tied head stored as a copy.
                (int[] shape, float[] w) = hf["transformer.h.0.attn.c_attn.weight"];
                float[] t = g.ReadFloat32("blk.0.attn_qkv.weight");
                Assert.Equal(new long[] { 3 * h, h }, g.Tensors.Single(x => x.Name == "blk.0.attn_qkv.weight").Shape);
                Assert.Equal(w[5 * shape[1] + 7], t[7 * h + 5]);
                Assert.Equal(g.ReadFloat32("token_embd.weight"), g.ReadFloat32("output.weight"));
                Assert.Contains("position_embd.weight", names);
                break;
            case "gpt_neox":
                // Per-head [q|k|v] regrouped to all Q, all K, all V: K of head 1 is source rows
                // 1·3·16 + 16 … in the file's rows h + 16 ….
                float[] fused = hf["gpt_neox.layers.0.attention.query_key_value.weight"].Data;
                float[] qkv = g.ReadFloat32("blk.0.attn_qkv.weight");
                int hd = h / GgufTestModels.Heads;
                Assert.Equal(fused.AsSpan((3 * hd + hd) * h, h).ToArray(), qkv.AsSpan((h + hd) * h, h).ToArray());
                float[] bias = hf["gpt_neox.layers.0.attention.query_key_value.bias"].Data;
                Assert.Equal(bias[3 * hd + 2 * hd + 3], g.ReadFloat32("blk.0.attn_qkv.bias")[2 * h + hd + 3]);
                Assert.Equal(hf["embed_out.weight"].Data, g.ReadFloat32("output.weight"));
                Assert.Equal(4L, g.Require("gptneox.rope.dimension_count").AsInt64());
                break;
            case "gemma":
                // Gemma's RMSNorm scales by 1 + w; llama.cpp's gemma stores 1 + w.
                float[] norm = hf["model.layers.1.post_attention_layernorm.weight"].Data;
                Assert.Equal(norm.Select(x => x + 1f), g.ReadFloat32("blk.1.ffn_norm.weight"));
                Assert.DoesNotContain("output.weight", names);
                Assert.Equal(16L, g.Require("gemma.attention.key_length").AsInt64());
                break;
            case "qwen2":
                Assert.Equal(hf["model.layers.0.self_attn.k_proj.weight"].Data, g.ReadFloat32("blk.0.attn_k.weight"));
                Assert.Equal(hf["model.layers.0.self_attn.k_proj.bias"].Data, g.ReadFloat32("blk.0.attn_k.bias"));
                break;
            default:
                Assert.Equal(hf["lm_head.weight"].Data, g.ReadFloat32("output.weight"));
                Assert.NotEqual(hf["model.layers.0.self_attn.q_proj.weight"].Data,
                    g.ReadFloat32("blk.0.attn_q.weight"));
                break;
        }
    }

    [Theory]
    [InlineData(GgmlType.F16, 1u)]
    [InlineData(GgmlType.BF16, 32u)]
    [InlineData(GgmlType.Q8_0, 7u)]
    public void Matrices_take_the_requested_type_and_vectors_stay_f32(GgmlType type, uint fileType)
    {
        string model = Path.Combine(_dir, "m");
        GgufTestModels.Write(model, "llama");
        string path = Path.Combine(_dir, "m.gguf");
        GgufExporter.Export(model, path, type);
        GgufFile g = GgufFile.Open(path);
        Assert.Equal((long)fileType, g.Require("general.file_type").AsInt64());
        Assert.All(g.Tensors, t => Assert.Equal(t.Shape.Length == 1 ? (uint)GgmlType.F32 : (uint)type, t.Type));
    }

    [Fact]
    public void Q8_0_falls_back_to_f16_for_rows_that_are_not_a_multiple_of_32()
    {
        string path = Path.Combine(_dir, "q.gguf");
        GgufExportResult r = GgufExporter.Export(GgufTestModels.DefaultModelDir, path, GgmlType.Q8_0);
        GgufFile g = GgufFile.Open(path);
        // ffn_down is [64, 172]: 172 is not a multiple of 32.
        Assert.Equal((uint)GgmlType.F16, g.Tensors.Single(t => t.Name == "blk.0.ffn_down.weight").Type);
        Assert.Equal((uint)GgmlType.Q8_0, g.Tensors.Single(t => t.Name == "blk.0.ffn_up.weight").Type);
        Assert.Contains(r.Notes, n => n.Contains("stored as F16 instead of Q8_0", StringComparison.Ordinal));
    }

    [Fact]
    public void An_architecture_llama_cpp_has_no_name_for_is_refused_with_that_name()
    {
        string model = Path.Combine(_dir, "r");
        TinyModels.Write(model, "roberta");
        string path = Path.Combine(_dir, "r.gguf");
        ZettException e = Assert.Throws<ZettException>(() => GgufExporter.Export(model, path, GgmlType.F16));
        Assert.StartsWith(Path.Combine(model, "config.json") + ": model_type 'roberta'", e.Message);
        Assert.False(File.Exists(path));
    }

    [Fact]
    public void An_unknown_tensor_is_refused_rather_than_dropped_and_nothing_is_written()
    {
        string model = Path.Combine(_dir, "u");
        Dictionary<string, (int[] Shape, float[] Data)> hf = GgufTestModels.Write(model, "llama");
        hf["model.layers.0.self_attn.extra.weight"] = ([4], new float[4]);
        SafetensorsWriter.Write(Path.Combine(model, "model.safetensors"),
            [.. hf.Select(t => SafetensorsEntry.FromFloat32(t.Key, t.Value.Shape, t.Value.Data))]);
        string path = Path.Combine(_dir, "u.gguf");
        ZettException e = Assert.Throws<ZettException>(() => GgufExporter.Export(model, path, GgmlType.F16));
        Assert.Contains("'model.layers.0.self_attn.extra.weight' has no place in llama.cpp's llama", e.Message);
        Assert.Empty(Directory.GetFiles(_dir, "u.gguf*"));
    }
}
