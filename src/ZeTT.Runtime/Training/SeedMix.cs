namespace ZeTT.Runtime.Training;

/// <summary>
/// Seeds of per-update random streams, a pure function of (seed, index, stream): SplitMix64's
/// finaliser over the three. <see cref="HashCode.Combine{T1,T2,T3}"/> is seeded per process,
/// so a stream seeded with it differs between a run and its resumption in a new process.
/// </summary>
public static class SeedMix
{
    /// <summary>A 31-bit seed for <see cref="Random"/> from <paramref name="seed"/>,
    /// <paramref name="index"/> and <paramref name="stream"/> (which use of the index).</summary>
    public static int Of(int seed, long index, int stream)
    {
        ulong z = ((ulong)(uint)seed * 0x9E3779B97F4A7C15UL) ^ (ulong)index
            ^ ((ulong)(uint)stream << 40);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        z ^= z >> 31;
        return (int)(z & 0x7FFFFFFF);
    }
}
