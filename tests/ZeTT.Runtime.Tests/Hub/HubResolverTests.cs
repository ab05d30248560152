using System.Text;
using ZeTT.Runtime.Hub;

namespace ZeTT.Runtime.Tests.Hub;

public sealed class HubResolverTests : IDisposable
{
    private const string Commit = "0123456789abcdef0123456789abcdef01234567";
    private const string OtherCommit = "fedcba9876543210fedcba9876543210fedcba98";

    private readonly string _dir = Directory.CreateTempSubdirectory("zett-hub-").FullName;
    private readonly LocalHub _hub = new();

    public void Dispose()
    {
        _hub.Dispose();
        Directory.Delete(_dir, recursive: true);
    }

    private string Cache => Path.Combine(_dir, "hub");

    private HubOptions Options(bool offline = false, string? token = null, string? endpoint = null) => new()
    {
        CacheDirectory = Cache,
        Endpoint = endpoint ?? _hub.Endpoint,
        Offline = offline,
        Token = token,
        ConnectTimeout = TimeSpan.FromSeconds(5),
    };

    private static Dictionary<string, byte[]> ModelFiles(int weightBytes = 3_000_000)
    {
        var weights = new byte[weightBytes];
        new Random(7).NextBytes(weights);
        return new Dictionary<string, byte[]>
        {
            ["config.json"] = Encoding.UTF8.GetBytes("{\"model_type\": \"llama\"}"),
            ["tokenizer.json"] = Encoding.UTF8.GetBytes("{\"model\": {}}"),
            ["model.safetensors"] = weights,
            ["README.md"] = Encoding.UTF8.GetBytes("# card"),
            ["pytorch_model.bin"] = [1, 2, 3],
            ["onnx/model.onnx"] = [4, 5, 6],
        };
    }

    [Theory]
    [InlineData("mistralai/Mistral-7B-v0.1", "mistralai/Mistral-7B-v0.1", null)]
    [InlineData("EleutherAI/gpt-neox-20b@refs/pr/3", "EleutherAI/gpt-neox-20b", "refs/pr/3")]
    [InlineData("benjamin/zett-hypernetwork-xlm-roberta-base@v1.0", "benjamin/zett-hypernetwork-xlm-roberta-base", "v1.0")]
    public void Names_parse_as_the_hub_spells_them(string value, string repo, string? revision)
    {
        Assert.True(HubResolver.TryParseName(value, out string r, out string? rev));
        Assert.Equal(repo, r);
        Assert.Equal(revision, rev);
    }

    [Theory]
    [InlineData("gpt2")]
    [InlineData("/abs/path")]
    [InlineData("a/b/c")]
    [InlineData("../x")]
    [InlineData("org/..")]
    [InlineData("./model")]
    public void Paths_and_plain_names_are_not_hub_names(string value) =>
        Assert.False(HubResolver.TryParseName(value, out _, out _));

    [Fact]
    public void Local_paths_and_builtin_names_are_returned_unchanged()
    {
        Assert.Equal(_dir, HubResolver.Locate(_dir, HubRepoKind.Model, options: Options(offline: true)));
        Assert.Equal("gpt2", HubResolver.Locate("gpt2", HubRepoKind.Tokenizer, options: Options(offline: true)));
        Assert.Empty(_hub.Requests);
    }

    [Fact]
    public void Offline_names_resolve_through_refs_and_snapshots_as_transformers_does()
    {
        string repo = Path.Combine(Cache, "models--org--tiny");
        foreach ((string commit, string refName) in new[] { (Commit, "main"), (OtherCommit, "v2") })
        {
            Directory.CreateDirectory(Path.Combine(repo, "snapshots", commit));
            File.WriteAllText(Path.Combine(repo, "snapshots", commit, "config.json"), "{}");
            Directory.CreateDirectory(Path.Combine(repo, "refs"));
            File.WriteAllText(Path.Combine(repo, "refs", refName), commit + "\n");
        }
        HubOptions offline = Options(offline: true);
        Assert.Equal(Path.Combine(repo, "snapshots", Commit), HubResolver.Locate("org/tiny", HubRepoKind.Model, options: offline));
        Assert.Equal(Path.Combine(repo, "snapshots", OtherCommit), HubResolver.Locate("org/tiny", HubRepoKind.Model, "v2", offline));
        Assert.Equal(Path.Combine(repo, "snapshots", OtherCommit), HubResolver.Locate("org/tiny@v2", HubRepoKind.Model, "main", offline));
        Assert.Equal(Path.Combine(repo, "snapshots", OtherCommit),
            HubResolver.Locate($"org/tiny@{OtherCommit}", HubRepoKind.Model, options: offline));
        Assert.Empty(_hub.Requests);

        var e = Assert.Throws<ZettException>(() => HubResolver.Locate("org/tiny@v3", HubRepoKind.Model, options: offline));
        Assert.Equal($"'org/tiny@v3' is not a local path, so it was read as a Hugging Face model name: "
            + $"{repo} has no snapshot of revision v3 with config.json, and HF_HUB_OFFLINE is set "
            + "(nothing is downloaded)", e.Message);
        // A tokenizer needs tokenizer.json in the snapshot.
        e = Assert.Throws<ZettException>(() => HubResolver.Locate("org/tiny", HubRepoKind.Tokenizer, options: offline));
        Assert.Contains("with tokenizer.json", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Download_writes_the_cache_layout_and_takes_only_what_zett_reads()
    {
        Dictionary<string, byte[]> files = ModelFiles();
        _hub.Add("org/tiny", Commit, files);
        string folder = HubResolver.Locate("org/tiny", HubRepoKind.Model, options: Options());

        string repo = Path.Combine(Cache, "models--org--tiny");
        Assert.Equal(Path.Combine(repo, "snapshots", Commit), folder);
        Assert.Equal(Commit, File.ReadAllText(Path.Combine(repo, "refs", "main")));
        Assert.Equal(["config.json", "model.safetensors", "tokenizer.json"],
            Directory.EnumerateFileSystemEntries(folder).Select(Path.GetFileName).Order());
        foreach (string name in new[] { "config.json", "tokenizer.json", "model.safetensors" })
        {
            Assert.Equal(files[name], File.ReadAllBytes(Path.Combine(folder, name)));
        }
        // Snapshot entries are relative links to blobs named by ETag: the LFS file's SHA-256,
        // the small files' git hash.
        string sha = LocalHub.Sha256(files["model.safetensors"]);
        Assert.Equal(Path.Combine("..", "..", "blobs", sha), new FileInfo(Path.Combine(folder, "model.safetensors")).LinkTarget);
        Assert.True(File.Exists(Path.Combine(repo, "blobs", LocalHub.GitSha(files["config.json"]))));
        Assert.Empty(Directory.EnumerateFiles(Path.Combine(repo, "blobs"), "*.incomplete"));

        // A second resolution asks the Hub what is current but downloads nothing again.
        int before = _hub.Requests.Count;
        Assert.Equal(folder, HubResolver.Locate("org/tiny", HubRepoKind.Model, options: Options()));
        Assert.DoesNotContain(_hub.Requests.Skip(before), r => r.StartsWith("GET /cdn/", StringComparison.Ordinal)
            || (r.StartsWith("GET ", StringComparison.Ordinal) && r.Contains("/resolve/", StringComparison.Ordinal)));
        // And offline it is found in the cache.
        Assert.Equal(folder, HubResolver.Locate("org/tiny", HubRepoKind.Model, options: Options(offline: true)));
    }

    [Fact]
    public void A_tokenizer_name_downloads_the_tokenizer_files_only()
    {
        _hub.Add("org/tok", Commit, ModelFiles());
        string folder = HubResolver.Locate("org/tok", HubRepoKind.Tokenizer, options: Options());
        Assert.Equal(["tokenizer.json"], Directory.EnumerateFileSystemEntries(folder).Select(Path.GetFileName));
    }

    [Fact]
    public void Revisions_name_branches_and_commits()
    {
        _hub.Add("org/tiny", Commit, ModelFiles(1000), "dev");
        string folder = HubResolver.Locate("org/tiny", HubRepoKind.Model, "dev", Options());
        Assert.EndsWith(Commit, folder, StringComparison.Ordinal);
        Assert.Equal(Commit, File.ReadAllText(Path.Combine(Cache, "models--org--tiny", "refs", "dev")));
        Assert.False(File.Exists(Path.Combine(Cache, "models--org--tiny", "refs", "main")));
        var e = Assert.Throws<ZettException>(() => HubResolver.Locate("org/tiny@nope", HubRepoKind.Model, options: Options()));
        Assert.Equal("org/tiny (revision nope): not found on " + _hub.Endpoint + " (check the name and the revision)", e.Message);
    }

    [Fact]
    public void An_interrupted_download_resumes_with_a_range_request()
    {
        Dictionary<string, byte[]> files = ModelFiles();
        _hub.Add("org/tiny", Commit, files);
        _hub.CutNextDownloadAfter = 1_000_000;
        var e = Assert.Throws<ZettException>(() => HubResolver.Locate("org/tiny", HubRepoKind.Model, options: Options()));
        Assert.Contains("could not be reached", e.Message, StringComparison.Ordinal);
        string sha = LocalHub.Sha256(files["model.safetensors"]);
        string partial = Path.Combine(Cache, "models--org--tiny", "blobs", sha + ".incomplete");
        long kept = new FileInfo(partial).Length;
        Assert.InRange(kept, 1, files["model.safetensors"].Length - 1);

        string folder = HubResolver.Locate("org/tiny", HubRepoKind.Model, options: Options());
        Assert.Contains($"GET /cdn/{sha} bytes={kept}-", _hub.Requests);
        Assert.Equal(files["model.safetensors"], File.ReadAllBytes(Path.Combine(folder, "model.safetensors")));
        Assert.False(File.Exists(partial));
    }

    [Fact]
    public void Content_that_does_not_match_its_sha256_is_refused()
    {
        _hub.Add("org/tiny", Commit, ModelFiles(5000));
        _hub.CorruptLfsContent = new byte[5000];
        var e = Assert.Throws<ZettException>(() => HubResolver.Locate("org/tiny", HubRepoKind.Model, options: Options()));
        Assert.Contains("has SHA-256", e.Message, StringComparison.Ordinal);
        Assert.Empty(Directory.EnumerateFiles(Path.Combine(Cache, "models--org--tiny", "blobs"), "*.incomplete"));
        Assert.False(File.Exists(Path.Combine(Cache, "models--org--tiny", "snapshots", Commit, "model.safetensors")));
    }

    [Fact]
    public void A_token_is_sent_where_the_hub_needs_one_and_its_absence_explained()
    {
        _hub.Add("org/gated", Commit, ModelFiles(1000));
        _hub.RequiredToken = "hf_secret";
        var e = Assert.Throws<ZettException>(() => HubResolver.Locate("org/gated", HubRepoKind.Model, options: Options()));
        Assert.Contains("refused access (HTTP 401)", e.Message, StringComparison.Ordinal);
        Assert.Contains("set HF_TOKEN", e.Message, StringComparison.Ordinal);

        string folder = HubResolver.Locate("org/gated", HubRepoKind.Model, options: Options(token: "hf_secret"));
        Assert.True(File.Exists(Path.Combine(folder, "model.safetensors")));
        Assert.Contains(_hub.Requests, r => r.EndsWith("Bearer hf_secret", StringComparison.Ordinal));
    }

    [Fact]
    public void An_unreachable_hub_falls_back_to_the_cache_or_says_both_failed()
    {
        string nowhere = $"http://127.0.0.1:{LocalHub.FreePort()}";
        var e = Assert.Throws<ZettException>(() => HubResolver.Locate("org/tiny", HubRepoKind.Model,
            options: Options(endpoint: nowhere)));
        Assert.StartsWith("'org/tiny' is not a local path, so it was read as a Hugging Face model name: "
            + $"it is not in the cache ({Path.Combine(Cache, "models--org--tiny")}) and {nowhere} could "
            + "not be reached", e.Message, StringComparison.Ordinal);

        _hub.Add("org/tiny", Commit, ModelFiles(1000));
        string folder = HubResolver.Locate("org/tiny", HubRepoKind.Model, options: Options());
        var notes = new List<string>();
        Assert.Equal(folder, HubResolver.Locate("org/tiny", HubRepoKind.Model, options: Options(endpoint: nowhere),
            log: notes.Add));
        Assert.Contains("using the cached snapshot", Assert.Single(notes), StringComparison.Ordinal);
    }

    [Fact]
    public void Offline_never_touches_the_network()
    {
        _hub.Add("org/tiny", Commit, ModelFiles(1000));
        Assert.Throws<ZettException>(() => HubResolver.Locate("org/tiny", HubRepoKind.Model, options: Options(offline: true)));
        Assert.Empty(_hub.Requests);
    }

    [Fact]
    public void The_environment_is_read_as_huggingface_hub_reads_it()
    {
        var env = new Dictionary<string, string>();
        HubOptions Read() => HubOptions.FromEnvironment(n => env.GetValueOrDefault(n), "/home/u");
        Assert.Equal("/home/u/.cache/huggingface/hub", Read().CacheDirectory);
        Assert.Equal("https://huggingface.co", Read().Endpoint);
        Assert.False(Read().Offline);
        env["XDG_CACHE_HOME"] = "/xdg";
        Assert.Equal("/xdg/huggingface/hub", Read().CacheDirectory);
        env["HF_HOME"] = _dir;
        Assert.Equal(Path.Combine(_dir, "hub"), Read().CacheDirectory);
        File.WriteAllText(Path.Combine(_dir, "token"), "hf_from_login\n");
        Assert.Equal("hf_from_login", Read().Token);
        env["HF_TOKEN"] = "hf_env";
        Assert.Equal("hf_env", Read().Token);
        env["HF_HUB_CACHE"] = "/c";
        env["HF_ENDPOINT"] = "http://127.0.0.1:9/";
        env["HF_HUB_OFFLINE"] = "true";
        HubOptions o = Read();
        Assert.Equal(("/c", "http://127.0.0.1:9", true), (o.CacheDirectory, o.Endpoint, o.Offline));
    }
}
