using ZeTT.Kernels;
using ZeTT.Ops.Cpu;
using ZeTT.Runtime.Formats;
using ZeTT.Runtime.Hypernetwork;
using ZeTT.Runtime.Tensors;
using ZeTT.Runtime.Tests.Formats;
using ZeTT.Runtime.Tests.Hub;
using ZeTT.Runtime.Tests.Transfer;

namespace ZeTT.Cli.Tests;

/// <summary>Tests that change the process's current directory run alone.</summary>
[CollectionDefinition("current directory", DisableParallelization = true)]
public sealed class CurrentDirectoryCollection;

[Collection("current directory")]
public sealed class TransferCommandTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("zett-cli-transfer-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string P(string name) => Path.Combine(_dir, name);

    [Fact]
    public void No_arguments_runs_the_default_into_out_default()
    {
        string previous = Environment.CurrentDirectory;
        Environment.CurrentDirectory = _dir;
        try
        {
            var (code, output, err) = Zett.Run("transfer");
            Assert.True(code == 0, err);
            Assert.Contains("built-in default", output, StringComparison.Ordinal);
            Assert.Contains("vocab size      512 -> ", output, StringComparison.Ordinal);
            Assert.Contains("peak memory", output, StringComparison.Ordinal);
            using HfModelDirectory o = HfModelDirectory.Open(P("out/default"));
            Assert.InRange(o.VocabSize, 50257, 50257 + 200);
            Assert.True(File.Exists(P("out/default/tokenizer.json")));
            // Only what describes the new model: no notes about the source's old vocabulary,
            // a model card of its own.
            Assert.Equal(["README.md", "config.json", "generation_config.json", "model.safetensors",
                "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json"],
                Directory.EnumerateFiles(P("out/default")).Select(Path.GetFileName).Order());
            string card = File.ReadAllText(P("out/default/README.md"));
            Assert.Contains("# stories260K with the gpt2 tokenizer", card, StringComparison.Ordinal);
            Assert.Contains("| vocabulary | 512 → ", card, StringComparison.Ordinal);
            Assert.Contains("| made with | zett ", card, StringComparison.Ordinal);
            Assert.Contains("method          fvt (mean of source pieces, on the cpu)", output, StringComparison.Ordinal);
            // A second run replaces the first atomically.
            (code, _, err) = Zett.Run("transfer");
            Assert.True(code == 0, err);
            Assert.Equal(["default"], Directory.EnumerateFileSystemEntries(P("out")).Select(Path.GetFileName));
        }
        finally
        {
            Environment.CurrentDirectory = previous;
        }
    }

    [Fact]
    public void Eval_data_puts_zett_evals_numbers_for_both_models_in_the_card_and_the_summary()
    {
        string model = ZeTT.Runtime.Transfer.DefaultTransfer.FindAsset();
        string data = Path.Combine(model, "..", "..", "tests", "fixtures", "lm", "eval",
            "tinystories-dev-25.jsonl");
        Assert.True(File.Exists(data), data);
        var (code, output, err) = Zett.Run("transfer", "--model", model, "--tokenizer", "gpt2",
            "--method", "fvt", "--out", P("out"), "--eval-data", data, "--eval-max-bytes", "1500",
            "--eval-context", "64");
        Assert.True(code == 0, err);

        // zett eval's own numbers for the base and the written model on the same text.
        (code, _, err) = Zett.Run("eval", "--model", model, "--model", P("out"), "--data", data,
            "--max-bytes", "1500", "--context", "64", "--json", P("eval.json"));
        Assert.True(code == 0, err);
        using var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(P("eval.json")));
        System.Text.Json.JsonElement[] want = [.. doc.RootElement.GetProperty("models").EnumerateArray()];
        string card = File.ReadAllText(P("out/README.md"));
        Assert.Contains("## Evaluation", card, StringComparison.Ordinal);
        Assert.Contains("(1500 UTF-8 bytes, the first 1500)", card, StringComparison.Ordinal);
        string[] labels = ["stories260K", "stories260K → gpt2 (transferred)"];
        var c = System.Globalization.CultureInfo.InvariantCulture;
        for (int i = 0; i < 2; i++)
        {
            System.Text.Json.JsonElement w = want[i];
            string bpb = w.GetProperty("bits_per_byte").GetDouble().ToString("F4", c);
            Assert.Contains($"| {labels[i]} | {bpb} | "
                + $"{w.GetProperty("tokens_per_byte").GetDouble().ToString("F4", c)} | "
                + $"{w.GetProperty("perplexity").GetDouble().ToString("F3", c)} | "
                + $"{w.GetProperty("tokens").GetInt64()} | 64 |", card, StringComparison.Ordinal);
            Assert.Contains(output.Split('\n'), l => l.StartsWith($"  eval            {bpb} bits/byte",
                StringComparison.Ordinal) && l.EndsWith(labels[i], StringComparison.Ordinal));
        }
        // The transferred model reads the text worse than the base model (FVT, no training).
        Assert.True(want[1].GetProperty("bits_per_byte").GetDouble() > want[0].GetProperty("bits_per_byte").GetDouble());

        // Without --eval-data the evaluation options are an error; missing text fails before
        // anything is written.
        (code, _, err) = Zett.Run("transfer", "--model", model, "--tokenizer", "gpt2", "--method",
            "fvt", "--out", P("x"), "--eval-context", "64");
        Assert.Equal(2, code);
        Assert.Equal("error: --eval-max-bytes and --eval-context need --eval-data FILE", err.Trim());
        (code, _, err) = Zett.Run("transfer", "--model", model, "--tokenizer", "gpt2", "--method",
            "fvt", "--out", P("x"), "--eval-data", P("none.txt"));
        Assert.Equal(2, code);
        Assert.Equal($"error: {P("none.txt")}: file not found", err.Trim());
        Assert.False(Directory.Exists(P("x")));
    }

    [Fact]
    public void Hypernet_transfer_and_fvt_from_the_command_line()
    {
        TinyModel m = TransferTestData.WriteModel(P("model"), "xlm-roberta");
        string hn = TransferTestData.WriteHypernet(P("hn"), untied: false);
        string target = TransferTestData.WriteTarget(P("target"));
        var (code, output, err) = Zett.Run("transfer", "--model", m.Directory, "--tokenizer", target,
            "--out", P("out"), "--hypernet", hn, "--lang", "en", "--device", "cpu", "--dtype", "fp32",
            "--batch-size", "16", "--model-class", "masked");
        Assert.True(code == 0, err);
        Assert.Contains("bias            predicted output bias written to lm_head.bias", output, StringComparison.Ordinal);
        Assert.Contains("method          hypernet (cpu, fp32)", output, StringComparison.Ordinal);
        Assert.Contains("| predicted output bias | lm_head.bias |", File.ReadAllText(P("out/README.md")),
            StringComparison.Ordinal);
        Assert.Contains("backend: cpu (--device cpu)", err, StringComparison.Ordinal);
        (code, output, err) = Zett.Run("transfer", "--model", m.Directory, "--tokenizer", target,
            "--out", P("fvt"), "--method", "fvt");
        Assert.True(code == 0, err);
        Assert.Contains("fvt rows", output, StringComparison.Ordinal);
        foreach (string[] extra in new[] { new[] { "--device", "cuda" }, ["--dtype", "fp32"], ["--gpu", "1"],
            ["--batch-size", "8"], ["--hypernet", hn], ["--lang", "en"] })
        {
            AssertOneError(Zett.Run(["transfer", "--model", m.Directory, "--tokenizer", target,
                "--out", P("fvt2"), "--method", "fvt", .. extra]), $"error: {extra[0]} does not apply to --method fvt");
        }
        Assert.False(Directory.Exists(P("fvt2")));
    }

    [Fact]
    public void Models_and_tokenizers_by_hugging_face_name_come_from_the_cache()
    {
        TinyModel m = TransferTestData.WriteModel(P("model"), "llama");
        string target = TransferTestData.WriteTarget(P("target"));
        using var hub = new LocalHub();
        const string commit = "89abcdef0123456789abcdef0123456789abcdef";
        hub.Add("org/tiny-llama", commit, Directory.GetFiles(m.Directory)
            .ToDictionary(f => Path.GetFileName(f), File.ReadAllBytes));
        hub.Add("org/target", commit, Directory.GetFiles(target).ToDictionary(f => Path.GetFileName(f), File.ReadAllBytes));
        string[] variables = ["HF_ENDPOINT", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "HF_TOKEN"];
        Dictionary<string, string?> saved = variables.ToDictionary(v => v, Environment.GetEnvironmentVariable);
        try
        {
            Environment.SetEnvironmentVariable("HF_ENDPOINT", hub.Endpoint);
            Environment.SetEnvironmentVariable("HF_HUB_CACHE", P("cache"));
            Environment.SetEnvironmentVariable("HF_HUB_OFFLINE", null);
            Environment.SetEnvironmentVariable("HF_TOKEN", null);
            string[] args = ["transfer", "--model", "org/tiny-llama", "--tokenizer", "org/target",
                "--method", "fvt", "--out", P("out")];
            var (code, output, err) = Zett.Run(args);
            Assert.True(code == 0, err);
            Assert.Contains("download org/tiny-llama", err, StringComparison.Ordinal);
            string snapshot = P($"cache/models--org--tiny-llama/snapshots/{commit}");
            Assert.True(File.Exists(Path.Combine(snapshot, "config.json")));
            // The same model as from the local directories.
            (code, _, err) = Zett.Run("transfer", "--model", m.Directory, "--tokenizer", target,
                "--method", "fvt", "--out", P("local"));
            Assert.True(code == 0, err);
            foreach (string file in new[] { "model.safetensors", "tokenizer.json", "config.json" })
            {
                Assert.Equal(File.ReadAllBytes(P($"local/{file}")), File.ReadAllBytes(P($"out/{file}")));
            }

            // Offline, the same names resolve from the cache with no request.
            Environment.SetEnvironmentVariable("HF_HUB_OFFLINE", "1");
            int requests = hub.Requests.Count;
            (code, _, err) = Zett.Run([.. args[..^1], P("out2")]);
            Assert.True(code == 0, err);
            Assert.Equal(requests, hub.Requests.Count);
            AssertOneError(Zett.Run("transfer", "--model", "org/absent", "--tokenizer", "gpt2",
                "--method", "fvt", "--out", P("out3")), "HF_HUB_OFFLINE is set");
        }
        finally
        {
            foreach ((string name, string? value) in saved)
            {
                Environment.SetEnvironmentVariable(name, value);
            }
        }
    }

    [Fact]
    public void Cuda_requested_where_there_is_none_is_one_clear_error_and_no_output()
    {
        Assert.SkipWhen(Cuda.IsAvailable, "CUDA is available here");
        TinyModel m = TransferTestData.WriteModel(P("model"), "xlm-roberta");
        string hn = TransferTestData.WriteHypernet(P("hn"), untied: false);
        string target = TransferTestData.WriteTarget(P("target"));
        AssertOneError(Zett.Run("transfer", "--model", m.Directory, "--tokenizer", target,
            "--out", P("out"), "--hypernet", hn, "--lang", "en", "--device", "cuda"),
            "--device cuda: no usable CUDA device");
        Assert.False(Directory.Exists(P("out")));
    }

    private static void AssertOneError((int Code, string Out, string Err) r, string expected)
    {
        Assert.Equal(2, r.Code);
        // One error line, last; before it only the progress of phases that had started.
        string[] lines = r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines, l => l.StartsWith("error", StringComparison.Ordinal));
        Assert.All(lines[..^1], l => Assert.Matches(@"^[a-z ]+ \[[#.]{24}\] \d+/\d+ ", l));
        Assert.StartsWith("error: ", lines[^1], StringComparison.Ordinal);
        Assert.Contains(expected, lines[^1], StringComparison.Ordinal);
    }

    private (int, string, string) Fvt(string model, string tokenizer = "gpt2") =>
        Zett.Run("transfer", "--model", model, "--tokenizer", tokenizer, "--out", P("out"),
            "--method", "fvt");

    [Fact]
    public void Bad_inputs_give_one_clear_error_and_no_output()
    {
        TinyModel m = TransferTestData.WriteModel(P("model"), "llama");
        string hn = TransferTestData.WriteHypernet(P("hn"), untied: true);

        AssertOneError(Zett.Run("transfer", "--model", m.Directory, "--tokenizer", "gpt2", "--out",
            P("out"), "--hypernet", hn), "choose --lang from en, de, fr");
        AssertOneError(Zett.Run("transfer", "--model", m.Directory, "--tokenizer", "gpt2", "--out",
            P("out"), "--hypernet", hn, "--lang", "xx"), "unknown language; valid: en, de, fr");
        AssertOneError(Fvt(m.Directory, "no-such-tokenizer"), "'no-such-tokenizer' is neither");
        File.WriteAllText(P("out"), "keep");
        AssertOneError(Fvt(m.Directory), $"{P("out")}: is a file, not an output directory");
        Assert.Equal("keep", File.ReadAllText(P("out")));
        File.Delete(P("out"));

        // vocab mismatch: config says more rows than the embedding has.
        string config = Path.Combine(m.Directory, "config.json");
        string good = File.ReadAllText(config);
        File.WriteAllText(config, good.Replace("\"vocab_size\": 264", "\"vocab_size\": 300", StringComparison.Ordinal));
        AssertOneError(Fvt(m.Directory), "config.json vocab_size is 300");
        File.WriteAllText(config, good);

        // corrupt shard: truncated.
        string shard = Path.Combine(m.Directory, "model.safetensors");
        byte[] bytes = File.ReadAllBytes(shard);
        File.WriteAllBytes(shard, bytes[..(bytes.Length - 10)]);
        AssertOneError(Fvt(m.Directory), "model.safetensors");
        File.WriteAllBytes(shard, bytes);

        // missing tensor: a model without its input embedding.
        using (SafetensorsFile f = SafetensorsFile.Open(shard))
        {
            var keep = f.Tensors.Where(t => t.Name != m.Input).Select(t => SafetensorsEntry.FromTensor(f.ReadFloat32(t.Name))).ToList();
            SafetensorsWriter.Write(P("stripped.safetensors"), keep);
        }
        File.Move(P("stripped.safetensors"), shard, overwrite: true);
        AssertOneError(Fvt(m.Directory), "embed_tokens.weight");
        Assert.False(Directory.Exists(P("out")));
    }

    [Fact]
    public void Predict_both_input_forms_equal_the_cpu_backend()
    {
        TinyModel m = TransferTestData.WriteModel(P("model"), "gpt_neox");
        string hn = TransferTestData.WriteHypernet(P("hn"), untied: true);
        int d = m.Hidden;
        SafetensorsWriter.Write(P("src.safetensors"), [
            SafetensorsEntry.FromFloat32("embeddings_in", [m.Vocab, d], m.Tensors[m.Input]),
            SafetensorsEntry.FromFloat32("embeddings_out", [m.Vocab, d], m.Tensors[m.Output!]),
        ]);
        int[] ids = [258, 263, 263, 32, 119, 111, 261, 263, 263, 264, 263, 263];
        SafetensorsWriter.Write(P("sf.safetensors"), [SafetensorsEntry.FromInt32("surface_forms", [4, 3], ids)]);
        var r = Zett.Run("predict", "--hypernet", hn, "--source-embeddings", P("src.safetensors"),
            "--surface-forms", P("sf.safetensors"), "--out", P("a.safetensors"), "--lang", "de",
            "--device", "cpu", "--dtype", "fp32");
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("4 tokens (cpu)", r.Out, StringComparison.Ordinal);

        var stacked = new float[m.Vocab * 2 * d];
        for (int i = 0; i < m.Vocab; i++)
        {
            Array.Copy(m.Tensors[m.Input], i * d, stacked, i * 2 * d, d);
            Array.Copy(m.Tensors[m.Output!], i * d, stacked, i * 2 * d + d, d);
        }
        HypernetCheckpoint ckpt = HypernetCheckpoint.Load(hn);
        using var backend = new HypernetPredictor(new CpuBackend(), ckpt.Weights,
            new HostTensor("E", [m.Vocab, 2 * d], stacked), HypernetPrecision.Float32);
        HypernetOutput want = backend.Predict(ids, 4, 1);
        using (SafetensorsFile f = SafetensorsFile.Open(P("a.safetensors")))
        {
            Assert.Equal(want.EmbeddingsIn, f.ReadFloat32("embeddings_in").Data);
            Assert.Equal(want.EmbeddingsOut!, f.ReadFloat32("embeddings_out").Data);
            Assert.Equal(want.Bias!, f.ReadFloat32("bias").Data);
        }

        // --model and --tokens: the same rows for tokens whose surface forms are those ids.
        File.WriteAllLines(P("tokens.txt"), ["Ġthe", "Ġwo", "<s>"]);
        r = Zett.Run("predict", "--hypernet", hn, "--model", m.Directory, "--tokens", P("tokens.txt"),
            "--out", P("b.safetensors"), "--lang", "de", "--device", "cpu", "--dtype", "fp32");
        Assert.True(r.Code == 0, r.Err);
        using (SafetensorsFile f = SafetensorsFile.Open(P("b.safetensors")))
        {
            Assert.Equal(want.EmbeddingsIn[..(3 * d)], f.ReadFloat32("embeddings_in").Data);
            Assert.Equal(want.Bias![..3], f.ReadFloat32("bias").Data);
        }
    }

    [Fact]
    public void Predict_bad_inputs_give_one_clear_error()
    {
        TinyModel m = TransferTestData.WriteModel(P("model"), "llama");
        string hn = TransferTestData.WriteHypernet(P("hn"), untied: true);
        SafetensorsWriter.Write(P("src.safetensors"), [
            SafetensorsEntry.FromFloat32("embeddings_in", [m.Vocab, m.Hidden], m.Tensors[m.Input]),
        ]);
        SafetensorsWriter.Write(P("sf.safetensors"), [SafetensorsEntry.FromInt32("surface_forms", [1, 4], [1, 2, 3, 4])]);
        AssertOneError(Zett.Run("predict", "--hypernet", hn, "--source-embeddings", P("src.safetensors"),
            "--surface-forms", P("sf.safetensors"), "--out", P("o.safetensors"), "--lang", "en"),
            "expected I32 [N, 3]");
        SafetensorsWriter.Write(P("sf.safetensors"), [SafetensorsEntry.FromInt32("surface_forms", [2, 3], [1, 2, 3, 1, 2, -1])]);
        AssertOneError(Zett.Run("predict", "--hypernet", hn, "--source-embeddings", P("src.safetensors"),
            "--surface-forms", P("sf.safetensors"), "--out", P("o.safetensors"), "--lang", "en"),
            $"{P("sf.safetensors")}: tensor 'surface_forms' row 1, position 2: id -1 is outside");
        SafetensorsWriter.Write(P("sf.safetensors"), [SafetensorsEntry.FromInt32("surface_forms", [1, 3], [1, 2, 3])]);
        AssertOneError(Zett.Run("predict", "--hypernet", hn, "--source-embeddings", P("src.safetensors"),
            "--surface-forms", P("sf.safetensors"), "--out", P("o.safetensors"), "--lang", "en"),
            "no tensor 'embeddings_out'");
        AssertOneError(Zett.Run("predict", "--hypernet", hn, "--model", m.Directory,
            "--source-embeddings", P("src.safetensors"), "--surface-forms", P("sf.safetensors"),
            "--out", P("o.safetensors"), "--lang", "en"), "exactly one of --source-embeddings");
        Assert.False(File.Exists(P("o.safetensors")));
    }
}
