using System.Runtime.InteropServices;

namespace ZeTT.Kernels.Native;

/// <summary>CUDA driver API (cuda.h), the subset the project uses. Names as in the header.
/// </summary>
internal static partial class CudaDriver
{
    static CudaDriver() => NativeLibraries.Register();

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

    /// <summary>The code's name (e.g. CUDA_ERROR_OUT_OF_MEMORY), or its number when the driver
    /// cannot name it.</summary>
    public static unsafe string ErrorName(CuResult error)
    {
        byte* name = null;
        return cuGetErrorName(error, &name) == CuResult.Success && name != null
            ? Marshal.PtrToStringUTF8((IntPtr)name) ?? error.ToString()
            : $"CUresult {(int)error}";
    }
}

/// <summary>CUresult codes the project names itself; others print by number.</summary>
internal enum CuResult
{
    Success = 0,
    ErrorInvalidValue = 1,
    ErrorOutOfMemory = 2,
    ErrorNotInitialized = 3,
    ErrorNoDevice = 100,
    ErrorInvalidDevice = 101,
}

/// <summary>CUdevice_attribute values used.</summary>
internal enum CuDeviceAttribute
{
    MultiprocessorCount = 16,
    ComputeCapabilityMajor = 75,
    ComputeCapabilityMinor = 76,
}
