using System.Buffers.Binary;
using System.Globalization;
using System.Text;

namespace ZeTT.Runtime.Tokenizers;

/// <summary>
/// SentencePiece's precompiled character map (the <c>Precompiled</c> normalizer of T5, XLM-R,
/// ALBERT): a little-endian u32 trie size, a Darts double-array trie over UTF-8 bytes whose
/// leaves index into a blob of NUL-terminated replacement strings, then that blob. Applied as
/// the Rust library applies it: per extended grapheme cluster, a cluster shorter than 6 UTF-8
/// bytes whose bytes start with a mapped prefix is replaced as a whole by the *shortest*
/// mapped prefix's replacement; otherwise each code point is looked up alone.
/// </summary>
internal sealed class PrecompiledCharsMap : Normalizer
{
    private readonly uint[] trie;
    private readonly byte[] normalized;
    private readonly Dictionary<string, string?> cache = new(StringComparer.Ordinal);

    private PrecompiledCharsMap(uint[] trie, byte[] normalized)
    {
        this.trie = trie;
        this.normalized = normalized;
    }

    public static PrecompiledCharsMap FromBase64(string? base64, string file)
    {
        if (base64 is null)
        {
            throw new ZettException($"{file}: Precompiled normalizer has no precompiled_charsmap");
        }
        byte[] bytes;
        try
        {
            bytes = Convert.FromBase64String(base64);
        }
        catch (FormatException e)
        {
            throw new ZettException($"{file}: precompiled_charsmap is not base64", e);
        }
        return FromBytes(bytes, file);
    }

    public static PrecompiledCharsMap FromBytes(byte[] bytes, string file)
    {
        if (bytes.Length < 4)
        {
            throw new ZettException($"{file}: precompiled_charsmap is {bytes.Length} bytes long");
        }
        uint trieBytes = BinaryPrimitives.ReadUInt32LittleEndian(bytes);
        if (trieBytes > bytes.Length - 4 || trieBytes < 4)
        {
            throw new ZettException(
                $"{file}: precompiled_charsmap trie size {trieBytes} exceeds its {bytes.Length} bytes");
        }
        var trie = new uint[trieBytes / 4];
        for (int i = 0; i < trie.Length; i++)
        {
            trie[i] = BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(4 + 4 * i));
        }
        byte[] blob = bytes[(int)(4 + trieBytes)..];
        try
        {
            _ = new UTF8Encoding(false, true).GetString(blob);
        }
        catch (DecoderFallbackException e)
        {
            throw new ZettException($"{file}: precompiled_charsmap replacements are not UTF-8", e);
        }
        return new PrecompiledCharsMap(trie, blob);
    }

    public override string Normalize(string text)
    {
        var sb = new StringBuilder(text.Length + 8);
        bool modified = false;
        for (int i = 0; i < text.Length;)
        {
            int length = StringInfo.GetNextTextElementLength(text, i);
            if (length <= 0)
            {
                length = 1;
            }
            string grapheme = text.Substring(i, length);
            if (Utf8Length(grapheme) < 6 && Transform(grapheme) is { } whole)
            {
                sb.Append(whole);
                modified = true;
            }
            else
            {
                for (int j = 0; j < grapheme.Length;)
                {
                    int w = char.IsHighSurrogate(grapheme[j]) && j + 1 < grapheme.Length
                        && char.IsLowSurrogate(grapheme[j + 1]) ? 2 : 1;
                    string part = grapheme.Substring(j, w);
                    if (Transform(part) is { } mapped)
                    {
                        sb.Append(mapped);
                        modified = true;
                    }
                    else
                    {
                        sb.Append(part);
                    }
                    j += w;
                }
            }
            i += length;
        }
        return modified ? sb.ToString() : text;
    }

    private static int Utf8Length(string s) => Encoding.UTF8.GetByteCount(s);

    /// <summary>The replacement of the shortest mapped prefix of <paramref name="chunk"/>'s
    /// UTF-8 bytes (the library's <c>common_prefix_search(...)[0]</c>), or null.</summary>
    private string? Transform(string chunk)
    {
        lock (cache)
        {
            if (cache.TryGetValue(chunk, out string? hit))
            {
                return hit;
            }
        }
        string? result = null;
        byte[] key = Encoding.UTF8.GetBytes(chunk);
        long node = 0;
        uint unit = trie[0];
        node ^= Offset(unit);
        foreach (byte b in key)
        {
            if (b == 0)
            {
                break;
            }
            node ^= b;
            if (node < 0 || node >= trie.Length)
            {
                break;
            }
            unit = trie[node];
            if (Label(unit) != b)
            {
                break;
            }
            node ^= Offset(unit);
            if (((unit >> 8) & 1) == 1)
            {
                if (node < 0 || node >= trie.Length)
                {
                    break;
                }
                int index = (int)(trie[node] & 0x7FFFFFFF);
                result = ReplacementAt(index);
                break;
            }
        }
        lock (cache)
        {
            if (cache.Count < 1 << 16)
            {
                cache[chunk] = result;
            }
        }
        return result;
    }

    private static long Offset(uint unit) => (long)(unit >> 10) << (int)((unit & (1u << 9)) >> 6);

    private static uint Label(uint unit) => unit & ((1u << 31) | 0xFF);

    private string ReplacementAt(int index)
    {
        if (index >= normalized.Length)
        {
            return "";
        }
        int end = index;
        while (end < normalized.Length && normalized[end] != 0)
        {
            end++;
        }
        return Encoding.UTF8.GetString(normalized, index, end - index);
    }
}
