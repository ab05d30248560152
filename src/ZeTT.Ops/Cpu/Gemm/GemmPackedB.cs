using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace ZeTT.Ops.Cpu;

/// <summary>
/// op(B) <c>[K, N]</c> packed once for one micro-kernel (a layer's weight that many GEMMs
/// reuse): <c>N/NR</c> column panels, each <c>[K][NR]</c> fp32, the last zero-padded; 64-byte
/// aligned on the pinned heap so the kernels keep raw pointers. <see cref="CpuGemm"/> reads it
/// in place of packing B per call.
/// </summary>
internal sealed unsafe class GemmPackedB
{
    private readonly float[] _storage;
    private readonly int _offset;

    /// <summary>An all-zero packing of a <c>[k, n]</c> op(B) for <paramref name="kernel"/>; fill
    /// it with <see cref="Pack"/>.</summary>
    public GemmPackedB(GemmKernel kernel, int n, int k)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        ArgumentOutOfRangeException.ThrowIfNegative(k);
        Kernel = kernel;
        N = n;
        K = k;
        NR = GemmKernels.NR(kernel);
        long floats = (long)Panels * k * NR;
        _storage = GC.AllocateArray<float>(checked((int)(floats + 16)), pinned: true);
        nint address = (nint)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_storage));
        _offset = (int)(((64 - (address & 63)) & 63) / sizeof(float));
    }

    /// <summary>The micro-kernel the layout is for.</summary>
    public GemmKernel Kernel { get; }

    /// <summary>Columns of op(B) (a Linear layer's output features).</summary>
    public int N { get; }

    /// <summary>Depth (a Linear layer's input features).</summary>
    public int K { get; }

    /// <summary>Panel width.</summary>
    public int NR { get; }

    /// <summary>Number of column panels.</summary>
    public int Panels => (N + NR - 1) / NR;

    /// <summary>Panel <c>p</c> starts at <c>Data + p·K·NR</c>.</summary>
    public float* Data => (float*)Unsafe.AsPointer(ref _storage[_offset]);

    /// <summary>
    /// Packs columns <c>[col0, col0 + cols)</c> of op(B) from <paramref name="b"/>: with
    /// <paramref name="transposed"/> (a Linear weight, <c>[out, in]</c>) <paramref name="b"/>
    /// holds those columns as <paramref name="cols"/> rows of K elements,
    /// <paramref name="ldb"/> apart; otherwise it holds K rows of <paramref name="cols"/>.
    /// </summary>
    public void Pack(int col0, int cols, void* b, GemmType type, long ldb, bool transposed)
    {
        if (col0 < 0 || cols < 0 || col0 + cols > N)
        {
            throw new ArgumentOutOfRangeException(nameof(cols),
                $"columns [{col0}, {col0 + cols}) outside [0, {N})");
        }
        var x = new GemmOperand(b, type, ldb, transposed);
        for (int c = col0; c < col0 + cols;)
        {
            int panel = c / NR, lane = c % NR, count = Math.Min(NR - lane, col0 + cols - c);
            GemmPacking.PackPanel(x, transposed, c - col0, count, 0, K,
                Data + ((long)panel * K * NR), NR, lane);
            c += count;
        }
    }

    /// <summary>Rounds every packed value to bf16 precision.</summary>
    public void RoundToBf16() => GemmPacking.RoundToBf16(Data, (long)Panels * K * NR);
}
