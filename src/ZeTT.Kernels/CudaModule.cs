using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using ZeTT.Kernels.Native;

namespace ZeTT.Kernels;

/// <summary>
/// A loaded kernel module. <see cref="Load"/> takes the embedded sm_90 cubin when the device is
/// sm_90 and one was built, else the PTX (JIT-compiled by the driver for the device at hand;
/// a JIT error carries the JIT's log).
/// </summary>
public sealed class CudaModule : IDisposable
{
    private readonly CudaContext _context;
    private readonly Dictionary<string, CudaFunction> _functions = new(StringComparer.Ordinal);
    private IntPtr _handle;

    private CudaModule(CudaContext context, IntPtr handle, string name, string image)
    {
        _context = context;
        _handle = handle;
        Name = name;
        Image = image;
    }

    /// <summary>Module name (the .cu file's name).</summary>
    public string Name { get; }

    /// <summary>"cubin sm_90" or "ptx": which image was loaded.</summary>
    public string Image { get; }

    /// <summary>Loads embedded module <paramref name="name"/>.</summary>
    public static unsafe CudaModule Load(CudaContext context, string name)
    {
        ArgumentNullException.ThrowIfNull(context);
        context.MakeCurrent();
        byte[]? cubin = context.ComputeCapability == (9, 0) ? KernelImages.Cubin(name) : null;
        byte[] image = cubin ?? NullTerminated(KernelImages.Ptx(name));
        const int logSize = 16 * 1024;
        byte* log = stackalloc byte[logSize];
        log[0] = 0;
        CuJitOption* options = stackalloc CuJitOption[2];
        void** values = stackalloc void*[2];
        options[0] = CuJitOption.ErrorLogBuffer;
        values[0] = log;
        options[1] = CuJitOption.ErrorLogBufferSizeBytes;
        values[1] = (void*)logSize;
        CuResult r;
        IntPtr handle;
        fixed (byte* p = image)
        {
            r = CudaDriver.cuModuleLoadDataEx(out handle, p, 2, options, values);
        }
        if (r != CuResult.Success)
        {
            string jitLog = Marshal.PtrToStringUTF8((IntPtr)log) ?? "";
            throw new CudaException((int)r, CudaDriver.ErrorName(r),
                $"cuModuleLoadDataEx({name}.{(cubin is null ? "ptx" : "cubin")})",
                jitLog.Length > 0 ? "JIT log: " + jitLog : CudaDriver.ErrorString(r));
        }
        return new CudaModule(context, handle, name, cubin is null ? "ptx" : "cubin sm_90");
    }

    private static byte[] NullTerminated(string text)
    {
        var bytes = new byte[Encoding.ASCII.GetByteCount(text) + 1];
        Encoding.ASCII.GetBytes(text, bytes);
        return bytes;
    }

    /// <summary>Kernel <paramref name="entry"/> of this module (looked up once).</summary>
    public CudaFunction GetFunction(string entry)
    {
        ObjectDisposedException.ThrowIf(_handle == IntPtr.Zero, this);
        if (!_functions.TryGetValue(entry, out CudaFunction? f))
        {
            CudaDriver.Check(CudaDriver.cuModuleGetFunction(out IntPtr h, _handle, entry));
            _functions[entry] = f = new CudaFunction(h, $"{Name}.{entry}");
        }
        return f;
    }

    /// <summary>Unloads the module (its functions become invalid).</summary>
    public void Dispose()
    {
        if (_handle != IntPtr.Zero)
        {
            _context.MakeCurrent();
            IntPtr h = _handle;
            _handle = IntPtr.Zero;
            CudaDriver.Check(CudaDriver.cuModuleUnload(h));
        }
    }
}

/// <summary>Grid, block and dynamic shared memory of one launch.</summary>
/// <param name="GridX">Blocks along x.</param>
/// <param name="GridY">Blocks along y.</param>
/// <param name="BlockX">Threads per block.</param>
/// <param name="SharedBytes">Dynamic shared memory per block.</param>
public readonly record struct LaunchConfig(uint GridX, uint GridY, uint BlockX, uint SharedBytes);

/// <summary>A kernel entry point. Launches take the kernel's args struct by reference and pass
/// it as the kernel's single by-value parameter: no boxing, no allocation, no synchronisation.
/// </summary>
public sealed class CudaFunction
{
    private const int DefaultSharedLimit = 48 * 1024;
    private readonly IntPtr _handle;
    private int _sharedLimit = DefaultSharedLimit;

    internal CudaFunction(IntPtr handle, string name)
    {
        _handle = handle;
        Name = name;
    }

    /// <summary>"module.entry".</summary>
    public string Name { get; }

    /// <summary>Queues the kernel on <paramref name="stream"/>. Dynamic shared memory above
    /// 48 KiB is opted into once per function (up to the device's limit).</summary>
    public unsafe void Launch<TArgs>(LaunchConfig config, CudaStream stream, in TArgs args)
        where TArgs : unmanaged
    {
        ArgumentNullException.ThrowIfNull(stream);
        if (config.SharedBytes > _sharedLimit)
        {
            CudaDriver.Check(CudaDriver.cuFuncSetAttribute(_handle,
                CuFunctionAttribute.MaxDynamicSharedSizeBytes, (int)config.SharedBytes));
            _sharedLimit = (int)config.SharedBytes;
        }
        TArgs copy = args;
        void* p = &copy;
        CheckLaunch(CudaDriver.cuLaunchKernel(_handle, config.GridX, config.GridY, 1,
            config.BlockX, 1, 1, config.SharedBytes, stream.Handle, &p, null), Name, config);
    }

    private static void CheckLaunch(CuResult status, string name, LaunchConfig config,
        [CallerArgumentExpression(nameof(status))] string expression = "")
    {
        if (status != CuResult.Success)
        {
            throw CudaException.From(status,
                $"{expression} [{name} grid ({config.GridX}, {config.GridY}) block "
                + $"{config.BlockX} shared {config.SharedBytes}]");
        }
    }
}
