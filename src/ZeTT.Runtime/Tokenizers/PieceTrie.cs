using System.Numerics;
using System.Runtime.CompilerServices;

namespace ZeTT.Runtime.Tokenizers;

/// <summary>
/// A character trie over a vocabulary's pieces, for Viterbi: from a start position the lattice
/// walks one edge per character and stops where no piece continues, instead of hashing every
/// span up to the longest piece. All edges, (node, UTF-16 unit) → child, live in one
/// open-addressing table; a node knows the id of the piece that ends there (the last id of a
/// piece listed twice, as the vocabulary lookup).
/// </summary>
internal sealed class PieceTrie
{
    private readonly ulong[] keys;
    private readonly int[] children;
    private readonly int[] pieceIds;
    private readonly int shift;
    private int nodes = 1;

    public PieceTrie(IReadOnlyList<(string Piece, double Score)> pieces)
    {
        long total = 1;
        foreach ((string piece, double _) in pieces)
        {
            total += piece.Length;
        }
        int bits = Math.Max(4, BitOperations.Log2((ulong)Math.Max(1, total)) + 2);
        keys = new ulong[1 << bits];
        children = new int[1 << bits];
        shift = 64 - bits;
        pieceIds = new int[total];
        Array.Fill(pieceIds, -1);
        for (int id = 0; id < pieces.Count; id++)
        {
            string piece = pieces[id].Piece;
            if (piece.Length == 0)
            {
                continue;
            }
            int node = 0;
            foreach (char c in piece)
            {
                node = GetOrAdd(node, c);
            }
            pieceIds[node] = id;
        }
    }

    /// <summary>The root (the empty prefix).</summary>
    public const int Root = 0;

    /// <summary>The node after <paramref name="c"/> from <paramref name="node"/>, or -1 if no
    /// piece continues that way.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int Child(int node, char c)
    {
        ulong key = ((ulong)(uint)(node + 1) << 16) | c;
        int mask = keys.Length - 1;
        for (int slot = Slot(key); ; slot = (slot + 1) & mask)
        {
            ulong k = keys[slot];
            if (k == key)
            {
                return children[slot];
            }
            if (k == 0)
            {
                return -1;
            }
        }
    }

    /// <summary>The id of the piece that ends at <paramref name="node"/>, or -1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int PieceAt(int node) => pieceIds[node];

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private int Slot(ulong key) => (int)((key * 0x9E3779B97F4A7C15UL) >> shift);

    private int GetOrAdd(int node, char c)
    {
        ulong key = ((ulong)(uint)(node + 1) << 16) | c;
        int mask = keys.Length - 1;
        int slot = Slot(key);
        while (keys[slot] != 0)
        {
            if (keys[slot] == key)
            {
                return children[slot];
            }
            slot = (slot + 1) & mask;
        }
        keys[slot] = key;
        return children[slot] = nodes++;
    }
}
