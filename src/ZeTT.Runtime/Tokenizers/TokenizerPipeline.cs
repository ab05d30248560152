using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace ZeTT.Runtime.Tokenizers;

/// <summary>
/// The normalizer, pre-tokenizer, post-processor and decoder parts of a tokenizer.json: which
/// types exist (an unknown type is an error that names the file), and a small evaluator for
/// normalizers and pre-tokenizers that conversion uses to find a tokenizer's word-boundary
/// character (what <c>" test"</c> becomes). The evaluator follows the Rust library for the
/// types real tokenizers use; <c>Precompiled</c> (SentencePiece's character map) is evaluated
/// as NFKC and <c>UnicodeScripts</c> as no split, which is exact for that probe.
/// </summary>
internal static class TokenizerPipeline
{
    private static readonly string[] NormalizerTypes =
    [
        "BertNormalizer", "Strip", "StripAccents", "NFC", "NFD", "NFKC", "NFKD", "Sequence",
        "Lowercase", "Nmt", "Precompiled", "Replace", "Prepend", "ByteLevel",
    ];

    private static readonly string[] PreTokenizerTypes =
    [
        "BertPreTokenizer", "ByteLevel", "CharDelimiterSplit", "Metaspace", "Whitespace",
        "Sequence", "Split", "Punctuation", "WhitespaceSplit", "Digits", "UnicodeScripts",
        "FixedLength",
    ];

    private static readonly string[] PostProcessorTypes =
    [
        "RobertaProcessing", "BertProcessing", "ByteLevel", "TemplateProcessing", "Sequence",
    ];

    private static readonly string[] DecoderTypes =
    [
        "BPEDecoder", "ByteLevel", "WordPiece", "Metaspace", "CTC", "Sequence", "Replace", "Fuse",
        "Strip", "ByteFallback",
    ];

    /// <summary>The regex the converted tokenizers split on before byte-level mapping.</summary>
    public const string SplitRegex =
        @"'s|'t|'re|'ve|'m|'ll|'d| ?[\p{L}\p{M}]+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    /// <summary>GPT-2's own pre-tokenization regex (ByteLevel with use_regex).</summary>
    private const string Gpt2Regex =
        @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    public static void Validate(JsonObject root, string file)
    {
        Check(root["normalizer"], "normalizer", "normalizers", NormalizerTypes, file);
        Check(root["pre_tokenizer"], "pre-tokenizer", "pretokenizers", PreTokenizerTypes, file);
        Check(root["post_processor"], "post-processor", "processors", PostProcessorTypes, file);
        Check(root["decoder"], "decoder", "decoders", DecoderTypes, file);
    }

    private static void Check(JsonNode? node, string what, string children, string[] known,
        string file)
    {
        if (node is null)
        {
            return;
        }
        string? type = node["type"]?.GetValue<string>();
        if (type is null || Array.IndexOf(known, type) < 0)
        {
            throw new ZettException(
                $"{file}: {what} type '{type ?? "(none)"}' is not supported (known: " +
                $"{string.Join(", ", known)})");
        }
        if (type == "Sequence" && node[children] is JsonArray list)
        {
            foreach (JsonNode? child in list)
            {
                Check(child, what, children, known, file);
            }
        }
    }

    /// <summary>True if the pre-tokenizer is ByteLevel or a Sequence with a ByteLevel member
    /// (one level deep, as the reference checks).</summary>
    public static bool IsByteLevel(JsonNode? preTokenizer)
    {
        string? type = preTokenizer?["type"]?.GetValue<string>();
        return type == "ByteLevel"
            || (type == "Sequence" && preTokenizer!["pretokenizers"] is JsonArray list
                && list.Any(p => p?["type"]?.GetValue<string>() == "ByteLevel"));
    }

    public static string Normalize(JsonNode? normalizer, string text, string file)
    {
        if (normalizer is null)
        {
            return text;
        }
        string type = normalizer["type"]!.GetValue<string>();
        switch (type)
        {
            case "Sequence":
                foreach (JsonNode? n in normalizer["normalizers"]?.AsArray() ?? [])
                {
                    text = Normalize(n, text, file);
                }
                return text;
            case "Prepend":
                return text.Length == 0 ? text : Str(normalizer, "prepend") + text;
            case "Replace":
                return ReplacePattern(normalizer["pattern"], text, Str(normalizer, "content"));
            case "NFC":
                return text.Normalize(NormalizationForm.FormC);
            case "NFD":
                return text.Normalize(NormalizationForm.FormD);
            case "NFKC":
            case "Precompiled":
                return text.Normalize(NormalizationForm.FormKC);
            case "NFKD":
                return text.Normalize(NormalizationForm.FormKD);
            case "Lowercase":
                return text.ToLowerInvariant();
            case "Strip":
                bool left = Bool(normalizer, "strip_left", true);
                bool right = Bool(normalizer, "strip_right", true);
                return left && right ? text.Trim() : left ? text.TrimStart()
                    : right ? text.TrimEnd() : text;
            case "StripAccents":
                return StripAccents(text);
            case "Nmt":
                return text;
            case "ByteLevel":
                return ByteLevelAlphabet.EncodeUtf8(text);
            case "BertNormalizer":
                return BertNormalize(normalizer, text);
            default:
                throw new ZettException($"{file}: normalizer type '{type}' is not supported");
        }
    }

    public static List<string> PreTokenize(JsonNode? preTokenizer, string text, string file)
    {
        List<string> pieces = [text];
        return preTokenizer is null ? pieces : Apply(preTokenizer, pieces, file);
    }

    private static List<string> Apply(JsonNode pre, List<string> pieces, string file)
    {
        string type = pre["type"]!.GetValue<string>();
        if (type == "Sequence")
        {
            foreach (JsonNode? p in pre["pretokenizers"]?.AsArray() ?? [])
            {
                pieces = Apply(p!, pieces, file);
            }
            return pieces;
        }
        var result = new List<string>();
        for (int i = 0; i < pieces.Count; i++)
        {
            result.AddRange(ApplyOne(pre, type, pieces[i], i == 0, file));
        }
        return result;
    }

    private static IEnumerable<string> ApplyOne(JsonNode pre, string type, string piece,
        bool first, string file)
    {
        switch (type)
        {
            case "WhitespaceSplit":
                return piece.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
            case "Whitespace":
                return Regex.Matches(piece, @"\w+|[^\w\s]+").Select(m => m.Value);
            case "BertPreTokenizer":
                return piece.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries)
                    .SelectMany(w => SplitWhere(w, IsBertPunctuation));
            case "Punctuation":
                return SplitWhere(piece, c => char.IsPunctuation(c) || IsBertPunctuation(c));
            case "CharDelimiterSplit":
                return piece.Split(Str(pre, "delimiter"), StringSplitOptions.RemoveEmptyEntries);
            case "Digits":
                return Bool(pre, "individual_digits", false)
                    ? SplitWhere(piece, char.IsDigit)
                    : SplitBy(new Regex(@"\p{Nd}+"), piece, "Isolated", false);
            case "UnicodeScripts":
                return [piece];
            case "FixedLength":
                int length = pre["length"] is JsonValue lv && lv.TryGetValue(out int l) ? l : 5;
                return piece.Chunk(Math.Max(1, length)).Select(c => new string(c));
            case "Metaspace":
                return Metaspace(pre, piece, first);
            case "ByteLevel":
                string text = Bool(pre, "add_prefix_space", true) && !piece.StartsWith(' ')
                    ? " " + piece : piece;
                IEnumerable<string> words = Bool(pre, "use_regex", true)
                    ? Regex.Matches(text, Gpt2Regex).Select(m => m.Value) : [text];
                return words.Select(ByteLevelAlphabet.EncodeUtf8);
            case "Split":
                Regex regex = pre["pattern"]?["Regex"] is JsonValue r
                    ? new Regex(r.GetValue<string>())
                    : new Regex(Regex.Escape(pre["pattern"]?["String"]?.GetValue<string>() ?? ""));
                return SplitBy(regex, piece, Str(pre, "behavior"), Bool(pre, "invert", false));
            default:
                throw new ZettException($"{file}: pre-tokenizer type '{type}' is not supported");
        }
    }

    private static IEnumerable<string> Metaspace(JsonNode pre, string piece, bool first)
    {
        string replacement = pre["replacement"]?.GetValue<string>() ?? "\u2581";
        string scheme = pre["prepend_scheme"]?.GetValue<string>()
            ?? (pre["add_prefix_space"] is JsonValue a && !a.GetValue<bool>() ? "never" : "always");
        string text = piece.Replace(" ", replacement, StringComparison.Ordinal);
        if ((scheme == "always" || (scheme == "first" && first))
            && !text.StartsWith(replacement, StringComparison.Ordinal))
        {
            text = replacement + text;
        }
        if (!Bool(pre, "split", true))
        {
            return [text];
        }
        return SplitBy(new Regex(Regex.Escape(replacement)), text, "MergedWithNext", false);
    }

    /// <summary>Splits at regex matches with one of the library's behaviours.</summary>
    private static List<string> SplitBy(Regex regex, string text, string behavior, bool invert)
    {
        var segments = new List<(string Text, bool Match)>();
        int last = 0;
        foreach (Match m in regex.Matches(text))
        {
            if (m.Length == 0)
            {
                continue;
            }
            if (m.Index > last)
            {
                segments.Add((text[last..m.Index], invert));
            }
            segments.Add((m.Value, !invert));
            last = m.Index + m.Length;
        }
        if (last < text.Length)
        {
            segments.Add((text[last..], invert));
        }
        var result = new List<string>();
        switch (behavior)
        {
            case "Removed":
                result.AddRange(segments.Where(s => !s.Match).Select(s => s.Text));
                break;
            case "MergedWithPrevious":
                foreach ((string t, bool match) in segments)
                {
                    if (match && result.Count > 0)
                    {
                        result[^1] += t;
                    }
                    else
                    {
                        result.Add(t);
                    }
                }
                break;
            case "MergedWithNext":
                string carry = "";
                foreach ((string t, bool match) in segments)
                {
                    if (match)
                    {
                        if (carry.Length > 0)
                        {
                            result.Add(carry);
                        }
                        carry = t;
                    }
                    else
                    {
                        result.Add(carry + t);
                        carry = "";
                    }
                }
                if (carry.Length > 0)
                {
                    result.Add(carry);
                }
                break;
            case "Contiguous":
                bool previousMatch = false;
                foreach ((string t, bool match) in segments)
                {
                    if (match && previousMatch)
                    {
                        result[^1] += t;
                    }
                    else
                    {
                        result.Add(t);
                    }
                    previousMatch = match;
                }
                break;
            default:
                result.AddRange(segments.Select(s => s.Text));
                break;
        }
        return result;
    }

    private static List<string> SplitWhere(string text, Func<char, bool> isolate)
    {
        var result = new List<string>();
        var current = new StringBuilder();
        foreach (char c in text)
        {
            if (isolate(c))
            {
                if (current.Length > 0)
                {
                    result.Add(current.ToString());
                    current.Clear();
                }
                result.Add(c.ToString());
            }
            else
            {
                current.Append(c);
            }
        }
        if (current.Length > 0)
        {
            result.Add(current.ToString());
        }
        return result;
    }

    private static bool IsBertPunctuation(char c) =>
        (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96)
        || (c >= 123 && c <= 126) || char.IsPunctuation(c);

    private static string ReplacePattern(JsonNode? pattern, string text, string content)
    {
        if (pattern?["Regex"] is JsonValue r)
        {
            return new Regex(r.GetValue<string>()).Replace(text, content.Replace("$", "$$",
                StringComparison.Ordinal));
        }
        string s = pattern?["String"]?.GetValue<string>() ?? "";
        return s.Length == 0 ? text : text.Replace(s, content, StringComparison.Ordinal);
    }

    private static string StripAccents(string text)
    {
        var sb = new StringBuilder(text.Length);
        foreach (char c in text)
        {
            if (CharUnicodeInfo.GetUnicodeCategory(c) != UnicodeCategory.NonSpacingMark)
            {
                sb.Append(c);
            }
        }
        return sb.ToString();
    }

    private static string BertNormalize(JsonNode n, string text)
    {
        var sb = new StringBuilder(text.Length);
        bool clean = Bool(n, "clean_text", true);
        bool chinese = Bool(n, "handle_chinese_chars", true);
        foreach (char c in text)
        {
            if (clean && (c == '\0' || c == '\uFFFD'
                || (char.IsControl(c) && c is not ('\t' or '\n' or '\r'))))
            {
                continue;
            }
            if (clean && char.IsWhiteSpace(c))
            {
                sb.Append(' ');
            }
            else if (chinese && c >= 0x4E00 && c <= 0x9FFF)
            {
                sb.Append(' ').Append(c).Append(' ');
            }
            else
            {
                sb.Append(c);
            }
        }
        string result = sb.ToString();
        bool lowercase = Bool(n, "lowercase", true);
        bool stripAccents = n["strip_accents"] is JsonValue v && v.TryGetValue(out bool b)
            ? b : lowercase;
        if (stripAccents)
        {
            result = StripAccents(result.Normalize(NormalizationForm.FormD));
        }
        return lowercase ? result.ToLowerInvariant() : result;
    }

    private static string Str(JsonNode n, string key) => n[key]?.GetValue<string>() ?? "";

    private static bool Bool(JsonNode n, string key, bool fallback) =>
        n[key] is JsonValue v && v.TryGetValue(out bool b) ? b : fallback;
}
