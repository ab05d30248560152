using System.Buffers.Binary;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;

using ZeTT.Runtime.Tokenizers;

namespace ZeTT.Runtime.Training;

/// <summary>
/// A byte string of 1 to 15 bytes packed into 128 bits: bytes 0–7 in <see cref="Lo"/> (byte i
/// at bits 8i), bytes 8–14 in <see cref="Hi"/>, the length in the top byte of <see cref="Hi"/>.
/// A substring of a byte-level pretoken is such a string (one byte per alphabet character), so
/// counting needs no string per substring.
/// </summary>
internal readonly struct SubstringKey : IEquatable<SubstringKey>, IComparable<SubstringKey>
{
    /// <summary>The longest string a key holds.</summary>
    public const int MaxLength = 15;

    private SubstringKey(ulong lo, ulong hi)
    {
        Lo = lo;
        Hi = hi;
    }

    /// <summary>Bytes 0–7.</summary>
    public ulong Lo { get; }

    /// <summary>Bytes 8–14 and the length.</summary>
    public ulong Hi { get; }

    /// <summary>The number of bytes.</summary>
    public int Length => (int)(Hi >> 56);

    /// <summary>Byte <paramref name="i"/>.</summary>
    public byte this[int i] => (byte)(i < 8 ? Lo >> (8 * i) : Hi >> (8 * (i - 8)));

    /// <summary>The key of <paramref name="bytes"/> (1 to <see cref="MaxLength"/> bytes).</summary>
    public static SubstringKey From(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length is 0 or > MaxLength)
        {
            throw new ArgumentOutOfRangeException(nameof(bytes), bytes.Length,
                $"a substring key holds 1 to {MaxLength} bytes");
        }
        ulong lo = 0, hi = (ulong)bytes.Length << 56;
        for (int i = 0; i < bytes.Length; i++)
        {
            if (i < 8)
            {
                lo |= (ulong)bytes[i] << (8 * i);
            }
            else
            {
                hi |= (ulong)bytes[i] << (8 * (i - 8));
            }
        }
        return new SubstringKey(lo, hi);
    }

    /// <summary>The key of the byte-level string <paramref name="token"/>, or null if it is not
    /// a byte-level string of 1 to <see cref="MaxLength"/> characters.</summary>
    public static SubstringKey? FromByteLevel(string token)
    {
        ArgumentNullException.ThrowIfNull(token);
        if (token.Length is 0 or > MaxLength || ByteLevelAlphabet.TryDecode(token) is not { } b)
        {
            return null;
        }
        return From(b);
    }

    /// <summary>The key one byte longer (the caller keeps the length under
    /// <see cref="MaxLength"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public SubstringKey Append(byte b)
    {
        int n = Length;
        return n < 8
            ? new SubstringKey(Lo | ((ulong)b << (8 * n)), Hi + (1UL << 56))
            : new SubstringKey(Lo, (Hi | ((ulong)b << (8 * (n - 8)))) + (1UL << 56));
    }

    /// <summary>The string in GPT-2's byte alphabet.</summary>
    public string ToByteLevel()
    {
        int n = Length;
        Span<char> chars = stackalloc char[MaxLength];
        for (int i = 0; i < n; i++)
        {
            chars[i] = ByteLevelAlphabet.ToChar(this[i]);
        }
        return new string(chars[..n]);
    }

    /// <summary>How many of its bytes are space, newline or tab (<c>Ġ Ċ ĉ</c>).</summary>
    public int WhitespaceCount()
    {
        int count = 0;
        for (int i = 0; i < Length; i++)
        {
            count += this[i] is 0x20 or 0x0A or 0x09 ? 1 : 0;
        }
        return count;
    }

    /// <summary>The UTF-8 length of a byte's alphabet character: 1 for printable ASCII
    /// (<c>!</c>…<c>~</c>, which map to themselves), 2 for every other byte (its character is
    /// U+00A1…U+00FF or U+0100…U+0143).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint ByteLevelUtf8Length(byte b) => b is >= 0x21 and <= 0x7E ? 1u : 2u;

    public bool Equals(SubstringKey other) => Lo == other.Lo && Hi == other.Hi;

    public override bool Equals(object? obj) => obj is SubstringKey k && Equals(k);

    public override int GetHashCode()
    {
        // Multiply-rotate mix of both words: the keys differ mostly in a few low bytes.
        ulong h = (Lo * 0x9E3779B97F4A7C15UL) ^ BitOperations.RotateLeft(Hi * 0xC2B2AE3D27D4EB4FUL, 31);
        h ^= h >> 29;
        return (int)h ^ (int)(h >> 32);
    }

    /// <summary>Lexicographic by bytes, a prefix first.</summary>
    public int CompareTo(SubstringKey other)
    {
        int c = BinaryPrimitives.ReverseEndianness(Lo).CompareTo(
            BinaryPrimitives.ReverseEndianness(other.Lo));
        return c != 0 ? c : BinaryPrimitives.ReverseEndianness(Hi).CompareTo(
            BinaryPrimitives.ReverseEndianness(other.Hi));
    }

    public static bool operator ==(SubstringKey a, SubstringKey b) => a.Equals(b);

    public static bool operator !=(SubstringKey a, SubstringKey b) => !a.Equals(b);

    public static bool operator <(SubstringKey a, SubstringKey b) => a.CompareTo(b) < 0;

    public static bool operator >(SubstringKey a, SubstringKey b) => a.CompareTo(b) > 0;

    public static bool operator <=(SubstringKey a, SubstringKey b) => a.CompareTo(b) <= 0;

    public static bool operator >=(SubstringKey a, SubstringKey b) => a.CompareTo(b) >= 0;

    public override string ToString() => ToByteLevel();
}

/// <summary>
/// The substring counts of TRAINING.md §4.2 (the reference's <c>sample_tokenizer</c> counting
/// loop), with its offset arithmetic kept because it changes which substrings are counted:
/// <list type="bullet">
/// <item>each text gets a leading space and is split with the GPT-2 regex of the Rust side
/// (<c>\p{L}+</c>, not the <c>[\p{L}\p{M}]+</c> of the tokenizer built later);</item>
/// <item>the start offset of pretoken character j is <c>cum[o0 + j] − cum[o0]</c>, where
/// <c>cum</c> includes the character itself: the sum of the UTF-8 lengths of characters 1…j,
/// not 0…j−1. For ASCII that is the true offset; after a multi-byte character every start is
/// shifted (a start can fall on a continuation byte, and "Ã©" of "é" is then never counted from
/// its first byte);</item>
/// <item>the first pretoken's offset list gets an extra 0 in front, which shifts its stride
/// (starts 0, 3, 7, … of the chars instead of 0, 4, 8, …);</item>
/// <item>every <c>stride</c>-th offset starts substrings of 1 to <c>maxLength − 1</c> bytes that
/// end inside the pretoken; each adds its byte-level string's UTF-8 length (1 per printable
/// ASCII byte, 2 per other byte);</item>
/// <item>a text that appears twice in one batch counts once (the reference's
/// <c>{text: 1}</c> dictionary).</item>
/// </list>
/// </summary>
internal sealed class SubstringCounter
{
    /// <summary>lib.rs's <c>SPLIT_REGEX</c> (GPT-2's pattern; run by the hand matcher).</summary>
    private const string RustSplitRegex =
        @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    private static readonly Gpt2Matcher Matcher = Gpt2Matcher.TryCreate(RustSplitRegex)
        ?? throw new InvalidOperationException("the GPT-2 split pattern has no matcher");

    private readonly int maxLength;
    private readonly int stride;
    private byte[] bytes = new byte[256];
    private int[] starts = new int[64];

    /// <param name="maxLength">Substrings have 1 to <paramref name="maxLength"/> − 1 bytes
    /// (2…16).</param>
    /// <param name="stride">Every stride-th character starts substrings (≥ 1).</param>
    public SubstringCounter(int maxLength, int stride)
    {
        if (maxLength is < 2 or > SubstringKey.MaxLength + 1)
        {
            throw new ArgumentOutOfRangeException(nameof(maxLength), maxLength,
                $"the maximum piece length must be 2 to {SubstringKey.MaxLength + 1}");
        }
        ArgumentOutOfRangeException.ThrowIfLessThan(stride, 1);
        this.maxLength = maxLength;
        this.stride = stride;
    }

    /// <summary>The counts of a batch: every distinct text once.</summary>
    public Dictionary<SubstringKey, uint> CountBatch(IEnumerable<string> texts)
    {
        ArgumentNullException.ThrowIfNull(texts);
        var counts = new Dictionary<SubstringKey, uint>(1 << 16);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        int i = 0;
        foreach (string text in texts)
        {
            if (text is null)
            {
                throw new ArgumentException($"text {i} is null", nameof(texts));
            }
            i++;
            if (seen.Add(text))
            {
                Add(text, counts);
            }
        }
        return counts;
    }

    /// <summary>Adds the counts of one text to <paramref name="counts"/>.</summary>
    public void Add(string text, Dictionary<SubstringKey, uint> counts)
    {
        ArgumentNullException.ThrowIfNull(text);
        ArgumentNullException.ThrowIfNull(counts);
        string sentence = " " + Utf16.Sanitize(text);
        bool first = true;
        for (int s = 0; s < sentence.Length;)
        {
            int e = Matcher.MatchAt(sentence, s);
            AddPretoken(sentence, s, e, first, counts);
            first = false;
            s = e;
        }
    }

    private void AddPretoken(string sentence, int from, int to, bool first,
        Dictionary<SubstringKey, uint> counts)
    {
        ReadOnlySpan<char> pretoken = sentence.AsSpan(from, to - from);
        int byteCount = Encoding.UTF8.GetByteCount(pretoken);
        if (bytes.Length < byteCount)
        {
            bytes = new byte[Math.Max(byteCount, bytes.Length * 2)];
        }
        Encoding.UTF8.GetBytes(pretoken, bytes);

        // Offsets as the reference computes them (see the class remarks), every stride-th one.
        if (starts.Length < pretoken.Length + 2)
        {
            starts = new int[Math.Max(pretoken.Length + 2, starts.Length * 2)];
        }
        int listIndex = 0, startCount = 0;
        if (first)
        {
            starts[startCount++] = 0;
            listIndex = 1;
        }
        int offset = 0;
        for (int i = from, j = 0; i < to; j++)
        {
            int cp = Utf16.CodePointAt(sentence, i, out int width);
            if (j > 0)
            {
                offset += Utf8Length(cp);
            }
            if (listIndex % stride == 0)
            {
                starts[startCount++] = offset;
            }
            listIndex++;
            i += width;
        }

        ReadOnlySpan<byte> b = bytes.AsSpan(0, byteCount);
        int longest = maxLength - 1;
        for (int n = 0; n < startCount; n++)
        {
            int start = starts[n];
            int end = Math.Min(byteCount, start + longest);
            SubstringKey key = SubstringKey.From(b.Slice(start, 1));
            uint score = SubstringKey.ByteLevelUtf8Length(b[start]);
            for (int k = start; ;)
            {
                // The token bytes[start..k] adds its own byte-level UTF-8 length.
                CollectionsMarshal.GetValueRefOrAddDefault(counts, key, out _) += score;
                if (++k >= end)
                {
                    break;
                }
                key = key.Append(b[k]);
                score += SubstringKey.ByteLevelUtf8Length(b[k]);
            }
        }
    }

    private static int Utf8Length(int cp) => cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
}

/// <summary>
/// The reference's queue of count maps (TRAINING.md §4.1) with their sum kept up to date: a
/// pushed map is added to <see cref="Total"/>, a popped one subtracted (entries that reach 0
/// are removed), so a batch costs the size of two maps, not of the whole window.
/// </summary>
internal sealed class SubstringWindow(int capacity)
{
    private readonly Queue<Dictionary<SubstringKey, uint>> maps = new();

    /// <summary>The most maps the window holds (the current batch included).</summary>
    public int Capacity { get; } = capacity > 0 ? capacity
        : throw new ArgumentOutOfRangeException(nameof(capacity), capacity, "must be positive");

    /// <summary>How many maps are queued.</summary>
    public int Count => maps.Count;

    /// <summary>The sum of the queued maps.</summary>
    public Dictionary<SubstringKey, uint> Total { get; } = new(1 << 18);

    /// <summary>Pushes <paramref name="map"/> as the newest, first popping the oldest when the
    /// window is full.</summary>
    public void Push(Dictionary<SubstringKey, uint> map)
    {
        ArgumentNullException.ThrowIfNull(map);
        if (maps.Count == Capacity)
        {
            Subtract(maps.Dequeue());
        }
        maps.Enqueue(map);
        Add(map);
    }

    /// <summary>Runs <paramref name="use"/> on the sum the window would have after
    /// <see cref="Push"/> of <paramref name="map"/>, and leaves the window as it was (the
    /// reference's validation batches: pop, push, sample, then undo).</summary>
    public T Peek<T>(Dictionary<SubstringKey, uint> map, Func<Dictionary<SubstringKey, uint>, T> use)
    {
        ArgumentNullException.ThrowIfNull(map);
        ArgumentNullException.ThrowIfNull(use);
        Dictionary<SubstringKey, uint>? oldest = maps.Count == Capacity ? maps.Peek() : null;
        Add(map);
        if (oldest is not null)
        {
            Subtract(oldest);
        }
        try
        {
            return use(Total);
        }
        finally
        {
            if (oldest is not null)
            {
                Add(oldest);
            }
            Subtract(map);
        }
    }

    private void Add(Dictionary<SubstringKey, uint> map)
    {
        foreach (KeyValuePair<SubstringKey, uint> kv in map)
        {
            CollectionsMarshal.GetValueRefOrAddDefault(Total, kv.Key, out _) += kv.Value;
        }
    }

    private void Subtract(Dictionary<SubstringKey, uint> map)
    {
        foreach (KeyValuePair<SubstringKey, uint> kv in map)
        {
            ref uint slot = ref CollectionsMarshal.GetValueRefOrNullRef(Total, kv.Key);
            slot -= kv.Value;
            if (slot == 0)
            {
                Total.Remove(kv.Key);
            }
        }
    }
}
