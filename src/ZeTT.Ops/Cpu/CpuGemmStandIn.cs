using System.Runtime.CompilerServices;

namespace ZeTT.Ops.Cpu;

/// <summary>Storage types of GEMM operands.</summary>
public enum GemmType
{
    /// <summary>IEEE binary32.</summary>
    F32,
    /// <summary>bfloat16 bits.</summary>
    BF16,
    /// <summary>IEEE binary16 bits.</summary>
    F16,
}

/// <summary>A plain stand-in with the CPU GEMM's signature (rows in parallel, no blocking),
/// replaced by the packed SIMD GEMM.</summary>
public static unsafe class CpuGemm
{
    /// <summary>C[m,n] = alpha · op(A)[m,k] · op(B)[k,n] + beta · C, row-major; op(X) = X or
    /// Xᵀ (transA: A stored [k,m]; transB: B stored [n,k]); fp32 accumulation.</summary>
    public static void Gemm(bool transA, bool transB, int m, int n, int k, float alpha,
        void* a, GemmType aType, long lda, void* b, GemmType bType, long ldb,
        float beta, float* c, long ldc)
    {
        nint pa = (nint)a, pb = (nint)b, pc = (nint)c;
        Parallel.For(0, m, i =>
        {
            var row = new float[k];
            var col = new float[k];
            for (int p = 0; p < k; p++)
            {
                row[p] = Load((void*)pa, aType, transA ? p * lda + i : i * lda + p);
            }
            float* ci = (float*)pc + i * ldc;
            for (int j = 0; j < n; j++)
            {
                for (int p = 0; p < k; p++)
                {
                    col[p] = Load((void*)pb, bType, transB ? j * ldb + p : p * ldb + j);
                }
                float dot = System.Numerics.Tensors.TensorPrimitives.Dot(row, col);
                ci[j] = alpha * dot + (beta == 0f ? 0f : beta * ci[j]);
            }
        });
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Load(void* p, GemmType type, long index) => type switch
    {
        GemmType.F32 => ((float*)p)[index],
        GemmType.BF16 => BFloat16.ToFloat(((ushort*)p)[index]),
        _ => (float)((Half*)p)[index],
    };
}
