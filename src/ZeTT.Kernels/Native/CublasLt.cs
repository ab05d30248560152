using System.Runtime.InteropServices;

namespace ZeTT.Kernels.Native;

/// <summary>cuBLASLt (cublasLt.h), the subset the project uses. Names as in the header.
/// Statuses are cublasStatus_t and go through <see cref="Cublas.Check"/>.</summary>
internal static partial class CublasLt
{
    static CublasLt() => NativeLibraries.Register();

    [LibraryImport(NativeLibraries.CublasLt)]
    public static partial CublasStatus cublasLtCreate(out IntPtr handle);

    [LibraryImport(NativeLibraries.CublasLt)]
    public static partial CublasStatus cublasLtDestroy(IntPtr handle);

    [LibraryImport(NativeLibraries.CublasLt)]
    public static partial CublasStatus cublasLtMatmulDescCreate(out IntPtr desc,
        CublasComputeType computeType, CudaDataType scaleType);

    [LibraryImport(NativeLibraries.CublasLt)]
    public static partial CublasStatus cublasLtMatmulDescDestroy(IntPtr desc);

    [LibraryImport(NativeLibraries.CublasLt)]
    public static unsafe partial CublasStatus cublasLtMatmulDescSetAttribute(IntPtr desc,
        CublasLtMatmulDescAttribute attribute, void* buffer, nuint bytes);

    [LibraryImport(NativeLibraries.CublasLt)]
    public static partial CublasStatus cublasLtMatrixLayoutCreate(out IntPtr layout,
        CudaDataType type, ulong rows, ulong cols, long ld);

    [LibraryImport(NativeLibraries.CublasLt)]
    public static partial CublasStatus cublasLtMatrixLayoutDestroy(IntPtr layout);

    [LibraryImport(NativeLibraries.CublasLt)]
    public static unsafe partial CublasStatus cublasLtMatrixLayoutSetAttribute(IntPtr layout,
        CublasLtMatrixLayoutAttribute attribute, void* buffer, nuint bytes);

    [LibraryImport(NativeLibraries.CublasLt)]
    public static partial CublasStatus cublasLtMatmulPreferenceCreate(out IntPtr preference);

    [LibraryImport(NativeLibraries.CublasLt)]
    public static partial CublasStatus cublasLtMatmulPreferenceDestroy(IntPtr preference);

    [LibraryImport(NativeLibraries.CublasLt)]
    public static unsafe partial CublasStatus cublasLtMatmulPreferenceSetAttribute(
        IntPtr preference, CublasLtMatmulPreferenceAttribute attribute, void* buffer,
        nuint bytes);

    [LibraryImport(NativeLibraries.CublasLt)]
    public static unsafe partial CublasStatus cublasLtMatmulAlgoGetHeuristic(IntPtr handle,
        IntPtr operationDesc, IntPtr aDesc, IntPtr bDesc, IntPtr cDesc, IntPtr dDesc,
        IntPtr preference, int requestedAlgoCount, CublasLtMatmulHeuristicResult* results,
        out int returnAlgoCount);

    [LibraryImport(NativeLibraries.CublasLt)]
    public static unsafe partial CublasStatus cublasLtMatmul(IntPtr handle, IntPtr computeDesc,
        void* alpha, ulong a, IntPtr aDesc, ulong b, IntPtr bDesc, void* beta,
        ulong c, IntPtr cDesc, ulong d, IntPtr dDesc, CublasLtMatmulAlgo* algo,
        ulong workspace, nuint workspaceBytes, IntPtr stream);
}

/// <summary>cublasLtMatmulDescAttributes_t values used.</summary>
internal enum CublasLtMatmulDescAttribute
{
    TransA = 3,
    TransB = 4,

    /// <summary>CUBLASLT_MATMUL_DESC_EPILOGUE, a uint32_t <see cref="CublasLtEpilogue"/>.
    /// </summary>
    Epilogue = 7,

    /// <summary>CUBLASLT_MATMUL_DESC_BIAS_POINTER, a device pointer.</summary>
    BiasPointer = 8,

    /// <summary>CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, an int32_t cudaDataType.</summary>
    BiasDataType = 26,
}

/// <summary>cublasLtEpilogue_t values used. The bias is a vector over the rows of the
/// column-major D (one value per output feature of a row-major Linear). cuBLASLt's GELU is the
/// tanh approximation.</summary>
internal enum CublasLtEpilogue : uint
{
    Default = 1,
    Relu = 2,
    Bias = 4,
    ReluBias = 6,
    Gelu = 32,
    GeluBias = 36,
}

/// <summary>cublasLtMatrixLayoutAttribute_t values used.</summary>
internal enum CublasLtMatrixLayoutAttribute
{
    BatchCount = 5,
    StridedBatchOffset = 6,
}

/// <summary>cublasLtMatmulPreferenceAttributes_t values used.</summary>
internal enum CublasLtMatmulPreferenceAttribute
{
    MaxWorkspaceBytes = 1,
    MinAlignmentABytes = 5,
    MinAlignmentBBytes = 6,
    MinAlignmentCBytes = 7,
    MinAlignmentDBytes = 8,
}

/// <summary>cublasLtMatmulAlgo_t: 8 opaque 64-bit words.</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct CublasLtMatmulAlgo
{
    public fixed ulong Data[8];
}

/// <summary>cublasLtMatmulHeuristicResult_t (96 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct CublasLtMatmulHeuristicResult
{
    public CublasLtMatmulAlgo Algo;
    public nuint WorkspaceSize;
    public CublasStatus State;
    public float WavesCount;
    public fixed int Reserved[4];
}
