using System.Text;
using System.Text.Json.Nodes;

namespace ZeTT.Runtime.Tokenizers;

/// <summary>
/// A tokenizer.json decoder: the library's <c>decode_chain</c> (tokens in, pieces out), whose
/// pieces are joined into the decoded text.
/// </summary>
internal abstract class Decoder
{
    public abstract List<string> DecodeChain(List<string> tokens);

    public string Decode(List<string> tokens) => string.Concat(DecodeChain(tokens));

    public static Decoder? FromJson(JsonNode? node, string file)
    {
        if (node is null)
        {
            return null;
        }
        string type = Json.Type(node, "decoder", file);
        return type switch
        {
            "Sequence" => new SequenceDecoder([.. Json.Array(node, "decoders", file)
                .Select(d => FromJson(d, file)).OfType<Decoder>()]),
            "ByteLevel" => new ByteLevelDecoder(),
            "Metaspace" => new MetaspaceDecoder(MetaspacePreTokenizer.Parse(node, file)),
            "WordPiece" => new WordPieceDecoder(Json.OptionalString(node, "prefix") ?? "##",
                Json.Bool(node, "cleanup", true)),
            "ByteFallback" => new ByteFallbackDecoder(),
            "Fuse" => new FuseDecoder(),
            "Strip" => new StripDecoder(Json.String(node, "content", file),
                Json.Int(node, "start", 0), Json.Int(node, "stop", 0)),
            "Replace" => new ReplaceDecoder(Json.Pattern(node, file),
                Json.String(node, "content", file)),
            "BPEDecoder" => new BpeDecoder(Json.OptionalString(node, "suffix") ?? "</w>"),
            "CTC" => new CtcDecoder(Json.OptionalString(node, "pad_token") ?? "<pad>",
                Json.OptionalString(node, "word_delimiter_token") ?? "|",
                Json.Bool(node, "cleanup", true)),
            _ => throw Json.Unknown("decoder", type, file),
        };
    }

    /// <summary>The WordPiece decoder's cleanup of tokenization spaces.</summary>
    internal static string Cleanup(string s) => s
        .Replace(" .", ".", StringComparison.Ordinal).Replace(" ?", "?", StringComparison.Ordinal)
        .Replace(" !", "!", StringComparison.Ordinal).Replace(" ,", ",", StringComparison.Ordinal)
        .Replace(" ' ", "'", StringComparison.Ordinal)
        .Replace(" n't", "n't", StringComparison.Ordinal)
        .Replace(" 'm", "'m", StringComparison.Ordinal)
        .Replace(" do not", " don't", StringComparison.Ordinal)
        .Replace(" 's", "'s", StringComparison.Ordinal)
        .Replace(" 've", "'ve", StringComparison.Ordinal)
        .Replace(" 're", "'re", StringComparison.Ordinal);
}

internal sealed class SequenceDecoder(Decoder[] decoders) : Decoder
{
    public override List<string> DecodeChain(List<string> tokens)
    {
        foreach (Decoder d in decoders)
        {
            tokens = d.DecodeChain(tokens);
        }
        return tokens;
    }
}

/// <summary>Byte-level symbols back to bytes (a token with a symbol outside the alphabet is
/// taken as its own UTF-8 bytes), then UTF-8 decoded with U+FFFD for invalid sequences.
/// </summary>
internal sealed class ByteLevelDecoder : Decoder
{
    public override List<string> DecodeChain(List<string> tokens)
    {
        var bytes = new List<byte>();
        foreach (string t in tokens)
        {
            int mark = bytes.Count;
            bool ok = true;
            foreach (char c in t)
            {
                if (!ByteLevelAlphabet.TryGetByte(c, out byte b))
                {
                    ok = false;
                    break;
                }
                bytes.Add(b);
            }
            if (!ok)
            {
                bytes.RemoveRange(mark, bytes.Count - mark);
                bytes.AddRange(Encoding.UTF8.GetBytes(t));
            }
        }
        return [Encoding.UTF8.GetString([.. bytes])];
    }
}

internal sealed class MetaspaceDecoder(MetaspacePreTokenizer options) : Decoder
{
    public override List<string> DecodeChain(List<string> tokens)
    {
        var result = new List<string>(tokens.Count);
        string replacement = options.Replacement;
        for (int i = 0; i < tokens.Count; i++)
        {
            string t = tokens[i];
            var sb = new StringBuilder(t.Length);
            for (int j = 0; j < t.Length;)
            {
                int cp = Utf16.CodePointAt(t, j, out int w);
                if (string.CompareOrdinal(t, j, replacement, 0, replacement.Length) == 0
                    && w == replacement.Length)
                {
                    if (!(i == 0 && options.Scheme != "never"))
                    {
                        sb.Append(' ');
                    }
                }
                else
                {
                    UnicodeNormalization.AppendCodePoint(sb, cp);
                }
                j += w;
            }
            result.Add(sb.ToString());
        }
        return result;
    }
}

internal sealed class WordPieceDecoder(string prefix, bool cleanup) : Decoder
{
    public override List<string> DecodeChain(List<string> tokens)
    {
        var result = new List<string>(tokens.Count);
        for (int i = 0; i < tokens.Count; i++)
        {
            string t = tokens[i];
            if (i != 0)
            {
                t = t.StartsWith(prefix, StringComparison.Ordinal) ? t[prefix.Length..] : " " + t;
            }
            result.Add(cleanup ? Cleanup(t) : t);
        }
        return result;
    }
}

/// <summary>Runs of <c>&lt;0xNN&gt;</c> tokens become the UTF-8 text they spell, or one
/// U+FFFD per byte if they are not valid UTF-8.</summary>
internal sealed class ByteFallbackDecoder : Decoder
{
    private static readonly UTF8Encoding Strict = new(false, true);

    public override List<string> DecodeChain(List<string> tokens)
    {
        var result = new List<string>(tokens.Count);
        var pending = new List<byte>();
        foreach (string t in tokens)
        {
            if (t.Length == 6 && t.StartsWith("<0x", StringComparison.Ordinal) && t[5] == '>'
                && IsHex(t[3]) && IsHex(t[4]))
            {
                pending.Add(Convert.ToByte(t.Substring(3, 2), 16));
                continue;
            }
            Flush(pending, result);
            result.Add(t);
        }
        Flush(pending, result);
        return result;
    }

    private static bool IsHex(char c) => char.IsAsciiHexDigit(c);

    private static void Flush(List<byte> pending, List<string> result)
    {
        if (pending.Count == 0)
        {
            return;
        }
        try
        {
            result.Add(Strict.GetString([.. pending]));
        }
        catch (DecoderFallbackException)
        {
            for (int i = 0; i < pending.Count; i++)
            {
                result.Add("\uFFFD");
            }
        }
        pending.Clear();
    }
}

internal sealed class FuseDecoder : Decoder
{
    public override List<string> DecodeChain(List<string> tokens) => [string.Concat(tokens)];
}

internal sealed class StripDecoder(string content, int start, int stop) : Decoder
{
    private readonly int ch = content.Length == 0 ? -1 : Utf16.CodePointAt(content, 0, out _);

    public override List<string> DecodeChain(List<string> tokens)
    {
        var result = new List<string>(tokens.Count);
        foreach (string t in tokens)
        {
            var cps = new List<int>(t.Length);
            for (int i = 0; i < t.Length;)
            {
                cps.Add(Utf16.CodePointAt(t, i, out int w));
                i += w;
            }
            int startCut = 0;
            for (int i = 0; i < Math.Min(start, cps.Count); i++)
            {
                if (cps[i] != ch)
                {
                    break;
                }
                startCut = i + 1;
            }
            int stopCut = cps.Count;
            for (int i = 0; i < Math.Min(stop, cps.Count); i++)
            {
                int index = cps.Count - i - 1;
                if (cps[index] != ch)
                {
                    break;
                }
                stopCut = index;
            }
            var sb = new StringBuilder(t.Length);
            for (int i = startCut; i < Math.Max(startCut, stopCut); i++)
            {
                UnicodeNormalization.AppendCodePoint(sb, cps[i]);
            }
            result.Add(sb.ToString());
        }
        return result;
    }
}

internal sealed class ReplaceDecoder(SplitPattern pattern, string content) : Decoder
{
    private readonly ReplaceNormalizer replace = new(pattern, content);

    public override List<string> DecodeChain(List<string> tokens) =>
        [.. tokens.Select(replace.Normalize)];
}

internal sealed class BpeDecoder(string suffix) : Decoder
{
    public override List<string> DecodeChain(List<string> tokens)
    {
        var result = new List<string>(tokens.Count);
        for (int i = 0; i < tokens.Count; i++)
        {
            result.Add(tokens[i].Replace(suffix, i == tokens.Count - 1 ? "" : " ",
                StringComparison.Ordinal));
        }
        return result;
    }
}

internal sealed class CtcDecoder(string pad, string delimiter, bool cleanup) : Decoder
{
    public override List<string> DecodeChain(List<string> tokens)
    {
        var result = new List<string>();
        for (int i = 0; i < tokens.Count; i++)
        {
            if (i > 0 && tokens[i] == tokens[i - 1])
            {
                continue;
            }
            string t = pad.Length == 0 ? tokens[i] : tokens[i].Replace(pad, "", StringComparison.Ordinal);
            if (cleanup)
            {
                t = Cleanup(t).Replace(delimiter, " ", StringComparison.Ordinal);
            }
            if (t.Length > 0)
            {
                result.Add(t);
            }
        }
        return result;
    }
}
