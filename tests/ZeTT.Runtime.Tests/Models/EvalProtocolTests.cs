using System.Text;
using System.Text.Json;
using ZeTT.Ops.Cpu;
using ZeTT.Runtime.Models;
using ZeTT.Runtime.Tokenizers;
using ZeTT.Runtime.Transfer;

namespace ZeTT.Runtime.Tests.Models;

public class EvalProtocolTests
{
    private static string Fixture(string name) =>
        Path.Combine(Path.GetDirectoryName(GoldenLogitsTests.FixtureDir("llama"))!, "eval", name);

    private static string Asset()
    {
        string lm = Path.GetDirectoryName(GoldenLogitsTests.FixtureDir("llama"))!;
        return Path.GetFullPath(Path.Combine(lm, "..", "..", "..", DefaultTransfer.AssetPath));
    }

    /// <summary>Bits per byte, token count and bytes equal scripts/eval_reference.py's
    /// (independent tokenizer and a float64 PyTorch model) within 1e-4 relative.</summary>
    [Fact]
    public void Stories260K_bits_per_byte_match_the_pytorch_protocol()
    {
        using JsonDocument reference = JsonDocument.Parse(
            File.ReadAllText(Fixture("stories260K-dev-20000.json")));
        JsonElement r = reference.RootElement;
        IReadOnlyList<EvalDocument> docs = EvalText.Read([Fixture("tinystories-dev-25.jsonl")],
            r.GetProperty("max_bytes").GetInt64());
        using var model = LanguageModel.Open(Asset(), new CpuBackend());
        LmEvalResult result = LmEvaluation.Evaluate(model, HfTokenizer.Load(Asset()), docs);
        Assert.Equal(r.GetProperty("bytes").GetInt64(), result.Bytes);
        Assert.Equal(r.GetProperty("tokens").GetInt64(), result.Tokens);
        Assert.Equal(r.GetProperty("encoded_tokens").GetInt64(), result.EncodedTokens);
        Assert.Equal(512, result.Context);
        double expected = r.GetProperty("bits_per_byte").GetDouble();
        Assert.True(Math.Abs(result.BitsPerByte - expected) <= 1e-4 * expected,
            $"bits per byte {result.BitsPerByte:R}, reference {expected:R}");
    }

    [Fact]
    public void Text_that_is_not_utf8_names_the_file_and_byte_offset()
    {
        string path = Path.Combine(Path.GetTempPath(), $"zett-bad-{Environment.ProcessId}.txt");
        File.WriteAllBytes(path, [.. Encoding.UTF8.GetBytes("héllo "), 0xC3, 0x28, (byte)'x']);
        try
        {
            var e = Assert.Throws<ZettException>(() => EvalText.Read([path], null));
            Assert.Equal($"{path}: not UTF-8 at byte offset 7", e.Message);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void Byte_cap_cuts_the_crossing_document_at_a_character_boundary()
    {
        string path = Path.Combine(Path.GetTempPath(), $"zett-cap-{Environment.ProcessId}.jsonl");
        File.WriteAllText(path, "{\"text\": \"abc\"}\n\n{\"text\": \"déf\"}\n{\"text\": \"zzz\"}\n");
        try
        {
            IReadOnlyList<EvalDocument> docs = EvalText.Read([path], 5);
            Assert.Equal(["abc", "d"], docs.Select(d => d.Text));
            Assert.Equal(4, docs.Sum(d => d.Bytes));
            Assert.Equal($"{path}:3", docs[1].Source);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void Unsupported_family_is_named()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"zett-t5-{Environment.ProcessId}");
        Directory.CreateDirectory(dir);
        try
        {
            string src = GoldenLogitsTests.FixtureDir("llama");
            File.Copy(Path.Combine(src, "model.safetensors"), Path.Combine(dir, "model.safetensors"));
            string config = File.ReadAllText(Path.Combine(src, "config.json"))
                .Replace("\"model_type\": \"llama\"", "\"model_type\": \"gemma2\"",
                    StringComparison.Ordinal);
            File.WriteAllText(Path.Combine(dir, "config.json"), config);
            var e = Assert.Throws<ZettException>(() => LanguageModel.Open(dir, new CpuBackend()));
            Assert.Contains("'gemma2'", e.Message);
            Assert.Contains("config.json", e.Message);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
