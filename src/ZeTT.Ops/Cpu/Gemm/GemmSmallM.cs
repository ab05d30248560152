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
            for (int p = p0; p < p1; p++)
            {
                int col = p * Width, cols = Math.Min(Width, n - col);
                for (int k0 = 0; k0 < k; k0 += CpuGemm.KC)
                {
                    int kc = Math.Min(CpuGemm.KC, k - k0);
                    var block = new Block(kc, ap + ((long)k0 * m), c + col, ldc, cols, alpha,
                        beta, k0 == 0, tile);
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
