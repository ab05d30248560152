using ZeTT.Kernels;
using ZeTT.Runtime;

namespace ZeTT.Cli;

/// <summary>Entry point of the <c>zett</c> command. Exit codes: 0 success, 2 bad input or usage
/// (one line <c>error: …</c> on stderr), 1 an internal error (with its stack trace).</summary>
public static class Program
{
    /// <summary>Every sub-command, in the order <c>zett --help</c> lists them.</summary>
    internal static IReadOnlyList<ICommand> Commands { get; } =
    [
        new VersionCommand(),
        new InspectCommand(),
        new ApplyToFtCommand(),
        new TransferCommand(),
        new ExportGgufCommand(),
        new PredictCommand(),
        new ConvertTokenizerCommand(),
        new SurfaceFormsCommand(),
    ];

    /// <summary>Runs <c>zett</c> with <paramref name="args"/>.</summary>
    public static int Main(string[] args) => Run(args, CliConsole.System);

    internal static int Run(string[] args, CliConsole console)
    {
        if (args.Length == 0 || args[0] is "--help" or "-h" or "help")
        {
            PrintHelp(console.Out);
            return 0;
        }
        ICommand? command = Commands.FirstOrDefault(c => c.Name == args[0]);
        if (command is null)
        {
            console.Error.WriteLine($"error: unknown command '{args[0]}' (see zett --help)");
            return 2;
        }
        if (args.Skip(1).Any(a => a is "--help" or "-h"))
        {
            console.Out.WriteLine(command.Usage);
            return 0;
        }
        try
        {
            return command.Run(new CommandLine(args[1..]), console);
        }
        catch (UsageException e)
        {
            console.Error.WriteLine($"error: {e.Message}");
            console.Error.WriteLine(command.Usage);
            return 2;
        }
        catch (ZettException e)
        {
            console.Error.WriteLine($"error: {e.Message}");
            return 2;
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException
            or UnauthorizedAccessException)
        {
            console.Error.WriteLine($"error: {e.Message}");
            return 2;
        }
        catch (CudaException e)
        {
            // The GPU said no (out of memory after the backend's retries, a driver fault): one
            // line naming the call and the code; nothing was written (outputs are atomic).
            console.Error.WriteLine($"error: CUDA: {e.Message}");
            return 1;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            console.Error.WriteLine($"error: internal error in zett {command.Name}: {e}");
            return 1;
        }
    }

    private static void PrintHelp(TextWriter o)
    {
        o.WriteLine("zett — zero-shot tokenizer transfer, native.");
        o.WriteLine();
        o.WriteLine("usage: zett <command> [options]   (zett <command> --help for its options)");
        o.WriteLine();
        foreach (ICommand c in Commands)
        {
            o.WriteLine($"  {c.Name,-18} {c.Summary}");
        }
    }
}
