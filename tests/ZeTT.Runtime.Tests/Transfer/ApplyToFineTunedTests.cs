using System.Text.Json.Nodes;
using ZeTT.Ops;
using ZeTT.Runtime.Formats;
using ZeTT.Runtime.Tests.Formats;
using ZeTT.Runtime.Transfer;

namespace ZeTT.Runtime.Tests.Transfer;

public sealed class ApplyToFineTunedTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("zett-aft-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private (TinyModel B, TinyModel F, TinyModel Bt) Models(string family, DType ftDType = DType.BF16)
    {
        TinyModel b = TinyModels.Write(Path.Combine(_dir, "b"), family, seed: 1);
        TinyModel f = TinyModels.Write(Path.Combine(_dir, "f"), family, dtype: ftDType, seed: 2,
            maxShardBytes: 400);
        TinyModel bt = TinyModels.Write(Path.Combine(_dir, "bt"), family, vocab: 14, seed: 3);
        File.WriteAllText(Path.Combine(bt.Directory, "tokenizer.json"), "{\"new\": true}");
        File.WriteAllText(Path.Combine(bt.Directory, "tokenizer_config.json"),
            "{\"chat_template\": \"bt\", \"model_max_length\": 77}");
        File.WriteAllText(Path.Combine(f.Directory, "tokenizer_config.json"),
            "{\"chat_template\": \"{{ ft }}\", \"model_max_length\": 5}");
        File.WriteAllText(Path.Combine(f.Directory, "tokenizer.model"), "old sentencepiece");
        return (b, f, bt);
    }

    [Theory]
    [InlineData("llama")]
    [InlineData("gpt2")]
    [InlineData("xlm-roberta")]
    public void Blends_the_body_and_takes_the_transferred_embeddings(string family)
    {
        (TinyModel b, TinyModel f, TinyModel bt) = Models(family);
        string outDir = Path.Combine(_dir, "out");
        var lines = new List<string>();
        IReadOnlyList<string> dirs = ApplyToFineTuned.Run(b.Directory, f.Directory, bt.Directory, outDir,
            [0, 0.5], log: lines.Add);
        Assert.Equal([Path.Combine(outDir, "lambda_0"), Path.Combine(outDir, "lambda_0.5")], dirs);
        Assert.Equal(2, lines.Count);
        foreach ((string dir, float lambda) in dirs.Zip(new[] { 0f, 0.5f }))
        {
            using HfModelDirectory o = HfModelDirectory.Open(dir);
            Assert.Equal(14, o.VocabSize);
            Assert.Equal(DType.BF16, o.EmbeddingDType);
            Assert.Equal(bt.Tensors[bt.Input].Select(BFloat16.Round), o.ReadInputEmbeddings().Data);
            if (bt.Output is not null)
            {
                Assert.Equal(bt.Tensors[bt.Output].Select(BFloat16.Round), o.ReadOutputEmbeddings()!.Data);
            }
            if (bt.Bias is not null)
            {
                Assert.Equal(bt.Tensors[bt.Bias].Select(BFloat16.Round), o.ReadOutputBias()!.Data);
            }
            foreach ((string name, float[] fv) in f.Tensors)
            {
                if (name == f.Input || name == f.Output || name == f.Bias)
                {
                    continue;
                }
                Assert.Equal(DType.BF16, o.Weights.GetInfo(name).DType);
                float[] got = o.Weights.ReadFloat32(name).Data;
                for (int i = 0; i < fv.Length; i++)
                {
                    float expected = fv[i] + (lambda * (bt.Tensors[name][i] - b.Tensors[name][i]));
                    // Stored as bf16: within half a bf16 ulp (2^-8 relative) of the fp32 blend;
                    // exactly F at lambda 0.
                    Assert.True(lambda == 0 ? got[i] == fv[i]
                        : Math.Abs(got[i] - expected) <= Math.Abs(expected) / 256,
                        $"{name}[{i}] lambda {lambda}: {got[i]} vs {expected}");
                }
            }
            Assert.Equal("{\"new\": true}", File.ReadAllText(Path.Combine(dir, "tokenizer.json")));
            JsonObject tc = HfModelDirectory.ReadJsonObject(Path.Combine(dir, "tokenizer_config.json"));
            Assert.Equal("{{ ft }}", (string?)tc["chat_template"]);
            Assert.Equal(77, (int?)tc["model_max_length"]);
            Assert.False(File.Exists(Path.Combine(dir, "tokenizer.model")));
            Assert.True(File.Exists(Path.Combine(dir, "generation_config.json")));
        }
    }

    [Fact]
    public void One_lambda_writes_the_output_directory_itself_in_fp32()
    {
        (TinyModel b, TinyModel f, TinyModel bt) = Models("mistral", DType.F32);
        string outDir = Path.Combine(_dir, "single");
        IReadOnlyList<string> dirs = ApplyToFineTuned.Run(b.Directory, f.Directory, bt.Directory, outDir, [1.0]);
        Assert.Equal([outDir], dirs);
        using HfModelDirectory o = HfModelDirectory.Open(outDir);
        Assert.True(o.Weights.IsSharded);
        float[] got = o.Weights.ReadFloat32("model.norm.weight").Data;
        for (int i = 0; i < got.Length; i++)
        {
            float expected = f.Tensors["model.norm.weight"][i]
                + (bt.Tensors["model.norm.weight"][i] - b.Tensors["model.norm.weight"][i]);
            Assert.True(Math.Abs(got[i] - expected) <= 1e-6f * (1 + Math.Abs(expected)), $"{got[i]} vs {expected}");
        }
    }

    [Fact]
    public void Shape_mismatch_between_base_and_fine_tune_names_the_tensor()
    {
        (TinyModel b, TinyModel f, TinyModel bt) = Models("llama");
        using (SafetensorsCollection c = SafetensorsCollection.Open(f.Directory))
        {
            var entries = c.Tensors.Where(t => t.Name != "model.norm.weight")
                .Select(t => SafetensorsEntry.CopyOf(c.FileOf(t.Name), t.Name))
                .Append(SafetensorsEntry.FromFloat32("model.norm.weight", [9], new float[9]))
                .ToList();
            SafetensorsWriter.Write(Path.Combine(_dir, "f.safetensors"), entries);
        }
        foreach (string shard in Directory.GetFiles(f.Directory, "model*"))
        {
            File.Delete(shard);
        }
        File.Move(Path.Combine(_dir, "f.safetensors"), Path.Combine(f.Directory, "model.safetensors"));
        string outDir = Path.Combine(_dir, "out");
        var e = Assert.Throws<ZettException>(() =>
            ApplyToFineTuned.Run(b.Directory, f.Directory, bt.Directory, outDir, [0.5]));
        Assert.Contains("'model.norm.weight' has shape [9] but the base model's is [8]", e.Message,
            StringComparison.Ordinal);
        Assert.False(Directory.Exists(outDir));
    }

    [Fact]
    public void Fine_tune_with_another_vocabulary_is_refused()
    {
        TinyModel b = TinyModels.Write(Path.Combine(_dir, "b"), "llama", seed: 1);
        TinyModel f = TinyModels.Write(Path.Combine(_dir, "f"), "llama", vocab: 12, seed: 2);
        TinyModel bt = TinyModels.Write(Path.Combine(_dir, "bt"), "llama", vocab: 14, seed: 3);
        var e = Assert.Throws<ZettException>(() =>
            ApplyToFineTuned.Run(b.Directory, f.Directory, bt.Directory, Path.Combine(_dir, "o"), [0.5]));
        Assert.Contains("must use the base model's tokenizer", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Different_families_are_refused()
    {
        TinyModel b = TinyModels.Write(Path.Combine(_dir, "b"), "llama", seed: 1);
        TinyModel f = TinyModels.Write(Path.Combine(_dir, "f"), "mistral", seed: 2);
        var e = Assert.Throws<ZettException>(() =>
            ApplyToFineTuned.Run(b.Directory, f.Directory, b.Directory, Path.Combine(_dir, "o"), [0.5]));
        Assert.Contains("model_type 'mistral' differs", e.Message, StringComparison.Ordinal);
    }
}
