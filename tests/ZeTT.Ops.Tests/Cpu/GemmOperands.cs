using System.Runtime.InteropServices;
using ZeTT.Ops.Cpu;

namespace ZeTT.Ops.Tests.Cpu;

/// <summary>A random matrix stored as fp32, bf16 or fp16 bits on the pinned heap, with the exact
/// values those bits hold (for the float64 reference).</summary>
internal sealed unsafe class StoredMatrix
{
    private readonly Array _storage;
    private readonly GCHandle _pin;

    public StoredMatrix(GemmType type, int rows, int cols, long ld, int seed, double scale = 1)
    {
        Type = type;
        Rows = rows;
        Cols = cols;
        Ld = ld;
        long count = Math.Max(1, (rows - 1) * ld + cols);
        var rng = new Random(seed);
        Values = new double[count];
        switch (type)
        {
            case GemmType.F32:
                var f = new float[count];
                for (long i = 0; i < count; i++)
                {
                    f[i] = (float)(((rng.NextDouble() * 2) - 1) * scale);
                    Values[i] = f[i];
                }
                _storage = f;
                break;
            case GemmType.BF16:
                var b = new ushort[count];
                for (long i = 0; i < count; i++)
                {
                    float v = (float)(((rng.NextDouble() * 2) - 1) * scale);
                    b[i] = (ushort)(BitConverter.SingleToUInt32Bits(v) >> 16);
                    Values[i] = BitConverter.UInt32BitsToSingle((uint)b[i] << 16);
                }
                _storage = b;
                break;
            default:
                var h = new Half[count];
                for (long i = 0; i < count; i++)
                {
                    h[i] = (Half)(((rng.NextDouble() * 2) - 1) * scale);
                    Values[i] = (double)h[i];
                }
                _storage = h;
                break;
        }
        _pin = GCHandle.Alloc(_storage, GCHandleType.Pinned);
    }

    public GemmType Type { get; }

    public int Rows { get; }

    public int Cols { get; }

    public long Ld { get; }

    /// <summary>The stored values, exactly, at their storage offsets.</summary>
    public double[] Values { get; }

    public void* Pointer => (void*)_pin.AddrOfPinnedObject();

    public double this[int r, int c] => Values[(r * Ld) + c];
}

/// <summary>The float64 scalar reference and the error bound the tests hold the GEMM to.</summary>
internal static class GemmReference
{
    /// <summary>
    /// <c>α·op(A)·op(B) + β·C₀</c> in float64, and per element the worst-case rounding bound of
    /// an fp32 evaluation: <c>(k + 3)·2⁻²⁴·(|α|·Σ|a||b| + |β·c₀|)</c> (k FMAs, one α scaling,
    /// one β product, one final add; any k-block split stays within it). A wrong element,
    /// block or transpose misses by orders of magnitude more at these k.
    /// </summary>
    public static (double[] Expected, double[] Bound) Compute(bool transA, bool transB, int m,
        int n, int k, float alpha, StoredMatrix a, StoredMatrix b, float beta, float[] c0, long ldc)
    {
        var expected = new double[m * n];
        var bound = new double[m * n];
        double u = Math.Pow(2, -24);
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < n; j++)
            {
                double s = 0, abs = 0;
                for (int p = 0; p < k; p++)
                {
                    double x = transA ? a[p, i] : a[i, p];
                    double y = transB ? b[j, p] : b[p, j];
                    s += x * y;
                    abs += Math.Abs(x * y);
                }
                double cOld = beta == 0 ? 0 : (double)beta * c0[(i * ldc) + j];
                expected[(i * n) + j] = (alpha * s) + cOld;
                bound[(i * n) + j] = (k + 3) * u * ((Math.Abs(alpha) * abs) + Math.Abs(cOld))
                    + float.Epsilon;
            }
        }
        return (expected, bound);
    }
}
