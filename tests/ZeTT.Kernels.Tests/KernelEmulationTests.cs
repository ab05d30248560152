using System.Diagnostics;

namespace ZeTT.Kernels.Tests;

/// <summary>
/// The op kernels' logic without a GPU: scripts/kernel-emulation/run.sh compiles
/// kernels/*.cu as host C++ under an emulation of the CUDA execution model (one thread per CUDA
/// thread, barriers for __syncthreads, __syncwarp and shuffles; the tensor-core forward's
/// mma.sync multiplying fragments in the PTX ISA's layout) and compares every kernel with
/// float64 loops: flash attention forward and backward on the fp32-FMA kernels (seven shapes),
/// the tensor-core forward (seven: partial tiles, GQA with bf16 output, a KV-cache offset, one
/// decoding query, a window, bidirectional with key lengths and an empty sequence), and the
/// other op kernels. Skipped (reported as skipped) where bash or a C++20 compiler is missing;
/// the numeric test of record on a device is the CUDA op tests.
/// </summary>
public sealed class KernelEmulationTests
{
    private static string RepoRoot()
    {
        string? env = Environment.GetEnvironmentVariable("ZETT_REPO_ROOT");
        if (!string.IsNullOrEmpty(env))
        {
            return env;
        }
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            if (File.Exists(Path.Combine(d.FullName, "scripts", "kernel-emulation", "run.sh")))
            {
                return d.FullName;
            }
        }
        Assert.Skip($"no scripts/kernel-emulation/run.sh above {AppContext.BaseDirectory}");
        return "";
    }

    private static bool Installed(string name) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator)
            .Any(dir => File.Exists(Path.Combine(dir, name)));

    [Fact]
    public async Task Kernels_match_float64_loops_under_the_cpu_emulation()
    {
        string root = RepoRoot();
        Assert.SkipUnless(Installed("bash"), "no bash here");
        Assert.SkipUnless(new[] { "clang++-14", "clang++", "g++" }.Any(Installed),
            "no C++ compiler (clang++-14, clang++ or g++) here");
        var psi = new ProcessStartInfo("bash", $"\"{Path.Combine(root, "scripts",
            "kernel-emulation", "run.sh")}\"")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        CancellationToken ct = TestContext.Current.CancellationToken;
        using Process p = Process.Start(psi)!;
        Task<string> err = p.StandardError.ReadToEndAsync(ct);
        string output = await p.StandardOutput.ReadToEndAsync(ct);
        await p.WaitForExitAsync(ct);
        string all = output + await err;
        Assert.True(p.ExitCode == 0, $"the kernel emulation failed (exit {p.ExitCode}):\n{all}");
        Assert.Equal(2, all.Split('\n').Count(l => l.Trim() == "fails: 0"));
        Assert.Equal(7, all.Split('\n').Count(l => l.StartsWith("== mma ", StringComparison.Ordinal)));
        Assert.DoesNotContain("FAIL", all, StringComparison.Ordinal);
    }
}
