using System.Text.Json.Nodes;

namespace ZeTT.Runtime.Tokenizers;

/// <summary>
/// The normalizer, pre-tokenizer, post-processor and decoder parts of a tokenizer.json: which
/// types exist (an unknown type is an error that names the file), and the normalizer and
/// pre-tokenizer alone, which conversion uses to find a tokenizer's word-boundary character
/// (what <c>" test"</c> becomes).
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

    /// <summary>The normalizer of tokenizer.json's <c>normalizer</c> applied to one text.
    /// </summary>
    public static string Normalize(JsonNode? normalizer, string text, string file) =>
        Normalizer.FromJson(normalizer, file)?.Normalize(text) ?? text;

    /// <summary>The pre-tokenizer of tokenizer.json's <c>pre_tokenizer</c> applied to one
    /// normalized text.</summary>
    public static List<string> PreTokenize(JsonNode? preTokenizer, string text, string file)
    {
        List<Piece> pieces = text.Length == 0 ? [] : [new Piece(text, -1, true)];
        PreTokenizer.FromJson(preTokenizer, file)?.PreTokenize(pieces);
        return [.. pieces.Select(p => p.Text)];
    }

}
