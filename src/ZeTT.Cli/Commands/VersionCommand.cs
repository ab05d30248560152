using System.CommandLine;
using System.Reflection;
using ZeTT.Kernels;

namespace ZeTT.Cli;

/// <summary><c>zett version</c>: the program's version and whether a CUDA device is usable.
/// </summary>
internal sealed class VersionCommand : ZettCommand
{
    public VersionCommand() : base("version", "print the version and the compute devices zett can use")
    {
    }

    /// <summary>This build's version (the informational version: release and commit).</summary>
    public static string Version { get; } = typeof(Program).Assembly
        .GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "unknown";

    protected override int Run(ParseResult parse, CliConsole console)
    {
        console.Out.WriteLine($"zett {Version}");
        console.Out.WriteLine($"cpu: {Environment.ProcessorCount} logical cores");
        console.Out.WriteLine(Cuda.IsAvailable
            ? $"cuda: {Cuda.DeviceSummary}"
            : $"cuda: not available ({Cuda.UnavailableReason})");
        return 0;
    }
}
