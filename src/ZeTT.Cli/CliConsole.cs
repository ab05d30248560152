using System.CommandLine;

namespace ZeTT.Cli;

/// <summary>The two output streams of a command, swappable in tests.</summary>
/// <param name="output">Results (what a script would parse).</param>
/// <param name="error">Progress, notes and errors.</param>
/// <param name="interactive">Whether <paramref name="error"/> is a terminal (progress redraws in
/// place there, and prints a line per phase and every few seconds elsewhere).</param>
internal sealed class CliConsole(TextWriter output, TextWriter error, bool interactive = false)
{
    /// <summary>Results (what a script would parse).</summary>
    public TextWriter Out { get; } = output;

    /// <summary>Progress, notes and errors.</summary>
    public TextWriter Error { get; } = error;

    /// <summary>Whether <see cref="Error"/> is a terminal.</summary>
    public bool Interactive { get; } = interactive;

    /// <summary>The process's own stdout and stderr.</summary>
    public static CliConsole System { get; } =
        new(Console.Out, Console.Error, interactive: !Console.IsErrorRedirected);

    /// <summary>The streams a command was invoked with (see <see cref="Program.Run"/>).</summary>
    public static CliConsole For(InvocationConfiguration invocation)
    {
        ArgumentNullException.ThrowIfNull(invocation);
        return ReferenceEquals(invocation.Output, System.Out) && ReferenceEquals(invocation.Error, System.Error)
            ? System
            : new CliConsole(invocation.Output, invocation.Error);
    }
}
