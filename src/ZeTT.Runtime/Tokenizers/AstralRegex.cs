using System.Globalization;
using System.Text;

namespace ZeTT.Runtime.Tokenizers;

/// <summary>
/// A pattern whose character classes hold code points outside the BMP (DeepSeek's word pattern
/// lists Deseret, Osage, Old Hungarian, Warang Citi and Adlam letters), made runnable on .NET's
/// UTF-16 regex engine. Before matching, every code point outside the BMP is replaced by one
/// private-use character that stands for its equivalence class — its general category and which
/// of the pattern's astral ranges hold it — and the pattern is rewritten so that each class and
/// each category escape (<c>\p{..}</c>, <c>\w</c>, <c>\d</c>) also holds the stand-ins of the
/// equivalence classes it holds. Matches then fall on the same code points as on the original
/// text (offsets are mapped back). Real private-use characters of the text's stand-in range are
/// read as U+E000, also private use. What the rewriting cannot express is refused: negated
/// escapes (<c>\P</c>, <c>\W</c>, <c>\D</c>), nested classes, explicit private-use characters,
/// <c>\p{C..}</c>.
/// </summary>
internal sealed class AstralRegex
{
    private const char FirstStandIn = '\uF8FF';
    private const char PrivateUse = '\uE000';

    private readonly List<(int Lo, int Hi)> ranges;
    private readonly Dictionary<(UnicodeCategory, ulong), char> standIns = [];
    private readonly List<(char StandIn, UnicodeCategory Category, ulong Ranges)> classes = [];
    private char lowest = FirstStandIn;

    private AstralRegex(List<(int Lo, int Hi)> ranges)
    {
        this.ranges = ranges;
        for (int cp = 0x10000; cp <= 0x10FFFF; cp++)
        {
            StandIn(cp);
        }
    }

    /// <summary>The .NET pattern, or null if no class holds a character outside the BMP (the
    /// plain translation then applies).</summary>
    public string Pattern { get; private set; } = "";

    /// <summary>True if <paramref name="pattern"/> has a character outside the BMP inside a
    /// character class.</summary>
    public static bool Needed(string pattern)
    {
        bool inClass = false;
        for (int i = 0; i < pattern.Length; i++)
        {
            char c = pattern[i];
            if (c == '\\')
            {
                i++;
            }
            else if (c == '[')
            {
                inClass = true;
            }
            else if (c == ']')
            {
                inClass = false;
            }
            else if (inClass && char.IsHighSurrogate(c))
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>Rewrites <paramref name="pattern"/>; <paramref name="word"/> is the class body
    /// <c>\w</c> becomes. Throws <see cref="ArgumentException"/> for what cannot be rewritten.
    /// </summary>
    public static AstralRegex Create(string pattern, string word)
    {
        var found = new List<(int, int)>();
        Rewrite(pattern, word, null, found);
        if (found.Count > 64)
        {
            throw new ArgumentException("more than 64 ranges outside the BMP");
        }
        var result = new AstralRegex(found);
        var sb = new StringBuilder(pattern.Length * 2);
        Rewrite(pattern, word, result, sb);
        result.Pattern = sb.ToString();
        return result;
    }

    /// <summary>The text with each code point outside the BMP (and each private-use character
    /// of the stand-in range) replaced; <paramref name="map"/> gives each position's offset in
    /// <paramref name="text"/>.</summary>
    public string Substitute(string text, out int[] map)
    {
        var sb = new StringBuilder(text.Length);
        map = new int[text.Length + 1];
        int k = 0;
        for (int i = 0; i < text.Length;)
        {
            int cp = Utf16.CodePointAt(text, i, out int w);
            map[k++] = i;
            sb.Append(w == 2 ? StandIn(cp) : cp >= lowest && cp <= FirstStandIn ? PrivateUse
                : (char)cp);
            i += w;
        }
        map[k] = text.Length;
        Array.Resize(ref map, k + 1);
        return sb.ToString();
    }

    /// <summary>True if the substitution changes <paramref name="text"/>.</summary>
    public bool Changes(string text) =>
        text.AsSpan().IndexOfAnyInRange('\uD800', '\uDFFF') >= 0
        || text.AsSpan().IndexOfAnyInRange(lowest, FirstStandIn) >= 0;

    private char StandIn(int cp)
    {
        UnicodeCategory category = CharUnicodeInfo.GetUnicodeCategory(cp);
        ulong mask = 0;
        for (int r = 0; r < ranges.Count; r++)
        {
            if (cp >= ranges[r].Lo && cp <= ranges[r].Hi)
            {
                mask |= 1UL << r;
            }
        }
        if (!standIns.TryGetValue((category, mask), out char c))
        {
            c = (char)(FirstStandIn - classes.Count);
            standIns[(category, mask)] = c;
            classes.Add((c, category, mask));
            lowest = c;
        }
        return c;
    }

    private string StandInsFor(Func<UnicodeCategory, ulong, bool> holds)
    {
        var sb = new StringBuilder();
        foreach ((char c, UnicodeCategory category, ulong mask) in classes)
        {
            if (holds(category, mask))
            {
                sb.Append(CultureInfo.InvariantCulture, $"\\u{(int)c:X4}");
            }
        }
        return sb.ToString();
    }

    private static readonly string[] Abbreviations = BuildAbbreviations();

    private static string[] BuildAbbreviations()
    {
        var names = new string[Enum.GetValues<UnicodeCategory>().Length];
        (UnicodeCategory, string)[] list =
        [
            (UnicodeCategory.UppercaseLetter, "Lu"), (UnicodeCategory.LowercaseLetter, "Ll"),
            (UnicodeCategory.TitlecaseLetter, "Lt"), (UnicodeCategory.ModifierLetter, "Lm"),
            (UnicodeCategory.OtherLetter, "Lo"), (UnicodeCategory.NonSpacingMark, "Mn"),
            (UnicodeCategory.SpacingCombiningMark, "Mc"), (UnicodeCategory.EnclosingMark, "Me"),
            (UnicodeCategory.DecimalDigitNumber, "Nd"), (UnicodeCategory.LetterNumber, "Nl"),
            (UnicodeCategory.OtherNumber, "No"), (UnicodeCategory.SpaceSeparator, "Zs"),
            (UnicodeCategory.LineSeparator, "Zl"), (UnicodeCategory.ParagraphSeparator, "Zp"),
            (UnicodeCategory.Control, "Cc"), (UnicodeCategory.Format, "Cf"),
            (UnicodeCategory.Surrogate, "Cs"), (UnicodeCategory.PrivateUse, "Co"),
            (UnicodeCategory.ConnectorPunctuation, "Pc"), (UnicodeCategory.DashPunctuation, "Pd"),
            (UnicodeCategory.OpenPunctuation, "Ps"), (UnicodeCategory.ClosePunctuation, "Pe"),
            (UnicodeCategory.InitialQuotePunctuation, "Pi"),
            (UnicodeCategory.FinalQuotePunctuation, "Pf"), (UnicodeCategory.OtherPunctuation, "Po"),
            (UnicodeCategory.MathSymbol, "Sm"), (UnicodeCategory.CurrencySymbol, "Sc"),
            (UnicodeCategory.ModifierSymbol, "Sk"), (UnicodeCategory.OtherSymbol, "So"),
            (UnicodeCategory.OtherNotAssigned, "Cn"),
        ];
        foreach ((UnicodeCategory c, string name) in list)
        {
            names[(int)c] = name;
        }
        return names;
    }

    private static bool InCategory(UnicodeCategory category, string name) =>
        name.Length == 1 ? Abbreviations[(int)category][0] == name[0]
        : Abbreviations[(int)category] == name;

    private static bool IsWord(UnicodeCategory c) =>
        Abbreviations[(int)c][0] is 'L' or 'M' || c is UnicodeCategory.DecimalDigitNumber
            or UnicodeCategory.LetterNumber or UnicodeCategory.ConnectorPunctuation;

    /// <summary>Walks the pattern: with <paramref name="result"/> null, collects the astral
    /// ranges (in order) into <paramref name="output"/>; else writes the rewritten pattern
    /// into it.</summary>
    private static void Rewrite(string pattern, string word, AstralRegex? result, object output)
    {
        var found = output as List<(int Lo, int Hi)>;
        var sb = output as StringBuilder;
        int rangeIndex = 0;
        bool inClass = false;
        var classBody = new StringBuilder();
        ulong classMask = 0;
        var classExtra = new List<Func<UnicodeCategory, bool>>();

        void Escape(string escaped, Func<UnicodeCategory, bool>? category)
        {
            if (inClass)
            {
                classBody.Append(escaped);
                if (category is not null)
                {
                    classExtra.Add(category);
                }
            }
            else if (category is null)
            {
                sb?.Append(escaped);
            }
            else
            {
                sb?.Append('[').Append(escaped)
                    .Append(result?.StandInsFor((c, _) => category(c))).Append(']');
            }
        }

        void Astral(int lo, int hi)
        {
            found?.Add((lo, hi));
            ulong bit = 1UL << rangeIndex++;
            if (inClass)
            {
                classMask |= bit;
            }
            else
            {
                sb?.Append('[').Append(result?.StandInsFor((_, m) => (m & bit) != 0)).Append(']');
            }
        }

        for (int i = 0; i < pattern.Length; i++)
        {
            char c = pattern[i];
            if (c == '\\' && i + 1 < pattern.Length)
            {
                char n = pattern[++i];
                switch (n)
                {
                    case 'p' or 'P':
                        {
                            int close = pattern.IndexOf('}', i);
                            if (i + 1 >= pattern.Length || pattern[i + 1] != '{' || close < 0)
                            {
                                throw new ArgumentException("\\p without {name}");
                            }
                            string name = pattern[(i + 2)..close];
                            if (n == 'P' || name.Length is 0 or > 2 || name[0] == 'C'
                                || Array.FindIndex(Abbreviations, a => a is not null
                                    && (name.Length == 1 ? a[0] == name[0] : a == name)) < 0)
                            {
                                throw new ArgumentException(
                                    $"\\{n}{{{name}}} beside characters outside the BMP");
                            }
                            Escape($"\\p{{{name}}}", cat => InCategory(cat, name));
                            i = close;
                            break;
                        }
                    case 'w':
                        Escape(inClass ? word : "[" + word + "]", IsWord);
                        break;
                    case 'd':
                        Escape("\\d", cat => cat == UnicodeCategory.DecimalDigitNumber);
                        break;
                    case 'W' or 'D' or 'x' or 'u' or 'U' or 'c' or (>= '0' and <= '9'):
                        throw new ArgumentException($"\\{n} beside characters outside the BMP");
                    default:
                        Escape("\\" + n, null);
                        break;
                }
                continue;
            }
            if (c == '[' && inClass)
            {
                throw new ArgumentException("a nested class beside characters outside the BMP");
            }
            if (c == '[')
            {
                inClass = true;
                classBody.Clear();
                classMask = 0;
                classExtra.Clear();
                if (i + 1 < pattern.Length && pattern[i + 1] == '^')
                {
                    classBody.Append('^');
                    i++;
                }
                continue;
            }
            if (c == ']' && inClass)
            {
                inClass = false;
                if (sb is not null && result is not null)
                {
                    Func<UnicodeCategory, bool>[] extra = [.. classExtra];
                    ulong mask = classMask;
                    sb.Append('[').Append(classBody).Append(result.StandInsFor((cat, m) =>
                        (m & mask) != 0 || extra.Any(e => e(cat)))).Append(']');
                }
                continue;
            }
            if (c is >= '\uE000' and <= '\uF8FF')
            {
                throw new ArgumentException("a private-use character beside characters outside " +
                    "the BMP");
            }
            int cp = char.IsHighSurrogate(c) && i + 1 < pattern.Length
                && char.IsLowSurrogate(pattern[i + 1])
                ? char.ConvertToUtf32(c, pattern[++i]) : c;
            if (!inClass)
            {
                if (cp > 0xFFFF)
                {
                    Astral(cp, cp);
                }
                else
                {
                    sb?.Append(c);
                }
                continue;
            }
            int hi = cp;
            if (i + 2 < pattern.Length && pattern[i + 1] == '-' && pattern[i + 2] != ']')
            {
                i += 2;
                char h = pattern[i];
                hi = char.IsHighSurrogate(h) && i + 1 < pattern.Length
                    && char.IsLowSurrogate(pattern[i + 1])
                    ? char.ConvertToUtf32(h, pattern[++i]) : h;
                if (h == '\\')
                {
                    throw new ArgumentException("an escaped range end beside characters outside " +
                        "the BMP");
                }
            }
            if (hi < cp)
            {
                throw new ArgumentException("a class range runs backwards");
            }
            if (cp <= 0xFFFF)
            {
                int bmpHi = Math.Min(hi, 0xFFFF);
                classBody.Append(CultureInfo.InvariantCulture, $"\\u{cp:X4}");
                if (bmpHi > cp)
                {
                    classBody.Append(CultureInfo.InvariantCulture, $"-\\u{bmpHi:X4}");
                }
            }
            if (hi > 0xFFFF)
            {
                Astral(Math.Max(cp, 0x10000), hi);
            }
        }
        if (inClass)
        {
            throw new ArgumentException("an unterminated class");
        }
    }
}
