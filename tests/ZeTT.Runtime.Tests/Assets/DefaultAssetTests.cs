using System.Security.Cryptography;
using System.Text.Json;
using System.Text.RegularExpressions;
using ZeTT.Ops;
using ZeTT.Runtime.Formats;
using ZeTT.Runtime.Tensors;

namespace ZeTT.Runtime.Tests.Assets;

/// <summary>
/// The committed default model (<c>assets/stories260K</c>, written by
/// <c>scripts/convert_stories260k.py</c>) is a complete, self-consistent Hugging Face Llama
/// directory, and it is what its PROVENANCE.md says it is.
/// </summary>
public sealed partial class DefaultAssetTests
{
    private static readonly string RepoRoot = FindRepoRoot();
    private static readonly string AssetDir = Path.Combine(RepoRoot, "assets", "stories260K");

    /// <summary>The source folder, or null where no <c>shared/</c> sits above the clone.</summary>
    private static readonly string? SourceDir = FindSourceDir();

    private static string SkipReason =>
        $"no shared/data/models/stories260K in any folder above {RepoRoot} (the source "
        + "checkpoint lives outside the repository)";

    [Fact]
    public void Config_describes_the_stories260K_llama()
    {
        using JsonDocument doc = ReadJson("config.json");
        JsonElement c = doc.RootElement;
        Assert.Equal("llama", c.GetProperty("model_type").GetString());
        Assert.Equal("LlamaForCausalLM", c.GetProperty("architectures")[0].GetString());
        Assert.Equal(64, c.GetProperty("hidden_size").GetInt32());
        Assert.Equal(172, c.GetProperty("intermediate_size").GetInt32());
        Assert.Equal(5, c.GetProperty("num_hidden_layers").GetInt32());
        Assert.Equal(8, c.GetProperty("num_attention_heads").GetInt32());
        Assert.Equal(4, c.GetProperty("num_key_value_heads").GetInt32());
        Assert.Equal(512, c.GetProperty("vocab_size").GetInt32());
        Assert.Equal(512, c.GetProperty("max_position_embeddings").GetInt32());
        Assert.Equal(1e-5, c.GetProperty("rms_norm_eps").GetDouble());
        Assert.Equal(10000.0, c.GetProperty("rope_theta").GetDouble());
        Assert.True(c.GetProperty("tie_word_embeddings").GetBoolean());
        Assert.Equal(1, c.GetProperty("bos_token_id").GetInt32());
        Assert.Equal(2, c.GetProperty("eos_token_id").GetInt32());
        Assert.Equal("float32", c.GetProperty("torch_dtype").GetString());
    }

    [Fact]
    public void Safetensors_holds_exactly_the_llama_tensors_with_config_shapes()
    {
        using JsonDocument doc = ReadJson("config.json");
        JsonElement c = doc.RootElement;
        int dim = c.GetProperty("hidden_size").GetInt32();
        int hidden = c.GetProperty("intermediate_size").GetInt32();
        int vocab = c.GetProperty("vocab_size").GetInt32();
        int heads = c.GetProperty("num_attention_heads").GetInt32();
        int kvDim = c.GetProperty("num_key_value_heads").GetInt32() * (dim / heads);

        var expected = new Dictionary<string, long[]>
        {
            ["model.embed_tokens.weight"] = [vocab, dim],
            ["model.norm.weight"] = [dim],
        };
        for (int i = 0; i < c.GetProperty("num_hidden_layers").GetInt32(); i++)
        {
            string p = $"model.layers.{i}.";
            expected[p + "self_attn.q_proj.weight"] = [dim, dim];
            expected[p + "self_attn.k_proj.weight"] = [kvDim, dim];
            expected[p + "self_attn.v_proj.weight"] = [kvDim, dim];
            expected[p + "self_attn.o_proj.weight"] = [dim, dim];
            expected[p + "mlp.gate_proj.weight"] = [hidden, dim];
            expected[p + "mlp.up_proj.weight"] = [hidden, dim];
            expected[p + "mlp.down_proj.weight"] = [dim, hidden];
            expected[p + "input_layernorm.weight"] = [dim];
            expected[p + "post_attention_layernorm.weight"] = [dim];
        }

        using SafetensorsFile file = SafetensorsFile.Open(Path.Combine(AssetDir, "model.safetensors"));
        Assert.Equal("pt", file.Metadata["format"]);
        Assert.Equal(expected.Keys.Order(StringComparer.Ordinal),
            file.Tensors.Select(t => t.Name).Order(StringComparer.Ordinal));
        foreach (SafetensorsTensorInfo info in file.Tensors)
        {
            Assert.Equal(DType.F32, info.DType);
            Assert.Equal(expected[info.Name], info.Shape);
            HostTensor t = file.ReadFloat32(info.Name);
            Assert.All(t.Data, v => Assert.True(float.IsFinite(v), $"{info.Name} has {v}"));
            Assert.Contains(t.Data, v => v != 0f);
        }
        // Tied classifier: no lm_head, so the embedding must be the one the model reads.
        Assert.False(file.Contains("lm_head.weight"));
        long parameters = file.Tensors.Sum(t => t.ElementCount);
        Assert.Equal(260_032L, parameters);
    }

    [Fact]
    public void Tokenizer_is_sentencepiece_style_bpe_with_512_pieces_and_byte_fallback()
    {
        using JsonDocument doc = ReadJson("tokenizer.json");
        JsonElement root = doc.RootElement;
        JsonElement model = root.GetProperty("model");
        Assert.Equal("BPE", model.GetProperty("type").GetString());
        Assert.True(model.GetProperty("byte_fallback").GetBoolean());
        Assert.True(model.GetProperty("fuse_unk").GetBoolean());
        Assert.Equal("<unk>", model.GetProperty("unk_token").GetString());

        var vocab = model.GetProperty("vocab").EnumerateObject()
            .ToDictionary(p => p.Name, p => p.Value.GetInt32(), StringComparer.Ordinal);
        Assert.Equal(512, vocab.Count);
        Assert.Equal(Enumerable.Range(0, 512), vocab.Values.Order());
        Assert.Equal(0, vocab["<unk>"]);
        Assert.Equal(1, vocab["<s>"]);
        Assert.Equal(2, vocab["</s>"]);
        for (int b = 0; b < 256; b++)
        {
            Assert.Equal(3 + b, vocab[$"<0x{b:X2}>"]);
        }

        // Every merge joins two vocabulary pieces into a third.
        int merges = 0;
        foreach (JsonElement m in model.GetProperty("merges").EnumerateArray())
        {
            string[] pair = m.GetString()!.Split(' ');
            Assert.Equal(2, pair.Length);
            Assert.True(vocab.ContainsKey(pair[0]) && vocab.ContainsKey(pair[1]), m.GetString());
            Assert.True(vocab.ContainsKey(pair[0] + pair[1]), $"merge result of {m.GetString()}");
            merges++;
        }
        Assert.True(merges > 100, $"only {merges} merges");

        Assert.Equal(JsonValueKind.Null, root.GetProperty("pre_tokenizer").ValueKind);
        JsonElement norms = root.GetProperty("normalizer").GetProperty("normalizers");
        Assert.Equal("Prepend", norms[0].GetProperty("type").GetString());
        Assert.Equal("\u2581", norms[0].GetProperty("prepend").GetString());
        Assert.Equal("Replace", norms[1].GetProperty("type").GetString());
        Assert.Equal(
            ["Replace", "ByteFallback", "Fuse", "Strip"],
            root.GetProperty("decoder").GetProperty("decoders").EnumerateArray()
                .Select(d => d.GetProperty("type").GetString()));
        Assert.Equal(
            [(0, "<unk>"), (1, "<s>"), (2, "</s>")],
            root.GetProperty("added_tokens").EnumerateArray()
                .Where(t => t.GetProperty("special").GetBoolean())
                .Select(t => (t.GetProperty("id").GetInt32(), t.GetProperty("content").GetString())));
    }

    [Fact]
    public void Tokenizer_config_and_generation_files_name_the_same_special_tokens()
    {
        using JsonDocument tc = ReadJson("tokenizer_config.json");
        Assert.Equal("LlamaTokenizerFast", tc.RootElement.GetProperty("tokenizer_class").GetString());
        Assert.True(tc.RootElement.GetProperty("add_bos_token").GetBoolean());
        Assert.Equal("<s>", tc.RootElement.GetProperty("bos_token").GetString());
        Assert.Equal("</s>", tc.RootElement.GetProperty("eos_token").GetString());
        Assert.Equal("<unk>", tc.RootElement.GetProperty("unk_token").GetString());

        using JsonDocument map = ReadJson("special_tokens_map.json");
        Assert.Equal("<s>", map.RootElement.GetProperty("bos_token").GetProperty("content").GetString());
        Assert.Equal("</s>", map.RootElement.GetProperty("eos_token").GetProperty("content").GetString());

        using JsonDocument gen = ReadJson("generation_config.json");
        Assert.Equal(1, gen.RootElement.GetProperty("bos_token_id").GetInt32());
        Assert.Equal(2, gen.RootElement.GetProperty("eos_token_id").GetInt32());

        using JsonDocument reference = ReadJson("reference_greedy_generation.json");
        JsonElement ids = reference.RootElement.GetProperty("generated_ids");
        Assert.Equal(256, ids.GetArrayLength());
        Assert.All(ids.EnumerateArray(), id => Assert.InRange(id.GetInt32(), 3, 511));
    }

    [Fact]
    public void Copied_reference_generation_has_the_recorded_sha256()
    {
        // This file is copied verbatim from the sources, so its hash is checkable without them.
        Dictionary<string, string> recorded = RecordedHashes();
        Assert.Equal(
            recorded["reference_greedy_generation.json"],
            Sha256(Path.Combine(AssetDir, "reference_greedy_generation.json")));
    }

    [Fact]
    public void Provenance_hashes_match_the_source_files()
    {
        Assert.SkipWhen(SourceDir is null, SkipReason);
        Dictionary<string, string> recorded = RecordedHashes();
        Assert.Equal(["reference_greedy_generation.json", "stories260K.bin", "tok512.bin"],
            recorded.Keys.Order(StringComparer.Ordinal));
        foreach ((string name, string sha) in recorded)
        {
            Assert.Equal(sha, Sha256(Path.Combine(SourceDir!, name)));
        }
    }

    [Fact]
    public void Weights_are_the_source_checkpoint_with_q_and_k_rows_permuted_for_rotate_half()
    {
        Assert.SkipWhen(SourceDir is null, SkipReason);
        // llama2.c legacy layout: 7 int32 header, then embedding [512, 64], rms_att [5, 64],
        // wq [5, 64, 64], wk [5, 32, 64], ... all fp32, [out, in] row-major.
        byte[] raw = File.ReadAllBytes(Path.Combine(SourceDir!, "stories260K.bin"));
        const int Dim = 64, Vocab = 512, Layers = 5, Heads = 8, KvHeads = 4, HeadDim = 8;
        float At(long floatIndex) => BitConverter.ToSingle(raw, checked((int)(28 + (4 * floatIndex))));
        long embedAt = 0, rmsAttAt = embedAt + ((long)Vocab * Dim), wqAt = rmsAttAt + (Layers * Dim);
        long wkAt = wqAt + ((long)Layers * Dim * Dim);

        using SafetensorsFile file = SafetensorsFile.Open(Path.Combine(AssetDir, "model.safetensors"));
        HostTensor embed = file.ReadFloat32("model.embed_tokens.weight");
        for (int i = 0; i < embed.Data.Length; i++)
        {
            Assert.Equal(At(embedAt + i), embed.Data[i]);
        }
        HostTensor ln = file.ReadFloat32("model.layers.3.input_layernorm.weight");
        for (int i = 0; i < Dim; i++)
        {
            Assert.Equal(At(rmsAttAt + (3 * Dim) + i), ln.Data[i]);
        }

        // Hugging Face row (h, r, j) of a head holds llama2.c row (h, j, r): the pair
        // (2j, 2j+1) that llama2.c rotates becomes (j, j + HeadDim/2) for rotate_half.
        void CheckPermuted(string name, long sourceAt, int heads)
        {
            HostTensor t = file.ReadFloat32(name);
            for (int h = 0; h < heads; h++)
            {
                for (int r = 0; r < 2; r++)
                {
                    for (int j = 0; j < HeadDim / 2; j++)
                    {
                        int hfRow = (h * HeadDim) + (r * HeadDim / 2) + j;
                        int srcRow = (h * HeadDim) + (2 * j) + r;
                        for (int col = 0; col < Dim; col++)
                        {
                            Assert.Equal(At(sourceAt + ((long)srcRow * Dim) + col), t.Data[(hfRow * Dim) + col]);
                        }
                    }
                }
            }
        }
        CheckPermuted("model.layers.0.self_attn.q_proj.weight", wqAt, Heads);
        CheckPermuted("model.layers.4.self_attn.q_proj.weight", wqAt + (4L * Dim * Dim), Heads);
        CheckPermuted("model.layers.2.self_attn.k_proj.weight", wkAt + (2L * KvHeads * HeadDim * Dim), KvHeads);
    }

    [GeneratedRegex(@"^\|\s*`(?<name>[^`]+)`\s*\|\s*[\d,]+\s*\|\s*`(?<sha>[0-9a-f]{64})`\s*\|\s*$",
        RegexOptions.Multiline)]
    private static partial Regex ProvenanceRow();

    private static Dictionary<string, string> RecordedHashes()
    {
        string text = File.ReadAllText(Path.Combine(AssetDir, "PROVENANCE.md"));
        var rows = ProvenanceRow().Matches(text)
            .ToDictionary(m => m.Groups["name"].Value, m => m.Groups["sha"].Value, StringComparer.Ordinal);
        Assert.True(rows.Count == 3, $"PROVENANCE.md lists {rows.Count} source files, expected 3");
        return rows;
    }

    private static string Sha256(string path) =>
        Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(path)));

    private static JsonDocument ReadJson(string name) =>
        JsonDocument.Parse(File.ReadAllBytes(Path.Combine(AssetDir, name)));

    private static string FindRepoRoot()
    {
        // The build output sits inside the clone; a published test executable may not, but it
        // is run from the repository root.
        foreach (string start in new[] { AppContext.BaseDirectory, Environment.CurrentDirectory })
        {
            for (DirectoryInfo? d = new(start); d is not null; d = d.Parent)
            {
                if (File.Exists(Path.Combine(d.FullName, "ZeTT.Native.sln")))
                {
                    return d.FullName;
                }
            }
        }
        throw new InvalidOperationException(
            $"no ZeTT.Native.sln above {AppContext.BaseDirectory} or {Environment.CurrentDirectory}");
    }

    private static string? FindSourceDir()
    {
        // CI puts shared/ beside the clone; a worktree may sit deeper, so look in every ancestor.
        for (DirectoryInfo? d = Directory.GetParent(RepoRoot); d is not null; d = d.Parent)
        {
            string candidate = Path.Combine(d.FullName, "shared", "data", "models", "stories260K");
            if (File.Exists(Path.Combine(candidate, "stories260K.bin")))
            {
                return candidate;
            }
        }
        return null;
    }
}
