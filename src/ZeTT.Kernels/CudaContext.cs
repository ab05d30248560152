using System.Runtime.InteropServices;
using ZeTT.Kernels.Native;

namespace ZeTT.Kernels;

/// <summary>
/// One device's primary context, retained for the lifetime of this object and made current on
/// the creating thread. Everything allocated through it (buffers, streams, modules, handles)
/// must be disposed before it. Calls from another thread first call <see cref="MakeCurrent"/>.
/// </summary>
public sealed class CudaContext : IDisposable
{
    private bool _disposed;

    private CudaContext(int device, IntPtr handle)
    {
        Device = device;
        Handle = handle;
    }

    /// <summary>Device ordinal.</summary>
    public int Device { get; }

    internal IntPtr Handle { get; }

    /// <summary>Device name, e.g. "NVIDIA H200".</summary>
    public string Name { get; private set; } = "";

    /// <summary>Compute capability (9, 0 on Hopper).</summary>
    public (int Major, int Minor) ComputeCapability { get; private set; }

    /// <summary>Streaming multiprocessors.</summary>
    public int MultiprocessorCount { get; private set; }

    /// <summary>Total device memory in bytes.</summary>
    public long TotalMemory { get; private set; }

    /// <summary>Largest dynamic shared memory a block may opt into, bytes.</summary>
    public int MaxSharedMemoryPerBlockOptin { get; private set; }

    /// <summary>Retains device <paramref name="device"/>'s primary context and makes it current.
    /// Throws <see cref="CudaException"/> when there is no driver or no such device (check
    /// <see cref="Cuda.IsAvailable"/> first for a friendly reason).</summary>
    public static unsafe CudaContext Create(int device = 0)
    {
        if (!Cuda.IsAvailable)
        {
            throw new CudaException($"CUDA is not available: {Cuda.UnavailableReason}");
        }
        CudaDriver.Check(CudaDriver.cuDeviceGetCount(out int count));
        if (device < 0 || device >= count)
        {
            throw new ArgumentOutOfRangeException(nameof(device), device,
                $"CUDA device {device} does not exist ({count} device(s) visible; "
                + "CUDA_VISIBLE_DEVICES selects which)");
        }
        CudaDriver.Check(CudaDriver.cuDeviceGet(out int dev, device));
        CudaDriver.Check(CudaDriver.cuDevicePrimaryCtxRetain(out IntPtr ctx, dev));
        var context = new CudaContext(dev, ctx);
        try
        {
            context.MakeCurrent();
            byte* name = stackalloc byte[256];
            CudaDriver.Check(CudaDriver.cuDeviceGetName(name, 256, dev));
            context.Name = Marshal.PtrToStringUTF8((IntPtr)name) ?? "";
            CudaDriver.Check(CudaDriver.cuDeviceTotalMem(out nuint total, dev));
            context.TotalMemory = (long)total;
            context.ComputeCapability = (Attribute(dev, CuDeviceAttribute.ComputeCapabilityMajor),
                Attribute(dev, CuDeviceAttribute.ComputeCapabilityMinor));
            context.MultiprocessorCount = Attribute(dev, CuDeviceAttribute.MultiprocessorCount);
            context.MaxSharedMemoryPerBlockOptin =
                Attribute(dev, CuDeviceAttribute.MaxSharedMemoryPerBlockOptin);
            return context;
        }
        catch
        {
            context.Dispose();
            throw;
        }
    }

    private static int Attribute(int device, CuDeviceAttribute attribute)
    {
        CudaDriver.Check(CudaDriver.cuDeviceGetAttribute(out int value, attribute, device));
        return value;
    }

    /// <summary>Makes this context current on the calling thread.</summary>
    public void MakeCurrent()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        CudaDriver.Check(CudaDriver.cuCtxSetCurrent(Handle));
    }

    /// <summary>Free and total device memory in bytes (cuMemGetInfo).</summary>
    public (long Free, long Total) GetMemoryInfo()
    {
        MakeCurrent();
        CudaDriver.Check(CudaDriver.cuMemGetInfo(out nuint free, out nuint total));
        return ((long)free, (long)total);
    }

    /// <summary>Waits for all work in this context.</summary>
    public void Synchronize()
    {
        MakeCurrent();
        CudaDriver.Check(CudaDriver.cuCtxSynchronize());
    }

    /// <summary>"NVIDIA H200 (sm_90, 132 SMs)".</summary>
    public override string ToString() =>
        $"{Name} (sm_{ComputeCapability.Major}{ComputeCapability.Minor}, "
        + $"{MultiprocessorCount} SMs)";

    /// <summary>Releases the primary context (the driver keeps it while others retain it).
    /// </summary>
    public void Dispose()
    {
        if (!_disposed)
        {
            _disposed = true;
            CudaDriver.Check(CudaDriver.cuDevicePrimaryCtxRelease(Device));
        }
    }
}
