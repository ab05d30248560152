using System.Text;
using ZeTT.Kernels.Native;

namespace ZeTT.Kernels;

/// <summary>Whether a CUDA device can be used here, and why not when it cannot. Probing never
/// throws: a machine without a driver or device simply reports the reason.</summary>
public static class Cuda
{
    private static readonly Lazy<(bool Ok, string Reason, string Summary)> Probe = new(DoProbe);

    /// <summary>True when the driver loads, initialises and reports at least one device.</summary>
    public static bool IsAvailable => Probe.Value.Ok;

    /// <summary>Why CUDA is unavailable (empty when it is available).</summary>
    public static string UnavailableReason => Probe.Value.Reason;

    /// <summary>"NVIDIA H200, sm_90, 139.8 GiB, driver 13.0" or empty when unavailable.</summary>
    public static string DeviceSummary => Probe.Value.Summary;

    private static unsafe (bool, string, string) DoProbe()
    {
        (IntPtr handle, string? error) = NativeLibraries.TryLoad(NativeLibraries.Cuda);
        if (handle == IntPtr.Zero)
        {
            return (false, $"no CUDA driver: {error}", "");
        }
        CuResult r = CudaDriver.cuInit(0);
        if (r != CuResult.Success)
        {
            return (false, $"cuInit failed: {CudaDriver.ErrorName(r)}", "");
        }
        if (CudaDriver.cuDeviceGetCount(out int count) != CuResult.Success || count == 0)
        {
            return (false, "the CUDA driver reports no device", "");
        }
        CudaDriver.cuDeviceGet(out int device, 0);
        byte* name = stackalloc byte[256];
        CudaDriver.cuDeviceGetName(name, 256, device);
        CudaDriver.cuDeviceTotalMem(out nuint bytes, device);
        CudaDriver.cuDeviceGetAttribute(out int major, CuDeviceAttribute.ComputeCapabilityMajor,
            device);
        CudaDriver.cuDeviceGetAttribute(out int minor, CuDeviceAttribute.ComputeCapabilityMinor,
            device);
        CudaDriver.cuDriverGetVersion(out int driver);
        string summary = new StringBuilder()
            .Append(System.Runtime.InteropServices.Marshal.PtrToStringUTF8((IntPtr)name))
            .Append($", sm_{major}{minor}, {bytes / (1024.0 * 1024 * 1024):F1} GiB")
            .Append($", driver {driver / 1000}.{driver % 1000 / 10}")
            .Append(count > 1 ? $", {count} devices" : "")
            .ToString();
        return (true, "", summary);
    }
}
