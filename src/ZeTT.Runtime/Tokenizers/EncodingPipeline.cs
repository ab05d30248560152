using System.Globalization;
using System.Text.Json.Nodes;

namespace ZeTT.Runtime.Tokenizers;

/// <summary>The ids and tokens of one encoded text (Hugging Face's <c>Encoding.ids</c> and
/// <c>Encoding.tokens</c>).</summary>
/// <param name="Ids">Token ids, special tokens included when asked for.</param>
/// <param name="Tokens">The token strings, as the Rust library reports them (an added token as
/// the text it matched, a model token as its vocabulary entry).</param>
public sealed record TokenizerEncoding(int[] Ids, string[] Tokens);

/// <summary>
/// tokenizer.json's whole encoding pipeline with the Rust library's semantics
/// (<c>TokenizerImpl::encode</c> / <c>decode</c>): added tokens split off first (those with
/// <c>normalized: false</c> on the raw text, then the others on each normalized piece), the
/// normalizer on each remaining piece, the pre-tokenizer, the model on every pre-token,
/// truncation, the post-processor, padding. Immutable and thread-safe.
/// </summary>
internal sealed class EncodingPipeline
{
    private readonly TokenizerModel model;
    private readonly Normalizer? normalizer;
    private readonly PreTokenizer? preTokenizer;
    private readonly PostProcessor? postProcessor;
    private readonly Decoder? decoder;
    private readonly AddedTokenMatcher rawMatcher;
    private readonly AddedTokenMatcher normalizedMatcher;
    private readonly Dictionary<int, string> addedContent = [];
    private readonly HashSet<string> specialContents = new(StringComparer.Ordinal);
    private readonly (int MaxLength, bool Left)? truncation;
    private readonly Padding? padding;

    private sealed record Padding(int? Fixed, int MultipleOf, bool Left, int PadId, string PadToken);

    public EncodingPipeline(TokenizerModel model, JsonObject components,
        IReadOnlyList<HfAddedToken> addedTokens, string file)
    {
        this.model = model;
        normalizer = Normalizer.FromJson(components["normalizer"], file);
        preTokenizer = PreTokenizer.FromJson(components["pre_tokenizer"], file);
        postProcessor = PostProcessor.FromJson(components["post_processor"], file);
        decoder = Decoder.FromJson(components["decoder"], file);
        var raw = new List<HfAddedToken>();
        var normalized = new List<(HfAddedToken, string)>();
        foreach (HfAddedToken t in AssignIds(model, addedTokens))
        {
            addedContent[t.Id] = t.Content;
            if (t.Special)
            {
                specialContents.Add(t.Content);
            }
            if (t.Normalized)
            {
                normalized.Add((t, normalizer?.Normalize(t.Content) ?? t.Content));
            }
            else
            {
                raw.Add(t);
            }
        }
        rawMatcher = new AddedTokenMatcher(raw.Select(t => (t, t.Content)));
        normalizedMatcher = new AddedTokenMatcher(normalized);
        truncation = ParseTruncation(components["truncation"], file);
        padding = ParsePadding(components["padding"], file);
    }

    /// <summary>The ids the library gives added tokens when it loads tokenizer.json: it
    /// ignores the file's ids and adds the tokens in order, each taking its id in the model's
    /// vocabulary or an earlier added token's, else the next id from the model's vocabulary
    /// size on (the file's ids for every file transformers or zett writes). A repeated token's
    /// later entry decides its options.</summary>
    private static List<HfAddedToken> AssignIds(TokenizerModel model,
        IReadOnlyList<HfAddedToken> tokens)
    {
        var byContent = new Dictionary<string, int>(StringComparer.Ordinal);
        var byId = new Dictionary<int, HfAddedToken>();
        int next = model.Size;
        foreach (HfAddedToken t in tokens)
        {
            if (t.Content.Length == 0)
            {
                continue;
            }
            int id = byContent.TryGetValue(t.Content, out int existing) ? existing
                : model.TokenToId(t.Content) ?? next++;
            byContent[t.Content] = id;
            byId[id] = t with { Id = id };
        }
        return [.. byId.Values];
    }

    public TokenizerEncoding Encode(string text, bool addSpecialTokens)
    {
        text = Utf16.Sanitize(text);
        var pieces = new List<Piece>();
        var stage = new List<Piece>();
        rawMatcher.Split(text, true, stage);
        foreach (Piece p in stage)
        {
            if (p.Id >= 0)
            {
                pieces.Add(p);
                continue;
            }
            string normalizedText = normalizer is null ? p.Text : normalizer.Normalize(p.Text);
            normalizedMatcher.Split(normalizedText, p.AtStart, pieces);
        }
        var ids = new List<int>(text.Length / 3 + 4);
        var tokens = new List<string>(text.Length / 3 + 4);
        var sink = new ModelSink(model, ids, tokens);
        if (preTokenizer is null)
        {
            foreach (Piece p in pieces)
            {
                if (p.Id >= 0)
                {
                    sink.Added(p);
                }
                else
                {
                    sink.Word(p.Text);
                }
            }
        }
        else
        {
            preTokenizer.PreTokenize(pieces, sink);
        }
        if (truncation is { } trunc)
        {
            int max = trunc.MaxLength
                - (addSpecialTokens && postProcessor is not null ? postProcessor.AddedTokens : 0);
            max = Math.Max(0, max);
            if (ids.Count > max)
            {
                int at = trunc.Left ? 0 : max;
                ids.RemoveRange(at, ids.Count - max);
                tokens.RemoveRange(at, tokens.Count - max);
            }
        }
        if (addSpecialTokens)
        {
            postProcessor?.Process(ids, tokens);
        }
        if (padding is { } pad)
        {
            int target = pad.Fixed ?? ids.Count;
            if (pad.MultipleOf > 0 && target % pad.MultipleOf != 0)
            {
                target += pad.MultipleOf - target % pad.MultipleOf;
            }
            int missing = target - ids.Count;
            if (missing > 0)
            {
                int at = pad.Left ? 0 : ids.Count;
                ids.InsertRange(at, Enumerable.Repeat(pad.PadId, missing));
                tokens.InsertRange(at, Enumerable.Repeat(pad.PadToken, missing));
            }
        }
        return new TokenizerEncoding([.. ids], [.. tokens]);
    }

    public string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens)
    {
        var tokens = new List<string>(ids.Length);
        foreach (int id in ids)
        {
            string? token = addedContent.TryGetValue(id, out string? content) ? content
                : model.IdToToken(id);
            if (token is null || (skipSpecialTokens && specialContents.Contains(token)))
            {
                continue;
            }
            tokens.Add(token);
        }
        return decoder is null ? string.Join(' ', tokens) : decoder.Decode(tokens);
    }

    /// <summary>Runs the model on each pre-token as it comes.</summary>
    private sealed class ModelSink(TokenizerModel model, List<int> ids, List<string> tokens)
        : PreTokenizer.IPieceSink
    {
        public void Added(in Piece piece)
        {
            ids.Add(piece.Id);
            tokens.Add(piece.Text);
        }

        public void Word(ReadOnlySpan<char> word) => model.Tokenize(word, ids, tokens);
    }

    /// <summary>The normalizer alone (what the byte-level conversion probes).</summary>
    public string Normalize(string text) => normalizer?.Normalize(text) ?? text;

    /// <summary>The pre-tokenizer alone, on one already normalized text.</summary>
    public List<string> PreTokenize(string text)
    {
        List<Piece> pieces = text.Length == 0 ? [] : [new Piece(text, -1, true)];
        preTokenizer?.PreTokenize(pieces);
        return [.. pieces.Select(p => p.Text)];
    }

    private static (int, bool)? ParseTruncation(JsonNode? node, string file)
    {
        if (node is null)
        {
            return null;
        }
        int max = Json.Int(node, "max_length", -1);
        if (max < 0)
        {
            throw new ZettException($"{file}: truncation has no max_length");
        }
        string direction = Json.OptionalString(node, "direction") ?? "Right";
        return (max, direction == "Left");
    }

    private static Padding? ParsePadding(JsonNode? node, string file)
    {
        if (node is null)
        {
            return null;
        }
        int? fixedLength = node["strategy"] is JsonObject s && s["Fixed"] is JsonValue f
            && f.TryGetValue(out int n) ? n : null;
        if (fixedLength is null && node["strategy"] is not JsonValue)
        {
            throw new ZettException($"{file}: padding strategy {node["strategy"]?.ToJsonString()} " +
                "is neither \"BatchLongest\" nor {\"Fixed\": n}");
        }
        return new Padding(fixedLength, Json.Int(node, "pad_to_multiple_of", 0),
            Json.OptionalString(node, "direction") == "Left", Json.Int(node, "pad_id", 0),
            Json.OptionalString(node, "pad_token") ?? "[PAD]");
    }
}

/// <summary>
/// Finds added tokens as the library does: leftmost-longest matches (an Aho-Corasick automaton
/// there, a first-character index here — same matches), a match dropped when
/// <c>single_word</c> is set and a word character touches it (the text it covered is not
/// searched again), <c>lstrip</c>/<c>rstrip</c> swallowing the whitespace beside it.
/// </summary>
internal sealed class AddedTokenMatcher
{
    private readonly Dictionary<char, (string Pattern, HfAddedToken Token)[]> byFirst;

    public AddedTokenMatcher(IEnumerable<(HfAddedToken Token, string Pattern)> tokens)
    {
        byFirst = tokens.Where(t => t.Pattern.Length > 0)
            .GroupBy(t => t.Pattern[0])
            .ToDictionary(g => g.Key, g => g.Select(t => (t.Pattern, t.Token))
                .OrderByDescending(t => t.Pattern.Length).ToArray());
    }

    /// <summary>Splits <paramref name="text"/> into added tokens and the text between them,
    /// dropping empty pieces.</summary>
    public void Split(string text, bool atStart, List<Piece> output)
    {
        if (text.Length == 0)
        {
            return;
        }
        if (byFirst.Count == 0)
        {
            output.Add(new Piece(text, -1, atStart));
            return;
        }
        int done = 0;
        int i = 0;
        while (i < text.Length)
        {
            if (!byFirst.TryGetValue(text[i], out (string Pattern, HfAddedToken Token)[]? candidates))
            {
                i++;
                continue;
            }
            (string Pattern, HfAddedToken Token)? found = null;
            foreach ((string pattern, HfAddedToken token) c in candidates)
            {
                // The second character first: GPT-NeoX's 23 whitespace-run tokens all start at
                // every space of a text.
                if (i + c.pattern.Length <= text.Length
                    && (c.pattern.Length < 2 || text[i + 1] == c.pattern[1])
                    && string.CompareOrdinal(text, i, c.pattern, 0, c.pattern.Length) == 0)
                {
                    found = c;
                    break;
                }
            }
            if (found is not { } match)
            {
                i++;
                continue;
            }
            int start = i, stop = i + match.Pattern.Length;
            i = stop;
            HfAddedToken t = match.Token;
            if (t.SingleWord && ((start > 0 && IsWordChar(text, start, before: true))
                || (stop < text.Length && IsWordChar(text, stop, before: false))))
            {
                continue;
            }
            if (t.LStrip)
            {
                int s = start;
                while (s > 0 && IsSpaceBefore(text, s, out int w))
                {
                    s -= w;
                }
                start = Math.Max(s, done);
            }
            if (t.RStrip)
            {
                while (stop < text.Length && IsSpaceAt(text, stop, out int w))
                {
                    stop += w;
                }
                i = stop;
            }
            if (done < start)
            {
                output.Add(new Piece(text[done..start], -1, atStart && done == 0));
            }
            output.Add(new Piece(text[start..stop], t.Id, atStart && start == 0));
            done = stop;
        }
        if (done < text.Length)
        {
            output.Add(new Piece(text[done..], -1, atStart && done == 0));
        }
    }

    private static bool IsSpaceAt(string text, int i, out int width) =>
        Utf16.IsWhiteSpace(Utf16.CodePointAt(text, i, out width));

    private static bool IsSpaceBefore(string text, int end, out int width)
    {
        int i = end - 1;
        if (i > 0 && char.IsLowSurrogate(text[i]) && char.IsHighSurrogate(text[i - 1]))
        {
            i--;
        }
        return IsSpaceAt(text, i, out width);
    }

    /// <summary>Rust regex's Unicode <c>\w</c> for the character just before
    /// <paramref name="at"/> (or at it).</summary>
    private static bool IsWordChar(string text, int at, bool before)
    {
        int i = at;
        if (before)
        {
            i = at - 1;
            if (i > 0 && char.IsLowSurrogate(text[i]) && char.IsHighSurrogate(text[i - 1]))
            {
                i--;
            }
        }
        int cp = Utf16.CodePointAt(text, i, out _);
        return cp is 0x200C or 0x200D || CharUnicodeInfo.GetUnicodeCategory(cp) is
            UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter
            or UnicodeCategory.TitlecaseLetter or UnicodeCategory.ModifierLetter
            or UnicodeCategory.OtherLetter or UnicodeCategory.NonSpacingMark
            or UnicodeCategory.SpacingCombiningMark or UnicodeCategory.EnclosingMark
            or UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber
            or UnicodeCategory.ConnectorPunctuation;
    }
}
