using ZeTT.Runtime.Formats;
using ZeTT.Runtime.Tests.Formats;
using ZeTT.Runtime.Transfer;

namespace ZeTT.Cli.Tests;

/// <summary><c>zett export-gguf</c> and <c>zett transfer --format gguf|both</c> from the command
/// line: the files appear complete, bad input is one line and exit code 2 with nothing
/// written.</summary>
public sealed class ExportGgufCommandTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("zett-cli-gguf-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string P(string name) => Path.Combine(_dir, name);

    private static string DefaultModel => DefaultTransfer.FindAsset();

    [Fact]
    public void Export_writes_the_requested_type_and_refuses_to_overwrite()
    {
        var (code, output, err) = Zett.Run("export-gguf", "--model", DefaultModel, "--out", P("m.gguf"),
            "--gguf-type", "q8_0");
        Assert.True(code == 0, err);
        Assert.Contains("llama, 47 tensors, q8_0", output, StringComparison.Ordinal);
        Assert.Contains("stored as F16 instead of Q8_0", output, StringComparison.Ordinal);
        Assert.Equal(7L, GgufFile.Open(P("m.gguf")).Require("general.file_type").AsInt64());

        (code, _, err) = Zett.Run("export-gguf", "--model", DefaultModel, "--out", P("m.gguf"));
        Assert.Equal(2, code);
        Assert.Equal($"error: {P("m.gguf")}: exists (--overwrite replaces it)", err.Trim());
        (code, _, err) = Zett.Run("export-gguf", "--model", DefaultModel, "--out", P("m.gguf"),
            "--overwrite", "--gguf-type", "f32");
        Assert.True(code == 0, err);
        Assert.Equal(0L, GgufFile.Open(P("m.gguf")).Require("general.file_type").AsInt64());

        (code, _, err) = Zett.Run("export-gguf", "--model", DefaultModel, "--out", P("x.gguf"),
            "--gguf-type", "q4_0");
        Assert.Equal(2, code);
        Assert.Contains("--gguf-type must be one of f16, bf16, f32, q8_0", err, StringComparison.Ordinal);
    }

    [Fact]
    public void An_architecture_llama_cpp_has_no_name_for_is_one_line_naming_it()
    {
        TinyModels.Write(P("roberta"), "roberta");
        var (code, _, err) = Zett.Run("export-gguf", "--model", P("roberta"), "--out", P("r.gguf"));
        Assert.Equal(2, code);
        Assert.Single(err.TrimEnd('\n').Split('\n'));
        Assert.StartsWith($"error: {Path.Combine(P("roberta"), "config.json")}: model_type 'roberta'", err,
            StringComparison.Ordinal);
        Assert.Equal(["roberta"], Directory.EnumerateFileSystemEntries(_dir).Select(Path.GetFileName));
    }

    [Fact]
    public void Transfer_writes_gguf_alone_or_inside_the_directory()
    {
        var (code, output, err) = Zett.Run("transfer", "--model", DefaultModel, "--tokenizer", "gpt2",
            "--method", "fvt", "--out", P("t.gguf"), "--format", "gguf");
        Assert.True(code == 0, err);
        Assert.Contains($"wrote {P("t.gguf")} (GGUF)", output, StringComparison.Ordinal);
        Assert.Contains("\" \" + text", output, StringComparison.Ordinal);
        GgufFile g = GgufFile.Open(P("t.gguf"));
        Assert.Equal("gpt2", g.Require("tokenizer.ggml.model").AsString());
        Assert.Equal(g.Require("llama.vocab_size").AsInt64(), g.Require("tokenizer.ggml.tokens").Count);
        // The intermediate Hugging Face directory is gone.
        Assert.Equal(["t.gguf"], Directory.EnumerateFileSystemEntries(_dir).Select(Path.GetFileName));

        (code, _, err) = Zett.Run("transfer", "--model", DefaultModel, "--tokenizer", "gpt2",
            "--method", "fvt", "--out", P("both"), "--format", "both", "--gguf-type", "bf16");
        Assert.True(code == 0, err);
        Assert.True(File.Exists(P("both/config.json")));
        Assert.Equal(32L, GgufFile.Open(Path.Combine(P("both"), TokenizerTransfer.GgufFileName))
            .Require("general.file_type").AsInt64());
    }
}
