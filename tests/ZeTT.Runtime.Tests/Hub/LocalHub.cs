using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;

namespace ZeTT.Runtime.Tests.Hub;

/// <summary>
/// A Hub-shaped HTTP server on 127.0.0.1 for tests: <c>/api/models/ORG/NAME/revision/REV</c>
/// lists a repository (commit and files), <c>/ORG/NAME/resolve/REV/FILE</c> answers HEAD and GET
/// as the Hub does — small files directly with a git ETag, <c>.safetensors</c> as LFS files
/// (a redirect to <c>/cdn/SHA256</c> with <c>X-Linked-Etag</c> and <c>X-Linked-Size</c>), the
/// CDN honouring Range requests. Every request is recorded.
/// </summary>
internal sealed class LocalHub : IDisposable
{
    private readonly HttpListener _listener = new();
    private readonly Dictionary<string, (string Commit, Dictionary<string, byte[]> Files)> _repos = [];
    private readonly Dictionary<string, byte[]> _blobs = [];
    private readonly Thread _loop;

    public LocalHub()
    {
        Port = FreePort();
        Endpoint = $"http://127.0.0.1:{Port}";
        _listener.Prefixes.Add(Endpoint + "/");
        _listener.Start();
        _loop = new Thread(Serve) { IsBackground = true };
        _loop.Start();
    }

    public int Port { get; }

    /// <summary>The base URL (HF_ENDPOINT).</summary>
    public string Endpoint { get; }

    /// <summary>"METHOD path [range] [auth]" per request, in order of arrival.</summary>
    public ConcurrentQueue<string> Requests { get; } = new();

    /// <summary>When set, requests without <c>Authorization: Bearer TOKEN</c> get 401.</summary>
    public string? RequiredToken { get; set; }

    /// <summary>When set, the next GET of an LFS file stops after this many bytes.</summary>
    public int? CutNextDownloadAfter { get; set; }

    /// <summary>When set, LFS downloads serve these bytes instead of the real ones.</summary>
    public byte[]? CorruptLfsContent { get; set; }

    /// <summary>A free loopback port (closed again: nothing listens there).</summary>
    public static int FreePort()
    {
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        return ((IPEndPoint)probe.LocalEndpoint).Port;
    }

    /// <summary>Adds repository <paramref name="repoId"/> at <paramref name="commit"/>, reachable
    /// as main, as <paramref name="branches"/> and by its hash.</summary>
    public void Add(string repoId, string commit, Dictionary<string, byte[]> files, params string[] branches)
    {
        lock (_repos)
        {
            foreach (string rev in branches.Append("main").Append(commit))
            {
                _repos[$"{repoId}@{rev}"] = (commit, files);
            }
            foreach (byte[] content in files.Values)
            {
                _blobs[Sha256(content)] = content;
            }
        }
    }

    public static string Sha256(byte[] data) => Convert.ToHexStringLower(SHA256.HashData(data));

    public static string GitSha(byte[] data) => Convert.ToHexStringLower(SHA1.HashData(
        [.. Encoding.ASCII.GetBytes($"blob {data.Length}\0"), .. data]));

    private void Serve()
    {
        while (_listener.IsListening)
        {
            HttpListenerContext context;
            try
            {
                context = _listener.GetContext();
            }
            catch (HttpListenerException)
            {
                return;
            }
            catch (ObjectDisposedException)
            {
                return;
            }
            ThreadPool.QueueUserWorkItem(_ => Handle(context));
        }
    }

    private void Handle(HttpListenerContext context)
    {
        HttpListenerRequest request = context.Request;
        HttpListenerResponse response = context.Response;
        string path = Uri.UnescapeDataString(request.Url!.AbsolutePath);
        Requests.Enqueue($"{request.HttpMethod} {path} {request.Headers["Range"]} {request.Headers["Authorization"]}".TrimEnd());
        try
        {
            if (RequiredToken is { } token && !path.StartsWith("/cdn/", StringComparison.Ordinal)
                && request.Headers["Authorization"] != $"Bearer {token}")
            {
                response.StatusCode = 401;
                return;
            }
            string[] parts = path.Trim('/').Split('/');
            if (parts is ["api", "models", string org, string name, "revision", .. string[] rev])
            {
                if (!TryRepo($"{org}/{name}", string.Join('/', rev), out var repo))
                {
                    response.StatusCode = 404;
                    return;
                }
                var json = new JsonObject
                {
                    ["id"] = $"{org}/{name}",
                    ["sha"] = repo.Commit,
                    ["siblings"] = new JsonArray([.. repo.Files.Keys.Select(f =>
                        (JsonNode)new JsonObject { ["rfilename"] = f })]),
                };
                Write(response, Encoding.UTF8.GetBytes(json.ToJsonString()), head: false);
            }
            else if (parts is [string o, string n, "resolve", string revision, .. string[] file]
                && TryRepo($"{o}/{n}", revision, out var r)
                && r.Files.TryGetValue(string.Join('/', file), out byte[]? content))
            {
                response.Headers["X-Repo-Commit"] = r.Commit;
                if (string.Join('/', file).EndsWith(".safetensors", StringComparison.Ordinal))
                {
                    response.StatusCode = 302;
                    response.Headers["Location"] = $"/cdn/{Sha256(content)}";
                    response.Headers["X-Linked-Etag"] = $"\"{Sha256(content)}\"";
                    response.Headers["X-Linked-Size"] = content.Length.ToString(System.Globalization.CultureInfo.InvariantCulture);
                    return;
                }
                response.Headers["ETag"] = $"\"{GitSha(content)}\"";
                Write(response, content, request.HttpMethod == "HEAD");
            }
            else if (parts is ["cdn", string sha] && _blobs.TryGetValue(sha, out byte[]? blob))
            {
                blob = CorruptLfsContent ?? blob;
                long from = 0;
                if (request.Headers["Range"] is { } range && range.StartsWith("bytes=", StringComparison.Ordinal))
                {
                    from = long.Parse(range["bytes=".Length..].TrimEnd('-'), System.Globalization.CultureInfo.InvariantCulture);
                    response.StatusCode = 206;
                    response.Headers["Content-Range"] = $"bytes {from}-{blob.Length - 1}/{blob.Length}";
                }
                byte[] body = blob[(int)from..];
                if (CutNextDownloadAfter is int cut)
                {
                    CutNextDownloadAfter = null;
                    response.ContentLength64 = body.Length;
                    response.OutputStream.Write(body, 0, cut);
                    response.Abort();
                    return;
                }
                Write(response, body, head: false);
            }
            else
            {
                response.StatusCode = 404;
            }
        }
        finally
        {
            try
            {
                response.Close();
            }
            catch (ObjectDisposedException)
            {
                // Aborted above (a cut download).
            }
        }
    }

    private bool TryRepo(string id, string revision, out (string Commit, Dictionary<string, byte[]> Files) repo)
    {
        lock (_repos)
        {
            return _repos.TryGetValue($"{id}@{revision}", out repo);
        }
    }

    private static void Write(HttpListenerResponse response, byte[] body, bool head)
    {
        response.ContentLength64 = body.Length;
        if (!head)
        {
            response.OutputStream.Write(body);
        }
    }

    public void Dispose()
    {
        _listener.Stop();
        _listener.Close();
        _loop.Join(TimeSpan.FromSeconds(5));
    }
}
