using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace ZeTT.Ops.Cpu;

/// <summary>
/// <see cref="CpuGemm"/> for m ≤ <see cref="MaxRows"/> (token-by-token generation, small
/// batches): op(B) is read once, 32 columns at a time, instead of being packed whole into a
/// buffer and run through the 12-row micro-kernel (which, for one row, spends 12 FMAs per useful
/// one and writes and re-reads all of B). Each task owns a range of 32-column panels; per KC-deep
/// k block a panel's columns are loaded straight from B's rows (B stored <c>[k, n]</c>, fp32 or
/// bf16) or transposed into a 32 KB L1 buffer (B stored <c>[n, k]</c>, a Linear weight; fp16;
/// a panel past B's edge), then every row of A adds one FMA per k into 2·m zmm accumulators.
/// </summary>
/// <remarks>
/// The arithmetic is the tiled path's: per k block every accumulator starts at zero and takes
/// one FMA per k in k order, and blocks enter C through the same <c>α·acc (+ β·C)</c> /
/// <c>C + α·acc</c> operations. A row's result therefore does not depend on m, on this path
/// being taken, or on the thread count: it is bit-identical to every micro-kernel's.
/// </remarks>
internal static unsafe class GemmSmallM
{
    /// <summary>Largest m this path takes (2·8 accumulators + 2 B vectors + 1 broadcast of 32
    /// zmm registers).</summary>
    public const int MaxRows = 8;

    /// <summary>Columns per panel: two zmm vectors.</summary>
    private const int Width = 32;

    [ThreadStatic]
    private static float[]? t_panel;

    [ThreadStatic]
    private static float[]? t_packA;

    /// <summary>True when <paramref name="kernel"/> at this m takes the small-m path (the
    /// AVX-512 kernel: this path's loops are Vector512).</summary>
    public static bool Applies(GemmKernel kernel, int m) =>
        kernel == GemmKernel.Avx512 && m >= 1 && m <= MaxRows;

    /// <summary><c>C = α·op(A)·op(B) + β·C</c> for 1 ≤ m ≤ 8, n, k ≥ 1.</summary>
    public static void Run(int threads, GemmOperand a, GemmOperand b, int m, int n, int k,
        float alpha, float beta, float* c, long ldc, bool parallel)
    {
        // op(A) as [k][m] fp32 (widened once; a row of A is read k/KC times per panel).
        long packed = ((long)k * m) + 16;
        if (t_packA is null || t_packA.Length < packed)
        {
            t_packA = GC.AllocateUninitializedArray<float>(checked((int)packed), pinned: true);
        }
        float* ap = Align64(t_packA);
        GemmPacking.PackPanel(a, !a.Transposed, 0, m, 0, k, ap, m, 0);
        var job = new Job(b, m, n, k, alpha, beta, c, ldc, ap);
        int panels = (n + Width - 1) / Width;
        int tasks = parallel ? Math.Min(panels, threads * 4) : 1;
        job.Tasks = tasks;
        if (tasks > 1)
        {
            Parallel.For(0, tasks, new ParallelOptions { MaxDegreeOfParallelism = threads },
                job.Task);
            return;
        }
        job.Task(0);
    }

    private sealed class Job(GemmOperand b, int m, int n, int k, float alpha,
        float beta, float* c, long ldc, float* ap)
    {
        public int Tasks { get; set; } = 1;

        public void Task(int task)
        {
            int panels = (n + Width - 1) / Width;
            int p0 = (int)((long)task * panels / Tasks), p1 = (int)((long)(task + 1) * panels / Tasks);
            if (p0 >= p1)
            {
                return;
            }
            long need = ((long)CpuGemm.KC * Width) + 16;
            if (t_panel is null || t_panel.Length < need)
            {
                t_panel = GC.AllocateUninitializedArray<float>((int)need, pinned: true);
            }
            float* buffer = Align64(t_panel);
            float* tile = stackalloc float[MaxRows * Width];
            bool rowsDirect = !b.Transposed && b.Type != GemmType.F16;
            bool prefetch = (long)n * b.Ld * b.ElementSize > PrefetchMinBytes;
            bool ymmF32 = prefetch && b.Type == GemmType.F32 && (b.Ld * sizeof(float)) % 4096 != 0;
            bool halves = HalfPanels && FusedTranspose && m == 1 && b.Transposed && !prefetch
                && b.Type != GemmType.F16;
            for (int p = p0; p < p1; p++)
            {
                int col = p * Width, cols = Math.Min(Width, n - col);
                // m = 1, an L3-resident Linear weight: the k blocks that pair up go half a panel
                // at a time (below); an odd last block takes the 32-row kernel.
                int kFrom = halves && cols == Width ? HalfPanelsM1(b, k, ap, c + col, alpha, beta, col) : 0;
                for (int k0 = kFrom; k0 < k; k0 += CpuGemm.KC)
                {
                    int kc = Math.Min(CpuGemm.KC, k - k0);
                    var block = new Block(kc, ap + ((long)k0 * m), c + col, ldc, cols, alpha,
                        beta, k0 == 0, tile);
                    if (FusedTranspose && b.Transposed && b.Type != GemmType.F16 && m <= FusedRows
                        && cols == Width)
                    {
                        // A Linear weight ([n, k]) at m ≤ 2: transposed in registers on the way
                        // to the FMAs (no L1 panel written and re-read).
                        byte* wp = b.Data + ((((long)col * b.Ld) + k0) * b.ElementSize);
                        if (ymmF32)
                        {
                            if (m == 1)
                            {
                                FusedF32Ymm<Rows1, F32Element>(wp, b.Ld * sizeof(float), block);
                            }
                            else
                            {
                                FusedF32Ymm<Rows2, F32Element>(wp, b.Ld * sizeof(float), block);
                            }
                            continue;
                        }
                        // What this task reads next: the panel's next k block, else the next
                        // panel's first (prefetched while this block runs).
                        var ahead = new Ahead(null, 0);
                        if (prefetch && k0 + CpuGemm.KC < k)
                        {
                            ahead = new Ahead(wp + (CpuGemm.KC * b.ElementSize),
                                Math.Min(CpuGemm.KC, k - k0 - CpuGemm.KC) * b.ElementSize);
                        }
                        else if (prefetch && p + 1 < p1)
                        {
                            ahead = new Ahead(b.Data + ((long)(col + Width) * b.Ld * b.ElementSize),
                                Math.Min(CpuGemm.KC, k) * b.ElementSize);
                        }
                        DispatchFused(m, b, wp, ahead, block);
                        continue;
                    }
                    if (rowsDirect && cols == Width)
                    {
                        byte* bp = b.Data + ((((long)k0 * b.Ld) + col) * b.ElementSize);
                        long stride = b.Ld * b.ElementSize;
                        if (b.Type == GemmType.BF16)
                        {
                            Dispatch<Bf16Load>(m, bp, stride, block);
                        }
                        else
                        {
                            Dispatch<F32Load>(m, bp, stride, block);
                        }
                        continue;
                    }
                    GemmPacking.PackPanel(b, b.Transposed, col, cols, k0, kc, buffer, Width, 0);
                    GemmPacking.ZeroLanes(buffer, Width, cols, kc);
                    Dispatch<F32Load>(m, (byte*)buffer, Width * sizeof(float), block);
                }
            }
        }
    }

    /// <summary>False sends m = 1 with an L3-resident <c>[n, k]</c> B through the 32-row fused
    /// kernels only (the benchmark measures the two against each other; same bits either way).
    /// </summary>
    internal static bool HalfPanels { get; set; } = true;

    /// <summary>
    /// One full panel at m = 1 with B stored <c>[n, k]</c> (fp32 or bf16) at most
    /// <see cref="PrefetchMinBytes"/>: one half (16 weight rows) at a time, two consecutive k
    /// blocks of it at once (two independent FMA chains from 16 rows, instead of one k block of
    /// 32 rows). Each block still starts from zero and takes one FMA per k in k order, and each
    /// column's blocks enter C in k order, so the result is the tiled kernels' bits. Returns
    /// where the paired blocks end (an odd last block is left to the caller).
    /// </summary>
    private static int HalfPanelsM1(GemmOperand b, int k, float* ap, float* c, float alpha,
        float beta, int col)
    {
        var va = Vector512.Create(alpha);
        var vb = Vector512.Create(beta);
        int blocks = (k + CpuGemm.KC - 1) / CpuGemm.KC;
        int paired = Math.Min(k, (blocks & ~1) * CpuGemm.KC);
        for (int h = 0; h < Width; h += 16)
        {
            for (int k0 = 0; k0 < paired; k0 += 2 * CpuGemm.KC)
            {
                int kcB = Math.Min(CpuGemm.KC, k - k0 - CpuGemm.KC);
                byte* wp = b.Data + ((((long)(col + h) * b.Ld) + k0) * b.ElementSize);
                Vector512<float> accA, accB;
                if (b.Type == GemmType.BF16)
                {
                    HalfPairBf16((ushort*)wp, b.Ld, ap + k0, kcB, out accA, out accB);
                }
                else
                {
                    HalfPairF32((float*)wp, b.Ld, ap + k0, kcB, out accA, out accB);
                }
                float* d = c + h;
                GemmMicroKernels.Update(d, accA, va, vb, new TileUpdate(d, 0, alpha, beta, k0 == 0).Mode);
                GemmMicroKernels.Update(d, accB, va, vb, TileMode.Accumulate);
            }
        }
        return paired;
    }

    /// <summary>16 fp32 weight rows over a full k block A (from <paramref name="w"/>) and the
    /// block after it (<paramref name="kcB"/> k from <c>w + KC</c>), each from zero, at m = 1
    /// (A's values from <paramref name="ap"/>).</summary>
    private static void HalfPairF32(float* w, long ld, float* ap, int kcB,
        out Vector512<float> accA, out Vector512<float> accB)
    {
        Vector512<float> a = default, bb = default, none = default;
        float* wb = w + CpuGemm.KC;
        float* apB = ap + CpuGemm.KC;
        int both = kcB & ~15, kk = 0;
        for (; kk < both; kk += 16)
        {
            Step16F32<Rows1>(w + kk, ld, ap + kk, ref a, ref none);
            Step16F32<Rows1>(wb + kk, ld, apB + kk, ref bb, ref none);
        }
        for (int ka = kk; ka < CpuGemm.KC; ka += 16)
        {
            Step16F32<Rows1>(w + ka, ld, ap + ka, ref a, ref none);
        }
        for (; kk < kcB; kk++)
        {
            Vector512<float> v = Gather16<F32Element>((byte*)(wb + kk), ld * sizeof(float));
            bb = Avx512F.FusedMultiplyAdd(Vector512.Create(apB[kk]), v, bb);
        }
        accA = a;
        accB = bb;
    }

    /// <summary><see cref="HalfPairF32"/> for a bf16 B (32 k per step).</summary>
    private static void HalfPairBf16(ushort* w, long ld, float* ap, int kcB,
        out Vector512<float> accA, out Vector512<float> accB)
    {
        Vector512<float> a = default, bb = default, none = default;
        ushort* wb = w + CpuGemm.KC;
        float* apB = ap + CpuGemm.KC;
        int both = kcB & ~31, kk = 0;
        for (; kk < both; kk += 32)
        {
            Step32Bf16<Rows1>(w + kk, ld, ap + kk, ref a, ref none);
            Step32Bf16<Rows1>(wb + kk, ld, apB + kk, ref bb, ref none);
        }
        for (int ka = kk; ka < CpuGemm.KC; ka += 32)
        {
            Step32Bf16<Rows1>(w + ka, ld, ap + ka, ref a, ref none);
        }
        for (; kk < kcB; kk++)
        {
            Vector512<float> v = Gather16<Bf16Element>((byte*)(wb + kk), ld * sizeof(ushort));
            bb = Avx512F.FusedMultiplyAdd(Vector512.Create(apB[kk]), v, bb);
        }
        accA = a;
        accB = bb;
    }

    /// <summary>Largest m the fused transposing kernel takes (each transposed vector feeds m
    /// FMAs; beyond 2 the L1 panel's zmm loads are cheaper than the transposes).</summary>
    private const int FusedRows = 2;

    /// <summary>Weights larger than this come from memory rather than the last-level cache: the
    /// fused kernel prefetches them, the next k block's 32 row segments one after another (each
    /// a sequential run, which the memory system serves far better than 32 interleaved streams).
    /// Below it the prefetches cost more than they save (measured on this 2-core EPYC, one core:
    /// 0 to −35 % on the 2–6 MB shapes; +3–30 % for fp32 and +25–70 % for bf16 on the 32–524 MB
    /// ones).</summary>
    private const long PrefetchMinBytes = 16L << 20;

    /// <summary>The block a fused kernel prefetches while it runs: 32 row segments of
    /// <paramref name="bytes"/> bytes from <paramref name="start"/>, the weight's row stride
    /// apart (<paramref name="start"/> null: none).</summary>
    private readonly struct Ahead(byte* start, int bytes)
    {
        public byte* Start { get; } = start;

        public int Bytes { get; } = bytes;

        /// <summary>Prefetches the rows of step <paramref name="step"/> of
        /// <paramref name="steps"/> (all 32 rows are covered once over the steps).</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Step(int step, int steps, long rowBytes)
        {
            if (Start == null)
            {
                return;
            }
            int per = (Width + steps - 1) / steps;
            int r0 = step * per, r1 = Math.Min(Width, r0 + per);
            for (int r = r0; r < r1; r++)
            {
                byte* row = Start + (r * rowBytes);
                for (int b = 0; b < Bytes; b += 64)
                {
                    Sse.Prefetch0(row + b);
                }
                Sse.Prefetch0(row + Bytes - 1);
            }
        }
    }

    /// <summary>False sends m ≤ 2 with a <c>[n, k]</c> B through the L1 panel like larger m
    /// (the benchmark measures the fused kernel against it; same bits either way).</summary>
    internal static bool FusedTranspose { get; set; } = true;

    private static void DispatchFused(int m, GemmOperand b, byte* wp, in Ahead ahead, in Block block)
    {
        if (b.Type == GemmType.BF16)
        {
            if (m == 1)
            {
                FusedBf16<Rows1>((ushort*)wp, b.Ld, ahead, block);
            }
            else
            {
                FusedBf16<Rows2>((ushort*)wp, b.Ld, ahead, block);
            }
        }
        else if (m == 1)
        {
            FusedF32<Rows1>((float*)wp, b.Ld, ahead, block);
        }
        else
        {
            FusedF32<Rows2>((float*)wp, b.Ld, ahead, block);
        }
    }

    /// <summary>
    /// m ≤ 2 rows × 32 columns over one k block with an fp32 B stored <c>[n, k]</c> (32 weight
    /// rows <paramref name="ld"/> elements apart, each read along k). Every 16 k, each half of
    /// the panel (16 weight rows) is loaded as 16 zmm vectors, one 64-byte line each, and
    /// transposed in registers (64 shuffles) into 16 vectors of one k each, which go straight to
    /// the FMAs; so each column still takes one FMA per k in k order from a zero start, exactly
    /// as <see cref="Panel{TRows, TLoad}"/> and the tiled kernels do, and its result is the same
    /// bits. Every line is read by one load, so rows whose stride is a multiple of 4 KB (which
    /// share an L1 set) cost nothing extra.
    /// </summary>
    private static void FusedF32<TRows>(float* w, long ld, in Ahead ahead, in Block block)
        where TRows : struct, IRowCount
    {
        int r = TRows.Count;
        float* ap = block.Ap;
        Vector512<float> a0 = default, a1 = default, b0 = default, b1 = default;
        int kc = block.Kc;
        float* half = w + (16 * ld);
        int kk = 0;
        for (; kk <= kc - 16; kk += 16)
        {
            ahead.Step(kk >> 4, kc >> 4, ld * sizeof(float));
            Step16F32<TRows>(w + kk, ld, ap, ref a0, ref b0);
            Step16F32<TRows>(half + kk, ld, ap, ref a1, ref b1);
            ap += 16 * r;
        }
        for (; kk < kc; kk++)
        {
            Vector512<float> lo = Gather16<F32Element>((byte*)(w + kk), ld * sizeof(float));
            Vector512<float> hi = Gather16<F32Element>((byte*)(half + kk), ld * sizeof(float));
            a0 = Avx512F.FusedMultiplyAdd(Vector512.Create(ap[0]), lo, a0);
            a1 = Avx512F.FusedMultiplyAdd(Vector512.Create(ap[0]), hi, a1);
            if (r > 1)
            {
                b0 = Avx512F.FusedMultiplyAdd(Vector512.Create(ap[1]), lo, b0);
                b1 = Avx512F.FusedMultiplyAdd(Vector512.Create(ap[1]), hi, b1);
            }
            ap += r;
        }
        FusedStore(r, a0, a1, b0, b1, block);
    }

    /// <summary>
    /// <see cref="FusedF32{TRows}"/> for a bf16 B: every 32 k, each half of the panel (16 rows)
    /// is loaded as 16 zmm vectors of 32 bf16 (one line each) and transposed as 16-bit words
    /// (64 shuffles), then widened to fp32 exactly by interleaving with zeros (32 unpacks): 96
    /// shuffles per 512 weights against 128 for fp32 data, and half the bytes.
    /// </summary>
    private static void FusedBf16<TRows>(ushort* w, long ld, in Ahead ahead, in Block block)
        where TRows : struct, IRowCount
    {
        int r = TRows.Count;
        float* ap = block.Ap;
        Vector512<float> a0 = default, a1 = default, b0 = default, b1 = default;
        int kc = block.Kc;
        ushort* half = w + (16 * ld);
        int kk = 0;
        for (; kk <= kc - 32; kk += 32)
        {
            ahead.Step(kk >> 5, kc >> 5, ld * sizeof(ushort));
            Step32Bf16<TRows>(w + kk, ld, ap, ref a0, ref b0);
            Step32Bf16<TRows>(half + kk, ld, ap, ref a1, ref b1);
            ap += 32 * r;
        }
        for (; kk < kc; kk++)
        {
            Vector512<float> lo = Gather16<Bf16Element>((byte*)(w + kk), ld * sizeof(ushort));
            Vector512<float> hi = Gather16<Bf16Element>((byte*)(half + kk), ld * sizeof(ushort));
            a0 = Avx512F.FusedMultiplyAdd(Vector512.Create(ap[0]), lo, a0);
            a1 = Avx512F.FusedMultiplyAdd(Vector512.Create(ap[0]), hi, a1);
            if (r > 1)
            {
                b0 = Avx512F.FusedMultiplyAdd(Vector512.Create(ap[1]), lo, b0);
                b1 = Avx512F.FusedMultiplyAdd(Vector512.Create(ap[1]), hi, b1);
            }
            ap += r;
        }
        FusedStore(r, a0, a1, b0, b1, block);
    }

    /// <summary>
    /// The first fused kernel, kept for fp32 weights over 16 MB whose rows are not a multiple of
    /// 4 KB apart, where it measured 1.05–1.4× <see cref="FusedF32{TRows}"/> (ymm loads of 8 k,
    /// which the hardware streams better from memory; on 4 KB strides its 32 rows share one L1
    /// set and it falls far behind).
    /// m ≤ 2 rows × 32 columns over one k block with B stored <c>[n, k]</c> (32 weight rows
    /// <paramref name="rowBytes"/> apart, each read along k). Every 8 k, four 8×8 blocks are
    /// transposed in registers (8 loads, 24 shuffles) and fed straight to the FMAs, so each
    /// column still takes one FMA per k in k order from a zero start, exactly as
    /// <see cref="Panel{TRows, TLoad}"/> and the tiled kernels do, and its result is the same
    /// bits. The weight rows are prefetched 256 bytes ahead (32 streams at once are more than
    /// the hardware prefetchers follow).
    /// </summary>
    private static void FusedF32Ymm<TRows, T>(byte* wp, long rowBytes, in Block block)
        where TRows : struct, IRowCount
        where T : struct, IGemmElement
    {
        int r = TRows.Count;
        float* ap = block.Ap;
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        Vector256<float> b0 = default, b1 = default, b2 = default, b3 = default;
        int kc = block.Kc;
        long group = 8 * rowBytes;
        int kk = 0;
        for (; kk <= kc - 8; kk += 8)
        {
            byte* s = wp + (kk * T.Size);
            if ((kk & 15) == 0)
            {
                byte* pf = s + 256;
                for (int i = 0; i < Width; i++)
                {
                    Sse.Prefetch0(pf + (i * rowBytes));
                }
            }
            Step<TRows, T>(s, rowBytes, ap, ref a0, ref b0);
            Step<TRows, T>(s + group, rowBytes, ap, ref a1, ref b1);
            Step<TRows, T>(s + (2 * group), rowBytes, ap, ref a2, ref b2);
            Step<TRows, T>(s + (3 * group), rowBytes, ap, ref a3, ref b3);
            ap += 8 * r;
        }
        for (; kk < kc; kk++)
        {
            byte* s = wp + (kk * T.Size);
            a0 = TailFma<T>(s, rowBytes, ap[0], a0);
            a1 = TailFma<T>(s + group, rowBytes, ap[0], a1);
            a2 = TailFma<T>(s + (2 * group), rowBytes, ap[0], a2);
            a3 = TailFma<T>(s + (3 * group), rowBytes, ap[0], a3);
            if (r > 1)
            {
                b0 = TailFma<T>(s, rowBytes, ap[1], b0);
                b1 = TailFma<T>(s + group, rowBytes, ap[1], b1);
                b2 = TailFma<T>(s + (2 * group), rowBytes, ap[1], b2);
                b3 = TailFma<T>(s + (3 * group), rowBytes, ap[1], b3);
            }
            ap += r;
        }
        TileMode mode = new TileUpdate(block.C, block.Ldc, block.Alpha, block.Beta, block.First).Mode;
        var va = Vector512.Create(block.Alpha);
        var vb = Vector512.Create(block.Beta);
        float* d = block.C;
        GemmMicroKernels.Update(d, Vector512.Create(a0, a1), va, vb, mode);
        GemmMicroKernels.Update(d + 16, Vector512.Create(a2, a3), va, vb, mode);
        if (r > 1)
        {
            d += block.Ldc;
            GemmMicroKernels.Update(d, Vector512.Create(b0, b1), va, vb, mode);
            GemmMicroKernels.Update(d + 16, Vector512.Create(b2, b3), va, vb, mode);
        }
    }

    /// <summary>Eight weight rows × 8 k: transposed in registers, then per k (in order) one
    /// FMA into each row of A's accumulator.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Step<TRows, T>(byte* s, long rowBytes, float* ap,
        ref Vector256<float> acc0, ref Vector256<float> acc1)
        where TRows : struct, IRowCount
        where T : struct, IGemmElement
    {
        int r = TRows.Count;
        Vector256<float> r0 = T.Load8(s), r1 = T.Load8(s + rowBytes);
        Vector256<float> r2 = T.Load8(s + (2 * rowBytes)), r3 = T.Load8(s + (3 * rowBytes));
        Vector256<float> r4 = T.Load8(s + (4 * rowBytes)), r5 = T.Load8(s + (5 * rowBytes));
        Vector256<float> r6 = T.Load8(s + (6 * rowBytes)), r7 = T.Load8(s + (7 * rowBytes));
        Vector256<float> t0 = Avx.UnpackLow(r0, r1), t1 = Avx.UnpackHigh(r0, r1);
        Vector256<float> t2 = Avx.UnpackLow(r2, r3), t3 = Avx.UnpackHigh(r2, r3);
        Vector256<float> t4 = Avx.UnpackLow(r4, r5), t5 = Avx.UnpackHigh(r4, r5);
        Vector256<float> t6 = Avx.UnpackLow(r6, r7), t7 = Avx.UnpackHigh(r6, r7);
        Vector256<float> u0 = Avx.Shuffle(t0, t2, 0x44), u1 = Avx.Shuffle(t0, t2, 0xEE);
        Vector256<float> u2 = Avx.Shuffle(t1, t3, 0x44), u3 = Avx.Shuffle(t1, t3, 0xEE);
        Vector256<float> u4 = Avx.Shuffle(t4, t6, 0x44), u5 = Avx.Shuffle(t4, t6, 0xEE);
        Vector256<float> u6 = Avx.Shuffle(t5, t7, 0x44), u7 = Avx.Shuffle(t5, t7, 0xEE);
        // Column kk + j of the eight rows: j < 4 from the low halves, j ≥ 4 from the high.
        Vector256<float> k0 = Avx.Permute2x128(u0, u4, 0x20), k1 = Avx.Permute2x128(u1, u5, 0x20);
        Vector256<float> k2 = Avx.Permute2x128(u2, u6, 0x20), k3 = Avx.Permute2x128(u3, u7, 0x20);
        Vector256<float> k4 = Avx.Permute2x128(u0, u4, 0x31), k5 = Avx.Permute2x128(u1, u5, 0x31);
        Vector256<float> k6 = Avx.Permute2x128(u2, u6, 0x31), k7 = Avx.Permute2x128(u3, u7, 0x31);
        Vector256<float> c = acc0;
        c = Fma.MultiplyAdd(Vector256.Create(ap[0]), k0, c);
        c = Fma.MultiplyAdd(Vector256.Create(ap[r]), k1, c);
        c = Fma.MultiplyAdd(Vector256.Create(ap[2 * r]), k2, c);
        c = Fma.MultiplyAdd(Vector256.Create(ap[3 * r]), k3, c);
        c = Fma.MultiplyAdd(Vector256.Create(ap[4 * r]), k4, c);
        c = Fma.MultiplyAdd(Vector256.Create(ap[5 * r]), k5, c);
        c = Fma.MultiplyAdd(Vector256.Create(ap[6 * r]), k6, c);
        c = Fma.MultiplyAdd(Vector256.Create(ap[7 * r]), k7, c);
        acc0 = c;
        if (r > 1)
        {
            c = acc1;
            c = Fma.MultiplyAdd(Vector256.Create(ap[1]), k0, c);
            c = Fma.MultiplyAdd(Vector256.Create(ap[r + 1]), k1, c);
            c = Fma.MultiplyAdd(Vector256.Create(ap[(2 * r) + 1]), k2, c);
            c = Fma.MultiplyAdd(Vector256.Create(ap[(3 * r) + 1]), k3, c);
            c = Fma.MultiplyAdd(Vector256.Create(ap[(4 * r) + 1]), k4, c);
            c = Fma.MultiplyAdd(Vector256.Create(ap[(5 * r) + 1]), k5, c);
            c = Fma.MultiplyAdd(Vector256.Create(ap[(6 * r) + 1]), k6, c);
            c = Fma.MultiplyAdd(Vector256.Create(ap[(7 * r) + 1]), k7, c);
            acc1 = c;
        }
    }

    /// <summary>One k of eight weight rows (a k block's last kc mod 8), gathered.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> TailFma<T>(byte* s, long rowBytes, float x, Vector256<float> acc)
        where T : struct, IGemmElement
    {
        var w = Vector256.Create(T.Load(s, 0), T.Load(s + rowBytes, 0), T.Load(s + (2 * rowBytes), 0),
            T.Load(s + (3 * rowBytes), 0), T.Load(s + (4 * rowBytes), 0), T.Load(s + (5 * rowBytes), 0),
            T.Load(s + (6 * rowBytes), 0), T.Load(s + (7 * rowBytes), 0));
        return Fma.MultiplyAdd(Vector256.Create(x), w, acc);
    }

    /// <summary>The fused kernels' accumulators into C: row 0 is <paramref name="a0"/> (columns
    /// 0–15) and <paramref name="a1"/> (16–31), row 1 <paramref name="b0"/>, <paramref name="b1"/>;
    /// the micro-kernels' update arithmetic.</summary>
    private static void FusedStore(int r, Vector512<float> a0, Vector512<float> a1,
        Vector512<float> b0, Vector512<float> b1, in Block block)
    {
        TileMode mode = new TileUpdate(block.C, block.Ldc, block.Alpha, block.Beta, block.First).Mode;
        var va = Vector512.Create(block.Alpha);
        var vb = Vector512.Create(block.Beta);
        float* d = block.C;
        GemmMicroKernels.Update(d, a0, va, vb, mode);
        GemmMicroKernels.Update(d + 16, a1, va, vb, mode);
        if (r > 1)
        {
            d += block.Ldc;
            GemmMicroKernels.Update(d, b0, va, vb, mode);
            GemmMicroKernels.Update(d + 16, b1, va, vb, mode);
        }
    }

    /// <summary>Element k of sixteen weight rows (a k block's last kc mod 16 or 32), gathered.
    /// </summary>
    private static Vector512<float> Gather16<T>(byte* s, long rowBytes)
        where T : struct, IGemmElement
    {
        float* g = stackalloc float[16];
        for (int i = 0; i < 16; i++)
        {
            g[i] = T.Load(s + (i * rowBytes), 0);
        }
        return Vector512.Load(g);
    }

    /// <summary>FMA of A's k-th value (row 0, and row 1 when m = 2) with a transposed weight
    /// vector.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Fma2<TRows>(float* ap, int kk, Vector512<float> wv,
        ref Vector512<float> acc0, ref Vector512<float> acc1)
        where TRows : struct, IRowCount
    {
        int r = TRows.Count;
        acc0 = Avx512F.FusedMultiplyAdd(Vector512.Create(ap[kk * r]), wv, acc0);
        if (r > 1)
        {
            acc1 = Avx512F.FusedMultiplyAdd(Vector512.Create(ap[(kk * r) + 1]), wv, acc1);
        }
    }

    /// <summary>Sixteen fp32 weight rows × 16 k: a 16×16 transpose in registers (unpack,
    /// in-lane shuffle, two 128-bit lane shuffles), then per k (in order) one FMA into each row
    /// of A's accumulator. Lane j of every vector is weight row j.</summary>
    private static void Step16F32<TRows>(float* p, long ld, float* ap,
        ref Vector512<float> acc0, ref Vector512<float> acc1)
        where TRows : struct, IRowCount
    {
        Vector512<float> r0 = Vector512.Load(p), r1 = Vector512.Load(p + ld);
        Vector512<float> r2 = Vector512.Load(p + (2 * ld)), r3 = Vector512.Load(p + (3 * ld));
        Vector512<float> r4 = Vector512.Load(p + (4 * ld)), r5 = Vector512.Load(p + (5 * ld));
        Vector512<float> r6 = Vector512.Load(p + (6 * ld)), r7 = Vector512.Load(p + (7 * ld));
        Vector512<float> r8 = Vector512.Load(p + (8 * ld)), r9 = Vector512.Load(p + (9 * ld));
        Vector512<float> r10 = Vector512.Load(p + (10 * ld)), r11 = Vector512.Load(p + (11 * ld));
        Vector512<float> r12 = Vector512.Load(p + (12 * ld)), r13 = Vector512.Load(p + (13 * ld));
        Vector512<float> r14 = Vector512.Load(p + (14 * ld)), r15 = Vector512.Load(p + (15 * ld));
        // Per 128-bit lane L (k = 4L…4L+3): t pairs two rows, u holds four rows at k = 4L + c.
        Vector512<float> t0 = Avx512F.UnpackLow(r0, r1), t1 = Avx512F.UnpackHigh(r0, r1);
        Vector512<float> t2 = Avx512F.UnpackLow(r2, r3), t3 = Avx512F.UnpackHigh(r2, r3);
        Vector512<float> t4 = Avx512F.UnpackLow(r4, r5), t5 = Avx512F.UnpackHigh(r4, r5);
        Vector512<float> t6 = Avx512F.UnpackLow(r6, r7), t7 = Avx512F.UnpackHigh(r6, r7);
        Vector512<float> t8 = Avx512F.UnpackLow(r8, r9), t9 = Avx512F.UnpackHigh(r8, r9);
        Vector512<float> t10 = Avx512F.UnpackLow(r10, r11), t11 = Avx512F.UnpackHigh(r10, r11);
        Vector512<float> t12 = Avx512F.UnpackLow(r12, r13), t13 = Avx512F.UnpackHigh(r12, r13);
        Vector512<float> t14 = Avx512F.UnpackLow(r14, r15), t15 = Avx512F.UnpackHigh(r14, r15);
        Vector512<float> u00 = Avx512F.Shuffle(t0, t2, 0x44), u01 = Avx512F.Shuffle(t0, t2, 0xEE);
        Vector512<float> u02 = Avx512F.Shuffle(t1, t3, 0x44), u03 = Avx512F.Shuffle(t1, t3, 0xEE);
        Vector512<float> u10 = Avx512F.Shuffle(t4, t6, 0x44), u11 = Avx512F.Shuffle(t4, t6, 0xEE);
        Vector512<float> u12 = Avx512F.Shuffle(t5, t7, 0x44), u13 = Avx512F.Shuffle(t5, t7, 0xEE);
        Vector512<float> u20 = Avx512F.Shuffle(t8, t10, 0x44), u21 = Avx512F.Shuffle(t8, t10, 0xEE);
        Vector512<float> u22 = Avx512F.Shuffle(t9, t11, 0x44), u23 = Avx512F.Shuffle(t9, t11, 0xEE);
        Vector512<float> u30 = Avx512F.Shuffle(t12, t14, 0x44), u31 = Avx512F.Shuffle(t12, t14, 0xEE);
        Vector512<float> u32 = Avx512F.Shuffle(t13, t15, 0x44), u33 = Avx512F.Shuffle(t13, t15, 0xEE);
        // 4×4 transposes of 128-bit lanes across the four row groups: k = 4q + c.
        Lanes(u00, u10, u20, u30, out Vector512<float> k0, out Vector512<float> k4,
            out Vector512<float> k8, out Vector512<float> k12);
        Lanes(u01, u11, u21, u31, out Vector512<float> k1, out Vector512<float> k5,
            out Vector512<float> k9, out Vector512<float> k13);
        Lanes(u02, u12, u22, u32, out Vector512<float> k2, out Vector512<float> k6,
            out Vector512<float> k10, out Vector512<float> k14);
        Lanes(u03, u13, u23, u33, out Vector512<float> k3, out Vector512<float> k7,
            out Vector512<float> k11, out Vector512<float> k15);
        // The chains in registers (a ref would store and reload them at every FMA).
        Vector512<float> c0 = acc0, c1 = acc1;
        Fma2<TRows>(ap, 0, k0, ref c0, ref c1);
        Fma2<TRows>(ap, 1, k1, ref c0, ref c1);
        Fma2<TRows>(ap, 2, k2, ref c0, ref c1);
        Fma2<TRows>(ap, 3, k3, ref c0, ref c1);
        Fma2<TRows>(ap, 4, k4, ref c0, ref c1);
        Fma2<TRows>(ap, 5, k5, ref c0, ref c1);
        Fma2<TRows>(ap, 6, k6, ref c0, ref c1);
        Fma2<TRows>(ap, 7, k7, ref c0, ref c1);
        Fma2<TRows>(ap, 8, k8, ref c0, ref c1);
        Fma2<TRows>(ap, 9, k9, ref c0, ref c1);
        Fma2<TRows>(ap, 10, k10, ref c0, ref c1);
        Fma2<TRows>(ap, 11, k11, ref c0, ref c1);
        Fma2<TRows>(ap, 12, k12, ref c0, ref c1);
        Fma2<TRows>(ap, 13, k13, ref c0, ref c1);
        Fma2<TRows>(ap, 14, k14, ref c0, ref c1);
        Fma2<TRows>(ap, 15, k15, ref c0, ref c1);
        acc0 = c0;
        acc1 = c1;
    }

    /// <summary>Transposes the 128-bit lanes of four vectors (lane q of <paramref name="g0"/>…
    /// <paramref name="g3"/> into <paramref name="y0"/>…<paramref name="y3"/>: lane g of
    /// <c>y_q</c> is lane q of <c>g_g</c>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Lanes<TV>(Vector512<TV> g0, Vector512<TV> g1, Vector512<TV> g2,
        Vector512<TV> g3, out Vector512<TV> y0, out Vector512<TV> y1, out Vector512<TV> y2,
        out Vector512<TV> y3)
    {
        Vector512<float> x0 = Avx512F.Shuffle4x128(g0.AsSingle(), g1.AsSingle(), 0x44);
        Vector512<float> x1 = Avx512F.Shuffle4x128(g0.AsSingle(), g1.AsSingle(), 0xEE);
        Vector512<float> x2 = Avx512F.Shuffle4x128(g2.AsSingle(), g3.AsSingle(), 0x44);
        Vector512<float> x3 = Avx512F.Shuffle4x128(g2.AsSingle(), g3.AsSingle(), 0xEE);
        y0 = Avx512F.Shuffle4x128(x0, x2, 0x88).As<float, TV>();
        y1 = Avx512F.Shuffle4x128(x0, x2, 0xDD).As<float, TV>();
        y2 = Avx512F.Shuffle4x128(x1, x3, 0x88).As<float, TV>();
        y3 = Avx512F.Shuffle4x128(x1, x3, 0xDD).As<float, TV>();
    }

    /// <summary>Four bf16 weight rows × 32 k as 16-bit words: <c>q_j</c>'s 128-bit lane L holds
    /// the four rows at k = 8L + 2j and 8L + 2j + 1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Words4(ushort* p, long ld, out Vector512<uint> q0, out Vector512<uint> q1,
        out Vector512<uint> q2, out Vector512<uint> q3)
    {
        Vector512<ushort> a = Vector512.Load(p), b = Vector512.Load(p + ld);
        Vector512<ushort> c = Vector512.Load(p + (2 * ld)), d = Vector512.Load(p + (3 * ld));
        Vector512<uint> abl = Avx512BW.UnpackLow(a, b).AsUInt32(), abh = Avx512BW.UnpackHigh(a, b).AsUInt32();
        Vector512<uint> cdl = Avx512BW.UnpackLow(c, d).AsUInt32(), cdh = Avx512BW.UnpackHigh(c, d).AsUInt32();
        q0 = Avx512F.UnpackLow(abl, cdl);
        q1 = Avx512F.UnpackHigh(abl, cdl);
        q2 = Avx512F.UnpackLow(abh, cdh);
        q3 = Avx512F.UnpackHigh(abh, cdh);
    }

    /// <summary>bf16 → fp32 exactly: the words of <paramref name="y"/>'s even (<paramref
    /// name="odd"/> false) or odd k, each with 16 zero bits below it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Widen(Vector512<ushort> y, bool odd) =>
        (odd ? Avx512BW.UnpackHigh(Vector512<ushort>.Zero, y)
            : Avx512BW.UnpackLow(Vector512<ushort>.Zero, y)).AsSingle();

    /// <summary>Sixteen bf16 weight rows × 32 k: transposed as words (two unpacks, two lane
    /// shuffles), widened, then per k (in order) one FMA into each row of A's accumulator. Lane j
    /// of every vector is weight row j.</summary>
    private static void Step32Bf16<TRows>(ushort* p, long ld, float* ap,
        ref Vector512<float> acc0, ref Vector512<float> acc1)
        where TRows : struct, IRowCount
    {
        Words4(p, ld, out Vector512<uint> a0, out Vector512<uint> a1, out Vector512<uint> a2, out Vector512<uint> a3);
        Words4(p + (4 * ld), ld, out Vector512<uint> b0, out Vector512<uint> b1, out Vector512<uint> b2, out Vector512<uint> b3);
        Words4(p + (8 * ld), ld, out Vector512<uint> c0, out Vector512<uint> c1, out Vector512<uint> c2, out Vector512<uint> c3);
        Words4(p + (12 * ld), ld, out Vector512<uint> d0, out Vector512<uint> d1, out Vector512<uint> d2, out Vector512<uint> d3);
        // y_qj: 128-bit lane g = row group g at k = 8q + 2j (even words) and 8q + 2j + 1 (odd).
        Lanes(a0, b0, c0, d0, out Vector512<uint> y00, out Vector512<uint> y10, out Vector512<uint> y20, out Vector512<uint> y30);
        Lanes(a1, b1, c1, d1, out Vector512<uint> y01, out Vector512<uint> y11, out Vector512<uint> y21, out Vector512<uint> y31);
        Lanes(a2, b2, c2, d2, out Vector512<uint> y02, out Vector512<uint> y12, out Vector512<uint> y22, out Vector512<uint> y32);
        Lanes(a3, b3, c3, d3, out Vector512<uint> y03, out Vector512<uint> y13, out Vector512<uint> y23, out Vector512<uint> y33);
        // The chains in registers (a ref would store and reload them at every FMA).
        Vector512<float> e0 = acc0, e1 = acc1;
        Pair<TRows>(ap, 0, y00.AsUInt16(), ref e0, ref e1);
        Pair<TRows>(ap, 2, y01.AsUInt16(), ref e0, ref e1);
        Pair<TRows>(ap, 4, y02.AsUInt16(), ref e0, ref e1);
        Pair<TRows>(ap, 6, y03.AsUInt16(), ref e0, ref e1);
        Pair<TRows>(ap, 8, y10.AsUInt16(), ref e0, ref e1);
        Pair<TRows>(ap, 10, y11.AsUInt16(), ref e0, ref e1);
        Pair<TRows>(ap, 12, y12.AsUInt16(), ref e0, ref e1);
        Pair<TRows>(ap, 14, y13.AsUInt16(), ref e0, ref e1);
        Pair<TRows>(ap, 16, y20.AsUInt16(), ref e0, ref e1);
        Pair<TRows>(ap, 18, y21.AsUInt16(), ref e0, ref e1);
        Pair<TRows>(ap, 20, y22.AsUInt16(), ref e0, ref e1);
        Pair<TRows>(ap, 22, y23.AsUInt16(), ref e0, ref e1);
        Pair<TRows>(ap, 24, y30.AsUInt16(), ref e0, ref e1);
        Pair<TRows>(ap, 26, y31.AsUInt16(), ref e0, ref e1);
        Pair<TRows>(ap, 28, y32.AsUInt16(), ref e0, ref e1);
        Pair<TRows>(ap, 30, y33.AsUInt16(), ref e0, ref e1);
        acc0 = e0;
        acc1 = e1;
    }

    /// <summary>k = <paramref name="kk"/> and kk + 1 from one transposed word vector, in order.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Pair<TRows>(float* ap, int kk, Vector512<ushort> y,
        ref Vector512<float> acc0, ref Vector512<float> acc1)
        where TRows : struct, IRowCount
    {
        Fma2<TRows>(ap, kk, Widen(y, odd: false), ref acc0, ref acc1);
        Fma2<TRows>(ap, kk + 1, Widen(y, odd: true), ref acc0, ref acc1);
    }

    private static void Dispatch<TLoad>(int m, byte* bp, long stride, in Block block)
        where TLoad : struct, IPanelLoad
    {
        switch (m)
        {
            case 1: Panel<Rows1, TLoad>(bp, stride, block); break;
            case 2: Panel<Rows2, TLoad>(bp, stride, block); break;
            case 3: Panel<Rows3, TLoad>(bp, stride, block); break;
            case 4: Panel<Rows4, TLoad>(bp, stride, block); break;
            case 5: Panel<Rows5, TLoad>(bp, stride, block); break;
            case 6: Panel<Rows6, TLoad>(bp, stride, block); break;
            case 7: Panel<Rows7, TLoad>(bp, stride, block); break;
            default: Panel<Rows8, TLoad>(bp, stride, block); break;
        }
    }

    /// <summary>One panel's k block: A at <c>[kc][m]</c>, C at the panel's first column.</summary>
    private readonly struct Block(int kc, float* ap, float* c, long ldc, int cols, float alpha,
        float beta, bool first, float* tile)
    {
        public int Kc { get; } = kc;

        public float* Ap { get; } = ap;

        public float* C { get; } = c;

        public long Ldc { get; } = ldc;

        public int Cols { get; } = cols;

        public float Alpha { get; } = alpha;

        public float Beta { get; } = beta;

        public bool First { get; } = first;

        public float* Tile { get; } = tile;
    }

    /// <summary>m rows × 32 columns over one k block; <typeparamref name="TRows"/> fixes m at
    /// JIT time so unused accumulators and their branches vanish.</summary>
    private static void Panel<TRows, TLoad>(byte* bp, long stride, in Block block)
        where TRows : struct, IRowCount
        where TLoad : struct, IPanelLoad
    {
        int r = TRows.Count;
        float* ap = block.Ap;
        Vector512<float> c0a = default, c0b = default, c1a = default, c1b = default;
        Vector512<float> c2a = default, c2b = default, c3a = default, c3b = default;
        Vector512<float> c4a = default, c4b = default, c5a = default, c5b = default;
        Vector512<float> c6a = default, c6b = default, c7a = default, c7b = default;
        int kc = block.Kc;
        for (int kk = 0; kk < kc; kk++)
        {
            Vector512<float> b0 = TLoad.Load(bp, 0), b1 = TLoad.Load(bp, 16);
            Vector512<float> x = Vector512.Create(ap[0]);
            c0a = Avx512F.FusedMultiplyAdd(x, b0, c0a);
            c0b = Avx512F.FusedMultiplyAdd(x, b1, c0b);
            if (r > 1)
            {
                x = Vector512.Create(ap[1]);
                c1a = Avx512F.FusedMultiplyAdd(x, b0, c1a);
                c1b = Avx512F.FusedMultiplyAdd(x, b1, c1b);
            }
            if (r > 2)
            {
                x = Vector512.Create(ap[2]);
                c2a = Avx512F.FusedMultiplyAdd(x, b0, c2a);
                c2b = Avx512F.FusedMultiplyAdd(x, b1, c2b);
            }
            if (r > 3)
            {
                x = Vector512.Create(ap[3]);
                c3a = Avx512F.FusedMultiplyAdd(x, b0, c3a);
                c3b = Avx512F.FusedMultiplyAdd(x, b1, c3b);
            }
            if (r > 4)
            {
                x = Vector512.Create(ap[4]);
                c4a = Avx512F.FusedMultiplyAdd(x, b0, c4a);
                c4b = Avx512F.FusedMultiplyAdd(x, b1, c4b);
            }
            if (r > 5)
            {
                x = Vector512.Create(ap[5]);
                c5a = Avx512F.FusedMultiplyAdd(x, b0, c5a);
                c5b = Avx512F.FusedMultiplyAdd(x, b1, c5b);
            }
            if (r > 6)
            {
                x = Vector512.Create(ap[6]);
                c6a = Avx512F.FusedMultiplyAdd(x, b0, c6a);
                c6b = Avx512F.FusedMultiplyAdd(x, b1, c6b);
            }
            if (r > 7)
            {
                x = Vector512.Create(ap[7]);
                c7a = Avx512F.FusedMultiplyAdd(x, b0, c7a);
                c7b = Avx512F.FusedMultiplyAdd(x, b1, c7b);
            }
            ap += r;
            bp += stride;
        }
        if (block.Cols == Width)
        {
            // A full panel goes straight to C, with the micro-kernel's update arithmetic.
            TileMode mode = new TileUpdate(block.C, block.Ldc, block.Alpha, block.Beta, block.First).Mode;
            var va = Vector512.Create(block.Alpha);
            var vb = Vector512.Create(block.Beta);
            float* d = block.C;
            long ldc = block.Ldc;
            GemmMicroKernels.Update(d, c0a, va, vb, mode);
            GemmMicroKernels.Update(d + 16, c0b, va, vb, mode);
            if (r > 1)
            {
                GemmMicroKernels.Update(d + ldc, c1a, va, vb, mode);
                GemmMicroKernels.Update(d + ldc + 16, c1b, va, vb, mode);
            }
            if (r > 2)
            {
                GemmMicroKernels.Update(d + (2 * ldc), c2a, va, vb, mode);
                GemmMicroKernels.Update(d + (2 * ldc) + 16, c2b, va, vb, mode);
            }
            if (r > 3)
            {
                GemmMicroKernels.Update(d + (3 * ldc), c3a, va, vb, mode);
                GemmMicroKernels.Update(d + (3 * ldc) + 16, c3b, va, vb, mode);
            }
            if (r > 4)
            {
                GemmMicroKernels.Update(d + (4 * ldc), c4a, va, vb, mode);
                GemmMicroKernels.Update(d + (4 * ldc) + 16, c4b, va, vb, mode);
            }
            if (r > 5)
            {
                GemmMicroKernels.Update(d + (5 * ldc), c5a, va, vb, mode);
                GemmMicroKernels.Update(d + (5 * ldc) + 16, c5b, va, vb, mode);
            }
            if (r > 6)
            {
                GemmMicroKernels.Update(d + (6 * ldc), c6a, va, vb, mode);
                GemmMicroKernels.Update(d + (6 * ldc) + 16, c6b, va, vb, mode);
            }
            if (r > 7)
            {
                GemmMicroKernels.Update(d + (7 * ldc), c7a, va, vb, mode);
                GemmMicroKernels.Update(d + (7 * ldc) + 16, c7b, va, vb, mode);
            }
            return;
        }
        float* t = block.Tile;
        c0a.Store(t);
        c0b.Store(t + 16);
        c1a.Store(t + 32);
        c1b.Store(t + 48);
        c2a.Store(t + 64);
        c2b.Store(t + 80);
        c3a.Store(t + 96);
        c3b.Store(t + 112);
        c4a.Store(t + 128);
        c4b.Store(t + 144);
        c5a.Store(t + 160);
        c5b.Store(t + 176);
        c6a.Store(t + 192);
        c6b.Store(t + 208);
        c7a.Store(t + 224);
        c7b.Store(t + 240);
        GemmMicroKernels.StoreTile(t, Width, block.C, block.Ldc, r, block.Cols, block.Alpha,
            block.Beta, block.First);
    }

    private static float* Align64(float[] pinned)
    {
        nint address = (nint)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(pinned));
        return (float*)((address + 63) & ~(nint)63);
    }

    /// <summary>The number of rows a <see cref="Panel{TRows, TLoad}"/> instance computes.
    /// </summary>
    private interface IRowCount
    {
        static abstract int Count { get; }
    }

    private struct Rows1 : IRowCount
    {
        public static int Count => 1;
    }

    private struct Rows2 : IRowCount
    {
        public static int Count => 2;
    }

    private struct Rows3 : IRowCount
    {
        public static int Count => 3;
    }

    private struct Rows4 : IRowCount
    {
        public static int Count => 4;
    }

    private struct Rows5 : IRowCount
    {
        public static int Count => 5;
    }

    private struct Rows6 : IRowCount
    {
        public static int Count => 6;
    }

    private struct Rows7 : IRowCount
    {
        public static int Count => 7;
    }

    private struct Rows8 : IRowCount
    {
        public static int Count => 8;
    }

    /// <summary>Sixteen consecutive B elements as fp32.</summary>
    private interface IPanelLoad
    {
        static abstract Vector512<float> Load(byte* p, int element);
    }

    private struct F32Load : IPanelLoad
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Load(byte* p, int element) => Vector512.Load((float*)p + element);
    }

    private struct Bf16Load : IPanelLoad
    {
        /// <summary>bf16 → fp32 exactly: zero-extend to 32 bits, shift into the high half.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Load(byte* p, int element) =>
            Avx512F.ShiftLeftLogical(
                Avx512F.ConvertToVector512UInt32(Vector256.Load((ushort*)p + element)), 16).AsSingle();
    }
}
