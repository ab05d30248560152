using ZeTT.Kernels.Native;

namespace ZeTT.Kernels;

/// <summary>A CUDA driver call failed. Carries the CUresult code, its name and the failing
/// expression, e.g. <c>CUDA_ERROR_INVALID_VALUE (1) in cuMemAlloc(out p, bytes)</c>.</summary>
public class CudaException : Exception
{
    /// <summary>Creates an exception for a failed call.</summary>
    public CudaException(int code, string codeName, string expression, string? detail = null)
        : base(Format(codeName, code, expression, detail))
    {
        Code = code;
        CodeName = codeName;
        Expression = expression;
    }

    /// <summary>Creates an exception with only a message (code 0).</summary>
    public CudaException(string message) : base(message)
    {
        CodeName = "";
        Expression = "";
    }

    /// <summary>The numeric status (CUresult or cublasStatus_t).</summary>
    public int Code { get; }

    /// <summary>The status's name as the header spells it.</summary>
    public string CodeName { get; }

    /// <summary>The call that failed, as written in the source.</summary>
    public string Expression { get; }

    private static string Format(string name, int code, string expression, string? detail) =>
        $"{name} ({code}) in {expression}" + (string.IsNullOrEmpty(detail) ? "" : $": {detail}");

    internal static CudaException From(CuResult status, string expression)
    {
        string name = CudaDriver.ErrorName(status);
        string detail = CudaDriver.ErrorString(status);
        return status == CuResult.ErrorOutOfMemory
            ? new CudaOutOfMemoryException((int)status, name, expression, detail)
            : new CudaException((int)status, name, expression, detail);
    }
}

/// <summary>Device memory ran out (CUDA_ERROR_OUT_OF_MEMORY, or cuBLAS's
/// CUBLAS_STATUS_ALLOC_FAILED). Callers that size work from free memory catch this one type to
/// retry with less.</summary>
public sealed class CudaOutOfMemoryException : CudaException
{
    /// <summary>Creates an out-of-memory exception for a failed call.</summary>
    public CudaOutOfMemoryException(int code, string codeName, string expression,
        string? detail = null) : base(code, codeName, expression, detail)
    {
    }
}

/// <summary>A cuBLAS or cuBLASLt call failed (code is the cublasStatus_t).</summary>
public sealed class CublasException : CudaException
{
    /// <summary>Creates an exception for a failed cuBLAS call.</summary>
    public CublasException(int code, string codeName, string expression)
        : base(code, codeName, expression)
    {
    }

    internal static CudaException From(CublasStatus status, string expression) =>
        status == CublasStatus.AllocFailed
            ? new CudaOutOfMemoryException((int)status, Cublas.StatusName(status), expression)
            : new CublasException((int)status, Cublas.StatusName(status), expression);
}

/// <summary>An NCCL call failed (code is the ncclResult_t), or NCCL could not be loaded.
/// </summary>
public sealed class NcclException : CudaException
{
    /// <summary>Creates an exception for a failed NCCL call.</summary>
    public NcclException(int code, string codeName, string expression, string? detail = null)
        : base(code, codeName, expression, detail)
    {
    }

    /// <summary>Creates an exception with only a message (code 0).</summary>
    public NcclException(string message) : base(message)
    {
    }
}
