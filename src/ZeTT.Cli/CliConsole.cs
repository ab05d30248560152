namespace ZeTT.Cli;

/// <summary>The two output streams of a command, swappable in tests.</summary>
internal sealed class CliConsole(TextWriter output, TextWriter error)
{
    /// <summary>Results (what a script would parse).</summary>
    public TextWriter Out { get; } = output;

    /// <summary>Progress, notes and errors.</summary>
    public TextWriter Error { get; } = error;

    /// <summary>The process's own stdout and stderr.</summary>
    public static CliConsole System { get; } = new(Console.Out, Console.Error);
}
