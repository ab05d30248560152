using System.CommandLine;

namespace ZeTT.Cli;

/// <summary>
/// One <c>zett</c> sub-command. A command declares its options and arguments once, as fields
/// added in its constructor: System.CommandLine parses, validates, completes and writes
/// <c>--help</c> from those same declarations. <see cref="Run"/> maps the parsed values onto one
/// ZeTT.Runtime call and prints its result; it holds no logic of its own. Shared options (device,
/// dtype, gpu, batch size, overwrite, language) come from <see cref="CommonOptions"/>.
/// </summary>
internal abstract class ZettCommand : Command
{
    /// <summary>Declares the command <paramref name="name"/>; <paramref name="description"/> is
    /// its line in <c>zett --help</c> and the head of <c>zett NAME --help</c>.</summary>
    protected ZettCommand(string name, string description) : base(name, description) =>
        SetAction(parse => Run(parse, CliConsole.For(parse.InvocationConfiguration)));

    /// <summary>Runs the command with parsed, validated arguments; returns the exit code.
    /// Bad input throws <see cref="Runtime.ZettException"/> (exit code 2, see
    /// <see cref="Program.Run"/>).</summary>
    protected abstract int Run(ParseResult parse, CliConsole console);
}
