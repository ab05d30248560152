using System.Text.RegularExpressions;

namespace ZeTT.Runtime.Hub;

/// <summary>
/// The Hugging Face cache layout, shared with <c>huggingface_hub</c> and <c>transformers</c>:
/// <c>models--org--name/refs/REVISION</c> holds a commit hash,
/// <c>models--org--name/snapshots/COMMIT/FILE</c> is a link to
/// <c>models--org--name/blobs/ETAG</c> (the file's git or LFS hash). A file being downloaded is
/// <c>blobs/ETAG.incomplete</c> until it is complete.
/// </summary>
/// <param name="root">The cache root (<see cref="HubOptions.CacheDirectory"/>).</param>
public sealed partial class HubCache(string root)
{
    /// <summary>The cache root.</summary>
    public string Root { get; } = root;

    /// <summary>The folder of repository <paramref name="repoId"/> (org/name).</summary>
    public string RepoFolder(string repoId) =>
        Path.Combine(Root, "models--" + repoId.Replace("/", "--", StringComparison.Ordinal));

    /// <summary>The snapshot folder of a commit.</summary>
    public string SnapshotFolder(string repoId, string commit) =>
        Path.Combine(RepoFolder(repoId), "snapshots", commit);

    /// <summary>The blob of an ETag.</summary>
    public string BlobPath(string repoId, string etag) => Path.Combine(RepoFolder(repoId), "blobs", etag);

    /// <summary>Whether <paramref name="revision"/> is a full commit hash.</summary>
    public static bool IsCommitHash(string revision) => CommitPattern().IsMatch(revision);

    /// <summary>The commit <paramref name="revision"/> names in the cache (a commit hash names
    /// itself; a branch or tag is read from <c>refs/</c>), or null.</summary>
    public string? ResolveRevision(string repoId, string revision)
    {
        if (IsCommitHash(revision))
        {
            return revision;
        }
        string refFile = Path.Combine(RepoFolder(repoId), "refs", revision);
        return File.Exists(refFile) && File.ReadAllText(refFile).Trim() is { Length: > 0 } commit
            ? commit : null;
    }

    /// <summary>The snapshot folder of <paramref name="revision"/> when the cache has one that
    /// holds <paramref name="requiredFile"/>, else null.</summary>
    public string? TryGetSnapshot(string repoId, string revision, string requiredFile)
    {
        if (ResolveRevision(repoId, revision) is not { } commit)
        {
            return null;
        }
        string folder = SnapshotFolder(repoId, commit);
        return File.Exists(Path.Combine(folder, requiredFile)) ? folder : null;
    }

    /// <summary>Records that <paramref name="revision"/> is at <paramref name="commit"/>.</summary>
    public void WriteRef(string repoId, string revision, string commit)
    {
        if (revision == commit)
        {
            return;
        }
        string refFile = Path.Combine(RepoFolder(repoId), "refs", revision);
        Directory.CreateDirectory(Path.GetDirectoryName(refFile)!);
        string temp = refFile + ".tmp";
        File.WriteAllText(temp, commit);
        File.Move(temp, refFile, overwrite: true);
    }

    /// <summary>Makes <c>snapshots/COMMIT/FILE</c> point at <c>blobs/ETAG</c>: a relative
    /// symbolic link as <c>huggingface_hub</c> makes it, or a copy where links cannot be made.
    /// </summary>
    public string Link(string repoId, string commit, string file, string etag)
    {
        string target = Path.Combine(SnapshotFolder(repoId, commit), file);
        Directory.CreateDirectory(Path.GetDirectoryName(target)!);
        string blob = BlobPath(repoId, etag);
        if (File.Exists(target) || new FileInfo(target).LinkTarget is not null)
        {
            File.Delete(target);
        }
        try
        {
            File.CreateSymbolicLink(target, Path.GetRelativePath(Path.GetDirectoryName(target)!, blob));
        }
        catch (IOException)
        {
            File.Copy(blob, target);
        }
        catch (UnauthorizedAccessException)
        {
            File.Copy(blob, target);
        }
        return target;
    }

    [GeneratedRegex("^[0-9a-f]{40}$")]
    private static partial Regex CommitPattern();
}
