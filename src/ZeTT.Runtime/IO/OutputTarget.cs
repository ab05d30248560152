using System.Collections.Concurrent;
using System.Globalization;
using System.Runtime.InteropServices;

namespace ZeTT.Runtime.IO;

/// <summary>Whether an output is one file or a directory.</summary>
public enum OutputKind
{
    /// <summary>One file (predict, surface-forms).</summary>
    File,

    /// <summary>A directory (transfer, apply-to-ft, convert-tokenizer).</summary>
    Directory,
}

/// <summary>
/// The one output policy of every command that writes. <see cref="Check"/> refuses, before any
/// work, an output that equals, contains or lies inside an input (links resolved), the
/// filesystem root, a file where a directory is expected and the reverse, and an existing
/// output without <c>--overwrite</c>. <see cref="Begin"/> then gives a temporary path
/// <c>&lt;out&gt;.tmp-&lt;pid&gt;</c> beside the output, which <see cref="Commit"/> renames into
/// place (an existing output is moved to <c>&lt;out&gt;.old-&lt;pid&gt;</c> only for the
/// instant of the swap); disposing an uncommitted target deletes the temporary, SIGINT and
/// SIGTERM delete every live one (<see cref="InstallSignalHandlers"/>), and leftovers of
/// processes that died by SIGKILL are removed (or, for an <c>.old-</c> whose swap never
/// finished, put back) by the next run that writes there.
/// </summary>
public sealed class OutputTarget : IDisposable
{
    private static readonly ConcurrentDictionary<string, OutputKind> Live = new(StringComparer.Ordinal);
    private static readonly object SignalLock = new();
    private static List<PosixSignalRegistration>? signalRegistrations;
    private bool committed;

    private OutputTarget(string output, OutputKind kind)
    {
        Output = output;
        Kind = kind;
        TempPath = output + ".tmp-" + Environment.ProcessId.ToString(CultureInfo.InvariantCulture);
    }

    /// <summary>The final output path (absolute).</summary>
    public string Output { get; }

    /// <summary>File or directory.</summary>
    public OutputKind Kind { get; }

    /// <summary>Where to write; renamed to <see cref="Output"/> by <see cref="Commit"/>.</summary>
    public string TempPath { get; }

    /// <summary>
    /// Checks <paramref name="output"/> against the policy (see the type). <paramref name="inputs"/>
    /// are every path the command reads (null entries and names that are not paths, such as
    /// built-in tokenizers, are skipped). Returns the absolute output path.
    /// </summary>
    public static string Check(string output, OutputKind kind, bool overwrite,
        IEnumerable<string?> inputs)
    {
        string full = RequireApart(output, inputs);
        CleanStale(full);
        PathKind existing = InputFile.KindOf(full);
        switch (existing)
        {
            case PathKind.SymlinkLoop:
                throw new ZettException($"{output}: symbolic link loop");
            case PathKind.Special:
                throw new ZettException($"{output}: not a regular file or directory");
            case PathKind.RegularFile when kind == OutputKind.Directory:
                throw new ZettException($"{output}: is a file, not an output directory");
            case PathKind.Directory when kind == OutputKind.File:
                throw new ZettException($"{output}: is a directory, not a file to write");
            case PathKind.RegularFile when !overwrite:
                throw new ZettException($"{output}: exists (--overwrite replaces it)");
            case PathKind.Directory when !overwrite && System.IO.Directory.EnumerateFileSystemEntries(full).Any():
                throw new ZettException($"{output}: output directory exists and is not empty "
                    + "(--overwrite replaces it)");
        }
        string? parent = Path.GetDirectoryName(full);
        if (kind == OutputKind.File && parent is not null && !System.IO.Directory.Exists(parent))
        {
            throw new ZettException($"{output}: folder {parent} does not exist");
        }
        return full;
    }

    /// <summary>The part of <see cref="Check"/> for an output that grows over a run (a training
    /// directory of checkpoints, resumed into): not empty, not the filesystem root, and
    /// neither equal to, containing nor inside any of <paramref name="inputs"/> (links
    /// resolved). Returns the absolute output path.</summary>
    public static string RequireApart(string output, IEnumerable<string?> inputs)
    {
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(inputs);
        if (output.Length == 0)
        {
            throw new ZettException("--out is empty");
        }
        string full = Path.GetFullPath(output);
        string trimmed = Path.TrimEndingDirectorySeparator(full);
        if (Path.GetDirectoryName(trimmed) is null)
        {
            throw new ZettException($"{output}: is the filesystem root, not an output");
        }
        full = trimmed;
        string real = RealPath(full);
        foreach (string? input in inputs)
        {
            if (input is null || InputFile.KindOf(input) == PathKind.Missing)
            {
                continue;
            }
            string inReal = RealPath(Path.TrimEndingDirectorySeparator(Path.GetFullPath(input)));
            if (real == inReal)
            {
                throw new ZettException($"{output}: the output is an input ({input})");
            }
            if (IsInside(inReal, real))
            {
                throw new ZettException($"{output}: the output contains an input ({input})");
            }
            if (IsInside(real, inReal))
            {
                throw new ZettException($"{output}: the output lies inside an input ({input})");
            }
        }
        return full;
    }

    /// <summary>Starts writing <paramref name="output"/> (already <see cref="Check"/>ed): the
    /// temporary path is fresh and registered for deletion on a signal. A directory target's
    /// temporary is created.</summary>
    public static OutputTarget Begin(string output, OutputKind kind)
    {
        ArgumentNullException.ThrowIfNull(output);
        var target = new OutputTarget(Path.TrimEndingDirectorySeparator(Path.GetFullPath(output)), kind);
        Delete(target.TempPath);
        Live[target.TempPath] = kind;
        try
        {
            if (kind == OutputKind.Directory)
            {
                string? parent = Path.GetDirectoryName(target.Output);
                if (parent is not null)
                {
                    System.IO.Directory.CreateDirectory(parent);
                }
                System.IO.Directory.CreateDirectory(target.TempPath);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            target.Dispose();
            throw new ZettException($"{output}: cannot create the output: {e.Message}", e);
        }
        return target;
    }

    /// <summary>Renames the finished temporary to <see cref="Output"/>, replacing an existing
    /// output only now that the new one is complete.</summary>
    public void Commit()
    {
        ObjectDisposedException.ThrowIf(committed, this);
        try
        {
            if (Kind == OutputKind.File)
            {
                File.Move(TempPath, Output, overwrite: true);
            }
            else if (!System.IO.Directory.Exists(Output))
            {
                System.IO.Directory.Move(TempPath, Output);
            }
            else
            {
                string old = Output + ".old-" + Environment.ProcessId.ToString(CultureInfo.InvariantCulture);
                Delete(old);
                System.IO.Directory.Move(Output, old);
                Live[old] = OutputKind.Directory;
                System.IO.Directory.Move(TempPath, Output);
                Live.TryRemove(old, out _);
                Delete(old);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ZettException($"{Output}: cannot write the output: {e.Message}", e);
        }
        committed = true;
        Live.TryRemove(TempPath, out _);
    }

    /// <summary>Deletes the temporary unless committed.</summary>
    public void Dispose()
    {
        if (!committed)
        {
            Delete(TempPath);
            Live.TryRemove(TempPath, out _);
            committed = true;
        }
    }

    /// <summary>Registers SIGINT and SIGTERM (and SIGQUIT) handlers that delete every live
    /// temporary before the process ends as the signal would end it. Idempotent.</summary>
    public static void InstallSignalHandlers()
    {
        lock (SignalLock)
        {
            if (signalRegistrations is not null || OperatingSystem.IsBrowser())
            {
                return;
            }
            signalRegistrations = [];
            foreach (PosixSignal signal in new[] { PosixSignal.SIGINT, PosixSignal.SIGTERM, PosixSignal.SIGQUIT })
            {
                try
                {
                    signalRegistrations.Add(PosixSignalRegistration.Create(signal, _ => DeleteLive()));
                }
                catch (PlatformNotSupportedException)
                {
                    // Windows has no SIGQUIT; the others are enough there.
                }
            }
        }
    }

    /// <summary>Deletes every live temporary (and puts back an output a swap had moved aside).
    /// </summary>
    internal static void DeleteLive()
    {
        foreach (string path in Live.Keys)
        {
            if (path.Contains(".old-", StringComparison.Ordinal))
            {
                string output = path[..path.LastIndexOf(".old-", StringComparison.Ordinal)];
                if (!System.IO.Directory.Exists(output) && !File.Exists(output))
                {
                    TryMove(path, output);
                }
            }
            Delete(path);
            Live.TryRemove(path, out _);
        }
    }

    /// <summary>Removes <c>&lt;out&gt;.tmp-&lt;pid&gt;</c> and <c>&lt;out&gt;.old-&lt;pid&gt;</c>
    /// left by processes that no longer run; an <c>.old-</c> whose output is missing (the
    /// process died mid-swap) is renamed back to the output.</summary>
    public static void CleanStale(string output)
    {
        ArgumentNullException.ThrowIfNull(output);
        string full = Path.TrimEndingDirectorySeparator(Path.GetFullPath(output));
        string? parent = Path.GetDirectoryName(full);
        if (parent is null || !System.IO.Directory.Exists(parent))
        {
            return;
        }
        string name = Path.GetFileName(full);
        IEnumerable<string> entries;
        try
        {
            entries = System.IO.Directory.EnumerateFileSystemEntries(parent, name + ".*").ToList();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return;
        }
        foreach (string entry in entries)
        {
            string suffix = Path.GetFileName(entry)[name.Length..];
            bool isTemp = suffix.StartsWith(".tmp-", StringComparison.Ordinal);
            bool isOld = suffix.StartsWith(".old-", StringComparison.Ordinal);
            if ((!isTemp && !isOld) || !int.TryParse(suffix.AsSpan(5), NumberStyles.None,
                CultureInfo.InvariantCulture, out int pid) || IsAlive(pid))
            {
                continue;
            }
            if (isOld && InputFile.KindOf(full) == PathKind.Missing)
            {
                TryMove(entry, full);
                continue;
            }
            Delete(entry);
        }
    }

    /// <summary>Whether <paramref name="real"/> lies strictly inside directory
    /// <paramref name="directory"/>.</summary>
    private static bool IsInside(string real, string directory) =>
        real.Length > directory.Length
        && real.StartsWith(directory, StringComparison.Ordinal)
        && (directory.EndsWith(Path.DirectorySeparatorChar)
            || real[directory.Length] == Path.DirectorySeparatorChar);

    /// <summary>An absolute path with every symbolic link of its existing part resolved (as
    /// realpath(3)); the part that does not exist yet is appended as given.</summary>
    internal static string RealPath(string fullPath)
    {
        string root = Path.GetPathRoot(fullPath) ?? "/";
        string[] parts = fullPath[root.Length..].Split(Path.DirectorySeparatorChar,
            StringSplitOptions.RemoveEmptyEntries);
        string current = root;
        for (int i = 0; i < parts.Length; i++)
        {
            string next = Path.Combine(current, parts[i]);
            FileSystemInfo info = new FileInfo(next);
            if (info.LinkTarget is not null)
            {
                try
                {
                    FileSystemInfo? target = info.ResolveLinkTarget(returnFinalTarget: true);
                    next = target is null ? next : RealPath(Path.GetFullPath(target.FullName));
                }
                catch (IOException)
                {
                    throw new ZettException($"{next}: symbolic link loop");
                }
            }
            else if (!File.Exists(next) && !System.IO.Directory.Exists(next))
            {
                return Path.Combine([next, .. parts[(i + 1)..]]);
            }
            current = next;
        }
        return current;
    }

    private static bool IsAlive(int pid)
    {
        if (pid == Environment.ProcessId)
        {
            return true;
        }
        if (OperatingSystem.IsLinux())
        {
            return System.IO.Directory.Exists("/proc/" + pid.ToString(CultureInfo.InvariantCulture));
        }
        try
        {
            using var p = System.Diagnostics.Process.GetProcessById(pid);
            return !p.HasExited;
        }
        catch (ArgumentException)
        {
            return false;
        }
    }

    private static void TryMove(string from, string to)
    {
        try
        {
            if (System.IO.Directory.Exists(from))
            {
                System.IO.Directory.Move(from, to);
            }
            else
            {
                File.Move(from, to);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Left in place: the next run tries again, and nothing was deleted.
        }
    }

    private static void Delete(string path)
    {
        // A writer thread may still create files in a directory being deleted (a signal
        // arrived mid-write): retry a few times until it is gone.
        for (int attempt = 0; attempt < 5; attempt++)
        {
            try
            {
                if (System.IO.Directory.Exists(path))
                {
                    System.IO.Directory.Delete(path, recursive: true);
                }
                else if (File.Exists(path) || new FileInfo(path).LinkTarget is not null)
                {
                    File.Delete(path);
                }
                return;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                if (attempt == 4)
                {
                    return;
                }
            }
        }
    }
}
