using System.Text;

namespace ZeTT.Runtime.Tokenizers;

/// <summary>The four Unicode normalization forms.</summary>
internal enum NormalizationKind
{
    Nfc,
    Nfd,
    Nfkc,
    Nfkd,
}

/// <summary>
/// Unicode normalization (UAX #15) over the generated <see cref="UnicodeTables"/> (Unicode 9.0,
/// what the tokenizers library's normalization crate implements), independent of the runtime's
/// globalization mode: under InvariantGlobalization <c>string.Normalize</c> leaves non-ASCII
/// text unchanged. Hangul syllables are decomposed and composed algorithmically.
/// </summary>
internal static class UnicodeNormalization
{
    private const int SBase = 0xAC00, LBase = 0x1100, VBase = 0x1161, TBase = 0x11A7;
    private const int LCount = 19, VCount = 21, TCount = 28, NCount = VCount * TCount;
    private const int SCount = LCount * NCount;

    private static readonly Dictionary<int, (int Start, int End)> Canonical =
        Index(UnicodeTables.CanonicalKeys, UnicodeTables.CanonicalOffsets);
    private static readonly Dictionary<int, (int Start, int End)> Compatibility =
        Index(UnicodeTables.CompatibilityKeys, UnicodeTables.CompatibilityOffsets);
    private static readonly Dictionary<long, int> Composition = BuildCompositions();
    private static readonly byte[] BmpClass = BuildBmpClasses();
    private static readonly Dictionary<int, byte> AstralClass = BuildAstralClasses();
    private static readonly bool[] BmpNfcStable = BuildNfcStable();

    [ThreadStatic]
    private static List<int>? scratch;

    /// <summary>Normalizes <paramref name="text"/> to <paramref name="kind"/>.</summary>
    public static string Normalize(string text, NormalizationKind kind)
    {
        if (IsTriviallyNormalized(text, kind))
        {
            return text;
        }
        List<int> cps = scratch ??= new List<int>(64);
        cps.Clear();
        bool compat = kind is NormalizationKind.Nfkc or NormalizationKind.Nfkd;
        for (int i = 0; i < text.Length;)
        {
            int cp = Utf16.CodePointAt(text, i, out int width);
            i += width;
            Decompose(cp, compat, cps);
        }
        Reorder(cps);
        if (kind is NormalizationKind.Nfc or NormalizationKind.Nfkc)
        {
            Compose(cps);
        }
        var sb = new StringBuilder(cps.Count + 8);
        foreach (int cp in cps)
        {
            AppendCodePoint(sb, cp);
        }
        return sb.ToString();
    }

    /// <summary>The canonical combining class of <paramref name="cp"/> (Unicode 9.0).</summary>
    public static int CombiningClass(int cp) =>
        cp < 0x10000 ? BmpClass[cp] : AstralClass.GetValueOrDefault(cp);

    private static bool IsTriviallyNormalized(string text, NormalizationKind kind)
    {
        if (kind == NormalizationKind.Nfc)
        {
            // The quick check of UAX #15 over the BMP: text made only of NFC-stable characters
            // is its own NFC. Fully decomposing and recomposing every non-ASCII text made NFC
            // most of GPT-NeoX's encoding time on the multilingual tokenize benchmark.
            bool[] stable = BmpNfcStable;
            foreach (char c in text)
            {
                if (!stable[c])
                {
                    return false;
                }
            }
            return true;
        }
        // Under NFD/NFKD Latin-1 letters with diacritics decompose; under NFKC/NFKD only ASCII
        // is safe.
        foreach (char c in text)
        {
            if (c >= 0x80)
            {
                return false;
            }
        }
        return true;
    }

    /// <summary>For each BMP character, whether NFC leaves it unchanged wherever it stands:
    /// no canonical decomposition, combining class 0, and never the second character of a
    /// composition (so that it cannot merge into what precedes it). Hangul syllables qualify
    /// (the jamo that extend them do not); surrogates do not (astral text takes the full path).
    /// </summary>
    private static bool[] BuildNfcStable()
    {
        var seconds = new HashSet<int>();
        int[] t = UnicodeTables.Compositions;
        for (int i = 0; i < t.Length; i += 3)
        {
            seconds.Add(t[i + 1]);
        }
        var table = new bool[0x10000];
        for (int cp = 0; cp < 0x10000; cp++)
        {
            bool jamoSecond = (cp >= VBase && cp < VBase + VCount)
                || (cp > TBase && cp < TBase + TCount);
            table[cp] = !char.IsSurrogate((char)cp) && BmpClass[cp] == 0 && !jamoSecond
                && !seconds.Contains(cp) && !Canonical.ContainsKey(cp);
        }
        return table;
    }

    internal static void AppendCodePoint(StringBuilder sb, int cp)
    {
        if (cp < 0x10000)
        {
            sb.Append((char)cp);
        }
        else
        {
            cp -= 0x10000;
            sb.Append((char)(0xD800 + (cp >> 10))).Append((char)(0xDC00 + (cp & 0x3FF)));
        }
    }

    private static void Decompose(int cp, bool compat, List<int> output)
    {
        if (cp >= SBase && cp < SBase + SCount)
        {
            int s = cp - SBase;
            output.Add(LBase + s / NCount);
            output.Add(VBase + s % NCount / TCount);
            if (s % TCount != 0)
            {
                output.Add(TBase + s % TCount);
            }
            return;
        }
        if ((compat ? Compatibility : Canonical).TryGetValue(cp, out (int Start, int End) range))
        {
            int[] data = compat ? UnicodeTables.CompatibilityData : UnicodeTables.CanonicalData;
            for (int i = range.Start; i < range.End; i++)
            {
                output.Add(data[i]);
            }
            return;
        }
        output.Add(cp);
    }

    /// <summary>Canonical ordering: a stable sort of every run of non-starters by class.
    /// </summary>
    private static void Reorder(List<int> cps)
    {
        for (int i = 1; i < cps.Count; i++)
        {
            int cc = CombiningClass(cps[i]);
            if (cc == 0)
            {
                continue;
            }
            int j = i;
            int cp = cps[i];
            while (j > 0 && CombiningClass(cps[j - 1]) > cc)
            {
                cps[j] = cps[j - 1];
                j--;
            }
            cps[j] = cp;
        }
    }

    private static void Compose(List<int> cps)
    {
        if (cps.Count == 0)
        {
            return;
        }
        int starterIndex = CombiningClass(cps[0]) == 0 ? 0 : -1;
        int lastClass = starterIndex == 0 ? 0 : 256;
        int write = 1;
        for (int read = 1; read < cps.Count; read++)
        {
            int cp = cps[read];
            int cc = CombiningClass(cp);
            if (starterIndex >= 0 && (lastClass < cc || (lastClass == 0 && write - 1 == starterIndex))
                && TryCompose(cps[starterIndex], cp, out int composite))
            {
                cps[starterIndex] = composite;
                continue;
            }
            if (cc == 0)
            {
                starterIndex = write;
            }
            lastClass = cc;
            cps[write++] = cp;
        }
        cps.RemoveRange(write, cps.Count - write);
    }

    private static bool TryCompose(int first, int second, out int composite)
    {
        if (first >= LBase && first < LBase + LCount && second >= VBase && second < VBase + VCount)
        {
            composite = SBase + ((first - LBase) * VCount + second - VBase) * TCount;
            return true;
        }
        if (first >= SBase && first < SBase + SCount && (first - SBase) % TCount == 0
            && second > TBase && second < TBase + TCount)
        {
            composite = first + second - TBase;
            return true;
        }
        return Composition.TryGetValue(((long)first << 21) | (uint)second, out composite);
    }

    private static Dictionary<int, (int, int)> Index(int[] keys, int[] offsets)
    {
        var map = new Dictionary<int, (int, int)>(keys.Length);
        for (int i = 0; i < keys.Length; i++)
        {
            map[keys[i]] = (offsets[i], offsets[i + 1]);
        }
        return map;
    }

    private static Dictionary<long, int> BuildCompositions()
    {
        int[] t = UnicodeTables.Compositions;
        var map = new Dictionary<long, int>(t.Length / 3);
        for (int i = 0; i < t.Length; i += 3)
        {
            map[((long)t[i] << 21) | (uint)t[i + 1]] = t[i + 2];
        }
        return map;
    }

    private static byte[] BuildBmpClasses()
    {
        var table = new byte[0x10000];
        for (int i = 0; i < UnicodeTables.CombiningClassKeys.Length; i++)
        {
            int cp = UnicodeTables.CombiningClassKeys[i];
            if (cp < 0x10000)
            {
                table[cp] = UnicodeTables.CombiningClassValues[i];
            }
        }
        return table;
    }

    private static Dictionary<int, byte> BuildAstralClasses()
    {
        var map = new Dictionary<int, byte>();
        for (int i = 0; i < UnicodeTables.CombiningClassKeys.Length; i++)
        {
            int cp = UnicodeTables.CombiningClassKeys[i];
            if (cp >= 0x10000)
            {
                map[cp] = UnicodeTables.CombiningClassValues[i];
            }
        }
        return map;
    }
}

/// <summary>General-category questions answered with the Unicode versions the tokenizers
/// library's crates use (see scripts/gen_unicode_tables.py).</summary>
internal static class UnicodeCategories8
{
    private static readonly byte[] Bmp = BuildBmp();

    /// <summary>The Unicode 8.0 general category name of <paramref name="cp"/> ("Cn" if
    /// unassigned in 8.0).</summary>
    public static string Category(int cp) => UnicodeTables.CategoryNames[CategoryIndex(cp)];

    /// <summary>unicode_categories' <c>is_other</c>: Cc, Cf, Cs or Co in Unicode 8.0 (not
    /// unassigned code points: BertNormalizer keeps an emoji newer than Unicode 8, measured
    /// against the library with U+1F9D1).</summary>
    public static bool IsOther(int cp) => CategoryIndex(cp) is >= 25 and <= 28;

    /// <summary>unicode_categories' <c>is_mark_nonspacing</c> (Mn, Unicode 8.0).</summary>
    public static bool IsNonSpacingMark(int cp) => CategoryIndex(cp) == 5;

    /// <summary>unicode_categories' <c>is_punctuation</c> (P*, Unicode 8.0).</summary>
    public static bool IsPunctuation(int cp) => CategoryIndex(cp) is >= 11 and <= 17;

    /// <summary>unicode-normalization-alignments' <c>is_combining_mark</c> (M*, Unicode 9.0).
    /// </summary>
    public static bool IsCombiningMark9(int cp)
    {
        int[] starts = UnicodeTables.Mark9Starts;
        int index = Array.BinarySearch(starts, cp);
        if (index < 0)
        {
            index = ~index - 1;
        }
        return (index & 1) == 1;
    }

    private static int CategoryIndex(int cp)
    {
        if (cp < 0x10000)
        {
            return Bmp[cp];
        }
        int[] starts = UnicodeTables.Category8Starts;
        int index = Array.BinarySearch(starts, cp);
        if (index < 0)
        {
            index = ~index - 1;
        }
        return UnicodeTables.Category8Values[index];
    }

    private static byte[] BuildBmp()
    {
        var table = new byte[0x10000];
        int[] starts = UnicodeTables.Category8Starts;
        for (int r = 0; r < starts.Length && starts[r] < 0x10000; r++)
        {
            int end = r + 1 < starts.Length ? Math.Min(starts[r + 1], 0x10000) : 0x10000;
            Array.Fill(table, UnicodeTables.Category8Values[r], starts[r], end - starts[r]);
        }
        return table;
    }
}
