using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace ZeTT.Ops.Cpu;

/// <summary>
/// The register-tiled inner loops of <see cref="CpuGemm"/>: each multiplies an MR-row strip of
/// packed A (<c>[kc][MR]</c>) by an NR-column panel of packed B (<c>[kc][NR]</c>) into an MR×NR
/// tile of fp32 accumulators, written to <c>tile</c> (row-major, NR wide). Every accumulator
/// starts at zero and takes one fused multiply-add per k, in k order, so the kernels agree bit
/// for bit; what differs is how many accumulators stay in registers.
/// </summary>
internal static unsafe class GemmMicroKernels
{
    /// <summary>12×32: 24 zmm accumulators + 2 B vectors + 1 broadcast of the 32 zmm registers;
    /// 24 FMAs per 2 loads and 12 broadcasts, so the two FMA pipes, not the loads, set the pace.
    /// </summary>
    public static void Avx512(int kc, float* ap, float* bp, float* tile, in TileUpdate update)
    {
        Vector512<float> c0a = default, c0b = default, c1a = default, c1b = default;
        Vector512<float> c2a = default, c2b = default, c3a = default, c3b = default;
        Vector512<float> c4a = default, c4b = default, c5a = default, c5b = default;
        Vector512<float> c6a = default, c6b = default, c7a = default, c7b = default;
        Vector512<float> c8a = default, c8b = default, c9a = default, c9b = default;
        Vector512<float> c10a = default, c10b = default, c11a = default, c11b = default;
        for (int k = 0; k < kc; k++)
        {
            Vector512<float> b0 = Vector512.Load(bp), b1 = Vector512.Load(bp + 16);
            Vector512<float> x = Vector512.Create(ap[0]);
            c0a = Avx512F.FusedMultiplyAdd(x, b0, c0a);
            c0b = Avx512F.FusedMultiplyAdd(x, b1, c0b);
            x = Vector512.Create(ap[1]);
            c1a = Avx512F.FusedMultiplyAdd(x, b0, c1a);
            c1b = Avx512F.FusedMultiplyAdd(x, b1, c1b);
            x = Vector512.Create(ap[2]);
            c2a = Avx512F.FusedMultiplyAdd(x, b0, c2a);
            c2b = Avx512F.FusedMultiplyAdd(x, b1, c2b);
            x = Vector512.Create(ap[3]);
            c3a = Avx512F.FusedMultiplyAdd(x, b0, c3a);
            c3b = Avx512F.FusedMultiplyAdd(x, b1, c3b);
            x = Vector512.Create(ap[4]);
            c4a = Avx512F.FusedMultiplyAdd(x, b0, c4a);
            c4b = Avx512F.FusedMultiplyAdd(x, b1, c4b);
            x = Vector512.Create(ap[5]);
            c5a = Avx512F.FusedMultiplyAdd(x, b0, c5a);
            c5b = Avx512F.FusedMultiplyAdd(x, b1, c5b);
            x = Vector512.Create(ap[6]);
            c6a = Avx512F.FusedMultiplyAdd(x, b0, c6a);
            c6b = Avx512F.FusedMultiplyAdd(x, b1, c6b);
            x = Vector512.Create(ap[7]);
            c7a = Avx512F.FusedMultiplyAdd(x, b0, c7a);
            c7b = Avx512F.FusedMultiplyAdd(x, b1, c7b);
            x = Vector512.Create(ap[8]);
            c8a = Avx512F.FusedMultiplyAdd(x, b0, c8a);
            c8b = Avx512F.FusedMultiplyAdd(x, b1, c8b);
            x = Vector512.Create(ap[9]);
            c9a = Avx512F.FusedMultiplyAdd(x, b0, c9a);
            c9b = Avx512F.FusedMultiplyAdd(x, b1, c9b);
            x = Vector512.Create(ap[10]);
            c10a = Avx512F.FusedMultiplyAdd(x, b0, c10a);
            c10b = Avx512F.FusedMultiplyAdd(x, b1, c10b);
            x = Vector512.Create(ap[11]);
            c11a = Avx512F.FusedMultiplyAdd(x, b0, c11a);
            c11b = Avx512F.FusedMultiplyAdd(x, b1, c11b);
            ap += 12;
            bp += 32;
        }
        if (update.C != null)
        {
            // A full tile goes straight to C (same arithmetic as StoreTile, 512 bits wide).
            var va = Vector512.Create(update.Alpha);
            var vb = Vector512.Create(update.Beta);
            float* d = update.C;
            Update(d, c0a, va, vb, update.Mode);
            Update(d + 16, c0b, va, vb, update.Mode);
            d += update.Ldc;
            Update(d, c1a, va, vb, update.Mode);
            Update(d + 16, c1b, va, vb, update.Mode);
            d += update.Ldc;
            Update(d, c2a, va, vb, update.Mode);
            Update(d + 16, c2b, va, vb, update.Mode);
            d += update.Ldc;
            Update(d, c3a, va, vb, update.Mode);
            Update(d + 16, c3b, va, vb, update.Mode);
            d += update.Ldc;
            Update(d, c4a, va, vb, update.Mode);
            Update(d + 16, c4b, va, vb, update.Mode);
            d += update.Ldc;
            Update(d, c5a, va, vb, update.Mode);
            Update(d + 16, c5b, va, vb, update.Mode);
            d += update.Ldc;
            Update(d, c6a, va, vb, update.Mode);
            Update(d + 16, c6b, va, vb, update.Mode);
            d += update.Ldc;
            Update(d, c7a, va, vb, update.Mode);
            Update(d + 16, c7b, va, vb, update.Mode);
            d += update.Ldc;
            Update(d, c8a, va, vb, update.Mode);
            Update(d + 16, c8b, va, vb, update.Mode);
            d += update.Ldc;
            Update(d, c9a, va, vb, update.Mode);
            Update(d + 16, c9b, va, vb, update.Mode);
            d += update.Ldc;
            Update(d, c10a, va, vb, update.Mode);
            Update(d + 16, c10b, va, vb, update.Mode);
            d += update.Ldc;
            Update(d, c11a, va, vb, update.Mode);
            Update(d + 16, c11b, va, vb, update.Mode);
            return;
        }
        c0a.Store(tile + 0);
        c0b.Store(tile + 16);
        c1a.Store(tile + 32);
        c1b.Store(tile + 48);
        c2a.Store(tile + 64);
        c2b.Store(tile + 80);
        c3a.Store(tile + 96);
        c3b.Store(tile + 112);
        c4a.Store(tile + 128);
        c4b.Store(tile + 144);
        c5a.Store(tile + 160);
        c5b.Store(tile + 176);
        c6a.Store(tile + 192);
        c6b.Store(tile + 208);
        c7a.Store(tile + 224);
        c7b.Store(tile + 240);
        c8a.Store(tile + 256);
        c8b.Store(tile + 272);
        c9a.Store(tile + 288);
        c9b.Store(tile + 304);
        c10a.Store(tile + 320);
        c10b.Store(tile + 336);
        c11a.Store(tile + 352);
        c11b.Store(tile + 368);
    }

    /// <summary>One 16-wide row piece of a full tile into C (also the small-m path's store).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Update(float* dst, Vector512<float> acc, Vector512<float> va,
        Vector512<float> vb, TileMode mode)
    {
        switch (mode)
        {
            case TileMode.Accumulate:
                (Vector512.Load(dst) + (va * acc)).Store(dst);
                break;
            case TileMode.Overwrite:
                (va * acc).Store(dst);
                break;
            default:
                ((va * acc) + (vb * Vector512.Load(dst))).Store(dst);
                break;
        }
    }

    /// <summary>6×16: 12 ymm accumulators + 2 B vectors + 1 broadcast of the 16 ymm registers.
    /// </summary>
    public static void Avx2(int kc, float* ap, float* bp, float* tile)
    {
        Vector256<float> c0a = default, c0b = default, c1a = default, c1b = default;
        Vector256<float> c2a = default, c2b = default, c3a = default, c3b = default;
        Vector256<float> c4a = default, c4b = default, c5a = default, c5b = default;
        for (int k = 0; k < kc; k++)
        {
            Vector256<float> b0 = Vector256.Load(bp), b1 = Vector256.Load(bp + 8);
            Vector256<float> x = Vector256.Create(ap[0]);
            c0a = Fma.MultiplyAdd(x, b0, c0a);
            c0b = Fma.MultiplyAdd(x, b1, c0b);
            x = Vector256.Create(ap[1]);
            c1a = Fma.MultiplyAdd(x, b0, c1a);
            c1b = Fma.MultiplyAdd(x, b1, c1b);
            x = Vector256.Create(ap[2]);
            c2a = Fma.MultiplyAdd(x, b0, c2a);
            c2b = Fma.MultiplyAdd(x, b1, c2b);
            x = Vector256.Create(ap[3]);
            c3a = Fma.MultiplyAdd(x, b0, c3a);
            c3b = Fma.MultiplyAdd(x, b1, c3b);
            x = Vector256.Create(ap[4]);
            c4a = Fma.MultiplyAdd(x, b0, c4a);
            c4b = Fma.MultiplyAdd(x, b1, c4b);
            x = Vector256.Create(ap[5]);
            c5a = Fma.MultiplyAdd(x, b0, c5a);
            c5b = Fma.MultiplyAdd(x, b1, c5b);
            ap += 6;
            bp += 16;
        }
        c0a.Store(tile + 0);
        c0b.Store(tile + 8);
        c1a.Store(tile + 16);
        c1b.Store(tile + 24);
        c2a.Store(tile + 32);
        c2b.Store(tile + 40);
        c3a.Store(tile + 48);
        c3b.Store(tile + 56);
        c4a.Store(tile + 64);
        c4b.Store(tile + 72);
        c5a.Store(tile + 80);
        c5b.Store(tile + 88);
    }

    /// <summary>4×8 in plain loops, for CPUs without AVX2+FMA.</summary>
    public static void Scalar(int kc, float* ap, float* bp, float* tile)
    {
        const int mr = 4, nr = 8;
        new Span<float>(tile, mr * nr).Clear();
        for (int k = 0; k < kc; k++)
        {
            for (int i = 0; i < mr; i++)
            {
                float x = ap[i];
                float* t = tile + (i * nr);
                for (int j = 0; j < nr; j++)
                {
                    t[j] = MathF.FusedMultiplyAdd(x, bp[j], t[j]);
                }
            }
            ap += mr;
            bp += nr;
        }
    }

    /// <summary>Runs <paramref name="kernel"/> on one strip and panel: into
    /// <paramref name="tile"/>, or, where the kernel can and <paramref name="update"/> names C,
    /// straight into C (then the tile is left as it was).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Run(GemmKernel kernel, int kc, float* ap, float* bp, float* tile,
        in TileUpdate update)
    {
        switch (kernel)
        {
            case GemmKernel.Avx512:
                Avx512(kc, ap, bp, tile, update);
                break;
            case GemmKernel.Avx2:
                Avx2(kc, ap, bp, tile);
                break;
            default:
                Scalar(kc, ap, bp, tile);
                break;
        }
    }

    /// <summary>
    /// Writes <paramref name="rows"/>×<paramref name="cols"/> of an accumulator tile
    /// (<paramref name="nr"/> wide) to C: <c>C = α·acc + β·C</c> for the first k block
    /// (<c>β = 0</c> never reads C, so C may hold NaNs), <c>C += α·acc</c> for later ones. The
    /// vector and tail loops do the same unfused operations, so an element's value does not
    /// depend on where its tile falls.
    /// </summary>
    public static void StoreTile(float* tile, int nr, float* c, long ldc, int rows, int cols,
        float alpha, float beta, bool firstBlock)
    {
        // TileUpdate.For and Update (the AVX-512 kernel's direct path) mirror these branches.
        var va = Vector256.Create(alpha);
        var vb = Vector256.Create(beta);
        for (int i = 0; i < rows; i++)
        {
            float* t = tile + (i * nr);
            float* dst = c + (i * ldc);
            int j = 0;
            if (!firstBlock || beta == 1f)
            {
                for (; j <= cols - 8; j += 8)
                {
                    (Vector256.Load(dst + j) + (va * Vector256.Load(t + j))).Store(dst + j);
                }
                for (; j < cols; j++)
                {
                    dst[j] += alpha * t[j];
                }
            }
            else if (beta == 0f)
            {
                for (; j <= cols - 8; j += 8)
                {
                    (va * Vector256.Load(t + j)).Store(dst + j);
                }
                for (; j < cols; j++)
                {
                    dst[j] = alpha * t[j];
                }
            }
            else
            {
                for (; j <= cols - 8; j += 8)
                {
                    ((va * Vector256.Load(t + j)) + (vb * Vector256.Load(dst + j))).Store(dst + j);
                }
                for (; j < cols; j++)
                {
                    dst[j] = (alpha * t[j]) + (beta * dst[j]);
                }
            }
        }
    }
}

/// <summary>How a k block's accumulators enter C.</summary>
internal enum TileMode
{
    /// <summary><c>C += α·acc</c> (later k blocks, or β = 1).</summary>
    Accumulate,

    /// <summary><c>C = α·acc</c> (first k block, β = 0: C is not read).</summary>
    Overwrite,

    /// <summary><c>C = α·acc + β·C</c> (first k block).</summary>
    Scale,
}

/// <summary>Where a micro-kernel may write a full tile directly: C at the tile (null: use the
/// tile buffer), its row stride, α, β and the mode.</summary>
internal readonly unsafe struct TileUpdate(float* c, long ldc, float alpha, float beta, bool firstBlock)
{
    public float* C { get; } = c;

    public long Ldc { get; } = ldc;

    public float Alpha { get; } = alpha;

    public float Beta { get; } = beta;

    public TileMode Mode { get; } = !firstBlock || beta == 1f ? TileMode.Accumulate
        : beta == 0f ? TileMode.Overwrite : TileMode.Scale;
}
