using System.Text.Json.Nodes;

namespace ZeTT.Runtime.Tokenizers;

/// <summary>One split of the text on its way to the model: either an added token already
/// matched (<see cref="Id"/> ≥ 0) or text still to pre-tokenize and tokenize.</summary>
/// <param name="Text">The (normalized) text of the split.</param>
/// <param name="Id">The added token's id, or -1.</param>
/// <param name="AtStart">True if the split begins at offset 0 of the original text (what the
/// library's Metaspace <c>prepend_scheme: first</c> asks).</param>
internal readonly record struct Piece(string Text, int Id, bool AtStart);

/// <summary>
/// A tokenizer.json pre-tokenizer: splits every not-yet-tokenized piece further, with the Rust
/// library's semantics (empty splits dropped, added-token splits left alone).
/// </summary>
internal abstract class PreTokenizer
{
    /// <summary>Appends the splits of one piece as (start, length) pairs of
    /// <paramref name="text"/>, or returns a replacement text for the whole piece through
    /// <see cref="Transform"/>.</summary>
    protected abstract void Split(string text, bool atStart, List<(int Start, int Length)> output);

    /// <summary>Rewrites a split's text before <see cref="Split"/> (ByteLevel's prefix space,
    /// Metaspace's replacement); the identity by default.</summary>
    protected virtual string Transform(string text, bool atStart) => text;

    /// <summary>Maps each final split's text (ByteLevel's byte alphabet); identity by default.
    /// </summary>
    protected virtual string Map(string text) => text;

    /// <summary>Receives the final splits of <see cref="PreTokenize(List{Piece}, IPieceSink)"/>
    /// one at a time: an added token as its piece, a word as a span that is valid only during
    /// the call (no string per word: measured 1.3× faster on the GPT-2 tokenize benchmark).
    /// </summary>
    internal interface IPieceSink
    {
        void Added(in Piece piece);

        void Word(ReadOnlySpan<char> word);
    }

    [ThreadStatic] private static List<(int Start, int Length)>? threadSpans;

    /// <summary>Writes a final split's text, as <see cref="Map"/> would, into
    /// <paramref name="buffer"/> (grown as needed) and returns it; the identity by default.
    /// </summary>
    protected virtual ReadOnlySpan<char> MapSpan(ReadOnlySpan<char> text, ref char[] buffer) =>
        text;

    [ThreadStatic] private static char[]? threadMapBuffer;

    /// <summary>True if this step leaves each piece whole and only maps it (<see cref="Transform"/>
    /// the identity, <see cref="Split"/> one span of the whole text), so that a sequence can
    /// apply it to the spans of the step before without a string per split.</summary>
    internal virtual bool OnlyMaps => false;

    /// <summary><see cref="MapSpan"/> for a sequence that applies this step to the spans of the
    /// step before it (<see cref="OnlyMaps"/>).</summary>
    internal ReadOnlySpan<char> MapSplit(ReadOnlySpan<char> text, ref char[] buffer) =>
        MapSpan(text, ref buffer);

    /// <summary><see cref="PreTokenize(List{Piece})"/> with the splits handed to
    /// <paramref name="sink"/> instead of collected (the order is the same).</summary>
    public virtual void PreTokenize(List<Piece> pieces, IPieceSink sink)
    {
        List<(int Start, int Length)> spans = threadSpans ??= [];
        char[] buffer = threadMapBuffer ??= new char[256];
        foreach (Piece piece in pieces)
        {
            if (piece.Id >= 0)
            {
                sink.Added(piece);
                continue;
            }
            string text = Transform(piece.Text, piece.AtStart);
            spans.Clear();
            Split(text, piece.AtStart, spans);
            for (int k = 0; k < spans.Count; k++)
            {
                (int start, int length) = spans[k];
                if (length > 0)
                {
                    sink.Word(MapSpan(text.AsSpan(start, length), ref buffer));
                }
            }
        }
        threadMapBuffer = buffer;
    }

    public virtual void PreTokenize(List<Piece> pieces)
    {
        var output = new List<Piece>(pieces.Count * 2);
        var spans = new List<(int Start, int Length)>();
        foreach (Piece piece in pieces)
        {
            if (piece.Id >= 0)
            {
                output.Add(piece);
                continue;
            }
            string text = Transform(piece.Text, piece.AtStart);
            spans.Clear();
            Split(text, piece.AtStart, spans);
            foreach ((int start, int length) in spans)
            {
                if (length > 0)
                {
                    output.Add(new Piece(Map(text.Substring(start, length)), -1,
                        piece.AtStart && start == 0));
                }
            }
        }
        pieces.Clear();
        pieces.AddRange(output);
    }

    public static PreTokenizer? FromJson(JsonNode? node, string file)
    {
        if (node is null)
        {
            return null;
        }
        string type = Json.Type(node, "pre-tokenizer", file);
        return type switch
        {
            "Sequence" => new SequencePreTokenizer([.. Json.Array(node, "pretokenizers", file)
                .Select(p => FromJson(p, file)).OfType<PreTokenizer>()]),
            "ByteLevel" => new ByteLevelPreTokenizer(Json.Bool(node, "add_prefix_space", true),
                Json.Bool(node, "use_regex", true), file),
            "Metaspace" => MetaspacePreTokenizer.Parse(node, file),
            "Whitespace" => new PatternPreTokenizer(
                RegexPattern.Create(@"\w+|[^\w\s]+", file), SplitBehavior.Removed, invert: true),
            "WhitespaceSplit" => new PatternPreTokenizer(
                new CharPredicatePattern(Utf16.IsWhiteSpace), SplitBehavior.Removed, false),
            "BertPreTokenizer" => new SequencePreTokenizer(
            [
                new PatternPreTokenizer(new CharPredicatePattern(Utf16.IsWhiteSpace),
                    SplitBehavior.Removed, false),
                new PatternPreTokenizer(new CharPredicatePattern(IsPunctuation),
                    SplitBehavior.Isolated, false),
            ]),
            "Punctuation" => new PatternPreTokenizer(new CharPredicatePattern(IsPunctuation),
                SplitPattern.ParseBehavior(Json.OptionalString(node, "behavior") ?? "Isolated", file),
                false),
            "Digits" => new PatternPreTokenizer(new CharPredicatePattern(Utf16.IsNumeric),
                Json.Bool(node, "individual_digits", false)
                    ? SplitBehavior.Isolated : SplitBehavior.Contiguous, false),
            "CharDelimiterSplit" => CharDelimiter(node, file),
            "Split" => new PatternPreTokenizer(Json.Pattern(node, file),
                SplitPattern.ParseBehavior(Json.OptionalString(node, "behavior"), file),
                Json.Bool(node, "invert", false)),
            "UnicodeScripts" => new UnicodeScriptsPreTokenizer(),
            "FixedLength" => new FixedLengthPreTokenizer(Math.Max(1, Json.Int(node, "length", 5))),
            _ => throw Json.Unknown("pre-tokenizer", type, file),
        };
    }

    /// <summary>The library's <c>is_ascii_punctuation || is_punctuation</c> (P*, Unicode 8.0).
    /// </summary>
    internal static bool IsPunctuation(int cp) =>
        cp is (>= 33 and <= 47) or (>= 58 and <= 64) or (>= 91 and <= 96) or (>= 123 and <= 126)
        || UnicodeCategories8.IsPunctuation(cp);

    private static PatternPreTokenizer CharDelimiter(JsonNode node, string file)
    {
        string delimiter = Json.String(node, "delimiter", file);
        if (delimiter.Length == 0)
        {
            throw new ZettException($"{file}: CharDelimiterSplit delimiter is empty");
        }
        int d = Utf16.CodePointAt(delimiter, 0, out _);
        return new PatternPreTokenizer(new CharPredicatePattern(c => c == d),
            SplitBehavior.Removed, false);
    }
}

internal sealed class SequencePreTokenizer(PreTokenizer[] steps) : PreTokenizer
{
    private readonly SequencePreTokenizer? head =
        steps.Length > 1 && steps[^1].OnlyMaps ? new SequencePreTokenizer(steps[..^1]) : null;

    protected override void Split(string text, bool atStart, List<(int, int)> output) =>
        throw new InvalidOperationException("a sequence splits through its steps");

    public override void PreTokenize(List<Piece> pieces)
    {
        foreach (PreTokenizer step in steps)
        {
            step.PreTokenize(pieces);
        }
    }

    public override void PreTokenize(List<Piece> pieces, IPieceSink sink)
    {
        if (steps.Length == 0)
        {
            base.PreTokenize(pieces, sink);
            return;
        }
        if (head is not null)
        {
            // cl100k's Split then ByteLevel (no regex): the splits of the steps before go to the
            // last one's mapping as spans, not as a string each.
            head.PreTokenize(pieces, new MappingSink(steps[^1], sink));
            return;
        }
        for (int i = 0; i + 1 < steps.Length; i++)
        {
            steps[i].PreTokenize(pieces);
        }
        steps[^1].PreTokenize(pieces, sink);
    }

    /// <summary>Hands each word of the earlier steps, mapped by <paramref name="step"/>, on
    /// to <paramref name="sink"/>; its own buffer, since the earlier steps' words may live in
    /// theirs.</summary>
    private sealed class MappingSink(PreTokenizer step, IPieceSink sink) : IPieceSink
    {
        private char[] buffer = new char[256];

        public void Added(in Piece piece) => sink.Added(piece);

        public void Word(ReadOnlySpan<char> word) => sink.Word(step.MapSplit(word, ref buffer));
    }
}

internal sealed class PatternPreTokenizer(SplitPattern pattern, SplitBehavior behavior,
    bool invert) : PreTokenizer
{
    protected override void Split(string text, bool atStart, List<(int, int)> output) =>
        pattern.Split(text, behavior, invert, output);
}

/// <summary>ByteLevel: a space prepended to every split that lacks one (if
/// <c>add_prefix_space</c>), the GPT-2 regex (if <c>use_regex</c>), then each byte of the
/// UTF-8 text mapped to GPT-2's printable alphabet.</summary>
internal sealed class ByteLevelPreTokenizer : PreTokenizer
{
    private const string Gpt2Regex =
        @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    private readonly bool addPrefixSpace;
    private readonly SplitPattern? regex;

    public ByteLevelPreTokenizer(bool addPrefixSpace, bool useRegex, string file)
    {
        this.addPrefixSpace = addPrefixSpace;
        regex = useRegex ? RegexPattern.Create(Gpt2Regex, file) : null;
    }

    protected override string Transform(string text, bool atStart) =>
        addPrefixSpace && !text.StartsWith(' ') ? " " + text : text;

    protected override void Split(string text, bool atStart, List<(int Start, int Length)> output)
    {
        if (regex is null)
        {
            output.Add((0, text.Length));
        }
        else
        {
            regex.Split(text, SplitBehavior.Isolated, false, output);
        }
    }

    protected override string Map(string text) => ByteLevelAlphabet.EncodeUtf8(text);

    internal override bool OnlyMaps => regex is null && !addPrefixSpace;

    protected override ReadOnlySpan<char> MapSpan(ReadOnlySpan<char> text, ref char[] buffer)
    {
        // At most 3 UTF-8 bytes per UTF-16 unit (a surrogate pair: 4 bytes for 2 units).
        if (buffer.Length < text.Length * 3)
        {
            buffer = new char[text.Length * 3];
        }
        return buffer.AsSpan(0, ByteLevelAlphabet.EncodeUtf8(text, buffer));
    }
}

/// <summary>Metaspace: spaces become the replacement character, which is prepended by the
/// prepend scheme (<c>always</c>; <c>first</c>: only to a split at the start of the original
/// text; <c>never</c>), and the text is split before each replacement if <c>split</c>.</summary>
internal sealed class MetaspacePreTokenizer(string replacement, string scheme, bool split)
    : PreTokenizer
{
    private readonly SplitPattern splitter = RegexPattern.Literal(replacement);

    public static MetaspacePreTokenizer Parse(JsonNode node, string file)
    {
        string replacement = Json.OptionalString(node, "replacement") ?? "\u2581";
        string scheme = Json.OptionalString(node, "prepend_scheme")
            ?? (Json.Bool(node, "add_prefix_space", true) ? "always" : "never");
        if (scheme is not ("always" or "first" or "never"))
        {
            throw new ZettException($"{file}: Metaspace prepend_scheme '{scheme}' is not one of " +
                "always, first, never");
        }
        return new MetaspacePreTokenizer(replacement, scheme, Json.Bool(node, "split", true));
    }

    public string Replacement => replacement;

    public string Scheme => scheme;

    protected override string Transform(string text, bool atStart)
    {
        text = text.Replace(" ", replacement, StringComparison.Ordinal);
        if ((scheme == "always" || (scheme == "first" && atStart))
            && !text.StartsWith(replacement, StringComparison.Ordinal))
        {
            text = replacement + text;
        }
        return text;
    }

    protected override void Split(string text, bool atStart, List<(int Start, int Length)> output)
    {
        if (split)
        {
            splitter.Split(text, SplitBehavior.MergedWithNext, false, output);
        }
        else
        {
            output.Add((0, text.Length));
        }
    }
}

/// <summary>UnicodeScripts: splits where the script changes (Hiragana and Katakana count as
/// Han, U+30FC is Han, a space belongs to any script), as SentencePiece's default
/// <c>IsValidSentencePiece</c> does.</summary>
internal sealed class UnicodeScriptsPreTokenizer : PreTokenizer
{
    private const int Any = -1;
    private static readonly int Han = Array.IndexOf(UnicodeTables.ScriptNames, "Han");
    private static readonly int Hiragana = Array.IndexOf(UnicodeTables.ScriptNames, "Hiragana");
    private static readonly int Katakana = Array.IndexOf(UnicodeTables.ScriptNames, "Katakana");

    protected override void Split(string text, bool atStart, List<(int Start, int Length)> output)
    {
        var cuts = new List<int>();
        int? last = null;
        for (int i = 0; i < text.Length;)
        {
            int cp = Utf16.CodePointAt(text, i, out int w);
            int script = Script(cp);
            if (script != Any && last != Any && last != script)
            {
                cuts.Add(i);
            }
            if (script != Any)
            {
                last = script;
            }
            i += w;
        }
        cuts.Add(text.Length);
        for (int k = 0; k + 1 < cuts.Count; k++)
        {
            output.Add((cuts[k], cuts[k + 1] - cuts[k]));
        }
    }

    private static int Script(int cp)
    {
        if (cp == 0x30FC)
        {
            return Han;
        }
        if (cp == ' ')
        {
            return Any;
        }
        int index = Array.BinarySearch(UnicodeTables.ScriptStarts, cp);
        int script = UnicodeTables.ScriptValues[index < 0 ? ~index - 1 : index];
        return script == Hiragana || script == Katakana ? Han : script;
    }
}

internal sealed class FixedLengthPreTokenizer(int length) : PreTokenizer
{
    protected override void Split(string text, bool atStart, List<(int Start, int Length)> output)
    {
        int start = 0, count = 0;
        for (int i = 0; i < text.Length;)
        {
            Utf16.CodePointAt(text, i, out int w);
            i += w;
            if (++count == length)
            {
                output.Add((start, i - start));
                start = i;
                count = 0;
            }
        }
        if (start < text.Length)
        {
            output.Add((start, text.Length - start));
        }
    }
}
