namespace ZeTT.Runtime.Tokenizers;

/// <summary>
/// GPT-2's byte-to-unicode alphabet: every byte is written as one printable character
/// (0x20 ' ' is <c>Ġ</c>, 0x0A is <c>Ċ</c>, printable ASCII maps to itself). A byte-level token
/// is a string of these 256 characters, one per byte.
/// </summary>
public static class ByteLevelAlphabet
{
    private static readonly char[] ByteToCharTable = BuildTable();
    private static readonly short[] CharToByteTable = BuildInverse(ByteToCharTable);

    /// <summary>The 256 characters, indexed by byte value.</summary>
    public static ReadOnlySpan<char> Chars => ByteToCharTable;

    /// <summary>The character that stands for <paramref name="b"/>.</summary>
    public static char ToChar(byte b) => ByteToCharTable[b];

    /// <summary>The byte <paramref name="c"/> stands for, or false if it is not in the alphabet.
    /// </summary>
    public static bool TryGetByte(char c, out byte value)
    {
        if (c < CharToByteTable.Length && CharToByteTable[c] >= 0)
        {
            value = (byte)CharToByteTable[c];
            return true;
        }
        value = 0;
        return false;
    }

    /// <summary>Writes <paramref name="bytes"/> in the alphabet.</summary>
    public static string Encode(ReadOnlySpan<byte> bytes) =>
        string.Create(bytes.Length, bytes.ToArray(), static (dst, src) =>
        {
            for (int i = 0; i < src.Length; i++)
            {
                dst[i] = ByteToCharTable[src[i]];
            }
        });

    /// <summary>Writes the UTF-8 bytes of <paramref name="text"/> in the alphabet.</summary>
    public static string EncodeUtf8(string text) => Encode(System.Text.Encoding.UTF8.GetBytes(text));

    /// <summary>Writes the UTF-8 bytes of <paramref name="text"/> in the alphabet into
    /// <paramref name="destination"/> (at least 3 characters per UTF-16 unit) and returns how many
    /// it wrote; a lone surrogate is U+FFFD, as <see cref="EncodeUtf8(string)"/> has it.</summary>
    public static int EncodeUtf8(ReadOnlySpan<char> text, Span<char> destination)
    {
        int n = 0;
        for (int i = 0; i < text.Length; i++)
        {
            int c = text[i];
            if (c < 0x80)
            {
                destination[n++] = ByteToCharTable[c];
                continue;
            }
            if (c < 0x800)
            {
                destination[n++] = ByteToCharTable[0xC0 | (c >> 6)];
                destination[n++] = ByteToCharTable[0x80 | (c & 0x3F)];
                continue;
            }
            if (char.IsHighSurrogate((char)c) && i + 1 < text.Length
                && char.IsLowSurrogate(text[i + 1]))
            {
                int cp = char.ConvertToUtf32((char)c, text[++i]);
                destination[n++] = ByteToCharTable[0xF0 | (cp >> 18)];
                destination[n++] = ByteToCharTable[0x80 | ((cp >> 12) & 0x3F)];
                destination[n++] = ByteToCharTable[0x80 | ((cp >> 6) & 0x3F)];
                destination[n++] = ByteToCharTable[0x80 | (cp & 0x3F)];
                continue;
            }
            if (char.IsSurrogate((char)c))
            {
                c = 0xFFFD;
            }
            destination[n++] = ByteToCharTable[0xE0 | (c >> 12)];
            destination[n++] = ByteToCharTable[0x80 | ((c >> 6) & 0x3F)];
            destination[n++] = ByteToCharTable[0x80 | (c & 0x3F)];
        }
        return n;
    }

    /// <summary>The bytes a byte-level token stands for; null if a character is not in the
    /// alphabet.</summary>
    public static byte[]? TryDecode(ReadOnlySpan<char> token)
    {
        var bytes = new byte[token.Length];
        for (int i = 0; i < token.Length; i++)
        {
            if (!TryGetByte(token[i], out bytes[i]))
            {
                return null;
            }
        }
        return bytes;
    }

    /// <summary>True if every character of <paramref name="token"/> is in the alphabet.</summary>
    public static bool IsByteLevel(ReadOnlySpan<char> token)
    {
        foreach (char c in token)
        {
            if (!TryGetByte(c, out _))
            {
                return false;
            }
        }
        return true;
    }

    private static char[] BuildTable()
    {
        // Printable bytes keep their Latin-1 character; the other 68 get U+0100 onward, in
        // byte order.
        var table = new char[256];
        int next = 256;
        for (int b = 0; b < 256; b++)
        {
            bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
            table[b] = printable ? (char)b : (char)next++;
        }
        return table;
    }

    private static short[] BuildInverse(char[] table)
    {
        var inverse = new short[512];
        Array.Fill(inverse, (short)-1);
        for (int b = 0; b < 256; b++)
        {
            inverse[table[b]] = (short)b;
        }
        return inverse;
    }
}
