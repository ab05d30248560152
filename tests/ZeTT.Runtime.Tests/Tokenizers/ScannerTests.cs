using System.Text;
using ZeTT.Runtime.Tokenizers;

namespace ZeTT.Runtime.Tests.Tokenizers;

/// <summary>
/// The hand-written pre-tokenization scanners (GPT-2, cl100k / Llama 3, Qwen2) against the regex
/// engine running the same pattern (the translated .NET regex, itself checked against the Rust
/// library by <see cref="PipelineComponentTests"/>): the same segments on every parity text and
/// on random strings drawn from the characters each alternative of the patterns turns on. One
/// character is left out: U+017F (long s), which the Rust library's case-insensitive
/// contractions fold to s and .NET's regex does not; the scanner folds it, and
/// <see cref="PipelineComponentTests"/> checks it against the Rust library ("it'ſt").
/// </summary>
public sealed class ScannerTests
{
    public static readonly string Gpt2 =
        @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    public static readonly string Cl100k =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    public static readonly string Qwen2 =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    public static TheoryData<string> Patterns() =>
        [Gpt2, Cl100k, Qwen2, TokenizerPipeline.SplitRegex];

    // Letters (ASCII, the contraction letters in both cases, Greek, CJK, outside the BMP),
    // digits (ASCII, Arabic-Indic, superscript, outside the BMP), white space of every kind
    // (line breaks, tab, NBSP, ideographic), apostrophes, punctuation, marks, emoji.
    private static readonly string[] Alphabet =
    [
        "a", "s", "S", "t", "T", "r", "R", "e", "E", "v", "V", "m", "M", "l", "L", "d", "D",
        "K", "é", "Σ", "日", "\U0001D407", "\U00020000", "1", "7", "٣", "²", "\U0001D7CF",
        " ", " ", " ", "\n", "\r", "\r\n", "\t", "\u00A0", "\u3000", "\u2028", "'", "'", "’",
        ".", ",", "!", "-", "(", "\u0301", "\u0308", "\U0001F600", "\u200D", "\0", "\u0085",
    ];

    [Theory]
    [MemberData(nameof(Patterns))]
    public void Scanner_equals_the_regex_engine(string pattern)
    {
        RegexPattern scanned = RegexPattern.Create(pattern, "test");
        RegexPattern engine = RegexPattern.CreateRegex(pattern, "test");
        var texts = new List<string>(RustParityTests.Texts().Select(t => t.Text));
        var random = new Random(20261202);
        for (int i = 0; i < 3000; i++)
        {
            var sb = new StringBuilder();
            int length = random.Next(1, 24);
            for (int k = 0; k < length; k++)
            {
                sb.Append(Alphabet[random.Next(Alphabet.Length)]);
            }
            texts.Add(sb.ToString());
        }
        int compared = 0;
        foreach (string text in texts)
        {
            var expected = new List<(int, int, bool)>();
            var actual = new List<(int, int, bool)>();
            engine.FindMatches(text, expected);
            scanned.FindMatches(text, actual);
            Assert.True(expected.SequenceEqual(actual),
                $"'{text}': regex [{string.Join(' ', expected)}] scanner [{string.Join(' ', actual)}]");
            compared++;
        }
        Assert.True(compared > 3000);
    }

    [Fact]
    public void The_known_patterns_run_on_scanners()
    {
        // A scanner is chosen only for the exact pattern it implements.
        foreach (string pattern in new[] { Gpt2, Cl100k, Qwen2, TokenizerPipeline.SplitRegex })
        {
            Assert.True(RegexPattern.Create(pattern, "test").UsesScanner, pattern);
        }
        Assert.False(RegexPattern.Create(Cl100k + "|x", "test").UsesScanner);
    }
}
