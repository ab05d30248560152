using System.Text;
using System.Text.Json.Nodes;
using ZeTT.Runtime.Tokenizers;
using RustTokenizer = Tokenizers.DotNet.Tokenizer;

namespace ZeTT.Runtime.Tests.Tokenizers;

/// <summary>
/// Words and tokens near the 4,096-character token cap, where looking up every prefix (Unigram)
/// or every candidate end (WordPiece) was quadratic in the token length and cubic in the word
/// (a 4,096-character word: about 3·10^10 characters hashed). The models find the same tokens
/// as the Rust library (or, where the library itself is cubic, the obvious ones) on 4,096- to
/// 20,000-character words of one letter whose vocabulary holds runs of it up to the cap.
/// </summary>
public sealed class LongTokenTests : IDisposable
{
    private readonly string dir = Directory.CreateTempSubdirectory("zett-longtok-").FullName;

    public void Dispose() => Directory.Delete(dir, recursive: true);

    private string Write(string name, JsonObject model)
    {
        var root = new JsonObject
        {
            ["version"] = "1.0",
            ["truncation"] = null,
            ["padding"] = null,
            ["added_tokens"] = new JsonArray(),
            ["normalizer"] = null,
            ["pre_tokenizer"] = null,
            ["post_processor"] = null,
            ["decoder"] = null,
            ["model"] = model,
        };
        string file = Path.Combine(dir, name + ".json");
        File.WriteAllText(file, root.ToJsonString(), new UTF8Encoding(false));
        return file;
    }

    private static string Run(int n) => new('a', n);

    [Theory]
    [InlineData(4096)]
    [InlineData(20_005)]
    public void Bpe_merges_a_long_run_as_the_rust_library(int length)
    {
        var vocab = new JsonObject { ["b"] = 0 };
        var merges = new JsonArray();
        for (int k = 0, id = 1; 1 << k <= TokenizerLimits.MaxTokenLength; k++)
        {
            vocab[Run(1 << k)] = id++;
            if (k > 0)
            {
                merges.Add((JsonNode)new JsonArray(Run(1 << (k - 1)), Run(1 << (k - 1))));
            }
        }
        string file = Write("bpe", new JsonObject
        {
            ["type"] = "BPE",
            ["vocab"] = vocab,
            ["merges"] = merges,
        });
        string text = Run(length);
        using var rust = new RustTokenizer(file);
        int[] ours = HfTokenizer.Load(file).Encode(text).Ids;
        Assert.Equal(rust.Encode(text), ours.Select(i => (uint)i));
        Assert.Equal(length, ours.Sum(id => 1 << (id - 1)));
    }

    [Theory]
    [InlineData(4096)]
    [InlineData(20_005)]
    public void Unigram_segments_a_long_run_as_the_rust_library(int length)
    {
        var vocab = new JsonArray(new JsonArray("<unk>", 0.0), new JsonArray("b", -1.0));
        for (int k = 0; 1 << k <= TokenizerLimits.MaxTokenLength; k++)
        {
            // Longer runs score better per character, so the long pieces are taken.
            vocab.Add((JsonNode)new JsonArray(Run(1 << k), -1.0 - k * 0.01));
        }
        string file = Write("unigram", new JsonObject
        {
            ["type"] = "Unigram",
            ["unk_id"] = 0,
            ["vocab"] = vocab,
        });
        string text = Run(length);
        using var rust = new RustTokenizer(file);
        int[] ours = HfTokenizer.Load(file).Encode(text).Ids;
        Assert.Equal(rust.Encode(text), ours.Select(i => (uint)i));
        Assert.Contains(ours, id => id == 14);
    }

    [Fact]
    public void WordPiece_stops_its_longest_match_at_the_longest_entry()
    {
        // The library tries every end from the word's end down (cubic here); the result is
        // plain: the first piece, then ##a for each further character.
        string file = Write("wordpiece", new JsonObject
        {
            ["type"] = "WordPiece",
            ["unk_token"] = "[UNK]",
            ["continuing_subword_prefix"] = "##",
            ["max_input_chars_per_word"] = 1_000_000,
            ["vocab"] = new JsonObject { ["[UNK]"] = 0, ["a"] = 1, ["##a"] = 2, ["aa"] = 3 },
        });
        int[] ids = HfTokenizer.Load(file).Encode(Run(100_000)).Ids;
        Assert.Equal(99_999, ids.Length);
        Assert.Equal(3, ids[0]);
        Assert.All(ids[1..], id => Assert.Equal(2, id));
    }
}
