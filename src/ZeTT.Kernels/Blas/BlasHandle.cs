using System.Runtime.InteropServices;
using ZeTT.Kernels.Native;

namespace ZeTT.Kernels.Blas;

/// <summary>
/// A cuBLAS handle and a cuBLASLt handle bound to one stream, with one workspace both use, and
/// a cache of cuBLASLt matmul plans (descriptors + the heuristic's algorithm) per shape.
/// </summary>
public sealed class BlasHandle : IDisposable
{
    /// <summary>Workspace for both libraries: 32 MiB, what cuBLAS recommends for Hopper.</summary>
    public const long WorkspaceBytes = 32L << 20;

    private readonly Dictionary<LtKey, LtPlan> _plans = [];
    private readonly HashSet<LtKey> _unsupported = [];
    private readonly DeviceBuffer _workspace;
    private IntPtr _cublas;
    private IntPtr _lt;

    /// <summary>Creates the handles on <paramref name="stream"/>.</summary>
    public BlasHandle(CudaStream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        Stream = stream;
        stream.Context.MakeCurrent();
        _workspace = DeviceBuffer.Allocate(stream.Context, KernelDType.U8, WorkspaceBytes);
        try
        {
            Cublas.Check(Cublas.cublasCreate(out _cublas));
            Cublas.Check(Cublas.cublasSetStream(_cublas, stream.Handle));
            Cublas.Check(Cublas.cublasSetWorkspace(_cublas, _workspace.Address,
                (nuint)WorkspaceBytes));
            Cublas.Check(Cublas.cublasSetMathMode(_cublas, CublasMath.Default));
            Cublas.Check(CublasLt.cublasLtCreate(out _lt));
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>The stream every GEMM of this handle is queued on.</summary>
    public CudaStream Stream { get; }

    internal IntPtr CublasHandle => _cublas;

    internal IntPtr Lt => _lt;

    internal DeviceBuffer Workspace => _workspace;

    internal LtPlan GetPlan(in LtKey key)
    {
        if (!_plans.TryGetValue(key, out LtPlan? plan))
        {
            plan = LtPlan.Create(this, key, false)!;
            _plans[key] = plan;
        }
        return plan;
    }

    /// <summary>The plan for <paramref name="key"/>, or null when cuBLASLt has no algorithm
    /// for it (an epilogue it does not support for these shapes and dtypes); both answers are
    /// cached.</summary>
    internal LtPlan? TryGetPlan(in LtKey key)
    {
        if (_plans.TryGetValue(key, out LtPlan? plan))
        {
            return plan;
        }
        if (_unsupported.Contains(key))
        {
            return null;
        }
        plan = LtPlan.Create(this, key, true);
        if (plan is null)
        {
            _unsupported.Add(key);
        }
        else
        {
            _plans[key] = plan;
        }
        return plan;
    }

    /// <summary>Destroys the handles, plans and workspace.</summary>
    public void Dispose()
    {
        Stream.Context.MakeCurrent();
        foreach (LtPlan plan in _plans.Values)
        {
            plan.Dispose();
        }
        _plans.Clear();
        if (_lt != IntPtr.Zero)
        {
            Cublas.Check(CublasLt.cublasLtDestroy(_lt));
            _lt = IntPtr.Zero;
        }
        if (_cublas != IntPtr.Zero)
        {
            Cublas.Check(Cublas.cublasDestroy(_cublas));
            _cublas = IntPtr.Zero;
        }
        _workspace.Dispose();
    }
}

/// <summary>Everything a cuBLASLt plan depends on (column-major problem after the swap).
/// </summary>
internal readonly record struct LtKey(CublasOperation TransA, CublasOperation TransB, int M,
    int N, int K, CudaDataType InputType, CudaDataType OutputType, int Lda, int Ldb, int Ldc,
    int Batch, long StrideA, long StrideB, long StrideC, int AlignA, int AlignB, int AlignC,
    CublasLtEpilogue Epilogue = CublasLtEpilogue.Default,
    CudaDataType BiasType = CudaDataType.R32F);

/// <summary>Matmul descriptor, four layouts and the chosen algorithm for one <see cref="LtKey"/>.
/// </summary>
internal sealed unsafe class LtPlan : IDisposable
{
    public IntPtr Desc;
    public IntPtr A;
    public IntPtr B;
    public IntPtr C;
    public CublasLtMatmulAlgo Algo;
    public nuint WorkspaceSize;

    /// <summary>Descriptors and the heuristic's algorithm for <paramref name="key"/>. When
    /// none is found: null if <paramref name="mayBeUnsupported"/> (the heuristic's
    /// CUBLAS_STATUS_NOT_SUPPORTED or zero results), else a <see cref="CublasException"/>.
    /// </summary>
    public static LtPlan? Create(BlasHandle handle, in LtKey key, bool mayBeUnsupported)
    {
        var plan = new LtPlan();
        try
        {
            Cublas.Check(CublasLt.cublasLtMatmulDescCreate(out plan.Desc,
                CublasComputeType.Compute32F, CudaDataType.R32F));
            int ta = (int)key.TransA, tb = (int)key.TransB;
            Cublas.Check(CublasLt.cublasLtMatmulDescSetAttribute(plan.Desc,
                CublasLtMatmulDescAttribute.TransA, &ta, sizeof(int)));
            Cublas.Check(CublasLt.cublasLtMatmulDescSetAttribute(plan.Desc,
                CublasLtMatmulDescAttribute.TransB, &tb, sizeof(int)));
            if (key.Epilogue != CublasLtEpilogue.Default)
            {
                uint epilogue = (uint)key.Epilogue;
                Cublas.Check(CublasLt.cublasLtMatmulDescSetAttribute(plan.Desc,
                    CublasLtMatmulDescAttribute.Epilogue, &epilogue, sizeof(uint)));
                if (((uint)key.Epilogue & (uint)CublasLtEpilogue.Bias) != 0)
                {
                    int biasType = (int)key.BiasType;
                    Cublas.Check(CublasLt.cublasLtMatmulDescSetAttribute(plan.Desc,
                        CublasLtMatmulDescAttribute.BiasDataType, &biasType, sizeof(int)));
                }
            }
            bool transA = key.TransA == CublasOperation.T;
            plan.A = Layout(key.InputType, transA ? key.K : key.M, transA ? key.M : key.K,
                key.Lda, key.Batch, key.StrideA);
            bool transB = key.TransB == CublasOperation.T;
            plan.B = Layout(key.InputType, transB ? key.N : key.K, transB ? key.K : key.N,
                key.Ldb, key.Batch, key.StrideB);
            plan.C = Layout(key.OutputType, key.M, key.N, key.Ldc, key.Batch, key.StrideC);
            Cublas.Check(CublasLt.cublasLtMatmulPreferenceCreate(out IntPtr pref));
            try
            {
                ulong ws = BlasHandle.WorkspaceBytes;
                Cublas.Check(CublasLt.cublasLtMatmulPreferenceSetAttribute(pref,
                    CublasLtMatmulPreferenceAttribute.MaxWorkspaceBytes, &ws, sizeof(ulong)));
                uint aa = (uint)key.AlignA, ab = (uint)key.AlignB, ac = (uint)key.AlignC;
                Cublas.Check(CublasLt.cublasLtMatmulPreferenceSetAttribute(pref,
                    CublasLtMatmulPreferenceAttribute.MinAlignmentABytes, &aa, sizeof(uint)));
                Cublas.Check(CublasLt.cublasLtMatmulPreferenceSetAttribute(pref,
                    CublasLtMatmulPreferenceAttribute.MinAlignmentBBytes, &ab, sizeof(uint)));
                Cublas.Check(CublasLt.cublasLtMatmulPreferenceSetAttribute(pref,
                    CublasLtMatmulPreferenceAttribute.MinAlignmentCBytes, &ac, sizeof(uint)));
                Cublas.Check(CublasLt.cublasLtMatmulPreferenceSetAttribute(pref,
                    CublasLtMatmulPreferenceAttribute.MinAlignmentDBytes, &ac, sizeof(uint)));
                CublasLtMatmulHeuristicResult result;
                CublasStatus status = CublasLt.cublasLtMatmulAlgoGetHeuristic(handle.Lt,
                    plan.Desc, plan.A, plan.B, plan.C, plan.C, pref, 1, &result,
                    out int found);
                if (mayBeUnsupported && (status == CublasStatus.NotSupported
                    || (status == CublasStatus.Success && found == 0)))
                {
                    plan.Dispose();
                    return null;
                }
                Cublas.Check(status, "cublasLtMatmulAlgoGetHeuristic");
                if (found == 0)
                {
                    throw new CublasException((int)CublasStatus.NotSupported,
                        "CUBLAS_STATUS_NOT_SUPPORTED",
                        $"cublasLtMatmulAlgoGetHeuristic found no algorithm for {key}");
                }
                plan.Algo = result.Algo;
                plan.WorkspaceSize = result.WorkspaceSize;
            }
            finally
            {
                Cublas.Check(CublasLt.cublasLtMatmulPreferenceDestroy(pref));
            }
            return plan;
        }
        catch
        {
            plan.Dispose();
            throw;
        }
    }

    private static IntPtr Layout(CudaDataType type, int rows, int cols, int ld, int batch,
        long stride)
    {
        Cublas.Check(CublasLt.cublasLtMatrixLayoutCreate(out IntPtr layout, type, (ulong)rows,
            (ulong)cols, ld));
        if (batch > 1)
        {
            Cublas.Check(CublasLt.cublasLtMatrixLayoutSetAttribute(layout,
                CublasLtMatrixLayoutAttribute.BatchCount, &batch, sizeof(int)));
            Cublas.Check(CublasLt.cublasLtMatrixLayoutSetAttribute(layout,
                CublasLtMatrixLayoutAttribute.StridedBatchOffset, &stride, sizeof(long)));
        }
        return layout;
    }

    public void Dispose()
    {
        foreach (IntPtr layout in new[] { A, B, C })
        {
            if (layout != IntPtr.Zero)
            {
                Cublas.Check(CublasLt.cublasLtMatrixLayoutDestroy(layout));
            }
        }
        A = B = C = IntPtr.Zero;
        if (Desc != IntPtr.Zero)
        {
            Cublas.Check(CublasLt.cublasLtMatmulDescDestroy(Desc));
            Desc = IntPtr.Zero;
        }
    }
}

/// <summary>Marshalling check helpers for tests.</summary>
internal static class BlasLayout
{
    public static int HeuristicResultSize => Marshal.SizeOf<CublasLtMatmulHeuristicResult>();
}
