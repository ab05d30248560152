using System.Reflection;
using System.Runtime.InteropServices;

namespace ZeTT.Kernels.Native;

/// <summary>
/// Finds the CUDA driver, cuBLAS and NCCL libraries. The bindings import the logical names
/// <c>cuda</c>, <c>cublas</c>, <c>cublasLt</c> and <c>nccl</c>; this resolver maps them to the first
/// loadable candidate: sonames in the loader's default search (LD_LIBRARY_PATH, ldconfig), then
/// CUDA_HOME/CUDA_PATH, /usr/local/cuda*/lib64, /usr/local/nvidia/lib64, /usr/lib/x86_64-linux-gnu
/// and the <c>nvidia/*/lib</c> folders of Python site-packages, trying versions 13, 12, 11.
/// </summary>
internal static class NativeLibraries
{
    public const string Cuda = "cuda";
    public const string Cublas = "cublas";
    public const string CublasLt = "cublasLt";
    public const string Nccl = "nccl";

    private static readonly string[] Versions = ["13", "12", "11"];
    private static readonly Dictionary<string, (IntPtr Handle, string? Error)> Cache = [];
    private static readonly Lock Gate = new();
    private static int _registered;

    /// <summary>Installs the resolver for this assembly (idempotent).</summary>
    public static void Register()
    {
        if (Interlocked.Exchange(ref _registered, 1) == 0)
        {
            NativeLibrary.SetDllImportResolver(typeof(NativeLibraries).Assembly, Resolve);
        }
    }

    private static IntPtr Resolve(string name, Assembly assembly, DllImportSearchPath? path)
    {
        (IntPtr handle, _) = TryLoad(name);
        return handle;
    }

    /// <summary>Loads a logical library; on failure returns zero and a reason that lists what
    /// was tried.</summary>
    public static (IntPtr Handle, string? Error) TryLoad(string name)
    {
        lock (Gate)
        {
            if (Cache.TryGetValue(name, out var cached))
            {
                return cached;
            }
            var tried = new List<string>();
            foreach (string candidate in Candidates(name))
            {
                tried.Add(candidate);
                if (NativeLibrary.TryLoad(candidate, out IntPtr handle))
                {
                    return Cache[name] = (handle, null);
                }
            }
            string error = $"lib{name} not found (tried {tried.Count} paths, e.g. {tried[0]}; "
                + "set LD_LIBRARY_PATH or CUDA_HOME)";
            return Cache[name] = (IntPtr.Zero, error);
        }
    }

    private static IEnumerable<string> Candidates(string name)
    {
        string[] sonames = name switch
        {
            Cuda => ["libcuda.so.1", "libcuda.so"],
            // NCCL's soname carries its own major version (2), not CUDA's.
            Nccl => ["libnccl.so.2", "libnccl.so"],
            _ => [.. Versions.Select(v => $"lib{name}.so.{v}"), $"lib{name}.so"],
        };
        foreach (string so in sonames)
        {
            yield return so;
        }
        foreach (string dir in SearchDirectories(name))
        {
            foreach (string so in sonames)
            {
                yield return Path.Combine(dir, so);
            }
        }
    }

    private static IEnumerable<string> SearchDirectories(string name)
    {
        foreach (string variable in new[] { "CUDA_HOME", "CUDA_PATH" })
        {
            string? root = Environment.GetEnvironmentVariable(variable);
            if (!string.IsNullOrEmpty(root))
            {
                yield return Path.Combine(root, "lib64");
                yield return Path.Combine(root, "lib");
            }
        }
        yield return "/usr/local/cuda/lib64";
        foreach (string v in new[] { "13", "12", "11" })
        {
            foreach (string dir in SafeGlob("/usr/local", $"cuda-{v}*"))
            {
                yield return Path.Combine(dir, "lib64");
            }
        }
        yield return "/usr/local/nvidia/lib64";
        yield return "/usr/lib/x86_64-linux-gnu";
        yield return "/usr/lib64";
        if (name != Cuda)
        {
            foreach (string site in PythonSitePackages())
            {
                foreach (string lib in SafeGlob(Path.Combine(site, "nvidia"), "*"))
                {
                    yield return Path.Combine(lib, "lib");
                }
            }
        }
    }

    private static IEnumerable<string> PythonSitePackages()
    {
        foreach (string root in new[] { "/usr/local/lib", "/usr/lib" })
        {
            foreach (string py in SafeGlob(root, "python3*"))
            {
                yield return Path.Combine(py, "site-packages");
                yield return Path.Combine(py, "dist-packages");
            }
        }
    }

    private static string[] SafeGlob(string dir, string pattern)
    {
        try
        {
            return Directory.Exists(dir)
                ? [.. Directory.GetDirectories(dir, pattern).Order(StringComparer.Ordinal)]
                : [];
        }
        catch (UnauthorizedAccessException)
        {
            return [];
        }
    }
}
