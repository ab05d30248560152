using System.Text.Json;
using ZeTT.Runtime.Tests.Hub;

namespace ZeTT.Cli.Tests;

// One test sets the process's HF_* variables.
[Collection("current directory")]
public class LanguageModelCommandTests
{
    private static string Repo(string relative)
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            string candidate = Path.Combine(d.FullName, relative);
            if (Directory.Exists(candidate) || File.Exists(candidate))
            {
                return candidate;
            }
        }
        throw new DirectoryNotFoundException(relative);
    }

    [Fact]
    public void Generate_greedy_from_bos_prints_the_reference_story()
    {
        string model = Repo("assets/stories260K");
        (int code, string output, string error) = Zett.Run("generate", "--model", model,
            "--max-new-tokens", "30");
        Assert.True(code == 0, error);
        using JsonDocument reference = JsonDocument.Parse(
            File.ReadAllText(Path.Combine(model, "reference_greedy_generation.json")));
        string text = reference.RootElement.GetProperty("text").GetString()!;
        string printed = output.TrimEnd('\n');
        Assert.True(printed.Length > 60, printed);
        Assert.StartsWith(printed, text, StringComparison.Ordinal);
    }

    /// <summary>The device options: --device cpu says so on stderr and prints the same story;
    /// bf16 activations on the CPU, and cuda where there is none, are one clear error each (exit
    /// 2, nothing on stdout).</summary>
    [Fact]
    public void Device_options_choose_the_backend_or_say_why_not()
    {
        string model = Repo("assets/stories260K");
        (int code, string output, string error) = Zett.Run("generate", "--model", model,
            "--max-new-tokens", "30", "--device", "cpu");
        Assert.True(code == 0, error);
        Assert.Contains("backend: cpu (--device cpu), fp32 activations", error,
            StringComparison.Ordinal);
        (int c0, string o0, _) = Zett.Run("generate", "--model", model, "--max-new-tokens", "30");
        Assert.Equal(0, c0);
        Assert.Equal(o0, output);
        string data = Repo("tests/fixtures/lm/eval/tinystories-dev-25.jsonl");
        (int c1, string o1, string e1) = Zett.Run("eval", "--model", model, "--data", data,
            "--device", "cpu", "--dtype", "bf16");
        Assert.Equal(2, c1);
        Assert.Equal("", o1);
        Assert.Contains("--dtype bf16 needs a CUDA device (--device cpu)", e1,
            StringComparison.Ordinal);
        if (!ZeTT.Kernels.Cuda.IsAvailable)
        {
            (int c2, string o2, string e2) = Zett.Run("generate", "--model", model, "--device",
                "cuda");
            Assert.Equal(2, c2);
            Assert.Equal("", o2);
            Assert.Contains("--device cuda: no usable CUDA device", e2, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void Sampling_with_a_seed_is_reproducible()
    {
        string model = Repo("assets/stories260K");
        string[] args = ["generate", "--model", model, "--prompt", "Tom", "--max-new-tokens",
            "20", "--temperature", "1", "--top-p", "0.9", "--seed", "7"];
        (int c1, string o1, _) = Zett.Run(args);
        (int c2, string o2, _) = Zett.Run(args);
        Assert.Equal(0, c1);
        Assert.Equal(0, c2);
        Assert.StartsWith("Tom", o1, StringComparison.Ordinal);
        Assert.Equal(o1, o2);
    }

    [Fact]
    public void Eval_writes_the_table_and_json_for_two_models()
    {
        string model = Repo("assets/stories260K");
        string data = Repo("tests/fixtures/lm/eval/tinystories-dev-25.jsonl");
        string json = Path.Combine(Path.GetTempPath(), $"zett-eval-{Environment.ProcessId}.json");
        try
        {
            (int code, string output, string error) = Zett.Run("eval", "--model", model,
                "--model", model, "--data", data, "--max-bytes", "3000", "--context", "64",
                "--json", json);
            Assert.True(code == 0, error);
            Assert.Contains("bits/byte", output);
            using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(json));
            JsonElement[] models = [.. doc.RootElement.GetProperty("models").EnumerateArray()];
            Assert.Equal(2, models.Length);
            foreach (JsonElement m in models)
            {
                Assert.Equal(3000, m.GetProperty("bytes").GetInt64());
                Assert.Equal(64, m.GetProperty("context").GetInt32());
                double bpb = m.GetProperty("bits_per_byte").GetDouble();
                Assert.InRange(bpb, 0.3, 3);
                Assert.True(m.GetProperty("tokens").GetInt64() > 0);
            }
            Assert.Equal(models[0].GetProperty("bits_per_byte").GetDouble(),
                models[1].GetProperty("bits_per_byte").GetDouble());
        }
        finally
        {
            File.Delete(json);
        }
    }

    [Fact]
    public void Eval_by_hugging_face_name_comes_from_the_cache_and_keeps_the_name_as_label()
    {
        string model = Repo("assets/stories260K");
        string data = Repo("tests/fixtures/lm/eval/tinystories-dev-25.jsonl");
        string dir = Path.Combine(Path.GetTempPath(), $"zett-eval-hub-{Guid.NewGuid():N}");
        using var hub = new LocalHub();
        hub.Add("org/stories", "0123456789abcdef0123456789abcdef01234567", Directory.GetFiles(model)
            .ToDictionary(f => Path.GetFileName(f), File.ReadAllBytes));
        string[] variables = ["HF_ENDPOINT", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "HF_TOKEN"];
        Dictionary<string, string?> saved = variables.ToDictionary(v => v, Environment.GetEnvironmentVariable);
        try
        {
            Environment.SetEnvironmentVariable("HF_ENDPOINT", hub.Endpoint);
            Environment.SetEnvironmentVariable("HF_HUB_CACHE", Path.Combine(dir, "cache"));
            Environment.SetEnvironmentVariable("HF_HUB_OFFLINE", null);
            Environment.SetEnvironmentVariable("HF_TOKEN", null);
            string json = Path.Combine(dir, "eval.json");
            (int code, string output, string error) = Zett.Run("eval", "--model", "org/stories",
                "--model", model, "--data", data, "--max-bytes", "2000", "--context", "64",
                "--json", json);
            Assert.True(code == 0, error);
            Assert.Contains("download org/stories", error, StringComparison.Ordinal);
            Assert.Contains(output.Split('\n'), l => l.StartsWith("org/stories ", StringComparison.Ordinal));
            using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(json));
            JsonElement[] models = [.. doc.RootElement.GetProperty("models").EnumerateArray()];
            Assert.Equal("org/stories", models[0].GetProperty("model").GetString());
            // The cached snapshot is the same model as the local directory.
            Assert.Equal(models[1].GetProperty("bits_per_byte").GetDouble(),
                models[0].GetProperty("bits_per_byte").GetDouble());
        }
        finally
        {
            foreach ((string name, string? value) in saved)
            {
                Environment.SetEnvironmentVariable(name, value);
            }
            if (Directory.Exists(dir))
            {
                Directory.Delete(dir, recursive: true);
            }
        }
    }

    [Fact]
    public void Eval_of_text_that_is_not_utf8_exits_2_naming_file_and_offset()
    {
        string model = Repo("assets/stories260K");
        string bad = Path.Combine(Path.GetTempPath(), $"zett-bad-{Environment.ProcessId}.txt");
        File.WriteAllBytes(bad, [(byte)'a', (byte)'b', 0xFF, (byte)'c']);
        try
        {
            (int code, _, string error) = Zett.Run("eval", "--model", model, "--data", bad);
            Assert.Equal(2, code);
            Assert.Equal($"error: {bad}: not UTF-8 at byte offset 2", error.Trim());
        }
        finally
        {
            File.Delete(bad);
        }
    }

    [Fact]
    public void Eval_context_beyond_the_positions_exits_2()
    {
        string model = Repo("assets/stories260K");
        string data = Repo("tests/fixtures/lm/eval/tinystories-dev-25.jsonl");
        (int code, _, string error) = Zett.Run("eval", "--model", model, "--data", data,
            "--context", "513", "--max-bytes", "100");
        Assert.Equal(2, code);
        Assert.Contains("513", error);
        Assert.Contains("max_position_embeddings", error);
    }
}
