using System.Collections.Concurrent;
using System.Text.Json;
using System.Text.Json.Nodes;

using ZeTT.Runtime.IO;

namespace ZeTT.Runtime.Tokenizers;

/// <summary>
/// Byte-pair encoding with the Rust library's semantics: a word starts as one symbol per
/// character (with the continuing-subword prefix on all but the first and the end-of-word
/// suffix on the last; unknown characters become <c>&lt;0xNN&gt;</c> byte tokens when byte
/// fallback is on, else the unknown token, fused when <c>fuse_unk</c>), then the adjacent pair
/// of lowest merge rank (leftmost on ties) is merged until none is left. A merge listed twice
/// keeps its last rank, as the library's hash map does.
/// </summary>
internal sealed class BpeModel : TokenizerModel
{
    private readonly Dictionary<string, int> vocab;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> vocabLookup;
    private readonly string?[] idToToken;
    private readonly MergeTable mergeMap;
    private readonly int[] byteFallbackIds;
    private readonly int unkId;

    // The word cache of the Rust library's BPE (10,000 words; words of more than 256 characters
    // are not cached). Most words of a text repeat: on the tokenize benchmark (GPT-2, 4.5 MB) it
    // answers 9 of 10 lookups and makes encoding 2.4× faster. Filled until full, never evicted,
    // as the library's.
    private const int CacheCapacity = 10_000;
    private const int CacheMaxWordLength = 256;
    private readonly ConcurrentDictionary<string, int[]> cache = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, int[]>.AlternateLookup<ReadOnlySpan<char>>
        cacheLookup;
    private int cacheCount;

    // The id of each one-character BMP symbol (-1: not in the vocabulary), so that building a
    // word's symbols costs no hashing when no prefix or suffix decorates them.
    private readonly int[] charIds = new int[char.MaxValue + 1];

    [ThreadStatic] private static Scratch? threadScratch;

    public BpeModel(Dictionary<string, int> vocab, List<(string Left, string Right)> merges,
        JsonObject options, string file)
    {
        this.vocab = vocab.Comparer == StringComparer.Ordinal
            ? vocab : new Dictionary<string, int>(vocab, StringComparer.Ordinal);
        vocabLookup = this.vocab.GetAlternateLookup<ReadOnlySpan<char>>();
        Merges = merges;
        Options = options;
        UnkToken = OptionalString(options, "unk_token");
        ContinuingSubwordPrefix = OptionalString(options, "continuing_subword_prefix");
        EndOfWordSuffix = OptionalString(options, "end_of_word_suffix");
        FuseUnk = OptionalBool(options, "fuse_unk");
        byteFallback = OptionalBool(options, "byte_fallback");
        IgnoreMerges = OptionalBool(options, "ignore_merges");
        if (options["dropout"] is JsonValue d && d.TryGetValue(out double dropout) && dropout > 0)
        {
            throw new ZettException(
                $"{file}: BPE dropout {dropout} is not supported (tokenization must be " +
                "deterministic)");
        }

        int limit = 0;
        foreach (int id in this.vocab.Values)
        {
            if (id < 0)
            {
                throw new ZettException($"{file}: BPE vocabulary has a negative id {id}");
            }
            limit = Math.Max(limit, id + 1);
        }
        idToToken = new string?[limit];
        foreach (KeyValuePair<string, int> kv in this.vocab)
        {
            idToToken[kv.Value] = kv.Key;
        }

        cacheLookup = cache.GetAlternateLookup<ReadOnlySpan<char>>();
        Array.Fill(charIds, -1);
        foreach (KeyValuePair<string, int> kv in this.vocab)
        {
            if (kv.Key.Length == 1 && !char.IsSurrogate(kv.Key[0]))
            {
                charIds[kv.Key[0]] = kv.Value;
            }
        }

        byteFallbackIds = new int[256];
        for (int b = 0; b < 256; b++)
        {
            byteFallbackIds[b] = this.vocab.TryGetValue($"<0x{b:X2}>", out int id) ? id : -1;
        }
        unkId = UnkToken is not null && this.vocab.TryGetValue(UnkToken, out int u) ? u : -1;

        int prefixLength = ContinuingSubwordPrefix?.Length ?? 0;
        mergeMap = new MergeTable(merges.Count);
        for (int rank = 0; rank < merges.Count; rank++)
        {
            (string a, string b) = merges[rank];
            if (!this.vocab.TryGetValue(a, out int aId) || !this.vocab.TryGetValue(b, out int bId))
            {
                throw new ZettException(
                    $"{file}: BPE merge '{a} {b}' (rank {rank}) uses a token that is not in the " +
                    "vocabulary");
            }
            string merged = string.Concat(a, b.AsSpan(Math.Min(prefixLength, b.Length)));
            if (!this.vocab.TryGetValue(merged, out int newId))
            {
                throw new ZettException(
                    $"{file}: BPE merge '{a} {b}' (rank {rank}) makes '{merged}', which is not in " +
                    "the vocabulary");
            }
            mergeMap.Set(Key(aId, bId), rank, newId);
        }
    }

    private readonly bool byteFallback;

    public override TokenizerModelKind Kind => TokenizerModelKind.Bpe;

    public override int Size => vocab.Count;

    public override int IdLimit => idToToken.Length;

    public override bool ByteFallback => byteFallback;

    /// <summary>The vocabulary, token to id.</summary>
    public IReadOnlyDictionary<string, int> Vocab => vocab;

    /// <summary>The merges in rank order.</summary>
    public List<(string Left, string Right)> Merges { get; }

    /// <summary>Every key of the model object except type, vocab and merges.</summary>
    public JsonObject Options { get; }

    public string? UnkToken { get; }

    /// <summary>For a converted model: how many extra merges conversion put before the original
    /// ones.</summary>
    public int LeadingExtraMerges { get; init; }

    /// <summary>For a converted model: how many extra (whitespace) merges conversion put after
    /// the original ones.</summary>
    public int TrailingExtraMerges { get; init; }

    public string? ContinuingSubwordPrefix { get; }

    public string? EndOfWordSuffix { get; }

    public bool FuseUnk { get; }

    public bool IgnoreMerges { get; }

    public static new BpeModel FromJson(JsonObject model, string file)
    {
        Dictionary<string, int> vocab = TokenizerLimits.ReadVocab(model, file, "BPE");
        var merges = new List<(string, string)>();
        if (JsonInput.Array(model, "merges", file) is { } mergesJson)
        {
            merges.Capacity = mergesJson.Count;
            foreach (JsonNode? m in mergesJson)
            {
                merges.Add(ParseMerge(m, file));
            }
        }
        return new BpeModel(vocab, merges, CopyExcept(model, "type", "vocab", "merges"), file);
    }

    private static (string, string) ParseMerge(JsonNode? merge, string file)
    {
        if (merge is JsonArray pair && pair.Count == 2)
        {
            string a = JsonInput.AsString(pair[0], file), b = JsonInput.AsString(pair[1], file);
            TokenizerLimits.CheckToken(a, file, pair[0]);
            TokenizerLimits.CheckToken(b, file, pair[1]);
            return (a, b);
        }
        if (merge is JsonValue v && v.TryGetValue(out string? s))
        {
            int space = s.IndexOf(' ', StringComparison.Ordinal);
            TokenizerLimits.CheckToken(s, file, merge);
            if (space > 0)
            {
                return (s[..space], s[(space + 1)..]);
            }
        }
        throw JsonInput.Error(file, merge, $"BPE merge {merge?.ToJsonString()} is neither \"a b\" "
            + "nor [a, b]");
    }

    public override string? IdToToken(int id) =>
        (uint)id < (uint)idToToken.Length ? idToToken[id] : null;

    public override int? TokenToId(string token) =>
        vocab.TryGetValue(token, out int id) ? id : null;

    public override int? TokenToId(ReadOnlySpan<char> token) =>
        vocabLookup.TryGetValue(token, out int id) ? id : null;

    public override void Tokenize(ReadOnlySpan<char> text, List<int> output)
    {
        if (text.IsEmpty)
        {
            return;
        }
        if (IgnoreMerges && vocabLookup.TryGetValue(text, out int whole))
        {
            output.Add(whole);
            return;
        }
        bool cacheable = text.Length <= CacheMaxWordLength;
        if (cacheable && cacheLookup.TryGetValue(text, out int[]? cached))
        {
            output.AddRange(cached);
            return;
        }
        Scratch s = threadScratch ??= new Scratch();
        s.Reset(text.Length);
        BuildSymbols(text, s);
        MergeAll(s);
        int first = output.Count;
        for (int i = 0; i < s.Count; i++)
        {
            if (s.Length[i] != 0)
            {
                output.Add(s.Id[i]);
            }
        }
        if (cacheable && Volatile.Read(ref cacheCount) < CacheCapacity
            && cacheLookup.TryAdd(text, [.. System.Runtime.InteropServices.CollectionsMarshal
                .AsSpan(output)[first..]]))
        {
            Interlocked.Increment(ref cacheCount);
        }
    }

    private void BuildSymbols(ReadOnlySpan<char> text, Scratch s)
    {
        int pendingUnk = -1;
        int pendingUnkLength = 0;
        string? prefix = ContinuingSubwordPrefix;
        string? suffix = EndOfWordSuffix;
        Span<byte> utf8 = stackalloc byte[16];
        int i = 0;
        while (i < text.Length)
        {
            int width = char.IsHighSurrogate(text[i]) && i + 1 < text.Length
                && char.IsLowSurrogate(text[i + 1]) ? 2 : 1;
            bool isFirst = i == 0;
            bool isLast = i + width >= text.Length;
            ReadOnlySpan<char> ch = text.Slice(i, width);
            ReadOnlySpan<char> symbol = ch;
            bool decorated = (!isFirst && !string.IsNullOrEmpty(prefix))
                || (isLast && !string.IsNullOrEmpty(suffix));
            if (!decorated && width == 1 && charIds[ch[0]] is int plain and >= 0)
            {
                if (pendingUnk >= 0)
                {
                    s.Add(pendingUnk, pendingUnkLength);
                    pendingUnk = -1;
                }
                s.Add(plain, ch[0] < 0x80 ? 1 : ch[0] < 0x800 ? 2 : 3);
                i++;
                continue;
            }
            if (decorated)
            {
                s.Text.Clear();
                if (!isFirst && prefix is not null)
                {
                    s.Text.Append(prefix);
                }
                s.Text.Append(ch);
                if (isLast && suffix is not null)
                {
                    s.Text.Append(suffix);
                }
                symbol = s.TextSpan();
            }
            int byteLength = System.Text.Encoding.UTF8.GetBytes(ch, utf8);
            i += width;

            if (vocabLookup.TryGetValue(symbol, out int id))
            {
                if (pendingUnk >= 0)
                {
                    s.Add(pendingUnk, pendingUnkLength);
                    pendingUnk = -1;
                }
                s.Add(id, byteLength);
                continue;
            }
            if (byteFallback && TryAddByteFallback(symbol, s))
            {
                continue;
            }
            if (UnkToken is not null)
            {
                if (unkId < 0)
                {
                    throw new ZettException(
                        $"BPE unknown token '{UnkToken}' is not in the vocabulary");
                }
                if (pendingUnk >= 0 && FuseUnk)
                {
                    pendingUnkLength += byteLength;
                }
                else
                {
                    if (pendingUnk >= 0)
                    {
                        s.Add(pendingUnk, pendingUnkLength);
                    }
                    pendingUnk = unkId;
                    pendingUnkLength = byteLength;
                }
            }
        }
        if (pendingUnk >= 0)
        {
            s.Add(pendingUnk, pendingUnkLength);
        }
    }

    private bool TryAddByteFallback(ReadOnlySpan<char> symbol, Scratch s)
    {
        Span<byte> bytes = stackalloc byte[System.Text.Encoding.UTF8.GetMaxByteCount(symbol.Length)];
        int n = System.Text.Encoding.UTF8.GetBytes(symbol, bytes);
        for (int k = 0; k < n; k++)
        {
            if (byteFallbackIds[bytes[k]] < 0)
            {
                return false;
            }
        }
        for (int k = 0; k < n; k++)
        {
            s.Add(byteFallbackIds[bytes[k]], 1);
        }
        return true;
    }

    private void MergeAll(Scratch s)
    {
        PriorityQueue<(int Pos, int NewId), long> queue = s.Queue;
        List<((int, int), long)> initial = s.Initial;
        initial.Clear();
        for (int p = 0; p + 1 < s.Count; p++)
        {
            if (mergeMap.TryGetValue(Key(s.Id[p], s.Id[p + 1]), out (int Rank, int NewId) m))
            {
                initial.Add(((p, m.NewId), Priority(m.Rank, p)));
            }
        }
        // Heapified at once (linear), as the library builds its heap from a vector; queueing
        // one by one cost n log n on words without a pre-tokenizer (SentencePiece BPE: the
        // whole text is one word).
        queue.EnqueueRange(initial);
        while (queue.TryDequeue(out (int Pos, int NewId) top, out _))
        {
            int pos = top.Pos;
            if (s.Length[pos] == 0 || s.Next[pos] == -1)
            {
                continue;
            }
            int nextPos = s.Next[pos];
            // Stale entries (the pair changed since it was queued) are skipped.
            if (!mergeMap.TryGetValue(Key(s.Id[pos], s.Id[nextPos]), out (int Rank, int NewId) cur)
                || cur.NewId != top.NewId)
            {
                continue;
            }
            s.Id[pos] = top.NewId;
            s.Length[pos] += s.Length[nextPos];
            s.Next[pos] = s.Next[nextPos];
            s.Length[nextPos] = 0;
            int after = s.Next[pos];
            if (after >= 0 && after < s.Count)
            {
                s.Prev[after] = pos;
            }
            int prev = s.Prev[pos];
            if (prev >= 0 && mergeMap.TryGetValue(Key(s.Id[prev], s.Id[pos]), out var left))
            {
                queue.Enqueue((prev, left.NewId), Priority(left.Rank, prev));
            }
            if (after >= 0 && after < s.Count
                && mergeMap.TryGetValue(Key(s.Id[pos], s.Id[after]), out var right))
            {
                queue.Enqueue((pos, right.NewId), Priority(right.Rank, pos));
            }
        }
    }

    private static long Key(int left, int right) => ((long)left << 32) | (uint)right;

    private static long Priority(int rank, int pos) => ((long)rank << 32) | (uint)pos;

    public override void WriteJson(Utf8JsonWriter writer)
    {
        writer.WriteStartObject();
        WriteOptions(writer, "BPE", Options);
        writer.WriteStartObject("vocab");
        foreach (KeyValuePair<string, int> kv in vocab.OrderBy(kv => kv.Value))
        {
            writer.WriteNumber(kv.Key, kv.Value);
        }
        writer.WriteEndObject();
        // "a b" strings load in every version of the library; pairs are needed only when a
        // token contains a space.
        bool pairs = Merges.Any(m => m.Left.Contains(' ', StringComparison.Ordinal)
            || m.Right.Contains(' ', StringComparison.Ordinal));
        writer.WriteStartArray("merges");
        foreach ((string a, string b) in Merges)
        {
            if (pairs)
            {
                writer.WriteStartArray();
                writer.WriteStringValue(a);
                writer.WriteStringValue(b);
                writer.WriteEndArray();
            }
            else
            {
                writer.WriteStringValue(string.Concat(a, " ", b));
            }
        }
        writer.WriteEndArray();
        writer.WriteEndObject();
    }

    /// <summary>
    /// The merges, (left id, right id) to (rank, merged id), in an open-addressing table with a
    /// multiplicative hash. A <c>Dictionary&lt;long, …&gt;</c> hashes a long as its halves
    /// xor-ed: left ^ right has only 23,586 distinct values over Llama-2's 61,249 merges and
    /// 15,686 over GPT-NeoX's 50,009 (254 merges on one value), so its buckets chained and
    /// lookups, the inner step of the merge loop, walked them.
    /// </summary>
    private sealed class MergeTable
    {
        private readonly long[] keys;
        private readonly int[] ranks;
        private readonly int[] newIds;
        private readonly int shift;
        private readonly int mask;

        public MergeTable(int count)
        {
            // At most half full, so that probes stay short.
            int size = (int)Math.Max(16, System.Numerics.BitOperations.RoundUpToPowerOf2(
                (uint)Math.Max(1, count) * 2));
            keys = new long[size];
            Array.Fill(keys, -1L);
            ranks = new int[size];
            newIds = new int[size];
            mask = size - 1;
            shift = 64 - System.Numerics.BitOperations.Log2((uint)size);
        }

        private int Slot(long key) => (int)((ulong)key * 0x9E3779B97F4A7C15UL >> shift);

        /// <summary>Sets the merge of <paramref name="key"/> (a later merge of the same pair
        /// replaces the earlier, as the dictionary's indexer did).</summary>
        public void Set(long key, int rank, int newId)
        {
            int i = Slot(key);
            while (keys[i] != -1L && keys[i] != key)
            {
                i = (i + 1) & mask;
            }
            keys[i] = key;
            ranks[i] = rank;
            newIds[i] = newId;
        }

        public bool TryGetValue(long key, out (int Rank, int NewId) merge)
        {
            int i = Slot(key);
            while (true)
            {
                long k = keys[i];
                if (k == key)
                {
                    merge = (ranks[i], newIds[i]);
                    return true;
                }
                if (k == -1L)
                {
                    merge = default;
                    return false;
                }
                i = (i + 1) & mask;
            }
        }
    }

    /// <summary>Per-thread buffers so that tokenizing a word allocates nothing.</summary>
    private sealed class Scratch
    {
        public int[] Id = new int[64];
        public int[] Prev = new int[64];
        public int[] Next = new int[64];
        public int[] Length = new int[64];
        public int Count;
        public readonly PriorityQueue<(int Pos, int NewId), long> Queue = new();
        public readonly List<((int, int), long)> Initial = [];
        public readonly System.Text.StringBuilder Text = new();
        private char[] textBuffer = new char[64];

        public void Reset(int capacity)
        {
            // A character can become up to 4 byte-fallback symbols.
            int needed = capacity * 4 + 1;
            if (Id.Length < needed)
            {
                Id = new int[needed];
                Prev = new int[needed];
                Next = new int[needed];
                Length = new int[needed];
            }
            Count = 0;
            Queue.Clear();
        }

        public void Add(int id, int length)
        {
            Id[Count] = id;
            Length[Count] = length;
            Prev[Count] = Count - 1;
            Next[Count] = -1;
            if (Count > 0)
            {
                Next[Count - 1] = Count;
            }
            Count++;
        }

        public ReadOnlySpan<char> TextSpan()
        {
            if (textBuffer.Length < Text.Length)
            {
                textBuffer = new char[Text.Length * 2];
            }
            Text.CopyTo(0, textBuffer, 0, Text.Length);
            return textBuffer.AsSpan(0, Text.Length);
        }
    }
}
