using ZeTT.Ops;
using ZeTT.Runtime.Formats;
using ZeTT.Runtime.Tests.Formats;

namespace ZeTT.Cli.Tests;

public sealed class InspectAndApplyToFtTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("zett-cli-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void Inspect_safetensors_lists_dtype_shape_and_bytes()
    {
        string path = Path.Combine(_dir, "a.safetensors");
        SafetensorsWriter.Write(path, [
            SafetensorsEntry.FromFloat32("w", [2, 3], new float[6], DType.BF16),
            SafetensorsEntry.FromInt32("ids", [4], [1, 2, 3, 4]),
        ]);
        var (code, output, err) = Zett.Run("inspect", path);
        Assert.Equal(0, code);
        Assert.Empty(err);
        Assert.Contains("2 tensors", output, StringComparison.Ordinal);
        Assert.Contains("w BF16 [2, 3] 12 B", output, StringComparison.Ordinal);
        Assert.Contains("ids I32 [4] 16 B", output, StringComparison.Ordinal);
        Assert.Contains("metadata format = pt", output, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("llama", "tied embeddings   no", "output embedding  lm_head.weight F32 [11, 8]")]
    [InlineData("gpt2", "tied embeddings   yes", "input embedding   transformer.wte.weight F32 [11, 8]")]
    [InlineData("xlm-roberta", "tied embeddings   yes", "output bias       lm_head.bias F32 [11]")]
    public void Inspect_model_directory_shows_family_vocab_and_tying(string family, string tied, string line)
    {
        TinyModels.Write(_dir, family, maxShardBytes: 300);
        var (code, output, _) = Zett.Run("inspect", _dir, "--tensors");
        Assert.Equal(0, code);
        Assert.Contains($"model_type {family}", output, StringComparison.Ordinal);
        Assert.Contains("vocab size        11", output, StringComparison.Ordinal);
        Assert.Contains(tied, output, StringComparison.Ordinal);
        Assert.Contains(line, output, StringComparison.Ordinal);
        Assert.Contains("shards", output, StringComparison.Ordinal);
        Assert.Contains("tokenizer         BPE", output, StringComparison.Ordinal);
    }

    [Fact]
    public void Inspect_hypernetwork_shows_dims_and_options()
    {
        TinyHypernet.Write(_dir);
        var (code, output, err) = Zett.Run("inspect", _dir);
        Assert.True(code == 0, err);
        Assert.Contains("ZeTT hypernetwork", output, StringComparison.Ordinal);
        Assert.Contains("hidden 8, intermediate 16, layers 2, heads 2, surface maxlen 3", output,
            StringComparison.Ordinal);
        Assert.Contains("languages (3): en, de, fr", output, StringComparison.Ordinal);
        Assert.Contains("untied", output, StringComparison.Ordinal);
    }

    [Fact]
    public void Inspect_tokenizer_json_counts_vocab_and_added_tokens()
    {
        string path = Path.Combine(_dir, "tokenizer.json");
        File.WriteAllText(path, """
            {"added_tokens": [{"id": 0, "content": "<s>"}],
             "model": {"type": "Unigram", "vocab": [["<s>", 0.0], ["a", -1.0], ["b", -2.0]]}}
            """);
        var (code, output, _) = Zett.Run("inspect", path);
        Assert.Equal(0, code);
        Assert.Contains("Unigram, vocab size 3, 1 added tokens", output, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("corrupt.safetensors")]
    [InlineData("missing")]
    [InlineData("bad.json")]
    [InlineData("modeldir")]
    public void Inspect_bad_input_is_one_error_line_and_exit_2(string name)
    {
        string path = Path.Combine(_dir, name);
        switch (name)
        {
            case "corrupt.safetensors": File.WriteAllBytes(path, [1, 2, 3, 4, 5, 6, 7, 8, 9]); break;
            case "bad.json": File.WriteAllText(path, "{\"model\": "); break;
            case "modeldir":
                TinyModels.Write(path, "llama");
                File.WriteAllText(Path.Combine(path, "config.json"), "{\"model_type\": \"llama\", \"vocab_size\": 5}");
                break;
        }
        var (code, output, err) = Zett.Run("inspect", path);
        Assert.Equal(2, code);
        Assert.Empty(output);
        string[] lines = err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines);
        Assert.StartsWith($"error: {path}", lines[0], StringComparison.Ordinal);
    }

    [Fact]
    public void Apply_to_ft_writes_one_model_per_lambda()
    {
        TinyModel b = TinyModels.Write(Path.Combine(_dir, "b"), "llama", seed: 1);
        TinyModel f = TinyModels.Write(Path.Combine(_dir, "f"), "llama", seed: 2);
        TinyModel bt = TinyModels.Write(Path.Combine(_dir, "bt"), "llama", vocab: 13, seed: 3);
        string outDir = Path.Combine(_dir, "out");
        var (code, output, err) = Zett.Run("apply-to-ft", "--base", b.Directory, "--ft", f.Directory,
            "--transferred-base", bt.Directory, "--out", outDir, "--lambdas", "0.3", "0.7");
        Assert.True(code == 0, err);
        Assert.Contains("lambda_0.3", output, StringComparison.Ordinal);
        using HfModelDirectory m = HfModelDirectory.Open(Path.Combine(outDir, "lambda_0.7"));
        Assert.Equal(13, m.VocabSize);
    }

    [Fact]
    public void Apply_to_ft_bad_input_exits_2()
    {
        TinyModel b = TinyModels.Write(Path.Combine(_dir, "b"), "llama", seed: 1);
        var (code, _, err) = Zett.Run("apply-to-ft", "--base", b.Directory, "--ft", Path.Combine(_dir, "nope"),
            "--transferred-base", b.Directory, "--out", Path.Combine(_dir, "o"));
        Assert.Equal(2, code);
        Assert.StartsWith("error: ", err, StringComparison.Ordinal);
        Assert.Contains("nope", err, StringComparison.Ordinal);

        // An output path that is a file: one error line, the file untouched (one λ and several).
        string file = Path.Combine(_dir, "a-file");
        File.WriteAllText(file, "keep");
        foreach (string[] lambdas in new[] { new[] { "0.5" }, ["0.3", "0.7"] })
        {
            (code, _, err) = Zett.Run(["apply-to-ft", "--base", b.Directory, "--ft", b.Directory,
                "--transferred-base", b.Directory, "--out", file, "--lambdas", .. lambdas]);
            Assert.Equal(2, code);
            Assert.Equal($"error: {file}: is a file, not an output directory", err.TrimEnd());
            Assert.Equal("keep", File.ReadAllText(file));
        }
    }
}
