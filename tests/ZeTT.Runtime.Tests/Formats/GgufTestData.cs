using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using ZeTT.Runtime.Tests.Hypernetwork;

namespace ZeTT.Runtime.Tests.Formats;

/// <summary>Where the GGUF tests find their data (shared/ beside or above the clone) and
/// llama.cpp (node-llama-cpp, installed by build.sh into build/llama).</summary>
internal static class GgufTestData
{
    /// <summary>The pinned node-llama-cpp version (its prebuilt llama.cpp binaries).</summary>
    public const string NodeLlamaCppVersion = "3.21.1";

    public static string RepoRoot => HypernetFixture.RepoRoot;

    /// <summary>shared/data/gguf-vocab: vocabulary-only GGUF files written by llama.cpp's
    /// converter, or null.</summary>
    public static string? VocabDir { get; } = Shared("gguf-vocab");

    /// <summary>shared/data/text: real text, or null.</summary>
    public static string? TextDir { get; } = Shared("text");

    public static string VocabSkipReason =>
        $"no shared/data/gguf-vocab above {RepoRoot} (llama.cpp's vocabulary files live outside "
        + "the repository)";

    public static string TextSkipReason =>
        $"no shared/data/text above {RepoRoot} (the real text lives outside the repository)";

    private static string? Shared(string name)
    {
        for (DirectoryInfo? d = Directory.GetParent(RepoRoot); d is not null; d = d.Parent)
        {
            string candidate = Path.Combine(d.FullName, "shared", "data", name);
            if (Directory.Exists(candidate))
            {
                return candidate;
            }
        }
        return null;
    }

    /// <summary>The folder holding node_modules/node-llama-cpp.</summary>
    public static string NodeLlamaCppDir => Path.Combine(RepoRoot, "build", "llama");

    /// <summary>Why llama.cpp cannot run here, or null when it can: node ≥ 20 on PATH and the
    /// pinned node-llama-cpp with its linux-x64 binaries installed.</summary>
    public static string? LlamaCppUnavailableReason { get; } = FindLlamaCpp();

    private static string? FindLlamaCpp()
    {
        string? version;
        try
        {
            version = Run("node", ["--version"], TimeSpan.FromSeconds(30)).Trim();
        }
        catch (Exception e) when (e is System.ComponentModel.Win32Exception or InvalidOperationException)
        {
            return "node is not on PATH (./build.sh installs nodejs and node-llama-cpp "
                + NodeLlamaCppVersion + ")";
        }
        if (!int.TryParse(version.TrimStart('v').Split('.')[0], out int major) || major < 20)
        {
            return $"node {version} is older than 20, which node-llama-cpp {NodeLlamaCppVersion} needs";
        }
        string package = Path.Combine(NodeLlamaCppDir, "node_modules", "node-llama-cpp", "package.json");
        if (!File.Exists(package))
        {
            return $"node-llama-cpp is not installed in {NodeLlamaCppDir} (./build.sh installs it)";
        }
        string? installed = JsonNode.Parse(File.ReadAllText(package))?["version"]?.GetValue<string>();
        if (installed != NodeLlamaCppVersion)
        {
            return $"{package} is version {installed}, not {NodeLlamaCppVersion}";
        }
        string bins = Path.Combine(NodeLlamaCppDir, "node_modules", "@node-llama-cpp", "linux-x64");
        return Directory.Exists(bins) ? null
            : $"node-llama-cpp's prebuilt binaries ({bins}) are not installed";
    }

    /// <summary>Runs tests/llama/llama-check.mjs on <paramref name="job"/> (see that file) and
    /// returns its JSON output.</summary>
    public static JsonObject RunLlamaCpp(JsonObject job)
    {
        job["nodeLlamaCpp"] = NodeLlamaCppDir;
        string jobFile = Path.GetTempFileName();
        try
        {
            File.WriteAllText(jobFile, job.ToJsonString());
            string script = Path.Combine(RepoRoot, "tests", "llama", "llama-check.mjs");
            string output = Run("node", [script, jobFile], TimeSpan.FromMinutes(5));
            return JsonNode.Parse(output.Trim().Split('\n')[^1]) as JsonObject
                ?? throw new InvalidOperationException("llama-check printed no JSON object: " + output);
        }
        finally
        {
            File.Delete(jobFile);
        }
    }

    private static string Run(string exe, string[] args, TimeSpan timeout)
    {
        var info = new ProcessStartInfo(exe)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string a in args)
        {
            info.ArgumentList.Add(a);
        }
        // Never download or compile llama.cpp: prebuilt binaries from npm only.
        info.Environment["NODE_LLAMA_CPP_SKIP_DOWNLOAD"] = "true";
        using Process p = Process.Start(info) ?? throw new InvalidOperationException($"cannot start {exe}");
        Task<string> stdout = p.StandardOutput.ReadToEndAsync();
        Task<string> stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(timeout))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{exe} {string.Join(' ', args)} ran over {timeout}");
        }
        if (p.ExitCode != 0)
        {
            throw new InvalidOperationException(
                $"{exe} {string.Join(' ', args)} exited {p.ExitCode}: {stderr.Result}");
        }
        return stdout.Result;
    }

    /// <summary>Real texts for tokenization checks: paragraphs of every UDHR language, of each
    /// code file, of the Universal Dependencies sentences and of TinyStories (dev), at most
    /// <paramref name="perFile"/> per file, each under 2,000 characters.</summary>
    public static List<(string Source, string Text)> Texts(int perFile)
    {
        var texts = new List<(string, string)>();
        string root = TextDir!;
        foreach (string sub in new[] { "udhr", "code", "ud_gsd", "gutenberg_multi" })
        {
            foreach (string file in Directory.GetFiles(Path.Combine(root, sub)).Order(StringComparer.Ordinal))
            {
                string all = File.ReadAllText(file).Replace("\r\n", "\n", StringComparison.Ordinal);
                IEnumerable<string> parts = sub == "code"
                    ? Chunks(all.Split('\n'), 12)
                    : all.Split('\n').Where(l => l.Trim().Length > 0);
                foreach (string t in parts.Where(t => t.Length is > 0 and < 2000).Take(perFile))
                {
                    texts.Add(($"{sub}/{Path.GetFileName(file)}", t));
                }
            }
        }
        foreach (string line in File.ReadLines(Path.Combine(root, "tinystories", "dev.jsonl")).Take(perFile))
        {
            texts.Add(("tinystories/dev.jsonl", JsonDocument.Parse(line).RootElement.GetProperty("text").GetString()!));
        }
        return texts;
    }

    private static IEnumerable<string> Chunks(string[] lines, int size)
    {
        for (int i = 0; i < lines.Length; i += size)
        {
            yield return string.Join('\n', lines.Skip(i).Take(size));
        }
    }
}
