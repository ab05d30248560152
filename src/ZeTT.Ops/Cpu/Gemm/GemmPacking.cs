using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace ZeTT.Ops.Cpu;

/// <summary>One GEMM operand as stored: its bits, their type, the leading dimension, and whether
/// it is stored transposed relative to <c>op(X)</c>.</summary>
internal readonly unsafe struct GemmOperand(void* data, GemmType type, long ld, bool transposed)
{
    /// <summary>First element.</summary>
    public byte* Data { get; } = (byte*)data;

    /// <summary>Storage type.</summary>
    public GemmType Type { get; } = type;

    /// <summary>Elements between consecutive stored rows.</summary>
    public long Ld { get; } = ld;

    /// <summary>Stored transposed.</summary>
    public bool Transposed { get; } = transposed;

    /// <summary>Bytes per element.</summary>
    public int ElementSize => Type == GemmType.F32 ? 4 : 2;
}

/// <summary>
/// Packs operand blocks into the micro-kernels' layouts, widening bf16/fp16 to fp32 on the way
/// (exact). A panel is <c>w</c> lanes (MR rows of op(A), or NR columns of op(B)) by
/// <c>kc</c> depth, stored <c>[kc][w]</c>; lanes past the operand's edge are zero, so edge
/// tiles run the same kernel as full ones.
/// </summary>
internal static unsafe class GemmPacking
{
    /// <summary>
    /// Packs lanes <c>[lane0, lane0 + lanes)</c> by depth <c>[k0, k0 + kc)</c> of an operand
    /// into lanes <c>[dstLane, dstLane + lanes)</c> of a <paramref name="w"/>-wide panel.
    /// For op(A) a lane is a row (<paramref name="lanesAlongRows"/> when A is not transposed);
    /// for op(B) a lane is a column (<paramref name="lanesAlongRows"/> when B is transposed).
    /// Lanes of the panel outside the written range are left as they are.
    /// </summary>
    public static void PackPanel(GemmOperand x, bool lanesAlongRows, long lane0, int lanes, long k0,
        int kc, float* dst, int w, int dstLane)
    {
        switch (x.Type)
        {
            case GemmType.BF16:
                Pack<Bf16Element>(x, lanesAlongRows, lane0, lanes, k0, kc, dst, w, dstLane);
                break;
            case GemmType.F16:
                Pack<F16Element>(x, lanesAlongRows, lane0, lanes, k0, kc, dst, w, dstLane);
                break;
            default:
                Pack<F32Element>(x, lanesAlongRows, lane0, lanes, k0, kc, dst, w, dstLane);
                break;
        }
    }

    private static void Pack<T>(GemmOperand x, bool lanesAlongRows, long lane0, int lanes, long k0,
        int kc, float* dst, int w, int dstLane)
        where T : struct, IGemmElement
    {
        dst += dstLane;
        if (lanesAlongRows)
        {
            // Lane i is stored row lane0+i, its depth contiguous: a transposing copy.
            for (int i = 0; i < lanes; i++)
            {
                byte* src = x.Data + ((((lane0 + i) * x.Ld) + k0) * T.Size);
                float* d = dst + i;
                for (int kk = 0; kk < kc; kk++)
                {
                    d[(long)kk * w] = T.Load(src, kk);
                }
            }
            return;
        }
        // Depth kk is stored row k0+kk, the lanes contiguous: one contiguous copy per kk.
        for (int kk = 0; kk < kc; kk++)
        {
            byte* src = x.Data + ((((k0 + kk) * x.Ld) + lane0) * T.Size);
            T.LoadRow(src, dst + ((long)kk * w), lanes);
        }
    }

    /// <summary>Zeroes lanes <c>[from, w)</c> of a <c>[kc][w]</c> panel.</summary>
    public static void ZeroLanes(float* dst, int w, int from, int kc)
    {
        if (from >= w)
        {
            return;
        }
        for (int kk = 0; kk < kc; kk++)
        {
            new Span<float>(dst + ((long)kk * w) + from, w - from).Clear();
        }
    }

    /// <summary>Rounds <paramref name="n"/> packed values to bf16 precision (nearest, ties to
    /// even, NaN stays NaN), as if the operand had been stored in bf16.</summary>
    public static void RoundToBf16(float* x, long n)
    {
        for (long i = 0; i < n; i++)
        {
            x[i] = RoundToBf16(x[i]);
        }
    }

    /// <summary>One value rounded to bf16 precision (same rule as the tensors' BFloat16).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float RoundToBf16(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if ((bits & 0x7FFF_FFFFu) > 0x7F80_0000u)
        {
            return BitConverter.UInt32BitsToSingle((bits | 0x0040_0000u) & 0xFFFF_0000u);
        }
        uint rounding = 0x7FFFu + ((bits >> 16) & 1u);
        return BitConverter.UInt32BitsToSingle((bits + rounding) & 0xFFFF_0000u);
    }
}

/// <summary>Reads one storage type as fp32 (a struct per type, so each packing loop is compiled
/// for its type).</summary>
internal unsafe interface IGemmElement
{
    /// <summary>Bytes per element.</summary>
    static abstract int Size { get; }

    /// <summary>Element <paramref name="i"/> after <paramref name="p"/>, as fp32.</summary>
    static abstract float Load(byte* p, long i);

    /// <summary><paramref name="n"/> consecutive elements into <paramref name="dst"/>.</summary>
    static abstract void LoadRow(byte* p, float* dst, int n);
}

internal unsafe struct F32Element : IGemmElement
{
    public static int Size => 4;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Load(byte* p, long i) => ((float*)p)[i];

    public static void LoadRow(byte* p, float* dst, int n) =>
        new ReadOnlySpan<float>(p, n).CopyTo(new Span<float>(dst, n));
}

internal unsafe struct Bf16Element : IGemmElement
{
    public static int Size => 2;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Load(byte* p, long i) => BitConverter.UInt32BitsToSingle((uint)((ushort*)p)[i] << 16);

    public static void LoadRow(byte* p, float* dst, int n)
    {
        ushort* s = (ushort*)p;
        int j = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            for (; j <= n - 8; j += 8)
            {
                Vector256<uint> wide = Vector256.WidenLower(Vector128.Load(s + j).ToVector256Unsafe());
                (wide << 16).AsSingle().Store(dst + j);
            }
        }
        for (; j < n; j++)
        {
            dst[j] = BitConverter.UInt32BitsToSingle((uint)s[j] << 16);
        }
    }
}

internal unsafe struct F16Element : IGemmElement
{
    public static int Size => 2;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Load(byte* p, long i) => (float)((Half*)p)[i];

    public static void LoadRow(byte* p, float* dst, int n) =>
        TensorPrimitives.ConvertToSingle(new ReadOnlySpan<Half>(p, n), new Span<float>(dst, n));
}
