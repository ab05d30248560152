using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace ZeTT.Kernels.Native;

/// <summary>CUDA driver API (cuda.h), the subset the project uses. Names as in the header; the
/// versioned entry points (<c>_v2</c>) are the ones cuda.h maps the plain names to.</summary>
internal static partial class CudaDriver
{
    static CudaDriver() => NativeLibraries.Register();

    // ---- init and device query ----

    [LibraryImport(NativeLibraries.Cuda)]
    public static partial CuResult cuInit(uint flags);

    [LibraryImport(NativeLibraries.Cuda)]
    public static partial CuResult cuDriverGetVersion(out int version);

    [LibraryImport(NativeLibraries.Cuda)]
    public static partial CuResult cuDeviceGetCount(out int count);

    [LibraryImport(NativeLibraries.Cuda)]
    public static partial CuResult cuDeviceGet(out int device, int ordinal);

    [LibraryImport(NativeLibraries.Cuda)]
    public static unsafe partial CuResult cuDeviceGetName(byte* name, int length, int device);

    [LibraryImport(NativeLibraries.Cuda, EntryPoint = "cuDeviceTotalMem_v2")]
    public static partial CuResult cuDeviceTotalMem(out nuint bytes, int device);

    [LibraryImport(NativeLibraries.Cuda)]
    public static partial CuResult cuDeviceGetAttribute(out int value, CuDeviceAttribute attribute,
        int device);

    [LibraryImport(NativeLibraries.Cuda)]
    public static unsafe partial CuResult cuGetErrorName(CuResult error, byte** name);

    [LibraryImport(NativeLibraries.Cuda)]
    public static unsafe partial CuResult cuGetErrorString(CuResult error, byte** text);

    // ---- primary context ----

    [LibraryImport(NativeLibraries.Cuda)]
    public static partial CuResult cuDevicePrimaryCtxRetain(out IntPtr context, int device);

    [LibraryImport(NativeLibraries.Cuda, EntryPoint = "cuDevicePrimaryCtxRelease_v2")]
    public static partial CuResult cuDevicePrimaryCtxRelease(int device);

    [LibraryImport(NativeLibraries.Cuda)]
    public static partial CuResult cuCtxSetCurrent(IntPtr context);

    [LibraryImport(NativeLibraries.Cuda)]
    public static partial CuResult cuCtxSynchronize();

    [LibraryImport(NativeLibraries.Cuda, EntryPoint = "cuMemGetInfo_v2")]
    public static partial CuResult cuMemGetInfo(out nuint free, out nuint total);

    // ---- modules and launch ----

    [LibraryImport(NativeLibraries.Cuda)]
    public static unsafe partial CuResult cuModuleLoadDataEx(out IntPtr module, void* image,
        uint numOptions, CuJitOption* options, void** optionValues);

    [LibraryImport(NativeLibraries.Cuda)]
    public static partial CuResult cuModuleUnload(IntPtr module);

    [LibraryImport(NativeLibraries.Cuda, StringMarshalling = StringMarshalling.Utf8)]
    public static partial CuResult cuModuleGetFunction(out IntPtr function, IntPtr module,
        string name);

    [LibraryImport(NativeLibraries.Cuda, EntryPoint = "cuModuleGetGlobal_v2",
        StringMarshalling = StringMarshalling.Utf8)]
    public static partial CuResult cuModuleGetGlobal(out ulong pointer, out nuint bytes,
        IntPtr module, string name);

    [LibraryImport(NativeLibraries.Cuda)]
    public static partial CuResult cuFuncSetAttribute(IntPtr function,
        CuFunctionAttribute attribute, int value);

    [LibraryImport(NativeLibraries.Cuda)]
    public static unsafe partial CuResult cuLaunchKernel(IntPtr function,
        uint gridX, uint gridY, uint gridZ, uint blockX, uint blockY, uint blockZ,
        uint sharedMemBytes, IntPtr stream, void** kernelParams, void** extra);

    // ---- memory ----

    [LibraryImport(NativeLibraries.Cuda, EntryPoint = "cuMemAlloc_v2")]
    public static partial CuResult cuMemAlloc(out ulong pointer, nuint bytes);

    [LibraryImport(NativeLibraries.Cuda, EntryPoint = "cuMemFree_v2")]
    public static partial CuResult cuMemFree(ulong pointer);

    [LibraryImport(NativeLibraries.Cuda, EntryPoint = "cuMemAllocHost_v2")]
    public static unsafe partial CuResult cuMemAllocHost(out void* pointer, nuint bytes);

    [LibraryImport(NativeLibraries.Cuda)]
    public static unsafe partial CuResult cuMemFreeHost(void* pointer);

    [LibraryImport(NativeLibraries.Cuda, EntryPoint = "cuMemcpyHtoD_v2")]
    public static unsafe partial CuResult cuMemcpyHtoD(ulong destination, void* source,
        nuint bytes);

    [LibraryImport(NativeLibraries.Cuda, EntryPoint = "cuMemcpyDtoH_v2")]
    public static unsafe partial CuResult cuMemcpyDtoH(void* destination, ulong source,
        nuint bytes);

    [LibraryImport(NativeLibraries.Cuda, EntryPoint = "cuMemcpyHtoDAsync_v2")]
    public static unsafe partial CuResult cuMemcpyHtoDAsync(ulong destination, void* source,
        nuint bytes, IntPtr stream);

    [LibraryImport(NativeLibraries.Cuda, EntryPoint = "cuMemcpyDtoHAsync_v2")]
    public static unsafe partial CuResult cuMemcpyDtoHAsync(void* destination, ulong source,
        nuint bytes, IntPtr stream);

    [LibraryImport(NativeLibraries.Cuda, EntryPoint = "cuMemcpyDtoDAsync_v2")]
    public static partial CuResult cuMemcpyDtoDAsync(ulong destination, ulong source,
        nuint bytes, IntPtr stream);

    [LibraryImport(NativeLibraries.Cuda)]
    public static partial CuResult cuMemsetD8Async(ulong destination, byte value, nuint count,
        IntPtr stream);

    // ---- streams and events ----

    [LibraryImport(NativeLibraries.Cuda)]
    public static partial CuResult cuStreamCreate(out IntPtr stream, uint flags);

    [LibraryImport(NativeLibraries.Cuda, EntryPoint = "cuStreamDestroy_v2")]
    public static partial CuResult cuStreamDestroy(IntPtr stream);

    [LibraryImport(NativeLibraries.Cuda)]
    public static partial CuResult cuStreamSynchronize(IntPtr stream);

    [LibraryImport(NativeLibraries.Cuda)]
    public static partial CuResult cuStreamWaitEvent(IntPtr stream, IntPtr cuEvent, uint flags);

    [LibraryImport(NativeLibraries.Cuda)]
    public static partial CuResult cuEventCreate(out IntPtr cuEvent, uint flags);

    [LibraryImport(NativeLibraries.Cuda, EntryPoint = "cuEventDestroy_v2")]
    public static partial CuResult cuEventDestroy(IntPtr cuEvent);

    [LibraryImport(NativeLibraries.Cuda)]
    public static partial CuResult cuEventRecord(IntPtr cuEvent, IntPtr stream);

    [LibraryImport(NativeLibraries.Cuda)]
    public static partial CuResult cuEventSynchronize(IntPtr cuEvent);

    [LibraryImport(NativeLibraries.Cuda)]
    public static partial CuResult cuEventElapsedTime(out float milliseconds, IntPtr start,
        IntPtr end);

    /// <summary>The code's name (e.g. CUDA_ERROR_OUT_OF_MEMORY), or its number when the driver
    /// cannot name it.</summary>
    public static unsafe string ErrorName(CuResult error)
    {
        byte* name = null;
        return cuGetErrorName(error, &name) == CuResult.Success && name != null
            ? Marshal.PtrToStringUTF8((IntPtr)name) ?? error.ToString()
            : $"CUresult {(int)error}";
    }

    /// <summary>The driver's description of a code, or empty.</summary>
    public static unsafe string ErrorString(CuResult error)
    {
        byte* text = null;
        return cuGetErrorString(error, &text) == CuResult.Success && text != null
            ? Marshal.PtrToStringUTF8((IntPtr)text) ?? ""
            : "";
    }

    /// <summary>Throws <see cref="CudaException"/> (or <see cref="CudaOutOfMemoryException"/>)
    /// unless <paramref name="status"/> is success.</summary>
    public static void Check(CuResult status,
        [CallerArgumentExpression(nameof(status))] string expression = "")
    {
        if (status != CuResult.Success)
        {
            throw CudaException.From(status, expression);
        }
    }
}

/// <summary>CUresult codes the project names itself; others print by number (the driver names
/// every code in exception messages).</summary>
internal enum CuResult
{
    Success = 0,
    ErrorInvalidValue = 1,
    ErrorOutOfMemory = 2,
    ErrorNotInitialized = 3,
    ErrorNoDevice = 100,
    ErrorInvalidDevice = 101,
    ErrorNoBinaryForGpu = 209,
    ErrorInvalidPtx = 218,
    ErrorUnsupportedPtxVersion = 222,
    ErrorNotFound = 500,
    ErrorIllegalAddress = 700,
    ErrorLaunchOutOfResources = 701,
    ErrorLaunchFailed = 719,
}

/// <summary>CUdevice_attribute values used.</summary>
internal enum CuDeviceAttribute
{
    MaxThreadsPerBlock = 1,
    MaxSharedMemoryPerBlock = 8,
    MultiprocessorCount = 16,
    ComputeCapabilityMajor = 75,
    ComputeCapabilityMinor = 76,
    MaxSharedMemoryPerBlockOptin = 97,
}

/// <summary>CUfunction_attribute values used.</summary>
internal enum CuFunctionAttribute
{
    MaxDynamicSharedSizeBytes = 8,
}

/// <summary>CUjit_option values used when loading PTX (to get the JIT's error log).</summary>
internal enum CuJitOption
{
    InfoLogBuffer = 3,
    InfoLogBufferSizeBytes = 4,
    ErrorLogBuffer = 5,
    ErrorLogBufferSizeBytes = 6,
}
