using ZeTT.Runtime.Formats;
using ZeTT.Runtime.Tests.Tokenizers;

namespace ZeTT.Runtime.Tests.Formats;

/// <summary>The tokenizer metadata zett writes equals what llama.cpp's own converter wrote for
/// the same tokenizers (shared/data/gguf-vocab), except where zett is deliberately different
/// (merge-rank scores), and tokenizers GGUF cannot express are refused with the reason.</summary>
public sealed class GgufTokenizerTests
{
    private static Dictionary<string, GgufValue> Ours(string tokenizer, int vocab) =>
        GgufTokenizer.FromDirectory(TokenizerTestData.Dir(tokenizer), vocab).Metadata
            .ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal);

    private static GgufFile Theirs(string name)
    {
        string? dir = GgufTestData.VocabDir;
        Assert.SkipWhen(dir is null, GgufTestData.VocabSkipReason);
        return GgufFile.Open(Path.Combine(dir!, $"ggml-vocab-{name}.gguf"));
    }

    private static void AssertSameKey(GgufFile theirs, Dictionary<string, GgufValue> ours, string key)
    {
        Assert.True(ours.ContainsKey(key), $"zett did not write {key}");
        GgufValue a = theirs.Require(key), b = ours[key];
        Assert.Equal(a.Type, b.Type);
        if (a.Value is Array arr)
        {
            Assert.Equal(a.ElementType, b.ElementType);
            Assert.Equal(arr.Cast<object>(), ((Array)b.Value).Cast<object>());
        }
        else
        {
            Assert.Equal(a.Value, b.Value);
        }
    }

    [Theory]
    [InlineData("gpt2", "gpt-2", 50257)]
    [InlineData("gpt-neox-20b", "gpt-neox", 50432)]
    public void Byte_level_bpe_matches_llama_cpp_converter(string tokenizer, string vocabFile, int rows)
    {
        GgufFile theirs = Theirs(vocabFile);
        Dictionary<string, GgufValue> ours = Ours(tokenizer, rows);
        foreach (string key in new[]
        {
            "tokenizer.ggml.model", "tokenizer.ggml.tokens", "tokenizer.ggml.merges",
            "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
        })
        {
            AssertSameKey(theirs, ours, key);
        }
        // Token types equal, except the rows past the tokenizer ("[PAD{id}]"): the GPT-NeoX
        // file comes from an older converter that typed them USER_DEFINED; today's writes
        // UNUSED, as zett does.
        string[] tokens = (string[])theirs.Require("tokenizer.ggml.tokens").Value;
        int[] theirTypes = (int[])theirs.Require("tokenizer.ggml.token_type").Value;
        int[] ourTypes = (int[])ours["tokenizer.ggml.token_type"].Value;
        for (int id = 0; id < tokens.Length; id++)
        {
            bool pad = tokens[id] == $"[PAD{id}]";
            Assert.True(pad ? ourTypes[id] == 5 : ourTypes[id] == theirTypes[id],
                $"token {id} '{tokens[id]}': type {ourTypes[id]}, llama.cpp {theirTypes[id]}");
        }
        if (theirs.Get("tokenizer.ggml.pre") is not null)
        {
            AssertSameKey(theirs, ours, "tokenizer.ggml.pre");
        }
    }

    [Fact]
    public void Sentencepiece_style_bpe_matches_llama_cpp_except_the_scores()
    {
        GgufFile theirs = Theirs("llama-spm");
        Dictionary<string, GgufValue> ours = Ours("llama2-tinyllama", 32000);
        foreach (string key in new[]
        {
            "tokenizer.ggml.model", "tokenizer.ggml.tokens", "tokenizer.ggml.token_type",
            "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
            "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.add_bos_token",
            "tokenizer.ggml.add_eos_token",
        })
        {
            AssertSameKey(theirs, ours, key);
        }
        // Scores: minus the rank of the merge that makes each token, so llama.cpp's
        // score-ordered merging follows the merge ranks. "▁t" is Llama's first merge.
        string[] tokens = (string[])ours["tokenizer.ggml.tokens"].Value;
        float[] scores = (float[])ours["tokenizer.ggml.scores"].Value;
        Assert.Equal(0f, scores[Array.IndexOf(tokens, "▁t")]);
        Assert.True(scores[Array.IndexOf(tokens, "▁the")] < scores[Array.IndexOf(tokens, "▁t")]);
        Assert.True(ours["tokenizer.ggml.add_space_prefix"].Value is true);
    }

    [Fact]
    public void The_transferred_tokenizer_is_written_as_gpt2_with_its_prepended_space_declared()
    {
        // A byte-level tokenizer as zett converts it: Prepend(" ") and the reference's regex.
        string dir = Directory.CreateTempSubdirectory("zett-gguf-tok-").FullName;
        try
        {
            TokenizerTestData.Convert("gpt2").Save(dir);
            GgufTokenizerMetadata meta = GgufTokenizer.FromDirectory(dir, 50257);
            var kv = meta.Metadata.ToDictionary(p => p.Key, p => p.Value, StringComparer.Ordinal);
            Assert.Equal("gpt2", kv["tokenizer.ggml.model"].AsString());
            Assert.Equal("gpt-2", kv["tokenizer.ggml.pre"].AsString());
            Assert.True(kv["tokenizer.ggml.add_space_prefix"].Value is true);
            Assert.True(meta.PrependsSpace);
            Assert.Contains(meta.Notes, n => n.Contains("combining marks", StringComparison.Ordinal));
            Assert.Contains(meta.Notes, n => n.Contains("\" \" + text", StringComparison.Ordinal));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Theory]
    [InlineData("t5-small", "a Unigram tokenizer cannot be written")]
    [InlineData("bert-base-uncased", "a WordPiece tokenizer cannot be written")]
    public void Tokenizers_gguf_cannot_express_are_refused_with_why(string tokenizer, string why)
    {
        ZettException e = Assert.Throws<ZettException>(() =>
            GgufTokenizer.FromDirectory(TokenizerTestData.Dir(tokenizer), 40000));
        Assert.StartsWith(Path.Combine(TokenizerTestData.Dir(tokenizer), "tokenizer.json") + ": ", e.Message);
        Assert.Contains(why, e.Message);
    }

    [Fact]
    public void A_regex_llama_cpp_has_no_pre_tokenizer_for_is_refused()
    {
        string dir = Directory.CreateTempSubdirectory("zett-gguf-tok-").FullName;
        try
        {
            string json = File.ReadAllText(Path.Combine(TokenizerTestData.Dir("gpt2"), "tokenizer.json"));
            var root = System.Text.Json.Nodes.JsonNode.Parse(json)!.AsObject();
            root["pre_tokenizer"] = System.Text.Json.Nodes.JsonNode.Parse("""
                {"type": "Sequence", "pretokenizers": [
                  {"type": "Split", "pattern": {"Regex": "\\p{L}+|\\s+"}, "behavior": "Isolated",
                   "invert": false},
                  {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
                   "use_regex": false}]}
                """);
            File.WriteAllText(Path.Combine(dir, "tokenizer.json"), root.ToJsonString());
            ZettException e = Assert.Throws<ZettException>(() => GgufTokenizer.FromDirectory(dir, 50257));
            Assert.Contains("is not one of llama.cpp's pre-tokenizers", e.Message);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
