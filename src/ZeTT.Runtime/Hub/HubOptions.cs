namespace ZeTT.Runtime.Hub;

/// <summary>
/// Where the Hugging Face cache is and how the Hub is reached, read from the environment as
/// <c>huggingface_hub</c> reads it: <c>HF_HUB_CACHE</c>, else <c>HF_HOME</c>/hub, else
/// <c>XDG_CACHE_HOME</c>/huggingface/hub, else ~/.cache/huggingface/hub; <c>HF_ENDPOINT</c>
/// (default https://huggingface.co); <c>HF_TOKEN</c>, else the token file
/// <c>huggingface-cli login</c> wrote (<c>HF_TOKEN_PATH</c>, else <c>HF_HOME</c>/token);
/// <c>HF_HUB_OFFLINE=1</c> for the cache alone.
/// </summary>
public sealed record HubOptions
{
    /// <summary>The cache root holding <c>models--org--name</c> folders.</summary>
    public required string CacheDirectory { get; init; }

    /// <summary>The Hub's base URL, without a trailing slash.</summary>
    public string Endpoint { get; init; } = DefaultEndpoint;

    /// <summary>A user access token sent as <c>Authorization: Bearer</c>, or null.</summary>
    public string? Token { get; init; }

    /// <summary>Use the cache only, never the network.</summary>
    public bool Offline { get; init; }

    /// <summary>How long a request may wait for the Hub's answer (not the whole download).
    /// </summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>The public Hub.</summary>
    public const string DefaultEndpoint = "https://huggingface.co";

    /// <summary>The options the environment describes.</summary>
    public static HubOptions FromEnvironment() => FromEnvironment(Environment.GetEnvironmentVariable,
        Environment.GetFolderPath(Environment.SpecialFolder.UserProfile));

    /// <summary>The options that <paramref name="variable"/> (an environment) describes, with
    /// <paramref name="home"/> as the user's home directory.</summary>
    public static HubOptions FromEnvironment(Func<string, string?> variable, string home)
    {
        ArgumentNullException.ThrowIfNull(variable);
        string? Env(string name) => variable(name) is { Length: > 0 } v ? v : null;
        string hfHome = Env("HF_HOME")
            ?? Path.Combine(Env("XDG_CACHE_HOME") ?? Path.Combine(home, ".cache"), "huggingface");
        string? token = Env("HF_TOKEN");
        string tokenFile = Env("HF_TOKEN_PATH") ?? Path.Combine(hfHome, "token");
        if (token is null && File.Exists(tokenFile))
        {
            token = File.ReadAllText(tokenFile).Trim() is { Length: > 0 } t ? t : null;
        }
        return new HubOptions
        {
            CacheDirectory = Env("HF_HUB_CACHE") ?? Path.Combine(hfHome, "hub"),
            Endpoint = (Env("HF_ENDPOINT") ?? DefaultEndpoint).TrimEnd('/'),
            Token = token,
            Offline = Env("HF_HUB_OFFLINE")?.ToUpperInvariant() is "1" or "ON" or "YES" or "TRUE",
        };
    }
}
