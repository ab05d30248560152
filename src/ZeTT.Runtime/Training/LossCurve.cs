namespace ZeTT.Runtime.Training;

/// <summary>One point of the training curve.</summary>
/// <param name="Step">Updates done.</param>
/// <param name="Stage">"identity", "main" or "valid".</param>
/// <param name="Value">The update's loss, or the validation's bits per byte.</param>
/// <param name="LmLoss">Main stage: the LM part of the loss (NaN otherwise).</param>
public sealed record LossPoint(long Step, string Stage, double Value, double LmLoss);

/// <summary>
/// The loss curve as a PNG (ScottPlot over SkiaSharp, which renders without a display): the
/// identity loss and the main-stage loss and its LM part against the update on the left axis,
/// the validation's bits per byte on the right. Written under a temporary name and renamed.
/// </summary>
public static class LossCurve
{
    /// <summary>Writes <paramref name="points"/> to <paramref name="path"/>; nothing when there
    /// are none.</summary>
    public static void Write(string path, IReadOnlyList<LossPoint> points)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(points);
        if (points.Count == 0)
        {
            return;
        }
        var plot = new ScottPlot.Plot();
        void Line(IEnumerable<LossPoint> series, Func<LossPoint, double> value, string label,
            bool right = false)
        {
            LossPoint[] s = series.Where(p => double.IsFinite(value(p))).ToArray();
            if (s.Length == 0)
            {
                return;
            }
            ScottPlot.Plottables.Scatter scatter = plot.Add.ScatterLine(
                s.Select(p => (double)p.Step).ToArray(), s.Select(value).ToArray());
            scatter.LegendText = label;
            if (s.Length == 1 || right)
            {
                scatter.MarkerSize = 6;
            }
            if (right)
            {
                scatter.Axes.YAxis = plot.Axes.Right;
            }
        }
        Line(points.Where(p => p.Stage == "identity"), p => p.Value, "identity loss (MSE)");
        Line(points.Where(p => p.Stage == "main"), p => p.Value, "main loss (LM + λ·lexical)");
        Line(points.Where(p => p.Stage == "main"), p => p.LmLoss, "LM loss (nats/token)");
        bool valid = points.Any(p => p.Stage == "valid");
        Line(points.Where(p => p.Stage == "valid"), p => p.Value, "validation bits/byte",
            right: true);
        plot.XLabel("update");
        plot.YLabel("training loss");
        if (valid)
        {
            plot.Axes.Right.Label.Text = "validation bits per byte";
        }
        plot.ShowLegend(ScottPlot.Alignment.UpperCenter);
        string tmp = path + $".tmp-{Environment.ProcessId}.png";
        plot.SavePng(tmp, 900, 540);
        File.Move(tmp, path, overwrite: true);
    }
}
