using ZeTT.Runtime.Formats;
using ZeTT.Runtime.Tokenizers;

namespace ZeTT.Cli.Tests;

public sealed class TokenizerCommandTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("zett-cli-tok-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static string Data(string name)
    {
        for (DirectoryInfo? d = new(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            string path = Path.Combine(d.FullName, "tests", "data", "tokenizers", name);
            if (Directory.Exists(path))
            {
                return path;
            }
        }
        throw new InvalidOperationException($"tests/data/tokenizers/{name} not found");
    }

    [Fact]
    public void Convert_tokenizer_writes_a_loadable_byte_level_tokenizer()
    {
        string output = Path.Combine(_dir, "mistral-bl");
        var (code, stdout, err) = Zett.Run("convert-tokenizer", "--tokenizer",
            Data("mistral-7b-v0.1"), "--out", output);
        Assert.True(code == 0, err);
        Assert.Contains("32000 → 32522 tokens", stdout, StringComparison.Ordinal);
        HfTokenizer back = HfTokenizer.Load(output);
        Assert.Equal(32522, back.VocabSize);
        Assert.True(back.IsByteLevel);
        Assert.True(File.Exists(Path.Combine(output, "tokenizer_config.json")));
        Assert.True(File.Exists(Path.Combine(output, "special_tokens_map.json")));
    }

    [Fact]
    public void Convert_tokenizer_matches_special_tokens_and_whitespace()
    {
        string output = Path.Combine(_dir, "gpt2-bl");
        var (code, stdout, err) = Zett.Run("convert-tokenizer", "--tokenizer", Data("gpt2"),
            "--out", output, "--whitespace-consistent", "--match-special-tokens-to",
            Data("mistral-7b-v0.1"));
        Assert.True(code == 0, err);
        Assert.Contains("special tokens moved", stdout, StringComparison.Ordinal);
        HfTokenizer back = HfTokenizer.Load(output);
        Assert.Equal("<s>", back.IdToToken(1));
        Assert.Equal(2, back.EosTokenId);
        Assert.NotNull(back.TokenToId("ĠĠĠ"));
    }

    [Fact]
    public void Surface_forms_writes_the_matrix_and_reports_truncation()
    {
        string output = Path.Combine(_dir, "sf.safetensors");
        var (code, stdout, err) = Zett.Run("surface-forms", "--hn-tokenizer",
            Data("llama2-tinyllama"), "--tokenizer", Data("bert-base-uncased"), "--maxlen", "7",
            "--out", output);
        Assert.True(code == 0, err);
        using SafetensorsFile file = SafetensorsFile.Open(output);
        int[] ids = file.ReadInt32("surface_forms", out int[] shape);
        TransferTokenizers expected = TransferTokenizers.Prepare(Data("llama2-tinyllama"),
            Data("bert-base-uncased"), null, 7);
        Assert.Equal([expected.SurfaceForms.Rows, 7], shape);
        Assert.Equal(expected.SurfaceForms.Ids, ids);
        Assert.Contains($"Truncated {expected.SurfaceForms.TruncatedCount} tokens.", stdout,
            StringComparison.Ordinal);
        Assert.Equal(expected.SurfaceForms.TruncatedCount.ToString(
            System.Globalization.CultureInfo.InvariantCulture), file.Metadata["n_truncated"]);
    }

    [Fact]
    public void Builtin_names_are_accepted_where_a_tokenizer_path_is()
    {
        string output = Path.Combine(_dir, "r50k-bl");
        var (code, stdout, err) = Zett.Run("convert-tokenizer", "--tokenizer", "r50k_base",
            "--out", output);
        Assert.True(code == 0, err);
        Assert.Contains("50257 → 50257 tokens", stdout, StringComparison.Ordinal);
        Assert.Equal(50256, HfTokenizer.Load(output).EosTokenId);
    }

    [Fact]
    public void Unknown_tokenizer_is_a_user_error()
    {
        var (code, _, err) = Zett.Run("convert-tokenizer", "--tokenizer",
            Path.Combine(_dir, "missing"), "--out", _dir);
        Assert.Equal(2, code);
        Assert.StartsWith("error: ", err, StringComparison.Ordinal);
        Assert.Contains("built-in", err, StringComparison.Ordinal);
    }

    [Fact]
    public void Output_paths_that_cannot_be_written_are_user_errors()
    {
        string file = Path.Combine(_dir, "a-file");
        File.WriteAllText(file, "keep");
        var (code, _, err) = Zett.Run("convert-tokenizer", "--tokenizer", "gpt2", "--out", file);
        Assert.Equal(2, code);
        Assert.Equal($"error: {file}: is a file, not a directory to write the tokenizer into",
            err.TrimEnd());
        Assert.Equal("keep", File.ReadAllText(file));

        string[] surfaceForms = ["surface-forms", "--hn-tokenizer", Data("gpt2"), "--tokenizer",
            Data("gpt2"), "--maxlen", "3", "--out"];
        (code, _, err) = Zett.Run([.. surfaceForms, _dir]);
        Assert.Equal(2, code);
        Assert.Equal($"error: {_dir}: is a directory, not a file to write", err.TrimEnd());

        string missing = Path.Combine(_dir, "no-such-folder", "sf.safetensors");
        (code, _, err) = Zett.Run([.. surfaceForms, missing]);
        Assert.Equal(2, code);
        Assert.Equal($"error: {missing}: folder {Path.GetDirectoryName(missing)} does not exist",
            err.TrimEnd());
        Assert.False(Directory.Exists(Path.GetDirectoryName(missing)));
    }

    [Theory]
    [InlineData("gpt2", "BPE, vocab size 50257, 1 added tokens (1 special, 0 beyond the model's vocabulary)")]
    [InlineData("roberta-base", "BPE, vocab size 50265, 5 added tokens (5 special, 0 beyond")]
    [InlineData("bert-base-uncased", "WordPiece, vocab size 30522, 5 added tokens (5 special")]
    [InlineData("t5-small", "Unigram, vocab size 32100, 103 added tokens (103 special")]
    [InlineData("gpt-neox-20b", "BPE, vocab size 50254, 25 added tokens (2 special, 23 beyond the model's vocabulary)")]
    public void Inspect_names_the_model_type_of_every_tokenizer_and_takes_its_directory(string name, string expected)
    {
        // These tokenizer.json files predate the "type" key for their model (gpt2, roberta,
        // bert, t5): the type is what their keys make it, as the loader decides.
        var (code, output, err) = Zett.Run("inspect", Data(name));
        Assert.True(code == 0, err);
        Assert.Contains(expected, output, StringComparison.Ordinal);
        Assert.Equal(output, Zett.Run("inspect", Path.Combine(Data(name), "tokenizer.json")).Out);
    }

    [Fact]
    public void Every_command_that_writes_keeps_an_existing_output_unless_told_to_overwrite()
    {
        string tok = Path.Combine(_dir, "tok");
        Assert.Equal(0, Zett.Run("convert-tokenizer", "--tokenizer", "gpt2", "--out", tok).Code);
        var (code, _, err) = Zett.Run("convert-tokenizer", "--tokenizer", "gpt2", "--out", tok);
        Assert.Equal(2, code);
        Assert.Equal($"error: {tok}: output directory exists and is not empty (--overwrite replaces it)", err.TrimEnd());
        Assert.Equal(0, Zett.Run("convert-tokenizer", "--tokenizer", "gpt2", "--out", tok, "--overwrite").Code);

        string sf = Path.Combine(_dir, "sf.safetensors");
        File.WriteAllText(sf, "keep");
        string[] args = ["surface-forms", "--hn-tokenizer", Data("gpt2"), "--tokenizer", Data("gpt2"),
            "--maxlen", "3", "--out", sf];
        (code, _, err) = Zett.Run(args);
        Assert.Equal(2, code);
        Assert.Equal($"error: {sf}: output file exists (--overwrite replaces it)", err.TrimEnd());
        Assert.Equal("keep", File.ReadAllText(sf));
        Assert.Equal(0, Zett.Run([.. args, "--overwrite"]).Code);

        (code, _, err) = Zett.Run("predict", "--hypernet", _dir, "--source-embeddings", sf,
            "--surface-forms", sf, "--out", sf);
        Assert.Equal(2, code);
        Assert.Contains("output file exists", err, StringComparison.Ordinal);
    }

    [Fact]
    public void Surface_forms_needs_maxlen()
    {
        var (code, _, err) = Zett.Run("surface-forms", "--hn-tokenizer", Data("gpt2"),
            "--tokenizer", Data("gpt2"), "--out", Path.Combine(_dir, "x.safetensors"));
        Assert.Equal(2, code);
        Assert.Contains("--maxlen", err, StringComparison.Ordinal);
    }
}
