using System.Buffers;
using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace ZeTT.Runtime.Training;

/// <summary>
/// The ranks of one job meeting in a directory. Every file is written under a temporary name
/// and renamed into place, so a file that exists is whole.
/// <para><b>Joining.</b> Each rank writes <c>hello.R</c> (its world size, a fresh random nonce,
/// its pid and host), reads every other rank's, and names the session
/// by the SHA-256 of the nonces in rank order; it then writes <c>ready.R</c> with that name and
/// waits until every <c>ready.Q</c> names the same session. A file left by an earlier run
/// cannot pass for a rank of this one: its nonce gives another session, and a rank that read it
/// re-reads the hellos until the sessions agree (or stops at the timeout, saying so).</para>
/// <para><b>Collectives.</b> Collective n (a generation counter, the same on every rank)
/// writes <c>s-SESSION-n.R</c> and reads every rank's file of generation n in rank order. Once a
/// rank has read all of generation n, every rank has read all of generation n − 1, so it
/// deletes its own file of n − 1: at most two files per rank exist. A rank that stops writes
/// <c>s-SESSION-abort.R</c> with its error, which the others see while they wait. At a clean
/// end each rank writes <c>s-SESSION-done.R</c>; rank 0 waits for them and removes the session's
/// files.</para>
/// </summary>
internal sealed class FileRendezvous : IDisposable
{
    private const string Magic = "zett-rendezvous 1";
    private readonly TimeSpan _timeout;
    private readonly string _session;
    private readonly string[] _nonces;
    private long _generation;
    private bool _failed, _disposed;

    private FileRendezvous(string directory, int rank, int worldSize, TimeSpan timeout,
        string session, string[] nonces)
    {
        Directory = directory;
        Rank = rank;
        WorldSize = worldSize;
        _timeout = timeout;
        _session = session;
        _nonces = nonces;
    }

    /// <summary>The rendezvous directory.</summary>
    public string Directory { get; }

    /// <summary>This rank.</summary>
    public int Rank { get; }

    /// <summary>Ranks in the job.</summary>
    public int WorldSize { get; }

    private string Hello(int rank) => Path.Combine(Directory, $"hello.{rank}");

    private string Ready(int rank) => Path.Combine(Directory, $"ready.{rank}");

    private string SessionFile(string what, int rank) =>
        Path.Combine(Directory, $"s-{_session}-{what}.{rank}");

    /// <summary>Meets the other ranks (see the class); throws a <see cref="ZettException"/>
    /// naming the ranks that did not arrive within the timeout, or one started with another
    /// world size.</summary>
    public static FileRendezvous Join(DistributedOptions o)
    {
        ArgumentNullException.ThrowIfNull(o);
        string dir = Path.GetFullPath(o.Directory);
        System.IO.Directory.CreateDirectory(dir);
        var timeout = TimeSpan.FromSeconds(o.TimeoutSeconds);
        string nonce = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16));
        string hello = string.Join('\n', Magic, $"world {o.WorldSize}", $"nonce {nonce}",
            $"pid {Environment.ProcessId}", $"host {Environment.MachineName}") + '\n';
        WriteAtomic(Path.Combine(dir, $"hello.{o.Rank}"), Encoding.UTF8.GetBytes(hello));
        var clock = Stopwatch.StartNew();
        var nonces = new string?[o.WorldSize];
        nonces[o.Rank] = nonce;
        string? written = null;
        var backoff = new Backoff();
        while (true)
        {
            for (int q = 0; q < o.WorldSize; q++)
            {
                if (q == o.Rank)
                {
                    continue;
                }
                string path = Path.Combine(dir, $"hello.{q}");
                nonces[q] = File.Exists(path) ? ReadHello(path, q, o.WorldSize) : null;
            }
            string? session = nonces.All(n => n is not null)
                ? Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(
                    string.Join(',', nonces!))))[..16]
                : null;
            if (session is not null && session != written)
            {
                WriteAtomic(Path.Combine(dir, $"ready.{o.Rank}"), Encoding.UTF8.GetBytes(session));
                written = session;
            }
            var missing = new List<int>();
            var other = new List<int>();
            for (int q = 0; q < o.WorldSize; q++)
            {
                if (q == o.Rank)
                {
                    continue;
                }
                if (nonces[q] is null)
                {
                    missing.Add(q);
                    continue;
                }
                string? ready = TryReadText(Path.Combine(dir, $"ready.{q}"));
                if (ready != session)
                {
                    other.Add(q);
                }
            }
            if (session is not null && missing.Count == 0 && other.Count == 0)
            {
                var r = new FileRendezvous(dir, o.Rank, o.WorldSize, timeout, session,
                    [.. nonces!]);
                r.RemoveStaleFiles();
                return r;
            }
            if (clock.Elapsed > timeout)
            {
                string why = missing.Count > 0
                    ? $"rank{(missing.Count > 1 ? "s" : "")} {string.Join(", ", missing)} did not "
                        + "arrive"
                    : $"rank{(other.Count > 1 ? "s" : "")} {string.Join(", ", other)} did not join "
                        + "this session (files of an earlier run in the directory? give an empty "
                        + "one)";
                throw new ZettException($"{dir}: rank {o.Rank} of {o.WorldSize}: {why} within "
                    + Inv($"{o.TimeoutSeconds:G} s (--dist-timeout)"));
            }
            backoff.Wait();
        }
    }

    private static string Inv(FormattableString s) => FormattableString.Invariant(s);

    /// <summary>The nonce of a hello file; a hello of another world size is an error.</summary>
    private static string? ReadHello(string path, int rank, int worldSize)
    {
        string? text = TryReadText(path);
        if (text is null)
        {
            return null;
        }
        string[] lines = text.Split('\n');
        string? world = lines.FirstOrDefault(l => l.StartsWith("world ", StringComparison.Ordinal));
        string? nonce = lines.FirstOrDefault(l => l.StartsWith("nonce ", StringComparison.Ordinal));
        if (lines[0] != Magic || world is null || nonce is null)
        {
            throw new ZettException($"{path}: not a zett rendezvous file (--dist-dir must be a "
                + "directory of its own)");
        }
        if (world != $"world {worldSize}")
        {
            throw new ZettException($"{path}: rank {rank} was started with --world-size "
                + $"{world[6..]}, this rank with {worldSize}");
        }
        return nonce[6..];
    }

    private static string? TryReadText(string path)
    {
        try
        {
            return File.ReadAllText(path);
        }
        catch (FileNotFoundException)
        {
            return null;
        }
    }

    /// <summary>This rank's files of earlier sessions (a crashed run's).</summary>
    private void RemoveStaleFiles()
    {
        string suffix = $".{Rank}";
        foreach (string f in System.IO.Directory.EnumerateFiles(Directory, "s-*"))
        {
            string name = Path.GetFileName(f);
            if (name.EndsWith(suffix, StringComparison.Ordinal)
                && !name.StartsWith($"s-{_session}-", StringComparison.Ordinal))
            {
                File.Delete(f);
            }
        }
    }

    /// <summary>One collective: writes <paramref name="payload"/> as this rank's file of the
    /// next generation and hands every rank's payload, in rank order, to
    /// <paramref name="consume"/> (this rank's own without a read).</summary>
    public void Exchange(ReadOnlySpan<byte> payload, string what,
        ReadOnlySpanAction<byte, int> consume)
    {
        ArgumentNullException.ThrowIfNull(consume);
        ObjectDisposedException.ThrowIf(_disposed, this);
        long gen = ++_generation;
        string Name(int q) => SessionFile(gen.ToString("D8", CultureInfo.InvariantCulture), q);
        try
        {
            WriteAtomic(Name(Rank), payload);
            for (int q = 0; q < WorldSize; q++)
            {
                if (q == Rank)
                {
                    consume(payload, q);
                    continue;
                }
                WaitFor(Name(q), q, what, gen);
                consume(File.ReadAllBytes(Name(q)), q);
            }
        }
        catch
        {
            _failed = true;
            throw;
        }
        if (gen > 1)
        {
            File.Delete(SessionFile((gen - 1).ToString("D8", CultureInfo.InvariantCulture), Rank));
        }
    }

    /// <summary>Element-wise sums of <paramref name="values"/> over the ranks, in rank order.
    /// </summary>
    public void SumDoubles(double[] values)
    {
        ArgumentNullException.ThrowIfNull(values);
        var acc = new double[values.Length];
        Exchange(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()),
            $"a sum of {values.Length} numbers", (data, q) =>
            {
                ReadOnlySpan<double> x = System.Runtime.InteropServices.MemoryMarshal
                    .Cast<byte, double>(data);
                if (x.Length != acc.Length)
                {
                    throw new ZettException($"{Directory}: rank {q} summed {x.Length} numbers, "
                        + $"rank {Rank} {acc.Length}");
                }
                for (int i = 0; i < x.Length; i++)
                {
                    acc[i] += x[i];
                }
            });
        acc.CopyTo(values, 0);
    }

    /// <summary>The agreement check of <see cref="IGradientReducer.Agree"/>.</summary>
    public void Agree(string what, string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var texts = new string[WorldSize];
        Exchange(Encoding.UTF8.GetBytes(text), $"the agreement on the {what}",
            (data, q) => texts[q] = Encoding.UTF8.GetString(data));
        for (int q = 1; q < WorldSize; q++)
        {
            if (texts[q] == texts[0])
            {
                continue;
            }
            string[] a = texts[0].Split('\n'), b = texts[q].Split('\n');
            int i = 0;
            while (i < Math.Min(a.Length, b.Length) && a[i] == b[i])
            {
                i++;
            }
            string Line(string[] l) => i < l.Length ? $"'{l[i]}'" : "nothing";
            _failed = true;
            throw new ZettException($"rank {q} and rank 0 differ in the {what}: rank {q} has "
                + $"{Line(b)}, rank 0 {Line(a)} (every rank must run with the same options and "
                + "inputs)");
        }
    }

    /// <summary>Waits for <paramref name="path"/> (rank <paramref name="rank"/>'s file of
    /// generation <paramref name="gen"/>), stopping at another rank's abort or the timeout.
    /// </summary>
    private void WaitFor(string path, int rank, string what, long gen)
    {
        var clock = Stopwatch.StartNew();
        var backoff = new Backoff();
        long polls = 0;
        while (!File.Exists(path))
        {
            if (++polls % 16 == 0)
            {
                CheckAborts();
            }
            if (clock.Elapsed > _timeout)
            {
                CheckAborts();
                throw new ZettException($"{Directory}: rank {rank} did not arrive within "
                    + Inv($"{_timeout.TotalSeconds:G} s (--dist-timeout) at collective {gen}, ")
                    + $"{what}; rank {Rank} stops");
            }
            backoff.Wait();
        }
    }

    private void CheckAborts()
    {
        for (int q = 0; q < WorldSize; q++)
        {
            string? message = q == Rank ? null : TryReadText(SessionFile("abort", q));
            if (message is not null)
            {
                throw new ZettException($"rank {q} stopped: {message}");
            }
        }
    }

    /// <summary>Writes this rank's abort file with <paramref name="message"/>.</summary>
    public void Abort(string message)
    {
        _failed = true;
        if (!_disposed)
        {
            WriteAtomic(SessionFile("abort", Rank), Encoding.UTF8.GetBytes(message ?? ""));
        }
    }

    private static void WriteAtomic(string path, ReadOnlySpan<byte> data)
    {
        string temp = $"{path}.tmp-{Environment.ProcessId}-{Environment.CurrentManagedThreadId}";
        using (var f = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            f.Write(data);
        }
        File.Move(temp, path, overwrite: true);
    }

    /// <summary>A clean end: writes this rank's done file; rank 0 waits for every rank's (at most
    /// the timeout, and one minute) and removes the session's files. After a failure nothing is
    /// removed.</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }
        _disposed = true;
        if (_failed)
        {
            return;
        }
        WriteAtomic(SessionFile("done", Rank), []);
        if (Rank != 0)
        {
            return;
        }
        var clock = Stopwatch.StartNew();
        TimeSpan limit = _timeout < TimeSpan.FromMinutes(1) ? _timeout : TimeSpan.FromMinutes(1);
        var backoff = new Backoff();
        for (int q = 1; q < WorldSize; q++)
        {
            while (!File.Exists(SessionFile("done", q)))
            {
                if (clock.Elapsed > limit)
                {
                    // A rank that ended without its done file: its files stay (the results are
                    // complete; the directory is not ours to empty further).
                    return;
                }
                backoff.Wait();
            }
        }
        foreach (string f in System.IO.Directory.EnumerateFiles(Directory, $"s-{_session}-*"))
        {
            File.Delete(f);
        }
        for (int q = 0; q < WorldSize; q++)
        {
            if (TryReadText(Ready(q)) == _session)
            {
                File.Delete(Ready(q));
            }
            string? hello = TryReadText(Hello(q));
            if (hello is not null && hello.Contains($"nonce {_nonces[q]}\n", StringComparison.Ordinal))
            {
                File.Delete(Hello(q));
            }
        }
    }

    /// <summary>Polling: spins through the first waits (a sum of the other rank's is usually
    /// there within milliseconds), then sleeps up to 10 ms.</summary>
    private sealed class Backoff
    {
        private int _n;

        public void Wait()
        {
            _n++;
            Thread.Sleep(_n < 20 ? 0 : _n < 200 ? 1 : 10);
        }
    }
}
