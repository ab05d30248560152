using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;

namespace ZeTT.Bench;

/// <summary>
/// Debian's OpenBLAS (libopenblas0-pthread), loaded at run time as the benchmarks' anchor for
/// CPU GEMM throughput; never used by the product. Two instances: the library as it configures
/// itself (<see cref="Default"/>; 0.3.21 does not know AMD Zen 4/5 and picks its AVX2 Haswell
/// kernels there) and, on AVX-512 CPUs, a second copy of the same file loaded with
/// <c>OPENBLAS_CORETYPE=SkylakeX</c> (<see cref="Avx512"/>: its AVX-512 kernels), so ours is
/// compared with the best OpenBLAS can do on this machine.
/// </summary>
internal sealed unsafe class OpenBlas
{
    private const int RowMajor = 101, NoTrans = 111, Trans = 112;

    private static readonly string[] Candidates =
    [
        "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
        "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
    ];

    private readonly delegate* unmanaged<int, int, int, int, int, int, float, float*, int,
        float*, int, float, float*, int, void> _sgemm;

    private readonly delegate* unmanaged<int, int, int, int, float, float*, int, float*, int,
        float, float*, int, void> _sgemv;

    private readonly delegate* unmanaged<int, void> _setThreads;

    private OpenBlas(string label, nint library)
    {
        Label = label;
        _setThreads = (delegate* unmanaged<int, void>)NativeLibrary.GetExport(library,
            "openblas_set_num_threads");
        _sgemv = (delegate* unmanaged<int, int, int, int, float, float*, int, float*, int, float,
            float*, int, void>)NativeLibrary.GetExport(library, "cblas_sgemv");
        _sgemm = (delegate* unmanaged<int, int, int, int, int, int, float, float*, int, float*,
            int, float, float*, int, void>)NativeLibrary.GetExport(library, "cblas_sgemm");
        var config = (delegate* unmanaged<byte*>)NativeLibrary.GetExport(library, "openblas_get_config");
        Config = Marshal.PtrToStringUTF8((nint)config()) ?? "";
    }

    /// <summary>As Debian's library picks its kernels; null when it is not installed.</summary>
    public static OpenBlas? Default { get; } = LoadDefault();

    /// <summary>A second instance forced to its AVX-512 (SkylakeX) kernels; null without
    /// AVX-512 or OpenBLAS.</summary>
    public static OpenBlas? Avx512 { get; } = LoadAvx512();

    /// <summary>Short name for results (<c>openblas</c>, <c>openblas_skylakex</c>).</summary>
    public string Label { get; }

    /// <summary>Its build string (version, the kernels it runs, threads).</summary>
    public string Config { get; }

    /// <summary>Row-major <c>C = op(A)·op(B)</c>, fp32, on all cores.</summary>
    public void Gemm(bool transA, bool transB, int m, int n, int k, float* a, int lda,
        float* b, int ldb, float* c, int ldc) =>
        _sgemm(RowMajor, transA ? Trans : NoTrans, transB ? Trans : NoTrans, m, n, k, 1f, a, lda,
            b, ldb, 0f, c, ldc);

    /// <summary>Row-major <c>y[n] = W[n, k]·x[k]</c> (cblas_sgemv; OpenBLAS 0.3.21's sgemm does
    /// not hand m = 1 to it), fp32, on all cores.</summary>
    public void Gemv(int n, int k, float* w, int ldw, float* x, float* y) =>
        _sgemv(RowMajor, NoTrans, n, k, 1f, w, ldw, x, 1, 0f, y, 1);

    /// <summary>How many threads its calls use from now on.</summary>
    public void SetThreads(int threads) => _setThreads(threads);

    private static string? Path0 => Candidates.FirstOrDefault(File.Exists);

    private static OpenBlas? LoadDefault() =>
        Path0 is { } path && NativeLibrary.TryLoad(path, out nint lib) ? new OpenBlas("openblas", lib) : null;

    private static OpenBlas? LoadAvx512()
    {
        if (Path0 is not { } path || !Avx512F.IsSupported || Default is null)
        {
            return null;
        }
        // OpenBLAS reads OPENBLAS_CORETYPE in its constructor; .NET's environment API does not
        // reach the C environment, so set it through libc, and load a copy (another inode, so
        // the dynamic loader makes a second instance instead of returning the first).
        string copy = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"zett-bench-openblas-{Environment.ProcessId}.so");
        File.Copy(path, copy, overwrite: true);
        try
        {
            _ = SetEnv("OPENBLAS_CORETYPE", "SkylakeX", 1);
            return NativeLibrary.TryLoad(copy, out nint lib) ? new OpenBlas("openblas_skylakex", lib) : null;
        }
        finally
        {
            _ = UnsetEnv("OPENBLAS_CORETYPE");
            File.Delete(copy);
        }
    }

    [DllImport("libc", EntryPoint = "setenv")]
    private static extern int SetEnv(string name, string value, int overwrite);

    [DllImport("libc", EntryPoint = "unsetenv")]
    private static extern int UnsetEnv(string name);
}
