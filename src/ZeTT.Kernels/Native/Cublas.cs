using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace ZeTT.Kernels.Native;

/// <summary>cuBLAS (cublas_api.h), the subset the project uses. Names as in the header.</summary>
internal static partial class Cublas
{
    static Cublas() => NativeLibraries.Register();

    [LibraryImport(NativeLibraries.Cublas, EntryPoint = "cublasCreate_v2")]
    public static partial CublasStatus cublasCreate(out IntPtr handle);

    [LibraryImport(NativeLibraries.Cublas, EntryPoint = "cublasDestroy_v2")]
    public static partial CublasStatus cublasDestroy(IntPtr handle);

    [LibraryImport(NativeLibraries.Cublas, EntryPoint = "cublasSetStream_v2")]
    public static partial CublasStatus cublasSetStream(IntPtr handle, IntPtr stream);

    [LibraryImport(NativeLibraries.Cublas, EntryPoint = "cublasSetWorkspace_v2")]
    public static partial CublasStatus cublasSetWorkspace(IntPtr handle, ulong workspace,
        nuint bytes);

    [LibraryImport(NativeLibraries.Cublas)]
    public static partial CublasStatus cublasSetMathMode(IntPtr handle, CublasMath mode);

    [LibraryImport(NativeLibraries.Cublas)]
    public static unsafe partial CublasStatus cublasGemmEx(IntPtr handle,
        CublasOperation transa, CublasOperation transb, int m, int n, int k,
        void* alpha, ulong a, CudaDataType aType, int lda,
        ulong b, CudaDataType bType, int ldb,
        void* beta, ulong c, CudaDataType cType, int ldc,
        CublasComputeType computeType, CublasGemmAlgo algo);

    [LibraryImport(NativeLibraries.Cublas)]
    public static unsafe partial CublasStatus cublasGemmStridedBatchedEx(IntPtr handle,
        CublasOperation transa, CublasOperation transb, int m, int n, int k,
        void* alpha, ulong a, CudaDataType aType, int lda, long strideA,
        ulong b, CudaDataType bType, int ldb, long strideB,
        void* beta, ulong c, CudaDataType cType, int ldc, long strideC,
        int batchCount, CublasComputeType computeType, CublasGemmAlgo algo);

    /// <summary>The status's name as the header spells it.</summary>
    public static string StatusName(CublasStatus status) => status switch
    {
        CublasStatus.Success => "CUBLAS_STATUS_SUCCESS",
        CublasStatus.NotInitialized => "CUBLAS_STATUS_NOT_INITIALIZED",
        CublasStatus.AllocFailed => "CUBLAS_STATUS_ALLOC_FAILED",
        CublasStatus.InvalidValue => "CUBLAS_STATUS_INVALID_VALUE",
        CublasStatus.ArchMismatch => "CUBLAS_STATUS_ARCH_MISMATCH",
        CublasStatus.MappingError => "CUBLAS_STATUS_MAPPING_ERROR",
        CublasStatus.ExecutionFailed => "CUBLAS_STATUS_EXECUTION_FAILED",
        CublasStatus.InternalError => "CUBLAS_STATUS_INTERNAL_ERROR",
        CublasStatus.NotSupported => "CUBLAS_STATUS_NOT_SUPPORTED",
        CublasStatus.LicenseError => "CUBLAS_STATUS_LICENSE_ERROR",
        _ => $"cublasStatus_t {(int)status}",
    };

    /// <summary>Throws <see cref="CublasException"/> (or <see cref="CudaOutOfMemoryException"/>
    /// for CUBLAS_STATUS_ALLOC_FAILED) unless <paramref name="status"/> is success.</summary>
    public static void Check(CublasStatus status,
        [CallerArgumentExpression(nameof(status))] string expression = "")
    {
        if (status != CublasStatus.Success)
        {
            throw CublasException.From(status, expression);
        }
    }
}

/// <summary>cublasStatus_t.</summary>
internal enum CublasStatus
{
    Success = 0,
    NotInitialized = 1,
    AllocFailed = 3,
    InvalidValue = 7,
    ArchMismatch = 8,
    MappingError = 11,
    ExecutionFailed = 13,
    InternalError = 14,
    NotSupported = 15,
    LicenseError = 16,
}

/// <summary>cublasOperation_t.</summary>
internal enum CublasOperation
{
    N = 0,
    T = 1,
}

/// <summary>cublasMath_t values used.</summary>
internal enum CublasMath
{
    /// <summary>Tensor cores where the compute type allows; fp32 with CUBLAS_COMPUTE_32F does
    /// not use TF32 in this mode.</summary>
    Default = 0,
    Pedantic = 2,
}

/// <summary>cudaDataType_t values used (library_types.h).</summary>
internal enum CudaDataType
{
    R32F = 0,
    R16F = 2,
    R16BF = 14,
}

/// <summary>cublasComputeType_t values used. CUBLAS_COMPUTE_32F never uses TF32 (that is
/// CUBLAS_COMPUTE_32F_FAST_TF32 = 77, which the project does not use).</summary>
internal enum CublasComputeType
{
    Compute32F = 68,
    Compute32FPedantic = 69,
}

/// <summary>cublasGemmAlgo_t values used.</summary>
internal enum CublasGemmAlgo
{
    Default = -1,
}
