using ZeTT.Runtime.Transfer;

namespace ZeTT.Cli.Tests;

public sealed class ProgressBarTests
{
    [Fact]
    public void Non_interactive_bar_prints_each_decile_once_and_completion()
    {
        using var error = new StringWriter();
        var bar = new ProgressBar(error, interactive: false);
        for (int done = 0; done <= 1000; done += 10)
        {
            bar.Report(new ProgressUpdate("predict", done, 1000, "tokens"));
        }
        string[] lines = error.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(11, lines.Length);
        Assert.StartsWith("predict", lines[0], StringComparison.Ordinal);
        Assert.Contains("1000/1000 tokens", lines[^1], StringComparison.Ordinal);
    }

    [Fact]
    public void A_new_phase_restarts_the_count()
    {
        using var error = new StringWriter();
        var bar = new ProgressBar(error, interactive: false);
        bar.Report(new ProgressUpdate("predict", 5, 5, "tokens"));
        bar.Report(new ProgressUpdate("write model", 0, 3, "tensors"));
        bar.Report(new ProgressUpdate("write model", 3, 3, "tensors"));
        string text = error.ToString();
        Assert.Contains("5/5 tokens", text, StringComparison.Ordinal);
        Assert.Contains("3/3 tensors", text, StringComparison.Ordinal);
        Assert.Equal(3, text.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);
    }

    [Fact]
    public void Phase_times_record_in_order()
    {
        var times = new PhaseTimes();
        int value = times.Measure("a", () => 42);
        times.Measure("b", () => { });
        Assert.Equal(42, value);
        Assert.Equal(["a", "b"], times.Phases.Select(p => p.Phase));
        Assert.True(PhaseTimes.PeakResidentBytes() > 0);
    }
}
