namespace ZeTT.Cli.Tests;

public sealed class ProgramTests
{
    [Fact]
    public void Help_lists_every_command()
    {
        var (code, output, _) = Zett.Run("--help");
        Assert.Equal(0, code);
        foreach (ICommand c in Program.Commands)
        {
            Assert.Contains(c.Name, output, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void Unknown_command_is_a_usage_error()
    {
        var (code, _, err) = Zett.Run("frobnicate");
        Assert.Equal(2, code);
        Assert.StartsWith("error: unknown command 'frobnicate'", err, StringComparison.Ordinal);
    }

    [Fact]
    public void Unknown_option_is_rejected_with_exit_2()
    {
        var (code, _, err) = Zett.Run("version", "--verbose");
        Assert.Equal(2, code);
        Assert.Contains("unknown option --verbose", err, StringComparison.Ordinal);
    }

    [Fact]
    public void Version_reports_cuda_state()
    {
        var (code, output, _) = Zett.Run("version");
        Assert.Equal(0, code);
        Assert.Contains("cuda: ", output, StringComparison.Ordinal);
    }
}
