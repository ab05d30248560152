using System.Text.RegularExpressions;
using ZeTT.Runtime.Transfer;

namespace ZeTT.Runtime.Hub;

/// <summary>What a name stands for, which decides the files a download takes.</summary>
public enum HubRepoKind
{
    /// <summary>A Hugging Face model: its JSON files (config, tokenizer, generation config) and
    /// safetensors weights.</summary>
    Model,

    /// <summary>A ZeTT hypernetwork: its JSON files and safetensors weights, or
    /// <c>flax_model.msgpack</c> where it has no safetensors.</summary>
    Hypernetwork,

    /// <summary>A tokenizer: tokenizer.json with tokenizer_config.json and
    /// special_tokens_map.json.</summary>
    Tokenizer,
}

/// <summary>
/// Turns what a user typed for a model, hypernetwork or tokenizer into a local path, as
/// <c>from_pretrained</c> does: an existing file or directory is itself; a Hugging Face name
/// <c>org/name</c> (optionally <c>org/name@revision</c>) is the snapshot folder of that
/// revision in the local cache, downloaded first where the Hub can be reached
/// (<see cref="HubOptions.Offline"/> off), the cache alone otherwise (and as the fallback when
/// the Hub cannot be reached). Anything else is returned unchanged for the loader to judge
/// (built-in tokenizer names, missing paths).
/// </summary>
public static partial class HubResolver
{
    /// <summary>Whether <paramref name="value"/> reads as a Hub name (<c>org/name</c> or
    /// <c>org/name@revision</c>); <paramref name="repoId"/> and <paramref name="revision"/>
    /// (null when not given) are its parts.</summary>
    public static bool TryParseName(string value, out string repoId, out string? revision)
    {
        ArgumentNullException.ThrowIfNull(value);
        Match m = NamePattern().Match(value);
        repoId = m.Success ? m.Groups["repo"].Value : "";
        revision = m.Success && m.Groups["rev"].Success ? m.Groups["rev"].Value : null;
        return m.Success && !repoId.Contains("..", StringComparison.Ordinal);
    }

    /// <summary>The local path of <paramref name="value"/> (see the class summary).</summary>
    /// <param name="value">A path, a Hub name, or a built-in tokenizer name.</param>
    /// <param name="kind">What it names (decides what is downloaded and what must be there).</param>
    /// <param name="revision">The revision when the name carries none (default main).</param>
    /// <param name="options">Cache and network; null reads the environment.</param>
    /// <param name="progress">Download progress.</param>
    /// <param name="log">Notes (a cache fallback).</param>
    public static string Locate(string value, HubRepoKind kind, string? revision = null,
        HubOptions? options = null, IProgress<ProgressUpdate>? progress = null, Action<string>? log = null)
    {
        ArgumentNullException.ThrowIfNull(value);
        if (File.Exists(value) || Directory.Exists(value)
            || !TryParseName(value, out string repoId, out string? named))
        {
            return value;
        }
        options ??= HubOptions.FromEnvironment();
        string rev = named ?? revision ?? "main";
        var cache = new HubCache(options.CacheDirectory);
        string required = kind == HubRepoKind.Tokenizer ? "tokenizer.json" : "config.json";
        string what = kind switch
        {
            HubRepoKind.Model => "model",
            HubRepoKind.Hypernetwork => "hypernetwork",
            _ => "tokenizer",
        };
        string notLocal = $"'{value}' is not a local path, so it was read as a Hugging Face "
            + $"{what} name";
        if (options.Offline)
        {
            return cache.TryGetSnapshot(repoId, rev, required) ?? throw new ZettException(
                $"{notLocal}: {cache.RepoFolder(repoId)} has no snapshot of revision {rev} "
                + $"with {required}, and HF_HUB_OFFLINE is set (nothing is downloaded)");
        }
        try
        {
            using var downloader = new HubDownloader(options);
            string folder = downloader.Download(repoId, rev, files => Select(files, kind), progress);
            if (!File.Exists(Path.Combine(folder, required)))
            {
                throw new ZettException($"{value}: the repository has no {required}"
                    + (kind == HubRepoKind.Tokenizer ? " (zett reads tokenizers from tokenizer.json)" : ""));
            }
            return folder;
        }
        catch (HttpRequestException e)
        {
            if (cache.TryGetSnapshot(repoId, rev, required) is { } cached)
            {
                log?.Invoke($"{value}: the Hub could not be reached ({e.Message}); using the cached "
                    + $"snapshot {cached}");
                return cached;
            }
            throw new ZettException($"{notLocal}: it is not in the cache ({cache.RepoFolder(repoId)}) "
                + $"and {options.Endpoint} could not be reached ({e.Message})", e);
        }
    }

    /// <summary>The files of a repository a download takes for <paramref name="kind"/>: top-level
    /// files only (no onnx/ or other exports).</summary>
    public static IEnumerable<string> Select(IReadOnlyList<string> files, HubRepoKind kind)
    {
        ArgumentNullException.ThrowIfNull(files);
        string[] top = [.. files.Where(f => !f.Contains('/', StringComparison.Ordinal))];
        if (kind == HubRepoKind.Tokenizer)
        {
            return top.Where(f => f is "tokenizer.json" or "tokenizer_config.json"
                or "special_tokens_map.json" or "chat_template.jinja");
        }
        bool safetensors = top.Any(f => f.EndsWith(".safetensors", StringComparison.Ordinal));
        return top.Where(f => f.EndsWith(".json", StringComparison.Ordinal)
            || f.EndsWith(".safetensors", StringComparison.Ordinal) || f == "chat_template.jinja"
            || (kind == HubRepoKind.Hypernetwork && !safetensors && f == "flax_model.msgpack"));
    }

    [GeneratedRegex(@"^(?<repo>[A-Za-z0-9][A-Za-z0-9_.\-]*/[A-Za-z0-9_.\-]+)(@(?<rev>[A-Za-z0-9_.\-/]+))?$")]
    private static partial Regex NamePattern();
}
