using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace ZeTT.Kernels.Native;

/// <summary>NCCL (nccl.h), the subset data-parallel training uses: one communicator per rank
/// and an in-place sum. Names as in the header.</summary>
internal static partial class Nccl
{
    static Nccl() => NativeLibraries.Register();

    [LibraryImport(NativeLibraries.Nccl)]
    public static partial NcclResult ncclGetVersion(out int version);

    [LibraryImport(NativeLibraries.Nccl)]
    public static partial NcclResult ncclGetUniqueId(out NcclUniqueId uniqueId);

    [LibraryImport(NativeLibraries.Nccl)]
    public static partial NcclResult ncclCommInitRank(out IntPtr comm, int nranks,
        NcclUniqueId commId, int rank);

    [LibraryImport(NativeLibraries.Nccl)]
    public static partial NcclResult ncclAllReduce(ulong sendbuff, ulong recvbuff, nuint count,
        NcclDataType datatype, NcclRedOp op, IntPtr comm, IntPtr stream);

    [LibraryImport(NativeLibraries.Nccl)]
    public static partial NcclResult ncclCommDestroy(IntPtr comm);

    [LibraryImport(NativeLibraries.Nccl)]
    private static partial IntPtr ncclGetErrorString(NcclResult result);

    /// <summary>The result's name as the header spells it.</summary>
    public static string ResultName(NcclResult result) => result switch
    {
        NcclResult.Success => "ncclSuccess",
        NcclResult.UnhandledCudaError => "ncclUnhandledCudaError",
        NcclResult.SystemError => "ncclSystemError",
        NcclResult.InternalError => "ncclInternalError",
        NcclResult.InvalidArgument => "ncclInvalidArgument",
        NcclResult.InvalidUsage => "ncclInvalidUsage",
        NcclResult.RemoteError => "ncclRemoteError",
        NcclResult.InProgress => "ncclInProgress",
        _ => $"ncclResult_t {(int)result}",
    };

    /// <summary>Throws <see cref="NcclException"/> unless <paramref name="result"/> is success.
    /// </summary>
    public static void Check(NcclResult result,
        [CallerArgumentExpression(nameof(result))] string expression = "")
    {
        if (result != NcclResult.Success)
        {
            string detail = Marshal.PtrToStringUTF8(ncclGetErrorString(result)) ?? "";
            throw new NcclException((int)result, ResultName(result), expression, detail);
        }
    }
}

/// <summary>ncclResult_t.</summary>
internal enum NcclResult
{
    Success = 0,
    UnhandledCudaError = 1,
    SystemError = 2,
    InternalError = 3,
    InvalidArgument = 4,
    InvalidUsage = 5,
    RemoteError = 6,
    InProgress = 7,
}

/// <summary>ncclDataType_t (the two this project reduces).</summary>
internal enum NcclDataType
{
    Float32 = 7,
    Float64 = 8,
}

/// <summary>ncclRedOp_t.</summary>
internal enum NcclRedOp
{
    Sum = 0,
}

/// <summary>ncclUniqueId: NCCL_UNIQUE_ID_BYTES (128) opaque bytes, passed by value.</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct NcclUniqueId
{
    public const int Bytes = 128;

    public fixed byte Internal[Bytes];
}
