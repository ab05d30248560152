namespace ZeTT.Cli.Tests;

/// <summary>Runs the CLI in-process and captures its streams and exit code.</summary>
internal static class Zett
{
    public static (int Code, string Out, string Err) Run(params string[] args)
    {
        using var output = new StringWriter();
        using var error = new StringWriter();
        int code = Program.Run(args, new CliConsole(output, error));
        return (code, output.ToString(), error.ToString());
    }
}
