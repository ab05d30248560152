using System.Diagnostics;
using ZeTT.Runtime.Transfer;

namespace ZeTT.Cli;

/// <summary>
/// Draws <see cref="ProgressUpdate"/>s on stderr: one redrawn line with rate and ETA when stderr
/// is a terminal, otherwise a line per phase start, per 10 % and at completion (so logs stay
/// short). Updates arrive synchronously from the worker; drawing is throttled to 10 per second.
/// </summary>
internal sealed class ProgressBar(TextWriter error, bool interactive) : IProgress<ProgressUpdate>
{
    private readonly Stopwatch _clock = new();
    private string _phase = "";
    private long _lastDraw;
    private int _lastDecile = -1;

    /// <summary>A bar on the process's stderr, interactive when stderr is a terminal.</summary>
    public static ProgressBar ForConsole(CliConsole console) =>
        new(console.Error, console.Interactive);

    public void Report(ProgressUpdate value)
    {
        if (value.Phase != _phase)
        {
            FinishLine();
            _phase = value.Phase;
            _clock.Restart();
            _lastDecile = -1;
            _lastDraw = 0;
        }
        bool done = value.Total > 0 && value.Done >= value.Total;
        if (interactive)
        {
            long now = _clock.ElapsedMilliseconds;
            if (!done && now - _lastDraw < 100 && _lastDraw != 0)
            {
                return;
            }
            _lastDraw = Math.Max(now, 1);
            error.Write("\r" + Render(value));
            if (done)
            {
                error.WriteLine();
                _phase = "";
            }
            return;
        }
        int decile = value.Total > 0 ? (int)(10 * value.Done / value.Total) : 0;
        if (decile != _lastDecile || done)
        {
            _lastDecile = decile;
            error.WriteLine(Render(value));
            if (done)
            {
                _phase = "";
            }
        }
    }

    private string Render(ProgressUpdate v)
    {
        double seconds = Math.Max(_clock.Elapsed.TotalSeconds, 1e-9);
        double fraction = v.Total > 0 ? Math.Clamp((double)v.Done / v.Total, 0, 1) : 0;
        const int Width = 24;
        int filled = (int)(fraction * Width);
        string bar = new string('#', filled) + new string('.', Width - filled);
        double rate = v.Done / seconds;
        string eta = rate > 0 && v.Done < v.Total ? $", eta {(v.Total - v.Done) / rate:F0} s" : "";
        return $"{v.Phase,-14} [{bar}] {v.Done}/{v.Total} {v.Unit} ({rate:F0}/s{eta})";
    }

    private void FinishLine()
    {
        if (interactive && _phase.Length > 0)
        {
            error.WriteLine();
        }
    }
}
