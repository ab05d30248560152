using System.Text.Json.Nodes;
using ZeTT.Ops;
using ZeTT.Runtime.Formats;
using ZeTT.Runtime.Tensors;

namespace ZeTT.Runtime.Tests.Formats;

public sealed class HfModelDirectoryTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("zett-hf-").FullName;

    public void Dispose()
    {
        Directory.Delete(_dir, recursive: true);
        if (Directory.Exists(_dir + "-out"))
        {
            Directory.Delete(_dir + "-out", recursive: true);
        }
    }

    public static TheoryData<string> Families() => new(TinyModels.Families);

    [Theory]
    [MemberData(nameof(Families))]
    public void Every_family_locates_its_embeddings(string family)
    {
        TinyModel tiny = TinyModels.Write(Path.Combine(_dir, family), family, dtype: DType.BF16);
        using HfModelDirectory model = HfModelDirectory.Open(tiny.Directory);
        Assert.Equal(family, model.ModelType);
        Assert.Equal(tiny.Input, model.InputEmbeddingName);
        Assert.Equal(tiny.Output, model.OutputEmbeddingName);
        Assert.Equal(tiny.Bias, model.OutputBiasName);
        Assert.Equal(tiny.Output is null, model.TieWordEmbeddings);
        Assert.Equal(11, model.VocabSize);
        Assert.Equal(8, model.HiddenSize);
        Assert.Equal(DType.BF16, model.EmbeddingDType);
        Assert.False(model.IsBaseModel);
        Assert.Equal(tiny.Tensors[tiny.Input], model.ReadInputEmbeddings().Data);
        Assert.Equal(tiny.Output is null ? null : tiny.Tensors[tiny.Output], model.ReadOutputEmbeddings()?.Data);
        Assert.Equal(tiny.Bias is null ? null : tiny.Tensors[tiny.Bias], model.ReadOutputBias()?.Data);
    }

    [Theory]
    [InlineData("llama", "embed_tokens.weight")]
    [InlineData("gpt2", "wte.weight")]
    [InlineData("gpt_neox", "embed_in.weight")]
    [InlineData("xlm-roberta", "embeddings.word_embeddings.weight")]
    public void Base_model_checkpoints_without_prefix_are_found(string family, string input)
    {
        TinyModel tiny = TinyModels.Write(_dir, family, baseModel: true);
        using HfModelDirectory model = HfModelDirectory.Open(tiny.Directory);
        Assert.True(model.IsBaseModel);
        Assert.Equal(input, model.InputEmbeddingName);
        Assert.Null(model.OutputEmbeddingName);
        Assert.Null(model.OutputBiasName);
    }

    [Fact]
    public void Config_special_ids_and_eos_lists()
    {
        TinyModel tiny = TinyModels.Write(_dir, "llama");
        JsonObject config = HfModelDirectory.ReadJsonObject(Path.Combine(_dir, "config.json"));
        config["eos_token_id"] = new JsonArray(7, 8);
        HfModelWriter.WriteJson(Path.Combine(_dir, "config.json"), config);
        using HfModelDirectory model = HfModelDirectory.Open(tiny.Directory);
        Assert.Equal(1, model.BosTokenId);
        Assert.Equal(7, model.EosTokenId);
        Assert.Null(model.PadTokenId);
    }

    [Fact]
    public void Tied_head_stored_anyway_is_a_copy_replaced_together()
    {
        TinyModel tiny = TinyModels.Write(_dir, "llama");
        JsonObject config = HfModelDirectory.ReadJsonObject(Path.Combine(_dir, "config.json"));
        config["tie_word_embeddings"] = true;
        HfModelWriter.WriteJson(Path.Combine(_dir, "config.json"), config);
        string outDir = _dir + "-out";
        using (HfModelDirectory model = HfModelDirectory.Open(tiny.Directory))
        {
            Assert.Null(model.OutputEmbeddingName);
            Assert.Equal(["lm_head.weight"], model.InputEmbeddingCopies);
            HfModelWriter.Write(model, outDir, new HfModelEdit
            {
                InputEmbeddings = TinyModels.Random("e", 14, 8, seed: 5),
            });
        }
        using HfModelDirectory written = HfModelDirectory.Open(outDir);
        Assert.Equal(written.ReadInputEmbeddings().Data, written.Weights.ReadFloat32("lm_head.weight").Data);
    }

    [Fact]
    public void Unknown_family_names_what_it_looked_for_and_accepts_explicit_names()
    {
        TinyModel tiny = TinyModels.Write(_dir, "llama");
        JsonObject config = HfModelDirectory.ReadJsonObject(Path.Combine(_dir, "config.json"));
        config["model_type"] = "mystery";
        HfModelWriter.WriteJson(Path.Combine(_dir, "config.json"), config);
        var e = Assert.Throws<ZettException>(() => HfModelDirectory.Open(tiny.Directory));
        Assert.Contains("'mystery'", e.Message, StringComparison.Ordinal);
        Assert.Contains("model.embed_tokens.weight", e.Message, StringComparison.Ordinal);
        Assert.Contains("--input-embedding", e.Message, StringComparison.Ordinal);
        using HfModelDirectory model = HfModelDirectory.Open(tiny.Directory,
            new EmbeddingTensorNames("model.embed_tokens.weight", "lm_head.weight"));
        Assert.Equal("lm_head.weight", model.OutputEmbeddingName);
        Assert.False(model.TieWordEmbeddings);
    }

    [Theory]
    [InlineData("missing-input")]
    [InlineData("missing-output")]
    [InlineData("vocab-mismatch")]
    [InlineData("hidden-mismatch")]
    [InlineData("corrupt-shard")]
    [InlineData("no-config")]
    [InlineData("bad-config")]
    [InlineData("no-weights")]
    [InlineData("explicit-missing")]
    public void Bad_model_directories_give_one_clear_error(string kind)
    {
        TinyModel tiny = TinyModels.Write(_dir, "mistral", maxShardBytes: 300);
        string configPath = Path.Combine(_dir, "config.json");
        JsonObject config = HfModelDirectory.ReadJsonObject(configPath);
        EmbeddingTensorNames? names = null;
        string expected;
        switch (kind)
        {
            case "missing-input" or "missing-output":
                string victim = kind == "missing-input" ? "model.embed_tokens.weight" : "lm_head.weight";
                RewriteWithout(victim);
                expected = victim;
                break;
            case "vocab-mismatch":
                config["vocab_size"] = 12;
                HfModelWriter.WriteJson(configPath, config);
                expected = "vocab_size is 12";
                break;
            case "hidden-mismatch":
                config["hidden_size"] = 9;
                HfModelWriter.WriteJson(configPath, config);
                expected = "hidden size 9";
                break;
            case "corrupt-shard":
                string shard = Directory.GetFiles(_dir, "model-00002-*.safetensors").Single();
                byte[] b = File.ReadAllBytes(shard);
                File.WriteAllBytes(shard, b[..^3]);
                expected = Path.GetFileName(shard);
                break;
            case "no-config":
                File.Delete(configPath);
                expected = "config.json: file not found";
                break;
            case "bad-config":
                File.WriteAllText(configPath, "{\"model_type\": ");
                expected = "not valid JSON";
                break;
            case "no-weights":
                foreach (string f in Directory.GetFiles(_dir, "model*"))
                {
                    File.Delete(f);
                }
                expected = "only pytorch_model*.bin";
                break;
            default:
                names = new EmbeddingTensorNames("model.embed_tokens.weight", "head.weight");
                expected = "output embedding 'head.weight' is not in the checkpoint";
                break;
        }
        ZettException e = Assert.ThrowsAny<ZettException>(() => HfModelDirectory.Open(tiny.Directory, names));
        Assert.Contains(expected, e.Message, StringComparison.Ordinal);
    }

    private void RewriteWithout(string victim)
    {
        using SafetensorsCollection c = SafetensorsCollection.Open(_dir);
        var entries = c.Tensors.Where(t => t.Name != victim)
            .Select(t => SafetensorsEntry.CopyOf(c.FileOf(t.Name), t.Name)).ToList();
        string single = Path.Combine(_dir, "rewritten.tmp");
        SafetensorsWriter.Write(single, entries);
        c.Dispose();
        foreach (string f in Directory.GetFiles(_dir, "model*"))
        {
            File.Delete(f);
        }
        File.Move(single, Path.Combine(_dir, "model.safetensors"));
    }

    [Theory]
    [MemberData(nameof(Families))]
    public void Writer_replaces_embeddings_and_copies_everything_else(string family)
    {
        TinyModel tiny = TinyModels.Write(Path.Combine(_dir, "in"), family, dtype: DType.BF16);
        string outDir = Path.Combine(_dir, "out");
        const int NewVocab = 14;
        HostTensor input = TinyModels.Random("in", NewVocab, 8, seed: 2);
        HostTensor? output = tiny.Output is null ? null : TinyModels.Random("out", NewVocab, 8, seed: 3);
        HostTensor? bias = tiny.Bias is null ? null : TinyModels.Random("bias", NewVocab, 0, seed: 4);
        using (HfModelDirectory model = HfModelDirectory.Open(tiny.Directory))
        {
            HfModelWriter.Write(model, outDir, new HfModelEdit
            {
                InputEmbeddings = input,
                OutputEmbeddings = output,
                OutputBias = bias,
                ConfigUpdates = new Dictionary<string, JsonNode?> { ["pad_token_id"] = 3 },
            });
        }
        Assert.False(Directory.Exists(outDir + ".tmp-" + Environment.ProcessId));
        using HfModelDirectory written = HfModelDirectory.Open(outDir);
        Assert.Equal(NewVocab, written.VocabSize);
        Assert.Equal(3, written.PadTokenId);
        Assert.Equal(DType.BF16, written.EmbeddingDType);
        Assert.Equal(input.Data, written.ReadInputEmbeddings().Data);
        Assert.Equal(output?.Data, written.ReadOutputEmbeddings()?.Data);
        Assert.Equal(bias?.Data, written.ReadOutputBias()?.Data);
        using HfModelDirectory original = HfModelDirectory.Open(tiny.Directory);
        foreach (SafetensorsTensorInfo t in original.Weights.Tensors)
        {
            if (!original.EmbeddingTensorNames.Contains(t.Name))
            {
                Assert.Equal(original.Weights.GetSpan(t.Name, 0, (int)t.ByteLength).ToArray(),
                    written.Weights.GetSpan(t.Name, 0, (int)t.ByteLength).ToArray());
            }
        }
        Assert.True(File.Exists(Path.Combine(outDir, "generation_config.json")));
        Assert.True(File.Exists(Path.Combine(outDir, "tokenizer.json")));
        Assert.False(File.Exists(Path.Combine(outDir, "pytorch_model.bin")));
    }

    [Fact]
    public void Sharded_model_keeps_unchanged_shards_and_rewrites_the_index()
    {
        TinyModel tiny = TinyModels.Write(Path.Combine(_dir, "in"), "llama", maxShardBytes: 300);
        string[] shards = Directory.GetFiles(tiny.Directory, "model-*.safetensors").Order().ToArray();
        Assert.True(shards.Length >= 3, $"{shards.Length} shards");
        string outDir = Path.Combine(_dir, "out");
        using (HfModelDirectory model = HfModelDirectory.Open(tiny.Directory))
        {
            Assert.True(model.Weights.IsSharded);
            HfModelWriter.Write(model, outDir, new HfModelEdit
            {
                InputEmbeddings = TinyModels.Random("in", 20, 8, seed: 2),
                OutputEmbeddings = TinyModels.Random("out", 20, 8, seed: 3),
                Files = new Dictionary<string, string?> { ["tokenizer.json"] = null },
            });
        }
        using HfModelDirectory written = HfModelDirectory.Open(outDir);
        Assert.True(written.Weights.IsSharded);
        Assert.Equal(20, written.VocabSize);
        Assert.Equal(written.Weights.TotalBytes.ToString(System.Globalization.CultureInfo.InvariantCulture),
            written.Weights.IndexMetadata["total_size"]);
        string inputShard = Path.GetFileName(written.Weights.FileOf("model.embed_tokens.weight").Path);
        string outputShard = Path.GetFileName(written.Weights.FileOf("lm_head.weight").Path);
        foreach (string shard in shards)
        {
            string name = Path.GetFileName(shard);
            if (name != inputShard && name != outputShard)
            {
                Assert.Equal(File.ReadAllBytes(shard), File.ReadAllBytes(Path.Combine(outDir, name)));
            }
        }
        Assert.False(File.Exists(Path.Combine(outDir, "tokenizer.json")));
    }

    [Fact]
    public void Failed_write_leaves_no_output_directory()
    {
        TinyModel tiny = TinyModels.Write(Path.Combine(_dir, "in"), "gpt_neox");
        string outDir = Path.Combine(_dir, "out");
        using HfModelDirectory model = HfModelDirectory.Open(tiny.Directory);
        var e = Assert.Throws<ZettException>(() => HfModelWriter.Write(model, outDir, new HfModelEdit
        {
            InputEmbeddings = TinyModels.Random("in", 20, 8, seed: 2),
        }));
        Assert.Contains("embed_out.weight", e.Message, StringComparison.Ordinal);
        Assert.Throws<InvalidOperationException>(() => HfModelWriter.Write(model, outDir, new HfModelEdit
        {
            TransformTensor = (_, t) => t.Name.Contains("layers", StringComparison.Ordinal)
                ? throw new InvalidOperationException("boom")
                : null,
        }));
        Assert.DoesNotContain(Directory.GetDirectories(_dir), d => d.StartsWith(outDir, StringComparison.Ordinal));
    }

    [Fact]
    public void Existing_output_is_refused_unless_overwrite()
    {
        TinyModel tiny = TinyModels.Write(Path.Combine(_dir, "in"), "gemma");
        string outDir = Path.Combine(_dir, "out");
        Directory.CreateDirectory(outDir);
        File.WriteAllText(Path.Combine(outDir, "keep.txt"), "x");
        using HfModelDirectory model = HfModelDirectory.Open(tiny.Directory);
        var e = Assert.Throws<ZettException>(() => HfModelWriter.Write(model, outDir, new HfModelEdit()));
        Assert.Contains("not empty", e.Message, StringComparison.Ordinal);
        HfModelWriter.Write(model, outDir, new HfModelEdit(), overwrite: true);
        Assert.False(File.Exists(Path.Combine(outDir, "keep.txt")));
        Assert.True(File.Exists(Path.Combine(outDir, "model.safetensors")));
    }
}
