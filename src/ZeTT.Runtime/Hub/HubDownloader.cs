using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using ZeTT.Runtime.Transfer;

namespace ZeTT.Runtime.Hub;

/// <summary>
/// Downloads a repository's files from the Hub into the cache layout of <see cref="HubCache"/>,
/// as <c>huggingface_hub.snapshot_download</c> does: the file list and commit from
/// <c>/api/models/REPO/revision/REV</c>, each file's ETag (<c>X-Linked-Etag</c> for LFS files,
/// the SHA-256 of their content, checked after download) and size from a HEAD of
/// <c>/REPO/resolve/COMMIT/FILE</c> without following redirects, the content by GET (redirects
/// followed; Authorization sent only to the Hub's own host), resumed with a Range request from
/// <c>blobs/ETAG.incomplete</c>. Files already in the cache are not fetched again.
/// </summary>
public sealed class HubDownloader : IDisposable
{
    private readonly HubOptions _options;
    private readonly HubCache _cache;
    private readonly HttpClient _http;

    /// <summary>A downloader for <paramref name="options"/>; <paramref name="handler"/> replaces
    /// the network stack (tests).</summary>
    public HubDownloader(HubOptions options, HttpMessageHandler? handler = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        _options = options;
        _cache = new HubCache(options.CacheDirectory);
        _http = new HttpClient(handler ?? new SocketsHttpHandler
        {
            AllowAutoRedirect = false,
            ConnectTimeout = options.ConnectTimeout,
            AutomaticDecompression = DecompressionMethods.None,
        })
        {
            Timeout = Timeout.InfiniteTimeSpan,
        };
        _http.DefaultRequestHeaders.UserAgent.ParseAdd("zett/1.0");
    }

    /// <summary>Downloads the files of <paramref name="repoId"/> at <paramref name="revision"/>
    /// that <paramref name="wanted"/> selects (given the repository's whole file list) and
    /// returns the snapshot folder. Network failures throw <see cref="HttpRequestException"/>
    /// (the caller may fall back to the cache); answers that rule the repository out throw
    /// <see cref="ZettException"/>.</summary>
    public string Download(string repoId, string revision,
        Func<IReadOnlyList<string>, IEnumerable<string>> wanted,
        IProgress<ProgressUpdate>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(wanted);
        (string commit, List<string> files) = ListFiles(repoId, revision);
        var plan = new List<(string File, string Etag, long Size)>();
        foreach (string file in wanted(files))
        {
            (string etag, long size) = Head(repoId, commit, file);
            string blob = _cache.BlobPath(repoId, etag);
            string link = Path.Combine(_cache.SnapshotFolder(repoId, commit), file);
            if (File.Exists(blob) && new FileInfo(blob).Length == size)
            {
                if (!File.Exists(link))
                {
                    _cache.Link(repoId, commit, file, etag);
                }
                continue;
            }
            plan.Add((file, etag, size));
        }
        long total = plan.Sum(p => p.Size), done = 0;
        string phase = $"download {repoId}";
        foreach ((string file, string etag, long size) in plan)
        {
            long before = done;
            Fetch(repoId, commit, file, etag, size,
                got => progress?.Report(new ProgressUpdate(phase, (before + got) / 1_000_000,
                    Math.Max(total / 1_000_000, 1), "MB")));
            done += size;
            _cache.Link(repoId, commit, file, etag);
        }
        if (plan.Count > 0)
        {
            progress?.Report(new ProgressUpdate(phase, Math.Max(total / 1_000_000, 1),
                Math.Max(total / 1_000_000, 1), "MB"));
        }
        Directory.CreateDirectory(_cache.SnapshotFolder(repoId, commit));
        _cache.WriteRef(repoId, revision, commit);
        return _cache.SnapshotFolder(repoId, commit);
    }

    private (string Commit, List<string> Files) ListFiles(string repoId, string revision)
    {
        string url = $"{_options.Endpoint}/api/models/{repoId}/revision/{Uri.EscapeDataString(revision)}";
        using HttpResponseMessage response = Send(HttpMethod.Get, url, null);
        Check(response, repoId, revision, "");
        JsonObject? info;
        try
        {
            info = JsonNode.Parse(response.Content.ReadAsStream()) as JsonObject;
        }
        catch (JsonException e)
        {
            throw new ZettException($"{url}: the Hub's answer is not JSON ({e.Message})", e);
        }
        string commit = info?["sha"]?.GetValue<string>() is { } sha && HubCache.IsCommitHash(sha)
            ? sha : throw new ZettException($"{url}: the Hub's answer has no commit hash ('sha')");
        var files = new List<string>();
        foreach (JsonNode? sibling in info["siblings"] as JsonArray ?? [])
        {
            if (sibling?["rfilename"]?.GetValue<string>() is { Length: > 0 } name
                && !name.Split('/').Any(part => part is "" or "." or ".."))
            {
                files.Add(name);
            }
        }
        return (commit, files);
    }

    private (string Etag, long Size) Head(string repoId, string commit, string file)
    {
        string url = ResolveUrl(repoId, commit, file);
        using HttpResponseMessage response = Send(HttpMethod.Head, url, null);
        if ((int)response.StatusCode is >= 300 and < 400 || response.IsSuccessStatusCode)
        {
            string? etag = Header(response, "X-Linked-Etag") ?? response.Headers.ETag?.Tag
                ?? Header(response, "ETag");
            string? size = Header(response, "X-Linked-Size")
                ?? response.Content.Headers.ContentLength?.ToString(CultureInfo.InvariantCulture);
            if (etag is null || !long.TryParse(size, CultureInfo.InvariantCulture, out long bytes))
            {
                throw new ZettException($"{url}: the Hub sent no ETag or size for {file}");
            }
            etag = etag.Replace("W/", "", StringComparison.Ordinal).Trim('"');
            if (etag.Length == 0 || etag.Contains('/', StringComparison.Ordinal) || etag.Contains("..", StringComparison.Ordinal))
            {
                throw new ZettException($"{url}: unusable ETag '{etag}'");
            }
            return (etag, bytes);
        }
        Check(response, repoId, commit, file);
        throw new ZettException($"{url}: HTTP {(int)response.StatusCode}");
    }

    private void Fetch(string repoId, string commit, string file, string etag, long size, Action<long> progress)
    {
        string blob = _cache.BlobPath(repoId, etag);
        string partial = blob + ".incomplete";
        Directory.CreateDirectory(Path.GetDirectoryName(blob)!);
        long have = File.Exists(partial) ? new FileInfo(partial).Length : 0;
        if (have > size)
        {
            File.Delete(partial);
            have = 0;
        }
        string url = ResolveUrl(repoId, commit, file);
        using HttpResponseMessage response = Get(url, have > 0 && have < size ? have : null);
        Check(response, repoId, commit, file);
        bool resumed = response.StatusCode == HttpStatusCode.PartialContent;
        using (var output = new FileStream(partial, resumed ? FileMode.Append : FileMode.Create,
            FileAccess.Write, FileShare.None, 1 << 16))
        {
            long written = resumed ? have : 0;
            using Stream input = response.Content.ReadAsStream();
            byte[] buffer = new byte[1 << 20];
            long lastReport = 0;
            try
            {
                for (int n; (n = input.Read(buffer)) > 0;)
                {
                    output.Write(buffer, 0, n);
                    written += n;
                    if (written - lastReport >= 1 << 22)
                    {
                        progress(written);
                        lastReport = written;
                    }
                }
            }
            catch (IOException e) when (e is HttpIOException || e.InnerException is System.Net.Sockets.SocketException)
            {
                // The connection broke: what arrived is kept for the next run to resume from.
                throw new HttpRequestException($"{url}: the download broke off after {written} of "
                    + $"{size} bytes ({e.Message})", e);
            }
        }
        long length = new FileInfo(partial).Length;
        if (length != size)
        {
            // Kept: the next run resumes from here.
            throw new HttpRequestException($"{url}: download ended after {length} of {size} bytes");
        }
        if (etag.Length == 64 && etag.All(char.IsAsciiHexDigitLower))
        {
            using FileStream check = File.OpenRead(partial);
            string sha = Convert.ToHexStringLower(SHA256.HashData(check));
            if (sha != etag)
            {
                check.Dispose();
                File.Delete(partial);
                throw new ZettException($"{url}: downloaded {file} has SHA-256 {sha}, the Hub says {etag}");
            }
        }
        File.Move(partial, blob, overwrite: true);
    }

    private HttpResponseMessage Get(string url, long? from)
    {
        string current = url;
        for (int hop = 0; ; hop++)
        {
            HttpResponseMessage response = Send(HttpMethod.Get, current, from);
            if ((int)response.StatusCode is not (301 or 302 or 303 or 307 or 308))
            {
                return response;
            }
            Uri? location = response.Headers.Location;
            response.Dispose();
            if (location is null || hop == 8)
            {
                throw new ZettException($"{url}: too many or empty redirects");
            }
            current = new Uri(new Uri(current), location).ToString();
        }
    }

    private HttpResponseMessage Send(HttpMethod method, string url, long? from)
    {
        using var request = new HttpRequestMessage(method, url);
        if (_options.Token is { } token
            && new Uri(url).Host == new Uri(_options.Endpoint).Host)
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        }
        if (from is long start)
        {
            request.Headers.Range = new RangeHeaderValue(start, null);
        }
        using var timeout = new CancellationTokenSource(_options.ConnectTimeout);
        try
        {
            return _http.Send(request, HttpCompletionOption.ResponseHeadersRead, timeout.Token);
        }
        catch (TaskCanceledException e)
        {
            throw new HttpRequestException($"{url}: no answer within {_options.ConnectTimeout.TotalSeconds:F0} s", e);
        }
    }

    private void Check(HttpResponseMessage response, string repoId, string revision, string file)
    {
        if (response.IsSuccessStatusCode)
        {
            return;
        }
        string what = file.Length == 0 ? $"{repoId} (revision {revision})" : $"{repoId}/{file}";
        throw (int)response.StatusCode switch
        {
            401 or 403 => new ZettException($"{what}: the Hub at {_options.Endpoint} refused access "
                + $"(HTTP {(int)response.StatusCode}): a private or gated repository needs a token "
                + (_options.Token is null ? "(set HF_TOKEN)" : "with access to it (HF_TOKEN is set)")),
            404 => new ZettException($"{what}: not found on {_options.Endpoint} (check the name and "
                + "the revision)"),
            >= 500 => new HttpRequestException($"{what}: the Hub answered HTTP {(int)response.StatusCode}"),
            _ => new ZettException($"{what}: the Hub answered HTTP {(int)response.StatusCode}"),
        };
    }

    private string ResolveUrl(string repoId, string commit, string file) =>
        $"{_options.Endpoint}/{repoId}/resolve/{commit}/"
        + string.Join('/', file.Split('/').Select(Uri.EscapeDataString));

    private static string? Header(HttpResponseMessage response, string name) =>
        response.Headers.TryGetValues(name, out IEnumerable<string>? values)
        || response.Content.Headers.TryGetValues(name, out values)
            ? values.FirstOrDefault() : null;

    /// <inheritdoc/>
    public void Dispose() => _http.Dispose();
}
