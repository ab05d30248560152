using System.Diagnostics;

namespace ZeTT.Runtime.Transfer;

/// <summary>A unit of long work and how far it got, reported to the caller's
/// <see cref="IProgress{T}"/> (the CLI draws it on stderr).</summary>
/// <param name="Phase">What is running ("predict", "write model", ...).</param>
/// <param name="Done">Units finished.</param>
/// <param name="Total">Units in all.</param>
/// <param name="Unit">What a unit is ("tokens", "tensors", "MB").</param>
public readonly record struct ProgressUpdate(string Phase, long Done, long Total, string Unit);

/// <summary>Wall-clock time of each phase of a run, in order, and the process's peak memory,
/// for the summary printed at the end.</summary>
public sealed class PhaseTimes
{
    private readonly List<(string Phase, TimeSpan Time)> _phases = [];

    /// <summary>The phases measured so far, in the order they ran.</summary>
    public IReadOnlyList<(string Phase, TimeSpan Time)> Phases => _phases;

    /// <summary>Runs <paramref name="work"/> and records its duration under
    /// <paramref name="phase"/>.</summary>
    public T Measure<T>(string phase, Func<T> work)
    {
        ArgumentNullException.ThrowIfNull(work);
        long start = Stopwatch.GetTimestamp();
        try
        {
            return work();
        }
        finally
        {
            _phases.Add((phase, Stopwatch.GetElapsedTime(start)));
        }
    }

    /// <summary>Runs <paramref name="work"/> and records its duration under
    /// <paramref name="phase"/>.</summary>
    public void Measure(string phase, Action work)
    {
        ArgumentNullException.ThrowIfNull(work);
        Measure<int>(phase, () =>
        {
            work();
            return 0;
        });
    }

    /// <summary>Seconds recorded for <paramref name="phase"/> (0 when it did not run).</summary>
    public double Seconds(string phase) =>
        _phases.Where(p => p.Phase == phase).Sum(p => p.Time.TotalSeconds);

    /// <summary>Peak resident memory of this process so far, in bytes (Linux VmHWM; the
    /// working-set peak elsewhere).</summary>
    public static long PeakResidentBytes()
    {
        try
        {
            foreach (string line in File.ReadLines("/proc/self/status"))
            {
                if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                {
                    string kb = line["VmHWM:".Length..].Trim().Split(' ')[0];
                    return long.Parse(kb, System.Globalization.CultureInfo.InvariantCulture) * 1024;
                }
            }
        }
        catch (IOException)
        {
            // /proc is absent outside Linux; fall through to the portable counter.
        }
        return Process.GetCurrentProcess().PeakWorkingSet64;
    }
}
