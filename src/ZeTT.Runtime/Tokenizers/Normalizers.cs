using System.Text;
using System.Text.Json.Nodes;

namespace ZeTT.Runtime.Tokenizers;

/// <summary>
/// A tokenizer.json normalizer: text in, normalized text out, with the Rust library's
/// semantics (offsets are not tracked: zett needs ids and tokens only).
/// </summary>
internal abstract class Normalizer
{
    public abstract string Normalize(string text);

    /// <summary>Builds the normalizer of tokenizer.json's <c>normalizer</c> (null for none).
    /// </summary>
    public static Normalizer? FromJson(JsonNode? node, string file)
    {
        if (node is null)
        {
            return null;
        }
        string type = Json.Type(node, "normalizer", file);
        return type switch
        {
            "Sequence" => new SequenceNormalizer([.. Json.Array(node, "normalizers", file)
                .Select(n => FromJson(n, file)).OfType<Normalizer>()]),
            "NFC" => new UnicodeNormalizer(NormalizationKind.Nfc),
            "NFD" => new UnicodeNormalizer(NormalizationKind.Nfd),
            "NFKC" => new UnicodeNormalizer(NormalizationKind.Nfkc),
            "NFKD" => new UnicodeNormalizer(NormalizationKind.Nfkd),
            "Lowercase" => new LowercaseNormalizer(),
            "Strip" => new StripNormalizer(Json.Bool(node, "strip_left", true),
                Json.Bool(node, "strip_right", true)),
            "StripAccents" => new StripAccentsNormalizer(),
            "Nmt" => new NmtNormalizer(),
            "Prepend" => new PrependNormalizer(Json.String(node, "prepend", file)),
            "Replace" => new ReplaceNormalizer(Json.Pattern(node, file),
                Json.String(node, "content", file)),
            "ByteLevel" => new ByteLevelNormalizer(),
            "BertNormalizer" => new BertNormalizer(Json.Bool(node, "clean_text", true),
                Json.Bool(node, "handle_chinese_chars", true),
                node["strip_accents"] is JsonValue v && v.TryGetValue(out bool b) ? b : null,
                Json.Bool(node, "lowercase", true)),
            "Precompiled" => PrecompiledCharsMap.FromBase64(
                node["precompiled_charsmap"] is JsonValue p && p.TryGetValue(out string? s) ? s : null,
                file),
            _ => throw Json.Unknown("normalizer", type, file),
        };
    }

    protected static string MapCodePoints(string text, Func<int, int> map, Func<int, bool> keep)
    {
        var sb = new StringBuilder(text.Length);
        for (int i = 0; i < text.Length;)
        {
            int cp = Utf16.CodePointAt(text, i, out int w);
            i += w;
            if (keep(cp))
            {
                UnicodeNormalization.AppendCodePoint(sb, map(cp));
            }
        }
        return sb.ToString();
    }
}

internal sealed class SequenceNormalizer(Normalizer[] normalizers) : Normalizer
{
    public override string Normalize(string text)
    {
        foreach (Normalizer n in normalizers)
        {
            text = n.Normalize(text);
        }
        return text;
    }
}

internal sealed class UnicodeNormalizer(NormalizationKind kind) : Normalizer
{
    public override string Normalize(string text) => UnicodeNormalization.Normalize(text, kind);
}

/// <summary>Rust's per-character <c>char::to_lowercase</c> (full mappings; only U+0130 maps to
/// two characters; no context-dependent final sigma).</summary>
internal sealed class LowercaseNormalizer : Normalizer
{
    public override string Normalize(string text) => Lower(text);

    public static string Lower(string text)
    {
        bool ascii = true;
        foreach (char c in text)
        {
            if (c >= 0x80)
            {
                ascii = false;
                break;
            }
        }
        if (ascii)
        {
            return text.ToLowerInvariant();
        }
        var sb = new StringBuilder(text.Length);
        for (int i = 0; i < text.Length;)
        {
            int cp = Utf16.CodePointAt(text, i, out int w);
            i += w;
            if (cp == 0x130)
            {
                sb.Append("i\u0307");
                continue;
            }
            UnicodeNormalization.AppendCodePoint(sb, System.Text.Rune.ToLowerInvariant(
                new System.Text.Rune(cp)).Value);
        }
        return sb.ToString();
    }
}

internal sealed class StripNormalizer(bool left, bool right) : Normalizer
{
    public override string Normalize(string text) =>
        left && right ? text.Trim() : left ? text.TrimStart() : right ? text.TrimEnd() : text;
}

/// <summary>Removes every mark (M*, Unicode 9.0: the normalization crate's
/// <c>is_combining_mark</c>).</summary>
internal sealed class StripAccentsNormalizer : Normalizer
{
    public override string Normalize(string text) =>
        MapCodePoints(text, c => c, c => !UnicodeCategories8.IsCombiningMark9(c));
}

internal sealed class NmtNormalizer : Normalizer
{
    public override string Normalize(string text) => MapCodePoints(text,
        c => c is 0x09 or 0x0A or 0x0C or 0x0D or 0x1680 or (>= 0x200B and <= 0x200F) or 0x2028
            or 0x2029 or 0x2581 or 0xFEFF or 0xFFFD ? ' ' : c,
        c => c is not ((>= 0x01 and <= 0x08) or 0x0B or (>= 0x0E and <= 0x1F) or 0x7F or 0x8F
            or 0x9F));
}

internal sealed class PrependNormalizer(string prepend) : Normalizer
{
    public override string Normalize(string text) => text.Length == 0 ? text : prepend + text;
}

internal sealed class ReplaceNormalizer(SplitPattern pattern, string content) : Normalizer
{
    public override string Normalize(string text)
    {
        if (text.Length == 0)
        {
            return text;
        }
        var segments = new List<(int Start, int End, bool Match)>();
        pattern.FindMatches(text, segments);
        var sb = new StringBuilder(text.Length);
        foreach ((int s, int e, bool m) in segments)
        {
            if (m)
            {
                sb.Append(content);
            }
            else
            {
                sb.Append(text, s, e - s);
            }
        }
        return sb.ToString();
    }
}

internal sealed class ByteLevelNormalizer : Normalizer
{
    public override string Normalize(string text) => ByteLevelAlphabet.EncodeUtf8(text);
}

/// <summary>BERT's cleanup: control characters removed and whitespace made a space, CJK
/// ideographs surrounded by spaces, accents stripped (NFD, then Mn removed), lowercased; the
/// character classes as the library's unicode_categories crate (Unicode 8.0) has them.
/// </summary>
internal sealed class BertNormalizer(bool cleanText, bool handleChineseChars, bool? stripAccents,
    bool lowercase) : Normalizer
{
    public override string Normalize(string text)
    {
        var sb = new StringBuilder(text.Length + 8);
        for (int i = 0; i < text.Length;)
        {
            int cp = Utf16.CodePointAt(text, i, out int w);
            i += w;
            if (cleanText)
            {
                if (cp is 0 or 0xFFFD || (cp is not (9 or 10 or 13) && UnicodeCategories8.IsOther(cp)))
                {
                    continue;
                }
                if (cp is 9 or 10 or 13 || Utf16.IsWhiteSpace(cp))
                {
                    cp = ' ';
                }
            }
            if (handleChineseChars && IsChinese(cp))
            {
                sb.Append(' ');
                UnicodeNormalization.AppendCodePoint(sb, cp);
                sb.Append(' ');
            }
            else
            {
                UnicodeNormalization.AppendCodePoint(sb, cp);
            }
        }
        string result = sb.ToString();
        if (stripAccents ?? lowercase)
        {
            result = MapCodePoints(UnicodeNormalization.Normalize(result, NormalizationKind.Nfd),
                c => c, c => !UnicodeCategories8.IsNonSpacingMark(c));
        }
        return lowercase ? LowercaseNormalizer.Lower(result) : result;
    }

    private static bool IsChinese(int cp) => cp is (>= 0x4E00 and <= 0x9FFF)
        or (>= 0x3400 and <= 0x4DBF) or (>= 0x20000 and <= 0x2A6DF) or (>= 0x2A700 and <= 0x2B73F)
        or (>= 0x2B740 and <= 0x2B81F) or (>= 0x2B920 and <= 0x2CEAF) or (>= 0xF900 and <= 0xFAFF)
        or (>= 0x2F800 and <= 0x2FA1F);
}

/// <summary>Typed reads of tokenizer.json component objects, errors naming the file.</summary>
internal static class Json
{
    public static string Type(JsonNode node, string what, string file) =>
        node["type"] is JsonValue v && v.TryGetValue(out string? s) ? s
        : throw new ZettException($"{file}: {what} {Short(node)} has no 'type'");

    public static ZettException Unknown(string what, string type, string file) =>
        new($"{file}: {what} type '{type}' is not supported");

    public static bool Bool(JsonNode node, string key, bool fallback) =>
        node[key] is JsonValue v && v.TryGetValue(out bool b) ? b : fallback;

    public static int Int(JsonNode node, string key, int fallback) =>
        node[key] is JsonValue v && v.TryGetValue(out int i) ? i : fallback;

    public static string String(JsonNode node, string key, string file) =>
        node[key] is JsonValue v && v.TryGetValue(out string? s) ? s
        : throw new ZettException($"{file}: {Type(node, "component", file)} has no string '{key}'");

    public static string? OptionalString(JsonNode node, string key) =>
        node[key] is JsonValue v && v.TryGetValue(out string? s) ? s : null;

    public static JsonArray Array(JsonNode node, string key, string file) =>
        node[key] as JsonArray
        ?? throw new ZettException($"{file}: {Type(node, "component", file)} has no array '{key}'");

    /// <summary>A <c>{"String": s}</c> or <c>{"Regex": r}</c> pattern.</summary>
    public static SplitPattern Pattern(JsonNode node, string file)
    {
        JsonNode? p = node["pattern"];
        if (p?["Regex"] is JsonValue r && r.TryGetValue(out string? regex))
        {
            return RegexPattern.Create(regex, file);
        }
        if (p?["String"] is JsonValue s && s.TryGetValue(out string? literal))
        {
            return RegexPattern.Literal(literal);
        }
        throw new ZettException($"{file}: {Type(node, "component", file)} pattern " +
            $"{Short(p)} is neither {{\"String\": …}} nor {{\"Regex\": …}}");
    }

    private static string Short(JsonNode? node)
    {
        string s = node?.ToJsonString() ?? "null";
        return s.Length > 80 ? s[..80] + "…" : s;
    }
}
