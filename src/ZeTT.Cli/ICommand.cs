namespace ZeTT.Cli;

/// <summary>One <c>zett</c> sub-command.</summary>
internal interface ICommand
{
    /// <summary>The word after <c>zett</c>.</summary>
    string Name { get; }

    /// <summary>One line for <c>zett --help</c>.</summary>
    string Summary { get; }

    /// <summary>Full usage text for <c>zett NAME --help</c>.</summary>
    string Usage { get; }

    /// <summary>Runs the command; returns the process exit code. Output goes to
    /// <paramref name="console"/>.</summary>
    int Run(CommandLine args, CliConsole console);
}
