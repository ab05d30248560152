using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace ZeTT.Ops.Cpu;

/// <summary>The register-tiled micro-kernels <see cref="CpuGemm"/> can run. Every kernel computes
/// each output element as the same chain of fused multiply-adds over k (in blocks of
/// <see cref="CpuGemm.KC"/>), so all three give bit-identical results.</summary>
internal enum GemmKernel
{
    /// <summary>Plain loops with <see cref="MathF.FusedMultiplyAdd"/> (any CPU).</summary>
    Scalar,

    /// <summary>6×16 tile in 12 Vector256 accumulators (AVX2 + FMA).</summary>
    Avx2,

    /// <summary>12×32 tile in 24 Vector512 accumulators (AVX-512F).</summary>
    Avx512,
}

/// <summary>Tile and block sizes of each micro-kernel, and which ones this CPU runs.</summary>
internal static class GemmKernels
{
    /// <summary>The fastest kernel this CPU supports.</summary>
    public static GemmKernel Best { get; } = IsSupported(GemmKernel.Avx512) ? GemmKernel.Avx512
        : IsSupported(GemmKernel.Avx2) ? GemmKernel.Avx2 : GemmKernel.Scalar;

    /// <summary>True when <paramref name="kernel"/> runs on this CPU (with hardware FMA).</summary>
    public static bool IsSupported(GemmKernel kernel) => kernel switch
    {
        GemmKernel.Avx512 => Avx512F.IsSupported && Vector512.IsHardwareAccelerated,
        GemmKernel.Avx2 => Avx2.IsSupported && Fma.IsSupported,
        _ => true,
    };

    /// <summary>Rows of the register tile (of packed A strips).</summary>
    public static int MR(GemmKernel kernel) => kernel switch
    {
        GemmKernel.Avx512 => 12,
        GemmKernel.Avx2 => 6,
        _ => 4,
    };

    /// <summary>Columns of the register tile (of packed B panels).</summary>
    public static int NR(GemmKernel kernel) => kernel switch
    {
        GemmKernel.Avx512 => 32,
        GemmKernel.Avx2 => 16,
        _ => 8,
    };

    /// <summary>Largest row block of A one task packs: MC·KC·4 B (192 KB for AVX-512, 144 KB
    /// for AVX2) stays in a core's L2 while B micro-panels (KC·NR·4 B, 32 KB / 16 KB) stream
    /// from L1.</summary>
    public static int MCMax(GemmKernel kernel) => kernel switch
    {
        GemmKernel.Avx512 => 192,
        GemmKernel.Avx2 => 144,
        _ => 64,
    };
}
