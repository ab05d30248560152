using System.Reflection;
using ZeTT.Kernels;

namespace ZeTT.Cli;

/// <summary><c>zett version</c>: the program's version and whether a CUDA device is usable.
/// </summary>
internal sealed class VersionCommand : ICommand
{
    public string Name => "version";

    public string Summary => "print the version and the compute devices zett can use";

    public string Usage => "usage: zett version";

    public int Run(CommandLine args, CliConsole console)
    {
        args.EnsureAllUsed();
        string version = typeof(Program).Assembly
            .GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion
            ?? "unknown";
        console.Out.WriteLine($"zett {version}");
        console.Out.WriteLine($"cpu: {Environment.ProcessorCount} logical cores");
        console.Out.WriteLine(Cuda.IsAvailable
            ? $"cuda: {Cuda.DeviceSummary}"
            : $"cuda: not available ({Cuda.UnavailableReason})");
        return 0;
    }
}
