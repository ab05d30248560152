using System.Text;
using System.Text.Json.Nodes;
using ZeTT.Runtime.Tokenizers;
using RustTokenizer = Tokenizers.DotNet.Tokenizer;

namespace ZeTT.Runtime.Tests.Tokenizers;

/// <summary>
/// Every normalizer, pre-tokenizer, post-processor, decoder and added-token option against the
/// Rust library, one component at a time, in a probe tokenizer that makes each stage visible in
/// the ids: a BPE model without merges whose vocabulary holds every character both plain and
/// with the continuing-subword prefix <c>##</c>, so that the ids spell the normalized text
/// character by character and mark where each pre-token starts.
/// </summary>
public sealed class PipelineComponentTests : IDisposable
{
    private readonly string dir = Directory.CreateTempSubdirectory("zett-components-").FullName;

    public void Dispose() => Directory.Delete(dir, recursive: true);

    private static readonly string[] Texts =
    [
        .. RustParityTests.HardTexts,
        "Hello World!  HELLO   world?\tFoo-bar_baz (qux) [x] {y} 42 apples, 3.5kg; naïve Ærø",
        "Ελληνικά ΣΟΦΊΑ, русский ТЕКСТ, עִבְרִית, العربية, हिन्दी, ไทย, 日本語のテキスト、カタカナ ー 漢字",
        "one||two|||three | four|",
        "Mixed123numbers456and789 ٣٤ ²³ ½",
        "it'ſ IT'S it'ſt 'ſ 'K 'ﬅ",
        "Deseret 𐐀𐐨𐑏 Osage 𐒰𐓘 Adlam 𞤀𞤢 Warang 𑢠𑣟 Hungarian 𐲀𐳀 bold 𝐚𝐁 mixed𐐀abc 𐑐 😀x",
        // NFC's quick check, each alone so that nothing else sends the text down the full
        // path: a mark, Hangul L+V and LV+T, a second with class 0 (Oriya AI length mark), a
        // singleton (Angstrom sign), a CJK compatibility ideograph, a kana voicing mark, a nukta.
        "Cafe\u0301", "\u1100\u1161", "\uAC00\u11A8", "\u0B47\u0B3E", "\u212B", "\uF900",
        "\u304B\u3099", "\u0915\u093C",
    ];

    private static readonly string Gpt2 =
        @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    private static readonly string Llama3 =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    private static readonly string Qwen2 =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    private static readonly string DeepSeekDigits = @"\p{N}{1,3}";

    private static readonly string DeepSeekCjk = @"[一-龥ࠀ-一가-퟿]+";

    // DeepSeek LLM's word pattern (its Greek Extended ranges left out): a letter class that
    // lists ranges outside the BMP.
    private static readonly string DeepSeekWord =
        @"\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+";

    // Category escapes beside an astral range, inside and outside classes, and astral literals.
    private static readonly string AstralMixed = @"[\p{N}𐐀-𐑏]+|\p{L}+|[\p{Lu}😀]|\d|😀";

    public static TheoryData<string, string> Components()
    {
        var d = new TheoryData<string, string>();
        void N(string json) => d.Add("normalizer", json);
        void P(string json) => d.Add("pre_tokenizer", json);
        void D(string json) => d.Add("decoder", json);
        void Q(string json) => d.Add("post_processor", json);
        foreach (string form in new[] { "NFC", "NFD", "NFKC", "NFKD", "Lowercase", "Nmt" })
        {
            N($$"""{"type":"{{form}}"}""");
        }
        N("""{"type":"Strip","strip_left":true,"strip_right":true}""");
        N("""{"type":"Strip","strip_left":false,"strip_right":true}""");
        N("""{"type":"Strip","strip_left":true,"strip_right":false}""");
        N("""{"type":"Sequence","normalizers":[{"type":"NFD"},{"type":"StripAccents"}]}""");
        N("""{"type":"StripAccents"}""");
        N("""{"type":"Replace","pattern":{"String":"o"},"content":"00"}""");
        N("""{"type":"Replace","pattern":{"Regex":"\\s+"},"content":" "}""");
        N("""{"type":"Replace","pattern":{"Regex":"[aeiou]+"},"content":""}""");
        N("""{"type":"Prepend","prepend":"▁"}""");
        N("""{"type":"ByteLevel"}""");
        foreach (string strip in new[] { "null", "true", "false" })
        {
            foreach (string lower in new[] { "true", "false" })
            {
                N($$"""{"type":"BertNormalizer","clean_text":true,"handle_chinese_chars":true,"strip_accents":{{strip}},"lowercase":{{lower}}}""");
            }
        }
        N("""{"type":"BertNormalizer","clean_text":false,"handle_chinese_chars":false,"strip_accents":null,"lowercase":false}""");
        N("""{"type":"Sequence","normalizers":[{"type":"NFKC"},{"type":"Lowercase"},{"type":"Replace","pattern":{"String":" "},"content":"▁"}]}""");

        P("""{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":true,"use_regex":true}""");
        P("""{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":false}""");
        foreach (string scheme in new[] { "always", "first", "never" })
        {
            foreach (string split in new[] { "true", "false" })
            {
                P($$"""{"type":"Metaspace","replacement":"▁","prepend_scheme":"{{scheme}}","split":{{split}}}""");
            }
        }
        P("""{"type":"Metaspace","replacement":"▁","str_rep":"▁","add_prefix_space":true,"split":false}""");
        foreach (string behavior in new[] { "Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous" })
        {
            foreach (string invert in new[] { "false", "true" })
            {
                P($$"""{"type":"Split","pattern":{"Regex":"\\s+|[,.!?]"},"behavior":"{{behavior}}","invert":{{invert}}}""");
                P($$"""{"type":"Split","pattern":{"String":"|"},"behavior":"{{behavior}}","invert":{{invert}}}""");
            }
            P($$"""{"type":"Punctuation","behavior":"{{behavior}}"}""");
        }
        foreach (string regex in new[]
            { Gpt2, Llama3, Qwen2, DeepSeekDigits, DeepSeekCjk, DeepSeekWord, AstralMixed })
        {
            P(new JsonObject
            {
                ["type"] = "Split",
                ["pattern"] = new JsonObject { ["Regex"] = regex },
                ["behavior"] = "Isolated",
                ["invert"] = false,
            }.ToJsonString());
        }
        P("""{"type":"Whitespace"}""");
        P("""{"type":"WhitespaceSplit"}""");
        P("""{"type":"BertPreTokenizer"}""");
        P("""{"type":"Digits","individual_digits":true}""");
        P("""{"type":"Digits","individual_digits":false}""");
        P("""{"type":"UnicodeScripts"}""");
        P("""{"type":"CharDelimiterSplit","delimiter":"|"}""");
        P("""{"type":"Sequence","pretokenizers":[{"type":"WhitespaceSplit"},{"type":"Metaspace","replacement":"▁","prepend_scheme":"first","split":true}]}""");
        P("""{"type":"Sequence","pretokenizers":[{"type":"Punctuation","behavior":"Isolated"},{"type":"Digits","individual_digits":true},{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true}]}""");

        D("""{"type":"BPEDecoder","suffix":"##"}""");
        D("""{"type":"CTC","pad_token":"a","word_delimiter_token":"e","cleanup":true}""");
        D("""{"type":"CTC","pad_token":"<pad>","word_delimiter_token":"|","cleanup":false}""");
        D("""{"type":"Strip","content":"#","start":2,"stop":1}""");
        D("""{"type":"Replace","pattern":{"String":"##"},"content":"_"}""");
        D("""{"type":"Fuse"}""");
        D("""{"type":"ByteFallback"}""");
        D("""{"type":"WordPiece","prefix":"##","cleanup":false}""");
        D("""{"type":"WordPiece","prefix":"##","cleanup":true}""");
        D("""{"type":"Metaspace","replacement":"▁","prepend_scheme":"always","split":true}""");
        D("""{"type":"Metaspace","replacement":"▁","prepend_scheme":"never","split":true}""");
        D("""{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":true,"use_regex":true}""");
        D("""{"type":"Sequence","decoders":[{"type":"Replace","pattern":{"String":"##"},"content":""},{"type":"Fuse"},{"type":"Strip","content":" ","start":1,"stop":0}]}""");

        Q("""{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"[CLS]","type_id":0}},{"SpecialToken":{"id":"<x>","type_id":0}},{"Sequence":{"id":"A","type_id":0}},{"SpecialToken":{"id":"[SEP]","type_id":1}}],"pair":[],"special_tokens":{"[CLS]":{"id":"[CLS]","ids":[1],"tokens":["[CLS]"]},"[SEP]":{"id":"[SEP]","ids":[2],"tokens":["[SEP]"]},"<x>":{"id":"<x>","ids":[3,4],"tokens":["<x>","<y>"]}}}""");
        Q("""{"type":"BertProcessing","sep":["[SEP]",2],"cls":["[CLS]",1]}""");
        Q("""{"type":"RobertaProcessing","sep":["[SEP]",2],"cls":["[CLS]",1],"trim_offsets":true,"add_prefix_space":true}""");
        Q("""{"type":"Sequence","processors":[{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":false,"use_regex":true},{"type":"BertProcessing","sep":["[SEP]",2],"cls":["[CLS]",1]}]}""");
        d.Add("added_tokens", "lstrip rstrip single_word normalized");
        d.Add("truncation", """{"direction":"Left","max_length":9,"strategy":"LongestFirst","stride":0}""");
        d.Add("truncation", """{"direction":"Right","max_length":5,"strategy":"LongestFirst","stride":0}""");
        d.Add("padding", """{"strategy":{"Fixed":300},"direction":"Left","pad_to_multiple_of":null,"pad_id":0,"pad_type_id":0,"pad_token":"[PAD]"}""");
        d.Add("padding", """{"strategy":"BatchLongest","direction":"Right","pad_to_multiple_of":16,"pad_id":0,"pad_type_id":0,"pad_token":"[PAD]"}""");
        return d;
    }

    [Theory]
    [MemberData(nameof(Components))]
    public void Component_equals_the_rust_library(string slot, string json)
    {
        JsonObject root = ProbeTokenizer();
        if (slot == "added_tokens")
        {
            root["normalizer"] = JsonNode.Parse("""{"type":"Lowercase"}""");
            JsonArray added = root["added_tokens"]!.AsArray();
            added.Add(Added(5, "<mask>", lstrip: true, rstrip: false, singleWord: false, normalized: false, special: true));
            added.Add(Added(6, "world", lstrip: false, rstrip: true, singleWord: true, normalized: true, special: false));
            added.Add(Added(7, "HELLO", lstrip: true, rstrip: true, singleWord: false, normalized: true, special: false));
            added.Add(Added(8, "<s>", lstrip: false, rstrip: false, singleWord: false, normalized: false, special: true));
            added.Add(Added(9, "<s>hello", lstrip: false, rstrip: false, singleWord: true, normalized: false, special: false));
            added.Add(Added(10, "a", lstrip: false, rstrip: false, singleWord: true, normalized: true, special: false));
        }
        else
        {
            root[slot] = JsonNode.Parse(json);
        }
        if (slot is "truncation" or "padding")
        {
            root["post_processor"] = JsonNode.Parse(
                """{"type":"BertProcessing","sep":["[SEP]",2],"cls":["[CLS]",1]}""");
        }
        string file = Path.Combine(dir, $"probe-{Guid.NewGuid():N}.json");
        File.WriteAllText(file, root.ToJsonString(), new UTF8Encoding(false));

        HfTokenizer ours = HfTokenizer.Load(file);
        using var rust = new RustTokenizer(file);
        var failures = new List<string>();
        foreach (string text in Texts)
        {
            string shown = text.Length > 30 ? text[..30] : text;
            int[] ids = ours.Encode(text).Ids;
            uint[] expected = rust.Encode(text);
            if (!expected.SequenceEqual(ids.Select(i => (uint)i)))
            {
                int at = 0;
                while (at < Math.Min(ids.Length, expected.Length) && expected[at] == (uint)ids[at])
                {
                    at++;
                }
                failures.Add($"encode {JsonValue.Create(shown).ToJsonString()}: from {at}: rust " +
                    $"[{string.Join(',', expected.Skip(at).Take(12))}] ours " +
                    $"[{string.Join(',', ids.Skip(at).Take(12))}]; ours as text " +
                    JsonValue.Create(string.Concat(ids.Skip(Math.Max(0, at - 3)).Take(12)
                        .Select(i => ours.IdToToken(i) + " "))).ToJsonString());
                continue;
            }
            string decoded = ours.Decode(ids, skipSpecialTokens: true);
            string rustDecoded = rust.Decode(expected);
            if (decoded != rustDecoded)
            {
                failures.Add($"decode {JsonValue.Create(shown).ToJsonString()}: rust " +
                    $"{JsonValue.Create(rustDecoded).ToJsonString()} ours {JsonValue.Create(decoded).ToJsonString()}");
            }
        }
        Assert.True(failures.Count == 0, $"{slot} {json}:\n" + string.Join("\n", failures.Take(5)));
    }

    private static JsonObject Added(int id, string content, bool lstrip, bool rstrip,
        bool singleWord, bool normalized, bool special) => new()
        {
            ["id"] = id,
            ["content"] = content,
            ["single_word"] = singleWord,
            ["lstrip"] = lstrip,
            ["rstrip"] = rstrip,
            ["normalized"] = normalized,
            ["special"] = special,
        };

    /// <summary>Ids 0–4 special, then every character of the texts (and of their normalized and
    /// byte-level forms) plain and prefixed with <c>##</c>.</summary>
    private static JsonObject ProbeTokenizer()
    {
        var chars = new SortedSet<string>(StringComparer.Ordinal);
        void AddAll(string s)
        {
            for (int i = 0; i < s.Length;)
            {
                int w = char.IsSurrogatePair(s, i) ? 2 : 1;
                chars.Add(s.Substring(i, w));
                i += w;
            }
        }
        foreach (string t in Texts)
        {
            AddAll(t);
            AddAll(t.ToLowerInvariant());
            foreach (string form in new[] { "NFD", "NFKC", "NFKD" })
            {
                AddAll(TokenizerPipeline.Normalize(JsonNode.Parse($$"""{"type":"{{form}}"}"""), t, "probe"));
            }
        }
        AddAll(new string(ByteLevelAlphabet.Chars));
        AddAll("▁ 0i\u0307");
        var vocab = new JsonObject { ["[PAD]"] = 0, ["[CLS]"] = 1, ["[SEP]"] = 2, ["[UNK]"] = 11 };
        vocab["<x>"] = 3;
        vocab["<y>"] = 4;
        int next = 12;
        foreach (string c in chars)
        {
            if (!vocab.ContainsKey(c))
            {
                vocab[c] = next++;
            }
            vocab["##" + c] = next++;
        }
        return new JsonObject
        {
            ["version"] = "1.0",
            ["truncation"] = null,
            ["padding"] = null,
            ["added_tokens"] = new JsonArray(
                Added(0, "[PAD]", false, false, false, false, true),
                Added(1, "[CLS]", false, false, false, false, true),
                Added(2, "[SEP]", false, false, false, false, true),
                Added(11, "[UNK]", false, false, false, false, true)),
            ["normalizer"] = null,
            ["pre_tokenizer"] = null,
            ["post_processor"] = null,
            ["decoder"] = null,
            ["model"] = new JsonObject
            {
                ["type"] = "BPE",
                ["dropout"] = null,
                ["unk_token"] = "[UNK]",
                ["continuing_subword_prefix"] = "##",
                ["end_of_word_suffix"] = null,
                ["fuse_unk"] = false,
                ["byte_fallback"] = false,
                ["vocab"] = vocab,
                ["merges"] = new JsonArray(),
            },
        };
    }
}
