using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

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
            // Lane i is stored row lane0+i, its depth contiguous: a transposing copy, 4×4 blocks
            // through SSE shuffles (4 vector stores instead of 16 scalar ones: packing A for a
            // row-major x, or B for a Linear weight, was the GEMM's largest overhead).
            // 8×8 blocks through AVX shuffles where there are 8 lanes (24 shuffles, 8 loads and 8
            // stores per 64 values against 32, 16 and 16 for two 4×4 passes).
            int done = 0;
            if (Avx2.IsSupported)
            {
                done = lanes & ~7;
                for (int i = 0; i < done; i += 8)
                {
                    byte* src = x.Data + ((((lane0 + i) * x.Ld) + k0) * T.Size);
                    Transpose8<T>(src, x.Ld * T.Size, kc, dst + i, w);
                }
            }
            if (Sse.IsSupported)
            {
                int four = lanes & ~3;
                for (int i = done; i < four; i += 4)
                {
                    byte* src = x.Data + ((((lane0 + i) * x.Ld) + k0) * T.Size);
                    Transpose4<T>(src, x.Ld * T.Size, kc, dst + i, w);
                }
                done = Math.Max(done, four);
            }
            for (int i = done; i < lanes; i++)
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

    /// <summary>Four stored rows (<paramref name="rowBytes"/> apart) of <paramref name="kc"/>
    /// values into four adjacent lanes of a <c>[kc][w]</c> panel.</summary>
    private static void Transpose4<T>(byte* src, long rowBytes, int kc, float* dst, int w)
        where T : struct, IGemmElement
    {
        int kk = 0;
        for (; kk <= kc - 4; kk += 4)
        {
            Vector128<float> r0 = T.Load4(src + (kk * T.Size)), r1 = T.Load4(src + rowBytes + (kk * T.Size));
            Vector128<float> r2 = T.Load4(src + (2 * rowBytes) + (kk * T.Size));
            Vector128<float> r3 = T.Load4(src + (3 * rowBytes) + (kk * T.Size));
            Vector128<float> t0 = Sse.UnpackLow(r0, r1), t1 = Sse.UnpackLow(r2, r3);
            Vector128<float> t2 = Sse.UnpackHigh(r0, r1), t3 = Sse.UnpackHigh(r2, r3);
            float* d = dst + ((long)kk * w);
            Sse.MoveLowToHigh(t0, t1).Store(d);
            Sse.MoveHighToLow(t1, t0).Store(d + w);
            Sse.MoveLowToHigh(t2, t3).Store(d + (2 * w));
            Sse.MoveHighToLow(t3, t2).Store(d + (3 * w));
        }
        for (; kk < kc; kk++)
        {
            for (int i = 0; i < 4; i++)
            {
                dst[((long)kk * w) + i] = T.Load(src + (i * rowBytes), kk);
            }
        }
    }

    /// <summary>Eight stored rows (<paramref name="rowBytes"/> apart) of <paramref name="kc"/>
    /// values into eight adjacent lanes of a <c>[kc][w]</c> panel.</summary>
    private static void Transpose8<T>(byte* src, long rowBytes, int kc, float* dst, int w)
        where T : struct, IGemmElement
    {
        int kk = 0;
        for (; kk <= kc - 8; kk += 8)
        {
            byte* s = src + (kk * T.Size);
            Vector256<float> r0 = T.Load8(s), r1 = T.Load8(s + rowBytes);
            Vector256<float> r2 = T.Load8(s + (2 * rowBytes)), r3 = T.Load8(s + (3 * rowBytes));
            Vector256<float> r4 = T.Load8(s + (4 * rowBytes)), r5 = T.Load8(s + (5 * rowBytes));
            Vector256<float> r6 = T.Load8(s + (6 * rowBytes)), r7 = T.Load8(s + (7 * rowBytes));
            // Per 128-bit half: pairs of rows interleaved, then 4×4 blocks; u_j holds columns j
            // (low half) and j + 4 (high half) of four rows.
            Vector256<float> t0 = Avx.UnpackLow(r0, r1), t1 = Avx.UnpackHigh(r0, r1);
            Vector256<float> t2 = Avx.UnpackLow(r2, r3), t3 = Avx.UnpackHigh(r2, r3);
            Vector256<float> t4 = Avx.UnpackLow(r4, r5), t5 = Avx.UnpackHigh(r4, r5);
            Vector256<float> t6 = Avx.UnpackLow(r6, r7), t7 = Avx.UnpackHigh(r6, r7);
            Vector256<float> u0 = Avx.Shuffle(t0, t2, 0x44), u1 = Avx.Shuffle(t0, t2, 0xEE);
            Vector256<float> u2 = Avx.Shuffle(t1, t3, 0x44), u3 = Avx.Shuffle(t1, t3, 0xEE);
            Vector256<float> u4 = Avx.Shuffle(t4, t6, 0x44), u5 = Avx.Shuffle(t4, t6, 0xEE);
            Vector256<float> u6 = Avx.Shuffle(t5, t7, 0x44), u7 = Avx.Shuffle(t5, t7, 0xEE);
            float* d = dst + ((long)kk * w);
            Avx.Permute2x128(u0, u4, 0x20).Store(d);
            Avx.Permute2x128(u1, u5, 0x20).Store(d + w);
            Avx.Permute2x128(u2, u6, 0x20).Store(d + (2 * w));
            Avx.Permute2x128(u3, u7, 0x20).Store(d + (3 * w));
            Avx.Permute2x128(u0, u4, 0x31).Store(d + (4 * w));
            Avx.Permute2x128(u1, u5, 0x31).Store(d + (5 * w));
            Avx.Permute2x128(u2, u6, 0x31).Store(d + (6 * w));
            Avx.Permute2x128(u3, u7, 0x31).Store(d + (7 * w));
        }
        for (; kk < kc; kk++)
        {
            for (int i = 0; i < 8; i++)
            {
                dst[((long)kk * w) + i] = T.Load(src + (i * rowBytes), kk);
            }
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

    /// <summary>Four consecutive elements as fp32.</summary>
    static abstract Vector128<float> Load4(byte* p);

    /// <summary>Eight consecutive elements as fp32.</summary>
    static abstract Vector256<float> Load8(byte* p);
}

internal unsafe struct F32Element : IGemmElement
{
    public static int Size => 4;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Load(byte* p, long i) => ((float*)p)[i];

    public static void LoadRow(byte* p, float* dst, int n) =>
        new ReadOnlySpan<float>(p, n).CopyTo(new Span<float>(dst, n));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Load4(byte* p) => Vector128.Load((float*)p);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load8(byte* p) => Vector256.Load((float*)p);
}

internal unsafe struct Bf16Element : IGemmElement
{
    public static int Size => 2;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Load(byte* p, long i) => BitConverter.UInt32BitsToSingle((uint)((ushort*)p)[i] << 16);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Load4(byte* p) =>
        (Vector128.WidenLower(Vector128.CreateScalar(*(ulong*)p).AsUInt16()) << 16).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load8(byte* p) =>
        Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32(Vector128.Load((ushort*)p)), 16).AsSingle();

    public static void LoadRow(byte* p, float* dst, int n)
    {
        ushort* s = (ushort*)p;
        int j = 0;
        if (Avx512F.IsSupported)
        {
            for (; j <= n - 16; j += 16)
            {
                Avx512F.ShiftLeftLogical(Avx512F.ConvertToVector512UInt32(Vector256.Load(s + j)), 16)
                    .AsSingle().Store(dst + j);
            }
        }
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

    public static Vector128<float> Load4(byte* p) => Vector128.Create(
        (float)((Half*)p)[0], (float)((Half*)p)[1], (float)((Half*)p)[2], (float)((Half*)p)[3]);

    public static Vector256<float> Load8(byte* p) =>
        Vector256.Create(Load4(p), Load4(p + 8));

    public static void LoadRow(byte* p, float* dst, int n) =>
        TensorPrimitives.ConvertToSingle(new ReadOnlySpan<Half>(p, n), new Span<float>(dst, n));
}
