using ZeTT.Kernels.Native;

namespace ZeTT.Kernels.Blas;

/// <summary>Which library runs a GEMM.</summary>
public enum GemmEngine
{
    /// <summary>cublasLtMatmul with a cached heuristic plan (the production path).</summary>
    CublasLt,

    /// <summary>cublasGemmEx / cublasGemmStridedBatchedEx.</summary>
    Cublas,
}

/// <summary>The activation a fused GEMM applies after the bias (cuBLASLt epilogues). GELU
/// with erf is not among them: cuBLASLt's GELU epilogue is the tanh approximation.</summary>
public enum GemmActivation
{
    /// <summary>No activation.</summary>
    None,

    /// <summary>max(x, 0) (CUBLASLT_EPILOGUE_RELU).</summary>
    Relu,

    /// <summary>GELU, tanh approximation (CUBLASLT_EPILOGUE_GELU).</summary>
    GeluTanh,
}

/// <summary>
/// The one row-major GEMM of the project:
/// <c>C[m, n] = alpha · op(A)[m, k] · op(B)[k, n] + beta · C</c>, with op(A) = A [m, k] or, when
/// <c>transA</c>, Aᵀ for A stored [k, m]; op(B) = B [k, n] or, when <c>transB</c>, Bᵀ for B
/// stored [n, k] (so <c>Gemm(x, W, transB: true)</c> is PyTorch's <c>x·Wᵀ</c> for a Linear
/// weight W [out, in], and <c>transA</c> gives a weight gradient <c>dyᵀ·x</c>). Leading
/// dimensions are row strides (elements between consecutive rows) of the row-major matrices as
/// stored.
/// <para>
/// cuBLAS is column-major. A row-major matrix with row stride ld is, read column-major with the
/// same ld, its transpose. So row-major C = op(A)·op(B) is computed as column-major
/// Cᵀ = op(B)ᵀ·op(A)ᵀ: swap the operands, m ↔ n, pass B with trans = transB ? T : N and A with
/// trans = transA ? T : N, and keep each leading dimension.
/// <c>ToColumnMajor(transA, transB, …)</c> is that mapping, tested on the CPU against a naive
/// column-major GEMM.
/// </para>
/// A and B are both F32 or both BF16; C is F32, or BF16 for BF16 inputs (then beta·C reads the
/// bf16 C); accumulation is fp32 (CUBLAS_COMPUTE_32F, which never uses TF32, so the F32 path is
/// true fp32).
/// </summary>
public static class Gemm
{
    /// <summary>Queues <c>C = alpha·A·op(B) + beta·C</c> on the handle's stream.</summary>
    public static unsafe void Run(BlasHandle blas, int m, int n, int k, DeviceView a, int lda,
        DeviceView b, int ldb, bool transB, DeviceView c, int ldc, float alpha = 1f,
        float beta = 0f, GemmEngine engine = GemmEngine.CublasLt)
    {
        ArgumentNullException.ThrowIfNull(blas);
        RunCore(blas, false, transB, m, n, k, a, lda, 0, b, ldb, 0, c, ldc, 0, 1, alpha, beta,
            engine);
    }

    /// <summary>Queues <c>C = alpha·op(A)·op(B) + beta·C</c> on the handle's stream (the
    /// argument order of the CPU GEMM).</summary>
    public static void Run(BlasHandle blas, bool transA, bool transB, int m, int n, int k,
        DeviceView a, int lda, DeviceView b, int ldb, DeviceView c, int ldc, float alpha = 1f,
        float beta = 0f, GemmEngine engine = GemmEngine.CublasLt)
    {
        ArgumentNullException.ThrowIfNull(blas);
        RunCore(blas, transA, transB, m, n, k, a, lda, 0, b, ldb, 0, c, ldc, 0, 1, alpha, beta,
            engine);
    }

    /// <summary>Queues <paramref name="batch"/> independent GEMMs whose operands lie
    /// <c>stride*</c> elements apart (strided-batched).</summary>
    public static void RunBatched(BlasHandle blas, int m, int n, int k, DeviceView a,
        int lda, long strideA, DeviceView b, int ldb, long strideB, bool transB, DeviceView c,
        int ldc, long strideC, int batch, float alpha = 1f, float beta = 0f,
        GemmEngine engine = GemmEngine.CublasLt)
    {
        ArgumentNullException.ThrowIfNull(blas);
        RunCore(blas, false, transB, m, n, k, a, lda, strideA, b, ldb, strideB, c, ldc, strideC,
            batch, alpha, beta, engine);
    }

    /// <summary>
    /// Queues <c>C = act(A·op(B) + bias)</c> as one cublasLtMatmul with an epilogue (bias: one
    /// value per column of C, F32 or BF16, or <c>default</c> for none; alpha 1, beta 0), so C is
    /// written once instead of being pre-filled with the bias and re-read by an activation pass.
    /// Returns false, having queued nothing, when the fused form is not available here: a bias
    /// not 16-byte aligned, or no cuBLASLt algorithm for this epilogue, shape and dtypes (the
    /// heuristic answers CUBLAS_STATUS_NOT_SUPPORTED or finds none; remembered per shape) —
    /// the caller then runs the unfused path. Every other cuBLASLt error throws.
    /// </summary>
    public static unsafe bool TryRunFused(BlasHandle blas, bool transB, int m, int n, int k,
        DeviceView a, int lda, DeviceView b, int ldb, DeviceView c, int ldc, DeviceView bias,
        GemmActivation activation)
    {
        ArgumentNullException.ThrowIfNull(blas);
        Validate(false, m, n, k, a, lda, 0, b, ldb, 0, transB, c, ldc, 0, 1);
        ulong biasAddress = Launch.LaunchChecks.Optional("gemm", bias, nameof(bias), n,
            KernelDType.F32, KernelDType.BF16);
        CublasLtEpilogue epilogue = Epilogue(biasAddress != 0, activation);
        if (biasAddress % 16 != 0)
        {
            return false;
        }
        ColumnMajorGemm g = ToColumnMajor(false, transB, m, n, k, a.Address, lda, b.Address,
            ldb, c.Address, ldc);
        CudaDataType type = a.DType == KernelDType.BF16 ? CudaDataType.R16BF : CudaDataType.R32F;
        CudaDataType outType = c.DType == KernelDType.BF16 ? CudaDataType.R16BF
            : CudaDataType.R32F;
        CudaDataType biasType = biasAddress == 0 ? outType
            : bias.DType == KernelDType.BF16 ? CudaDataType.R16BF : CudaDataType.R32F;
        var key = new LtKey(g.TransA, g.TransB, g.M, g.N, g.K, type, outType, g.Lda, g.Ldb,
            g.Ldc, 1, 0, 0, 0, Alignment(g.A), Alignment(g.B), Alignment(g.C), epilogue,
            biasType);
        LtPlan? plan = blas.TryGetPlan(key);
        if (plan is null)
        {
            return false;
        }
        if (biasAddress != 0)
        {
            // The bias pointer is read when the matmul is queued, so the cached descriptor can
            // take each call's bias.
            Cublas.Check(CublasLt.cublasLtMatmulDescSetAttribute(plan.Desc,
                CublasLtMatmulDescAttribute.BiasPointer, &biasAddress, sizeof(ulong)));
        }
        float alpha = 1f, beta = 0f;
        CublasLtMatmulAlgo algo = plan.Algo;
        Cublas.Check(CublasLt.cublasLtMatmul(blas.Lt, plan.Desc, &alpha, g.A, plan.A, g.B,
            plan.B, &beta, g.C, plan.C, g.C, plan.C, &algo, blas.Workspace.Address,
            plan.WorkspaceSize, blas.Stream.Handle));
        return true;
    }

    /// <summary>The cuBLASLt epilogue for a bias (or none) and an activation.</summary>
    internal static CublasLtEpilogue Epilogue(bool bias, GemmActivation activation) =>
        (bias, activation) switch
        {
            (false, GemmActivation.None) => CublasLtEpilogue.Default,
            (true, GemmActivation.None) => CublasLtEpilogue.Bias,
            (false, GemmActivation.Relu) => CublasLtEpilogue.Relu,
            (true, GemmActivation.Relu) => CublasLtEpilogue.ReluBias,
            (false, GemmActivation.GeluTanh) => CublasLtEpilogue.Gelu,
            (true, GemmActivation.GeluTanh) => CublasLtEpilogue.GeluBias,
            _ => throw new ArgumentOutOfRangeException(nameof(activation), activation,
                "gemm: unknown activation"),
        };

    private static unsafe void RunCore(BlasHandle blas, bool transA, bool transB, int m, int n,
        int k, DeviceView a, int lda, long strideA, DeviceView b, int ldb, long strideB,
        DeviceView c, int ldc, long strideC, int batch, float alpha, float beta,
        GemmEngine engine)
    {
        Validate(transA, m, n, k, a, lda, strideA, b, ldb, strideB, transB, c, ldc, strideC,
            batch);
        ColumnMajorGemm g = ToColumnMajor(transA, transB, m, n, k, a.Address, lda, b.Address,
            ldb, c.Address, ldc);
        CudaDataType type = a.DType == KernelDType.BF16 ? CudaDataType.R16BF : CudaDataType.R32F;
        CudaDataType outType = c.DType == KernelDType.BF16 ? CudaDataType.R16BF
            : CudaDataType.R32F;
        if (engine == GemmEngine.Cublas)
        {
            if (batch == 1)
            {
                Cublas.Check(Cublas.cublasGemmEx(blas.CublasHandle, g.TransA, g.TransB,
                    g.M, g.N, g.K, &alpha, g.A, type, g.Lda, g.B, type, g.Ldb, &beta, g.C,
                    outType, g.Ldc, CublasComputeType.Compute32F, CublasGemmAlgo.Default));
            }
            else
            {
                Cublas.Check(Cublas.cublasGemmStridedBatchedEx(blas.CublasHandle, g.TransA,
                    g.TransB, g.M, g.N, g.K, &alpha, g.A, type, g.Lda, strideB, g.B,
                    type, g.Ldb, strideA, &beta, g.C, outType, g.Ldc, strideC, batch,
                    CublasComputeType.Compute32F, CublasGemmAlgo.Default));
            }
            return;
        }
        var key = new LtKey(g.TransA, g.TransB, g.M, g.N, g.K, type, outType, g.Lda, g.Ldb,
            g.Ldc, batch, strideB, strideA, strideC, Alignment(g.A), Alignment(g.B),
            Alignment(g.C));
        LtPlan plan = blas.GetPlan(key);
        CublasLtMatmulAlgo algo = plan.Algo;
        Cublas.Check(CublasLt.cublasLtMatmul(blas.Lt, plan.Desc, &alpha, g.A, plan.A, g.B,
            plan.B, &beta, g.C, plan.C, g.C, plan.C, &algo, blas.Workspace.Address,
            plan.WorkspaceSize, blas.Stream.Handle));
    }

    /// <summary>Largest power of two up to 256 dividing the address (cuBLASLt's alignment
    /// preference; the heuristic otherwise assumes 256).</summary>
    internal static int Alignment(ulong address)
    {
        int align = 256;
        while (align > 1 && address % (ulong)align != 0)
        {
            align >>= 1;
        }
        return align;
    }

    /// <summary>Checks shapes, dtypes, alignment and that every operand holds what the row
    /// strides reach; throws <see cref="ArgumentException"/> naming the operand.</summary>
    internal static void Validate(int m, int n, int k, DeviceView a, int lda, long strideA,
        DeviceView b, int ldb, long strideB, bool transB, DeviceView c, int ldc, long strideC,
        int batch) =>
        Validate(false, m, n, k, a, lda, strideA, b, ldb, strideB, transB, c, ldc, strideC,
            batch);

    /// <summary>As above, with A stored [k, m] when <paramref name="transA"/>.</summary>
    internal static void Validate(bool transA, int m, int n, int k, DeviceView a, int lda,
        long strideA, DeviceView b, int ldb, long strideB, bool transB, DeviceView c, int ldc,
        long strideC, int batch)
    {
        const string g = "gemm";
        Launch.LaunchChecks.Positive(g, m, nameof(m));
        Launch.LaunchChecks.Positive(g, n, nameof(n));
        Launch.LaunchChecks.Positive(g, k, nameof(k));
        Launch.LaunchChecks.Positive(g, batch, nameof(batch));
        int aRows = transA ? k : m, aCols = transA ? m : k;
        int bRows = transB ? n : k, bCols = transB ? k : n;
        Operand(g, a, nameof(a), aRows, aCols, lda, strideA, batch, KernelDType.F32,
            KernelDType.BF16);
        Operand(g, b, nameof(b), bRows, bCols, ldb, strideB, batch, a.DType);
        if (a.DType == KernelDType.BF16)
        {
            Operand(g, c, nameof(c), m, n, ldc, strideC, batch, KernelDType.F32,
                KernelDType.BF16);
        }
        else
        {
            Operand(g, c, nameof(c), m, n, ldc, strideC, batch, KernelDType.F32);
        }
    }

    private static void Operand(string g, DeviceView v, string name, int rows, int cols, int ld,
        long stride, int batch, params KernelDType[] types)
    {
        if (ld < cols)
        {
            throw new ArgumentException($"{g}: leading dimension of {name} is {ld}, less than "
                + $"its {cols} columns", name);
        }
        long last = (long)(rows - 1) * ld + cols;
        Launch.LaunchChecks.View(g, v, name, (batch - 1) * stride + last, types);
        if (batch > 1 && stride < last)
        {
            throw new ArgumentException($"{g}: batch stride of {name} ({stride}) is smaller than "
                + $"one matrix ({last} elements)", name);
        }
    }

    /// <summary>The column-major problem cuBLAS solves for a row-major GEMM.</summary>
    internal static ColumnMajorGemm ToColumnMajor(int m, int n, int k, ulong a, int lda,
        ulong b, int ldb, bool transB, ulong c, int ldc) =>
        ToColumnMajor(false, transB, m, n, k, a, lda, b, ldb, c, ldc);

    /// <summary>The column-major problem for row-major <c>C = op(A)·op(B)</c>: the row-major B
    /// becomes cuBLAS's first operand (transposed iff transB), A its second (iff transA).
    /// </summary>
    internal static ColumnMajorGemm ToColumnMajor(bool transA, bool transB, int m, int n, int k,
        ulong a, int lda, ulong b, int ldb, ulong c, int ldc) =>
        new(transB ? CublasOperation.T : CublasOperation.N,
            transA ? CublasOperation.T : CublasOperation.N, n, m, k, b, ldb, a, lda, c, ldc);
}

/// <summary>cuBLAS arguments: C (m×n) = op(A)·op(B), all column-major.</summary>
internal readonly record struct ColumnMajorGemm(CublasOperation TransA, CublasOperation TransB,
    int M, int N, int K, ulong A, int Lda, ulong B, int Ldb, ulong C, int Ldc);
