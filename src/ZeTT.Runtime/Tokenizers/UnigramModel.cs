using System.Text.Json;
using System.Text.Json.Nodes;

using ZeTT.Runtime.IO;

namespace ZeTT.Runtime.Tokenizers;

/// <summary>
/// Unigram language model with the Rust library's Viterbi: at each character boundary every
/// piece that starts there extends the best path (shorter pieces first; a later candidate wins
/// only with a strictly higher score); a character no piece covers is the unknown piece with
/// score <c>min_score − 10</c>; consecutive unknowns are fused. A piece listed twice maps to its
/// last id. Segments that are not pieces fall back to <c>&lt;0xNN&gt;</c> tokens when byte fallback
/// is on, else to the unknown id.
/// </summary>
internal sealed class UnigramModel : TokenizerModel
{
    private const double UnknownPenalty = 10.0;

    private readonly Dictionary<string, int> tokenToId;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> lookup;
    private readonly double minScore;
    private readonly bool byteFallback;

    [ThreadStatic] private static Node[]? threadLattice;

    public UnigramModel(List<(string Piece, double Score)> pieces, int? unkId, bool byteFallback,
        JsonObject options, string file)
    {
        Pieces = pieces;
        UnkId = unkId;
        this.byteFallback = byteFallback;
        Options = options;
        if (unkId is int u && (pieces.Count == 0 || u < 0 || u >= pieces.Count))
        {
            throw new ZettException(
                $"{file}: Unigram unk_id {u} is outside the vocabulary of {pieces.Count} pieces");
        }
        tokenToId = new Dictionary<string, int>(pieces.Count, StringComparer.Ordinal);
        minScore = double.PositiveInfinity;
        for (int i = 0; i < pieces.Count; i++)
        {
            tokenToId[pieces[i].Piece] = i;
            minScore = Math.Min(minScore, pieces[i].Score);
        }
        lookup = tokenToId.GetAlternateLookup<ReadOnlySpan<char>>();
        trie = new PrefixTrie(tokenToId);
    }

    private readonly PrefixTrie trie;

    public override TokenizerModelKind Kind => TokenizerModelKind.Unigram;

    public override int Size => Pieces.Count;

    public override int IdLimit => Pieces.Count;

    public override bool ByteFallback => byteFallback;

    /// <summary>The pieces with their scores, in id order.</summary>
    public List<(string Piece, double Score)> Pieces { get; }

    public int? UnkId { get; }

    /// <summary>Every key of the model object except type, vocab, unk_id and byte_fallback.
    /// </summary>
    public JsonObject Options { get; }

    public static new UnigramModel FromJson(JsonObject model, string file)
    {
        if (JsonInput.Array(model, "vocab", file) is not { } vocab)
        {
            throw new ZettException($"{file}: Unigram model has no 'vocab' array");
        }
        if (vocab.Count == 0)
        {
            throw JsonInput.Error(file, vocab, "the vocabulary is empty");
        }
        var pieces = new List<(string, double)>(vocab.Count);
        foreach (JsonNode? entry in vocab)
        {
            if (entry is not JsonArray pair || pair.Count != 2)
            {
                throw JsonInput.Error(file, entry,
                    $"Unigram vocab entry {entry?.ToJsonString()} is not [piece, score]");
            }
            string piece = JsonInput.AsString(pair[0], file);
            TokenizerLimits.CheckToken(piece, file, pair[0]);
            double score = pair[1] is JsonValue sv
                && SerdeJsonFloat.Parse(sv.ToJsonString()) is double parsed ? parsed
                : throw new ZettException(
                    $"{file}: Unigram vocab entry {entry.ToJsonString()} has no numeric score");
            pieces.Add((piece, score));
        }
        int? unkId = JsonInput.Int32(model, "unk_id", file, 0, Math.Max(0, pieces.Count - 1));
        return new UnigramModel(pieces, unkId, OptionalBool(model, "byte_fallback"),
            CopyExcept(model, "type", "vocab", "unk_id", "byte_fallback"), file);
    }

    public override string? IdToToken(int id) =>
        (uint)id < (uint)Pieces.Count ? Pieces[id].Piece : null;

    public override int? TokenToId(string token) =>
        tokenToId.TryGetValue(token, out int id) ? id : null;

    public override int? TokenToId(ReadOnlySpan<char> token) =>
        lookup.TryGetValue(token, out int id) ? id : null;

    private struct Node
    {
        public int Id;
        public int StartsAt;
        public double Score;
    }

    [ThreadStatic]
    private static List<string>? capture;

    /// <summary>As the library: an unknown piece's token is its own text, not the unk token.
    /// </summary>
    public override void Tokenize(ReadOnlySpan<char> text, List<int> ids, List<string> tokens)
    {
        int first = tokens.Count;
        capture = tokens;
        try
        {
            Tokenize(text, ids);
        }
        finally
        {
            capture = null;
        }
        tokens.Reverse(first, tokens.Count - first);
    }

    public override void Tokenize(ReadOnlySpan<char> text, List<int> output)
    {
        if (text.IsEmpty)
        {
            return;
        }
        Node[] best = threadLattice is { } l && l.Length > text.Length
            ? l : threadLattice = new Node[Math.Max(64, text.Length * 2)];
        for (int i = 0; i <= text.Length; i++)
        {
            best[i] = new Node { Id = 0, StartsAt = -1, Score = 0 };
        }
        double unkScore = minScore - UnknownPenalty;
        int start = 0;
        while (start < text.Length)
        {
            double here = best[start].Score;
            int width = CharWidth(text, start);
            bool hasSingle = false;
            // The pieces that start here, found by walking the trie (the library's
            // common-prefix search): linear in the longest match, where looking up every
            // prefix was quadratic in it (a 4,096-character piece: 8 million characters hashed
            // per position).
            int node = PrefixTrie.Root;
            for (int end = start + 1; end <= text.Length; end++)
            {
                node = trie.Child(node, text[end - 1]);
                if (node < 0)
                {
                    break;
                }
                if (char.IsHighSurrogate(text[end - 1]) && end < text.Length
                    && char.IsLowSurrogate(text[end]))
                {
                    continue;
                }
                int id = trie.PieceAt(node);
                if (id < 0)
                {
                    continue;
                }
                double candidate = Pieces[id].Score + here;
                ref Node target = ref best[end];
                if (target.StartsAt < 0 || candidate > target.Score)
                {
                    target.Score = candidate;
                    target.StartsAt = start;
                    target.Id = id;
                }
                if (end - start == width)
                {
                    hasSingle = true;
                }
            }
            if (!hasSingle)
            {
                ref Node target = ref best[start + width];
                double candidate = unkScore + here;
                if (target.StartsAt < 0 || candidate > target.Score)
                {
                    target.Score = candidate;
                    target.StartsAt = start;
                    target.Id = UnkId ?? throw new ZettException(
                        $"Unigram model has no unk_id but '{text.ToString()}' needs it");
                }
            }
            start += width;
        }

        // Backtrack, fusing runs of unknowns, then emit segments in text order.
        int first = output.Count;
        int endsAt = text.Length;
        int fusedEnd = -1;
        while (endsAt > 0)
        {
            Node node = best[endsAt];
            if (UnkId is int unk && node.Id == unk)
            {
                if (fusedEnd < 0)
                {
                    fusedEnd = endsAt;
                }
            }
            else
            {
                if (fusedEnd >= 0)
                {
                    EmitReversed(text[endsAt..fusedEnd], output);
                    fusedEnd = -1;
                }
                EmitReversed(text[node.StartsAt..endsAt], output);
            }
            endsAt = node.StartsAt;
        }
        if (fusedEnd >= 0)
        {
            EmitReversed(text[..fusedEnd], output);
        }
        output.Reverse(first, output.Count - first);
    }

    /// <summary>Adds the ids of one segment; byte-fallback ids are added in reverse because the
    /// whole output is reversed at the end.</summary>
    private void EmitReversed(ReadOnlySpan<char> segment, List<int> output)
    {
        if (lookup.TryGetValue(segment, out int id))
        {
            output.Add(id);
            capture?.Add(segment.ToString());
            return;
        }
        if (byteFallback)
        {
            Span<byte> bytes = stackalloc byte[System.Text.Encoding.UTF8.GetMaxByteCount(segment.Length)];
            int n = System.Text.Encoding.UTF8.GetBytes(segment, bytes);
            Span<char> name = stackalloc char[6];
            bool all = true;
            for (int k = 0; k < n && all; k++)
            {
                all = lookup.ContainsKey(ByteName(bytes[k], name));
            }
            if (all)
            {
                for (int k = n - 1; k >= 0; k--)
                {
                    output.Add(lookup[ByteName(bytes[k], name)]);
                    capture?.Add(ByteName(bytes[k], name).ToString());
                }
                return;
            }
        }
        output.Add(UnkId ?? throw new ZettException(
            $"Unigram model has no unk_id but '{segment.ToString()}' needs it"));
        capture?.Add(segment.ToString());
    }

    private static ReadOnlySpan<char> ByteName(byte b, Span<char> name)
    {
        const string hex = "0123456789ABCDEF";
        name[0] = '<';
        name[1] = '0';
        name[2] = 'x';
        name[3] = hex[b >> 4];
        name[4] = hex[b & 15];
        name[5] = '>';
        return name;
    }

    /// <summary>The pieces as a trie over UTF-16 units: one hash lookup per character walked.
    /// </summary>
    private sealed class PrefixTrie
    {
        public const int Root = 0;
        private readonly Dictionary<long, int> children = [];
        private readonly List<int> pieces = [-1];

        public PrefixTrie(Dictionary<string, int> tokenToId)
        {
            foreach ((string piece, int id) in tokenToId)
            {
                int node = Root;
                foreach (char c in piece)
                {
                    long key = ((long)node << 16) | c;
                    if (!children.TryGetValue(key, out int child))
                    {
                        child = pieces.Count;
                        pieces.Add(-1);
                        children[key] = child;
                    }
                    node = child;
                }
                pieces[node] = id;
            }
        }

        /// <summary>The node after <paramref name="c"/>, or -1.</summary>
        public int Child(int node, char c) =>
            children.TryGetValue(((long)node << 16) | c, out int child) ? child : -1;

        /// <summary>The id of the piece that ends at <paramref name="node"/>, or -1.</summary>
        public int PieceAt(int node) => pieces[node];
    }

    private static int CharWidth(ReadOnlySpan<char> text, int i) =>
        char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1])
            ? 2 : 1;

    public override void WriteJson(Utf8JsonWriter writer)
    {
        writer.WriteStartObject();
        WriteOptions(writer, "Unigram", Options);
        if (UnkId is int unk)
        {
            writer.WriteNumber("unk_id", unk);
        }
        else
        {
            writer.WriteNull("unk_id");
        }
        writer.WriteStartArray("vocab");
        foreach ((string piece, double score) in Pieces)
        {
            writer.WriteStartArray();
            writer.WriteStringValue(piece);
            writer.WriteNumberValue(score);
            writer.WriteEndArray();
        }
        writer.WriteEndArray();
        writer.WriteBoolean("byte_fallback", byteFallback);
        writer.WriteEndObject();
    }
}
