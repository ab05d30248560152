using ZeTT.Runtime.Tokenizers;

namespace ZeTT.Runtime.Tests.Tokenizers;

/// <summary>The real tokenizers copied into tests/data/tokenizers (see PROVENANCE.md there),
/// loaded once per test run.</summary>
internal static class TokenizerTestData
{
    public static readonly string[] Names =
    [
        "gpt2", "roberta-base", "t5-small", "bert-base-uncased", "llama2-tinyllama",
        "mistral-7b-v0.1", "gpt-neox-20b",
    ];

    private static readonly Dictionary<string, HfTokenizer> Cache = [];

    public static string Root { get; } = FindRoot();

    public static string Dir(string name) => Path.Combine(Root, "tests", "data", "tokenizers", name);

    public static HfTokenizer Load(string name)
    {
        lock (Cache)
        {
            if (!Cache.TryGetValue(name, out HfTokenizer? t))
            {
                Cache[name] = t = HfTokenizer.Load(Dir(name));
            }
            return t;
        }
    }

    private static readonly Dictionary<(string, bool, string?), HfTokenizer> Converted = [];

    /// <summary>A real or built-in tokenizer converted to byte level (cached).</summary>
    public static HfTokenizer Convert(string name, bool whitespaceConsistent = false,
        string? matchTo = null)
    {
        lock (Converted)
        {
            if (!Converted.TryGetValue((name, whitespaceConsistent, matchTo), out HfTokenizer? t))
            {
                Converted[(name, whitespaceConsistent, matchTo)] = t = ByteLevelConverter.Convert(
                    LoadAny(name), whitespaceConsistent, matchTo is null ? null : LoadAny(matchTo));
            }
            return t;
        }
    }

    /// <summary>A copied real tokenizer by directory name, or a built-in by its name.</summary>
    public static HfTokenizer LoadAny(string name) =>
        Array.IndexOf(Names, name) >= 0 ? Load(name) : LoadBuiltin(name);

    private static readonly Dictionary<string, HfTokenizer> Builtins = [];

    public static HfTokenizer LoadBuiltin(string name)
    {
        lock (Builtins)
        {
            if (!Builtins.TryGetValue(name, out HfTokenizer? t))
            {
                Builtins[name] = t = HfTokenizer.Load(name);
            }
            return t;
        }
    }

    /// <summary>Multilingual prose, code and runs of whitespace, bytes outside the usual
    /// scripts.</summary>
    public const string HardText =
        "Hello, world! Grüße aus Zürich — naïve café. Привет, мир. 你好，世界。こんにちは 안녕하세요 " +
        "مرحبا שלום नमस्ते ¿Qué? 🌍🚀 👨‍👩‍👧\n\ndef f(x):\n\treturn x ** 2  # square\n\n" +
        "    if (a && b) { c[i] = 0x1F; }\r\n\n\n   trailing   spaces \t\t \n" +
        "ÿ\u00A0nbsp, I'm we'll DON'T 1234567 3.14159 ~~~ ---";

    /// <summary>What a converted tokenizer's pipeline does to <paramref name="text"/>: prepend a
    /// space, split with the conversion's regex, map each piece to byte level, run the model.
    /// </summary>
    public static List<int> EncodeConverted(HfTokenizer converted, string text)
    {
        var ids = new List<int>();
        foreach (System.Text.RegularExpressions.Match m in
            System.Text.RegularExpressions.Regex.Matches(" " + text, TokenizerPipeline.SplitRegex))
        {
            ids.AddRange(converted.TokenizeRawModel(ByteLevelAlphabet.EncodeUtf8(m.Value)));
        }
        return ids;
    }

    private static string FindRoot()
    {
        for (DirectoryInfo? d = new(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            if (Directory.Exists(Path.Combine(d.FullName, "tests", "data", "tokenizers")))
            {
                return d.FullName;
            }
        }
        throw new InvalidOperationException(
            $"tests/data/tokenizers not found above {AppContext.BaseDirectory}");
    }
}
