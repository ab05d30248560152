using ZeTT.Runtime.Transfer;

namespace ZeTT.Cli.Tests;

public sealed class ProgressBarTests
{
    private static string[] Lines(StringWriter w) => w.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);

    [Fact]
    public void Off_a_terminal_a_phase_prints_its_start_every_few_seconds_and_its_end()
    {
        using var error = new StringWriter();
        double now = 0;
        var bar = new ProgressBar(error, interactive: false, () => now);
        // 1000 batches over 20 s: lines at 0 s, 5, 10, 15 and the end, not one per batch.
        for (int done = 0; done <= 1000; done++)
        {
            now = done * 0.02;
            bar.Report(new ProgressUpdate("predict", done, 1000, "tokens"));
        }
        string[] lines = Lines(error);
        Assert.Equal(5, lines.Length);
        Assert.StartsWith("predict", lines[0], StringComparison.Ordinal);
        Assert.Contains("250/1000 tokens (50/s, eta 15 s)", lines[1], StringComparison.Ordinal);
        Assert.EndsWith("1000/1000 tokens in 20.0 s", lines[^1], StringComparison.Ordinal);
    }

    [Fact]
    public void A_new_phase_restarts_the_count()
    {
        using var error = new StringWriter();
        var bar = new ProgressBar(error, interactive: false, () => 0);
        bar.Report(new ProgressUpdate("predict", 5, 5, "tokens"));
        bar.Report(new ProgressUpdate("write model", 0, 3, "tensors"));
        bar.Report(new ProgressUpdate("write model", 1, 3, "tensors"));
        bar.Report(new ProgressUpdate("write model", 3, 3, "tensors"));
        string text = error.ToString();
        Assert.Contains("5/5 tokens", text, StringComparison.Ordinal);
        Assert.Contains("3/3 tensors", text, StringComparison.Ordinal);
        Assert.Equal(3, Lines(error).Length);
    }

    [Fact]
    public void The_first_speed_reading_waits_for_a_second_of_measurement()
    {
        using var error = new StringWriter();
        double now = 0;
        var bar = new ProgressBar(error, interactive: false, () => now);
        // The first batch lands in a burst: 400 tokens after 10 ms would read 40000/s.
        bar.Report(new ProgressUpdate("predict", 0, 10000, "tokens"));
        now = 0.01;
        bar.Report(new ProgressUpdate("predict", 400, 10000, "tokens"));
        now = 6;
        bar.Report(new ProgressUpdate("predict", 1200, 10000, "tokens"));
        string[] lines = Lines(error);
        Assert.Equal(2, lines.Length);
        Assert.DoesNotContain("/s", lines[0], StringComparison.Ordinal);
        Assert.Contains("(200/s, eta 44 s)", lines[1], StringComparison.Ordinal);
    }

    [Fact]
    public void On_a_terminal_the_bar_redraws_in_place_without_leftover_characters()
    {
        using var error = new StringWriter();
        double now = 0;
        var bar = new ProgressBar(error, interactive: true, () => now);
        for (int done = 0; done < 100; done++)
        {
            now = done * 0.2;
            bar.Report(new ProgressUpdate("predict", done, 100, "tokens"));
        }
        // Each redraw covers the whole of the one before it.
        string[] draws = error.ToString().Split('\r', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(draws.Length > 10);
        for (int i = 1; i < draws.Length; i++)
        {
            Assert.True(draws[i].Length >= draws[i - 1].TrimEnd().Length, $"draw {i}: '{draws[i]}'");
        }
        Assert.DoesNotContain('\n', error.ToString());
        now = 20;
        bar.Report(new ProgressUpdate("predict", 100, 100, "tokens"));
        string last = error.ToString().Split('\r')[^1];
        Assert.EndsWith(Environment.NewLine, last, StringComparison.Ordinal);
        Assert.EndsWith("100/100 tokens in 20.0 s", last.TrimEnd(), StringComparison.Ordinal);
        Assert.True(last.TrimEnd('\n').Length >= draws[^1].Length);
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
