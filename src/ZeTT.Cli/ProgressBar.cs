using System.Diagnostics;
using System.Globalization;
using ZeTT.Runtime.Transfer;

namespace ZeTT.Cli;

/// <summary>
/// Draws <see cref="ProgressUpdate"/>s on stderr. On a terminal: one line per phase, redrawn in
/// place at most 10 times a second, padded so that a shorter line leaves nothing of the longer
/// one behind. Elsewhere (a log, a pipe): a line when a phase starts, one every
/// <see cref="LogInterval"/> seconds, and one when it ends — never one per batch. The rate is
/// measured from the phase's first update, and shown only once a second has passed (the first
/// batches of a phase finish in bursts, so earlier rates are noise).
/// </summary>
/// <param name="error">Where to draw.</param>
/// <param name="interactive">Whether <paramref name="error"/> is a terminal.</param>
/// <param name="clock">Seconds since an arbitrary origin (tests pass their own).</param>
internal sealed class ProgressBar(TextWriter error, bool interactive, Func<double>? clock = null)
    : IProgress<ProgressUpdate>
{
    /// <summary>Seconds between lines when stderr is not a terminal.</summary>
    public const double LogInterval = 5;

    /// <summary>Seconds before a rate is shown.</summary>
    public const double RateWarmup = 1;

    private readonly Func<double> _clock = clock ?? SinceStart();

    private string _phase = "";
    private double _start, _lastDraw;
    private long _startDone;
    private int _drawnWidth;

    /// <summary>A bar on the console's stderr, redrawn in place when it is a terminal.</summary>
    public static ProgressBar ForConsole(CliConsole console) => new(console.Error, console.Interactive);

    public void Report(ProgressUpdate value)
    {
        double now = _clock();
        if (value.Phase != _phase)
        {
            EndLine();
            (_phase, _start, _startDone) = (value.Phase, now, value.Done);
            _lastDraw = double.NegativeInfinity;
        }
        bool done = value.Total > 0 && value.Done >= value.Total;
        double sinceDraw = now - _lastDraw;
        if (!done && sinceDraw < (interactive ? 0.1 : LogInterval))
        {
            return;
        }
        _lastDraw = now;
        string line = Render(value, now, done);
        if (interactive)
        {
            error.Write("\r" + line.PadRight(_drawnWidth));
            _drawnWidth = line.Length;
            if (done)
            {
                error.WriteLine();
                _drawnWidth = 0;
            }
        }
        else
        {
            error.WriteLine(line);
        }
        if (done)
        {
            _phase = "";
        }
    }

    private string Render(ProgressUpdate v, double now, bool done)
    {
        CultureInfo c = CultureInfo.InvariantCulture;
        double seconds = now - _start;
        double fraction = v.Total > 0 ? Math.Clamp((double)v.Done / v.Total, 0, 1) : 0;
        const int Width = 24;
        int filled = (int)(fraction * Width);
        string bar = new string('#', filled) + new string('.', Width - filled);
        string head = string.Create(c, $"{v.Phase,-15} [{bar}] {v.Done}/{v.Total} {v.Unit}");
        if (done)
        {
            return string.Create(c, $"{head} in {seconds:F1} s");
        }
        if (seconds < RateWarmup || v.Done <= _startDone)
        {
            return head;
        }
        double rate = (v.Done - _startDone) / seconds;
        return string.Create(c, $"{head} ({rate:F0}/s, eta {(v.Total - v.Done) / rate:F0} s)");
    }

    private static Func<double> SinceStart()
    {
        var watch = Stopwatch.StartNew();
        return () => watch.Elapsed.TotalSeconds;
    }

    private void EndLine()
    {
        if (interactive && _drawnWidth > 0)
        {
            error.WriteLine();
            _drawnWidth = 0;
        }
    }
}
