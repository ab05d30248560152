using System.Text;
using System.Text.Json.Nodes;
using ZeTT.Runtime.Tokenizers;
using RustTokenizer = Tokenizers.DotNet.Tokenizer;

namespace ZeTT.Runtime.Tests.Tokenizers;

/// <summary>
/// Encode and decode equal, id for id and character for character, to the Rust Hugging Face
/// <c>tokenizers</c> library (0.22 through Tokenizers.DotNet 1.4.1) for every real tokenizer in
/// tests/data/tokenizers (the same files as ../shared/data/tokenizers), their byte-level
/// conversions and the tiktoken built-ins, on UDHR text in 30 languages, book excerpts, the
/// shared code/TinyStories/WikiText text when present, and hand-made hard strings.
/// Tokenizers.DotNet exposes only <c>encode(text, add_special_tokens=true)</c> and
/// <c>decode(ids, skip_special_tokens=true)</c>, so the other two modes are reached through
/// rewritten copies of the tokenizer.json: without a post-processor the library adds no special
/// tokens (it is what <c>add_special_tokens=false</c> skips); with every added token marked
/// non-special its decode skips nothing.
/// </summary>
public sealed class RustParityTests : IDisposable
{
    private readonly string dir = Directory.CreateTempSubdirectory("zett-parity-").FullName;

    public void Dispose() => Directory.Delete(dir, recursive: true);

    public static TheoryData<string> Tokenizers()
    {
        var data = new TheoryData<string>();
        foreach (string name in TokenizerTestData.Names)
        {
            data.Add("file:" + name);
            data.Add("converted:" + name);
        }
        data.Add("transfer:mistral-7b-v0.1");
        data.Add("transfer:gpt2");
        foreach (string name in new[] { "gpt2", "r50k_base", "cl100k_base", "o200k_base" })
        {
            data.Add("builtin:" + name);
        }
        return data;
    }

    /// <summary>Text that stresses every stage: combining marks (precomposed and not), emoji
    /// ZWJ sequences and flags, whitespace runs, tabs, NUL and other control characters,
    /// contractions, digits, added-token look-alikes.</summary>
    public static readonly string[] HardTexts =
    [
        TokenizerTestData.HardText,
        "👨‍👩‍👧‍👦 family, 🏳️‍🌈 flag, 👍🏽 thumbs, 🇩🇪🇯🇵 flags, ❤️‍🔥, 🧑🏿‍🚀 astronaut",
        "e\u0301 vs é, a\u0308\u0304, \u1E9B\u0323, Å Å, ḱṷṓn, Zalgo: Z\u0351\u0362a\u0337l\u0338g\u0335o",
        "ﬁ ﬂ ½ ² ℌ ① ｶﾞ ＡＢＣ　全角 ㈱ ㌔ Ⅻ ǅ İstanbul ß ẞ ΣΑΣ σας",
        "\0NUL\u0001\u0002\u0007bell\u001B[0m\u007F\u0085\u00AD\u200B\u200C\u200D\uFEFF\uFFFD end",
        "\t\tindented\n\n\n\n    four\r\n\r\n  \t \t mixed   \u00A0\u2003\u3000 spaces      ",
        "I'm, you're, he'll, we've, they'd, IT'S, DON'T, o'clock, '''quoted''' 's 't",
        "1234567890 3.14159 1,000,000 ١٢٣ ४५६ 〇一二 0x1F 1e-9 ⁴²",
        "<s>hello</s> <unk> <|endoftext|>after <mask> [CLS] x [SEP] <pad><extra_id_0> </s></s>",
        "   leading spaces and trailing   ",
        "",
        " ",
        "a",
        "𝐇𝐞𝐥𝐥𝐨 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𠀀𠀁 𝟏𝟐 \U0001F600\U0001F4A9",
        "def f(x):\n\tif x:\n\t\treturn {'a': [1, 2]}  # ok\n\n\nclass A:\n    pass\n",
    ];

    public static IEnumerable<(string Name, string Text)> Texts()
    {
        for (int i = 0; i < HardTexts.Length; i++)
        {
            yield return ($"hard[{i}]", HardTexts[i]);
        }
        string fixtures = Path.Combine(TokenizerTestData.Root, "tests", "fixtures", "tokenizer-text");
        foreach (string f in Directory.GetFiles(fixtures, "*.txt").Order(StringComparer.Ordinal))
        {
            yield return (Path.GetFileName(f), File.ReadAllText(f));
        }
        string shared = Path.GetFullPath(Path.Combine(TokenizerTestData.Root, "..", "shared", "data",
            "text"));
        if (!Directory.Exists(shared))
        {
            yield break;
        }
        foreach (string f in Directory.GetFiles(Path.Combine(shared, "code"), "*.txt")
            .Order(StringComparer.Ordinal))
        {
            string code = File.ReadAllText(f);
            yield return ("code/" + Path.GetFileName(f), code[..Math.Min(code.Length, 6000)]);
        }
        int n = 0;
        foreach (string line in File.ReadLines(Path.Combine(shared, "tinystories", "dev.jsonl")))
        {
            if (n++ == 10)
            {
                break;
            }
            yield return ($"tinystories[{n}]", JsonNode.Parse(line)!["text"]!.GetValue<string>());
        }
        string wiki = File.ReadAllText(Path.Combine(shared, "wikitext2", "wiki.test.raw"));
        yield return ("wikitext2", wiki[..4000]);
    }

    [Theory]
    [MemberData(nameof(Tokenizers))]
    public void Encode_and_decode_equal_the_rust_library(string name)
    {
        string file = Materialize(name);
        HfTokenizer ours = HfTokenizer.Load(file);
        using var rustWith = new RustTokenizer(file);
        using var rustWithout = new RustTokenizer(Rewrite(file, "nopost", root =>
            root["post_processor"] = null));
        using var rustNoSkip = new RustTokenizer(Rewrite(file, "nospecial", root =>
        {
            foreach (JsonNode? t in root["added_tokens"]?.AsArray() ?? [])
            {
                t!["special"] = false;
            }
        }));

        var failures = new List<string>();
        int texts = 0;
        foreach ((string textName, string text) in Texts())
        {
            texts++;
            int[] with = ours.Encode(text, addSpecialTokens: true).Ids;
            Compare(failures, textName, "encode", rustWith.Encode(text), with);
            int[] without = ours.Encode(text, addSpecialTokens: false).Ids;
            Compare(failures, textName, "encode(add_special_tokens=False)",
                rustWithout.Encode(text), without);
            uint[] ids = [.. with.Select(i => (uint)i)];
            Compare(failures, textName, "decode(skip_special_tokens=True)", rustWith.Decode(ids),
                ours.Decode(with, skipSpecialTokens: true));
            Compare(failures, textName, "decode(skip_special_tokens=False)",
                rustNoSkip.Decode(ids), ours.Decode(with, skipSpecialTokens: false));
        }
        Assert.True(texts >= 45, $"only {texts} texts");
        Assert.True(failures.Count == 0,
            $"{name}: {failures.Count} differences:\n" + string.Join("\n", failures.Take(8)));
    }

    [Theory]
    [MemberData(nameof(Tokenizers))]
    public void Decode_of_random_ids_equals_the_rust_library(string name)
    {
        string file = Materialize(name);
        HfTokenizer ours = HfTokenizer.Load(file);
        using var rust = new RustTokenizer(file);
        var random = new Random(1234);
        var failures = new List<string>();
        for (int trial = 0; trial < 200; trial++)
        {
            int[] ids = new int[random.Next(1, 24)];
            for (int i = 0; i < ids.Length; i++)
            {
                // Mostly low ids (bytes, byte-fallback tokens, specials), some anywhere.
                ids[i] = random.Next(4) == 0 ? random.Next(ours.VocabSize) : random.Next(300);
            }
            Compare(failures, $"ids [{string.Join(',', ids)}]", "decode",
                rust.Decode([.. ids.Select(i => (uint)i)]), ours.Decode(ids, skipSpecialTokens: true));
        }
        Assert.True(failures.Count == 0,
            $"{name}: {failures.Count} differences:\n" + string.Join("\n", failures.Take(8)));
    }

    [Fact]
    public void EncodeBatch_equals_Encode_in_input_order()
    {
        HfTokenizer t = TokenizerTestData.Load("llama2-tinyllama");
        string[] texts = [.. Texts().Select(x => x.Text)];
        IReadOnlyList<TokenizerEncoding> batch = t.EncodeBatch(texts, addSpecialTokens: false);
        Assert.Equal(texts.Length, batch.Count);
        for (int i = 0; i < texts.Length; i++)
        {
            Assert.Equal(t.Encode(texts[i], false).Ids, batch[i].Ids);
            Assert.Equal(batch[i].Ids.Length, batch[i].Tokens.Length);
        }
    }

    private static void Compare(List<string> failures, string text, string what, uint[] expected,
        int[] actual)
    {
        if (expected.Length == actual.Length && expected.Zip(actual).All(p => p.First == (uint)p.Second))
        {
            return;
        }
        int at = 0;
        while (at < Math.Min(expected.Length, actual.Length) && expected[at] == (uint)actual[at])
        {
            at++;
        }
        failures.Add($"  {text} {what}: first difference at {at}: rust [" +
            string.Join(',', expected.Skip(at).Take(8)) + "] ours [" +
            string.Join(',', actual.Skip(at).Take(8)) + $"] (lengths {expected.Length}/{actual.Length})");
    }

    private static void Compare(List<string> failures, string text, string what, string expected,
        string actual)
    {
        if (expected == actual)
        {
            return;
        }
        int at = 0;
        while (at < Math.Min(expected.Length, actual.Length) && expected[at] == actual[at])
        {
            at++;
        }
        failures.Add($"  {text} {what}: first difference at char {at}: rust " +
            Show(expected, at) + " ours " + Show(actual, at));
    }

    private static string Show(string s, int at) =>
        JsonValue.Create(s.Substring(Math.Max(0, at - 10), Math.Min(s.Length - Math.Max(0, at - 10), 30)))
            .ToJsonString();

    /// <summary>The tokenizer.json both libraries load: the real file, or a conversion / built-in
    /// saved by zett.</summary>
    private string Materialize(string name)
    {
        string kind = name[..name.IndexOf(':')];
        string id = name[(name.IndexOf(':') + 1)..];
        if (kind == "file")
        {
            return Path.Combine(TokenizerTestData.Dir(id), "tokenizer.json");
        }
        HfTokenizer t = kind switch
        {
            "converted" => TokenizerTestData.Convert(id),
            "transfer" => TokenizerTestData.Convert(id, true, "mistral-7b-v0.1"),
            _ => TokenizerTestData.LoadBuiltin(id),
        };
        string target = Path.Combine(dir, name.Replace(':', '_'));
        t.Save(target);
        return Path.Combine(target, "tokenizer.json");
    }

    private string Rewrite(string file, string tag, Action<JsonObject> change)
    {
        var root = (JsonObject)JsonNode.Parse(File.ReadAllBytes(file),
            documentOptions: new System.Text.Json.JsonDocumentOptions { MaxDepth = 256 })!;
        change(root);
        string target = Path.Combine(dir, $"{tag}-{Guid.NewGuid():N}.json");
        File.WriteAllText(target, root.ToJsonString(), new UTF8Encoding(false));
        return target;
    }
}
