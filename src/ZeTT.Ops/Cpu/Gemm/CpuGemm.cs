using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;

namespace ZeTT.Ops.Cpu;

/// <summary>
/// Applied to each finished row segment of C (after the last k block): <c>Apply(c, bias, n)</c>
/// with <c>c</c> the segment, <c>bias</c> the bias at its first column (null without one) and
/// <c>n</c> its length. A Linear layer's bias and activation run here, while the tile is in L1.
/// </summary>
internal readonly unsafe struct GemmEpilogue(delegate*<float*, float*, int, void> apply, float* bias)
{
    /// <summary>The function; null for none.</summary>
    public delegate*<float*, float*, int, void> Apply { get; } = apply;

    /// <summary>Bias over all N columns, or null.</summary>
    public float* Bias { get; } = bias;
}

/// <summary>
/// The project's one CPU matrix multiply: <c>C = α·op(A)·op(B) + β·C</c>, row-major, fp32 /
/// bf16 / fp16 operands, fp32 accumulation and output, on all cores, deterministic.
/// </summary>
/// <remarks>
/// Goto/BLIS structure. op(B) is packed into NR-wide column panels <c>[K][NR]</c> (per call, in
/// column blocks of at most 32 MB). Tasks own
/// disjoint blocks of C (up to MC rows × a range of panels): for each KC-deep block of k a task
/// packs its rows of op(A) into MR-row strips <c>[KC][MR]</c> (in L2), then runs the
/// micro-kernel for every strip against each B micro-panel (<c>KC·NR</c>, in L1). The
/// micro-kernel — AVX-512 12×32, AVX2 6×16 or scalar 4×8, chosen at run time — starts every
/// accumulator at zero and adds one FMA per k in order; k blocks are added to C in order. An
/// element's arithmetic therefore depends only on K, not on the thread count, the task split or
/// the kernel: results are bit-identical across all three. For m ≤ 8 on the AVX-512 kernel
/// <see cref="GemmSmallM"/> replaces the tiles (B read once in place, no 12-row strips) with the
/// same per-element arithmetic, so its results are bit-identical too.
/// bf16/fp16 operands are widened to fp32 while packing (exact). .NET 10 exposes no AVX512_BF16
/// intrinsic (no <c>vdpbf16ps</c>: System.Runtime.Intrinsics.X86 has Avx10v1/Avx10v2 but no
/// Avx512Bf16 class), and <c>vdpbf16ps</c> would also round fp32 operands to bf16; widening at
/// pack time keeps mixed fp32×bf16 products exact at fp32 kernel speed.
/// </remarks>
public static unsafe class CpuGemm
{
    /// <summary>Depth of one k block (a B micro-panel of KC·NR·4 B stays in L1).</summary>
    public const int KC = 256;

    /// <summary>Floats of B packed per call at most (32 MB): column blocks are sized to it.
    /// </summary>
    private const long PackedBBudget = 8L << 20;

    /// <summary>Below this many multiply-adds a Parallel.For costs more than it saves (measured
    /// for the hypernetwork: a [256,768]x[768,1] bias head is faster inline).</summary>
    private const long ParallelMinMacs = 1_000_000;

    [ThreadStatic]
    private static float[]? t_packA;

    private static float[]? s_packBCache;

    /// <summary>C bytes of one chunk of a task's panels, kept in L2 (1 MB per core here) while
    /// the chunk runs through every k block.</summary>
    private const int ChunkBytes = 512 * 1024;

    /// <summary>
    /// <c>C[m, n] = α·op(A)[m, k]·op(B)[k, n] + β·C</c>. Row-major; <paramref name="lda"/>,
    /// <paramref name="ldb"/>, <paramref name="ldc"/> in elements. <paramref name="transA"/>: A
    /// is stored <c>[k, m]</c>; <paramref name="transB"/>: B is stored <c>[n, k]</c> (a Linear
    /// layer's weight <c>[out, in]</c>: <c>y = x·Wᵀ</c> is <c>Gemm(false, true, …)</c>). A and
    /// B hold fp32, bf16 or fp16 bits as <paramref name="aType"/>/<paramref name="bType"/>
    /// say; C is fp32. With <c>β = 0</c> C is only written. Runs on all cores; the result does
    /// not depend on the thread count.
    /// </summary>
    /// <exception cref="ArgumentException">A size is negative, a leading dimension is too
    /// small, or a pointer is null where elements are read or written.</exception>
    public static void Gemm(bool transA, bool transB, int m, int n, int k, float alpha,
        void* a, GemmType aType, long lda, void* b, GemmType bType, long ldb,
        float beta, float* c, long ldc) =>
        Gemm(GemmKernels.Best, 0, transA, transB, m, n, k, alpha, a, aType, lda, b, bType, ldb,
            beta, c, ldc);

    /// <summary><see cref="Gemm(bool, bool, int, int, int, float, void*, GemmType, long, void*,
    /// GemmType, long, float, float*, long)"/> with a chosen micro-kernel and at most
    /// <paramref name="maxThreads"/> threads (0: all cores), for tests and benchmarks;
    /// <paramref name="smallM"/> false keeps m ≤ 8 on the tiled path (to measure what the
    /// small-m path saves).</summary>
    internal static void Gemm(GemmKernel kernel, int maxThreads, bool transA, bool transB, int m,
        int n, int k, float alpha, void* a, GemmType aType, long lda, void* b, GemmType bType,
        long ldb, float beta, float* c, long ldc, bool smallM = true,
        GemmEpilogue epilogue = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(m);
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        ArgumentOutOfRangeException.ThrowIfNegative(k);
        bool product = m > 0 && n > 0 && k > 0;
        CheckLd(lda, transA ? m : k, product, a == null, nameof(lda), nameof(a));
        CheckLd(ldb, transB ? k : n, product, b == null, nameof(ldb), nameof(b));
        CheckLd(ldc, n, m > 0 && n > 0, c == null, nameof(ldc), nameof(c));
        if (!GemmKernels.IsSupported(kernel))
        {
            throw new ArgumentException($"the {kernel} micro-kernel does not run on this CPU",
                nameof(kernel));
        }
        var job = new GemmJob(kernel, maxThreads, m, n, k, alpha, beta, c, ldc, epilogue)
        {
            A = new GemmOperand(a, aType, lda, transA),
            B = new GemmOperand(b, bType, ldb, transB),
            SmallM = smallM,
        };
        job.Run();
    }

    /// <summary><c>C[m, n] = epilogue(op(A)·op(B))</c> (α = 1, β = 0): a Linear layer with its
    /// bias and activation applied to each finished row segment of C while it is in L1.
    /// </summary>
    internal static void Gemm(bool transA, bool transB, int m, int n, int k, void* a,
        GemmType aType, long lda, void* b, GemmType bType, long ldb, float* c, long ldc,
        GemmEpilogue epilogue) =>
        Gemm(GemmKernels.Best, 0, transA, transB, m, n, k, 1f, a, aType, lda, b, bType, ldb, 0f,
            c, ldc, smallM: true, epilogue);

    /// <summary>Checks a leading dimension and pointer of an operand that is
    /// <paramref name="used"/> (read or written).</summary>
    private static void CheckLd(long ld, int minimum, bool used, bool isNull, string ldName,
        string pointerName)
    {
        if (!used)
        {
            return;
        }
        if (ld < Math.Max(1, minimum))
        {
            throw new ArgumentOutOfRangeException(ldName, ld, $"must be at least {minimum}");
        }
        if (isNull)
        {
            throw new ArgumentNullException(pointerName);
        }
    }

    /// <summary>One call's shapes, operands and task split.</summary>
    private sealed class GemmJob(GemmKernel kernel, int maxThreads, int m, int n, int k,
        float alpha, float beta, float* c, long ldc, GemmEpilogue epilogue)
    {
        private readonly int _mr = GemmKernels.MR(kernel), _nr = GemmKernels.NR(kernel);
        private readonly int _threads = maxThreads > 0 ? maxThreads : Environment.ProcessorCount;

        // The current column block: its first column, width, panels and where they are.
        private int _col0, _cols, _strips, _rowBlocks, _colGroups;
        private float* _panels;

        public GemmOperand A { get; init; }

        public GemmOperand B { get; init; }

        public bool SmallM { get; init; }

        public void Run()
        {
            if (m == 0 || n == 0)
            {
                return;
            }
            if (k == 0)
            {
                ScaleOnly();
                return;
            }
            bool parallel = (long)m * n * k >= ParallelMinMacs && _threads > 1;
            if (SmallM && GemmSmallM.Applies(kernel, m))
            {
                GemmSmallM.Run(_threads, A, B, m, n, k, alpha, beta, c, ldc, parallel);
                if (epilogue.Apply != null)
                {
                    // At most 8 finished rows: the epilogue after the product, as the tiles
                    // apply it after their last k block.
                    for (int i = 0; i < m; i++)
                    {
                        epilogue.Apply(c + ((long)i * ldc), epilogue.Bias, n);
                    }
                }
                return;
            }
            var options = new ParallelOptions { MaxDegreeOfParallelism = _threads };
            // Row blocks of at most MC rows, as many as a multiple of the thread count and equal
            // to a strip, so every thread gets the same work (11 blocks on 2 threads left one
            // idle for a twelfth of the time).
            _strips = CeilDiv(m, _mr);
            int maxStrips = GemmKernels.MCMax(kernel) / _mr;
            _rowBlocks = CeilDiv(_strips, maxStrips);
            if (parallel)
            {
                _rowBlocks = Math.Min(_strips, RoundUp(_rowBlocks, _threads));
            }
            int blockCols = (int)Math.Min(RoundUp(n, _nr),
                Math.Max(_nr, PackedBBudget / k / _nr * _nr));
            float[] buffer = Interlocked.Exchange(ref s_packBCache, null) is { } cached
                && cached.Length >= ((long)blockCols * k) + 16
                ? cached
                : GC.AllocateUninitializedArray<float>(checked((int)(((long)blockCols * k) + 16)),
                    pinned: true);
            try
            {
                float* aligned = Align64(buffer);
                for (int j0 = 0; j0 < n; j0 += blockCols)
                {
                    _col0 = j0;
                    _cols = Math.Min(blockCols, n - j0);
                    _panels = aligned;
                    int panels = CeilDiv(_cols, _nr);
                    if (parallel)
                    {
                        Parallel.For(0, panels, options, PackBPanel);
                    }
                    else
                    {
                        for (int p = 0; p < panels; p++)
                        {
                            PackBPanel(p);
                        }
                    }
                    RunBlock(parallel, options);
                }
            }
            finally
            {
                s_packBCache = buffer;
            }
        }

        private void RunBlock(bool parallel, ParallelOptions options)
        {
            int panels = CeilDiv(_cols, _nr);
            _colGroups = !parallel || _rowBlocks >= 2 * _threads ? 1
                : Math.Min(panels, CeilDiv(2 * _threads, _rowBlocks));
            int tasks = _rowBlocks * _colGroups;
            if (parallel && tasks > 1)
            {
                Parallel.For(0, tasks, options, Task);
                return;
            }
            for (int t = 0; t < tasks; t++)
            {
                Task(t);
            }
        }

        private void PackBPanel(int p)
        {
            int lane0 = p * _nr, lanes = Math.Min(_nr, _cols - lane0);
            float* dst = _panels + ((long)p * k * _nr);
            GemmPacking.PackPanel(B, B.Transposed, _col0 + lane0, lanes, 0, k, dst, _nr, 0);
            GemmPacking.ZeroLanes(dst, _nr, lanes, k);
        }

        private void Task(int task)
        {
            int rb = task / _colGroups, cg = task % _colGroups;
            int s0 = (int)((long)rb * _strips / _rowBlocks), s1 = (int)((long)(rb + 1) * _strips / _rowBlocks);
            int row0 = s0 * _mr, rows = Math.Min(s1 * _mr, m) - row0;
            int panels = CeilDiv(_cols, _nr);
            int p0 = (int)((long)cg * panels / _colGroups);
            int p1 = (int)((long)(cg + 1) * panels / _colGroups);
            if (rows <= 0 || p0 >= p1)
            {
                return;
            }
            int strips = CeilDiv(rows, _mr);
            long packed = ((long)strips * _mr * k) + 16;
            if (t_packA is null || t_packA.Length < packed)
            {
                t_packA = GC.AllocateUninitializedArray<float>(checked((int)packed), pinned: true);
            }
            float* apAll = Align64(t_packA);
            float* tile = stackalloc float[12 * 32];
            bool direct = kernel == GemmKernel.Avx512;
            // All of this row block's A is packed once (k block by k block, each slice
            // [strip][kc][MR]); then the panels run in chunks whose C (≤ 512 KB) stays in L2
            // across the k blocks instead of going back to memory after each (C is read and
            // written K/KC times).
            for (int k0 = 0; k0 < k; k0 += KC)
            {
                PackA(row0, rows, k0, Math.Min(KC, k - k0), apAll + ((long)k0 * strips * _mr));
            }
            int chunk = Math.Max(1, (ChunkBytes / sizeof(float) / rows) / _nr);
            for (int pc0 = p0; pc0 < p1; pc0 += chunk)
            {
                int pc1 = Math.Min(p1, pc0 + chunk);
                RunChunk(row0, rows, strips, pc0, pc1, apAll, tile, direct);
            }
        }

        private void RunChunk(int row0, int rows, int strips, int p0, int p1, float* apAll,
            float* tile, bool direct)
        {
            for (int k0 = 0; k0 < k; k0 += KC)
            {
                int kc = Math.Min(KC, k - k0);
                bool first = k0 == 0, last = k0 + kc == k;
                float* ap = apAll + ((long)k0 * strips * _mr);
                for (int p = p0; p < p1; p++)
                {
                    float* bp = _panels + ((((long)p * k) + k0) * _nr);
                    int col = _col0 + (p * _nr), cols = Math.Min(_nr, _col0 + _cols - col);
                    for (int s = 0; s < strips; s++)
                    {
                        int r = row0 + (s * _mr), rr = Math.Min(_mr, row0 + rows - r);
                        float* dst = c + ((long)r * ldc) + col;
                        PrefetchTile(dst, rr, cols);
                        if (direct && rr == _mr && cols == _nr)
                        {
                            GemmMicroKernels.Run(kernel, kc, ap + ((long)s * kc * _mr), bp, tile,
                                new TileUpdate(dst, ldc, alpha, beta, first));
                        }
                        else
                        {
                            GemmMicroKernels.Run(kernel, kc, ap + ((long)s * kc * _mr), bp, tile,
                                default);
                            GemmMicroKernels.StoreTile(tile, _nr, dst, ldc, rr, cols, alpha, beta,
                                first);
                        }
                        if (last && epilogue.Apply != null)
                        {
                            float* bias = epilogue.Bias == null ? null : epilogue.Bias + col;
                            for (int i = 0; i < rr; i++)
                            {
                                epilogue.Apply(dst + (i * ldc), bias, cols);
                            }
                        }
                    }
                }
            }
        }

        /// <summary>Starts loading the C tile the kernel will update: its rows are ldc apart, so
        /// no hardware prefetcher sees them coming, and the kernel's ~KC·MR/2 cycles of FMAs hide
        /// the misses.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private void PrefetchTile(float* dst, int rows, int cols)
        {
            if (!Sse.IsSupported)
            {
                return;
            }
            for (int i = 0; i < rows; i++)
            {
                float* row = dst + (i * ldc);
                Sse.Prefetch0(row);
                Sse.Prefetch0(row + cols - 1);
                if (cols > 16)
                {
                    Sse.Prefetch0(row + 16);
                }
            }
        }

        private void PackA(int row0, int rows, int k0, int kc, float* ap)
        {
            for (int r = 0; r < rows; r += _mr)
            {
                int lanes = Math.Min(_mr, rows - r);
                float* dst = ap + ((long)r * kc);
                GemmPacking.PackPanel(A, !A.Transposed, row0 + r, lanes, k0, kc, dst, _mr, 0);
                GemmPacking.ZeroLanes(dst, _mr, lanes, kc);
            }
        }

        /// <summary>k = 0: op(A)·op(B) is zero, so C = β·C (0 when β = 0), then the epilogue.
        /// </summary>
        private void ScaleOnly()
        {
            for (int i = 0; i < m; i++)
            {
                var row = new Span<float>(c + ((long)i * ldc), n);
                if (beta == 0f)
                {
                    row.Clear();
                }
                else
                {
                    for (int j = 0; j < n; j++)
                    {
                        row[j] *= beta;
                    }
                }
                if (epilogue.Apply != null)
                {
                    epilogue.Apply(c + ((long)i * ldc), epilogue.Bias, n);
                }
            }
        }
    }

    private static float* Align64(float[] pinned)
    {
        nint address = (nint)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(pinned));
        return (float*)((address + 63) & ~(nint)63);
    }

    private static int CeilDiv(int a, int b) => (a + b - 1) / b;

    private static int RoundUp(int a, int b) => CeilDiv(a, b) * b;
}
