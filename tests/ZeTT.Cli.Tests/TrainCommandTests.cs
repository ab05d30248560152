using System.Text.Json.Nodes;
using Parquet;
using Parquet.Schema;

namespace ZeTT.Cli.Tests;

public class TrainCommandTests
{
    private static string Repo(string relative)
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            string candidate = Path.Combine(d.FullName, relative);
            if (Directory.Exists(candidate))
            {
                return candidate;
            }
        }
        throw new DirectoryNotFoundException(relative);
    }

    [Fact]
    public void Train_writes_the_hypernetwork_checkpoints_and_log()
    {
        string outDir = Path.Combine(Path.GetTempPath(), $"zett-train-{Guid.NewGuid():N}");
        try
        {
            var (code, output, err) = Zett.Run("train", "--model", Repo("assets/stories260K"),
                "--out", outDir, "--steps", "3", "--identity-batch", "64", "--hn-layers", "1",
                "--save-every", "2");
            Assert.True(code == 0, err);
            Assert.Contains("3 updates", output, StringComparison.Ordinal);
            Assert.Contains("step 3/3", err, StringComparison.Ordinal);
            foreach (string f in new[] { "config.json", "model.safetensors", "tokenizer.json",
                "optimizer.safetensors", "train_log.jsonl" })
            {
                Assert.True(File.Exists(Path.Combine(outDir, f)), f);
            }
            Assert.True(Directory.Exists(Path.Combine(outDir, "checkpoints", "step-2")));
            Assert.True(Directory.Exists(Path.Combine(outDir, "checkpoints", "step-3")));
            Assert.Equal(3, File.ReadAllLines(Path.Combine(outDir, "train_log.jsonl")).Length);
        }
        finally
        {
            if (Directory.Exists(outDir))
            {
                Directory.Delete(outDir, recursive: true);
            }
        }
    }

    [Fact]
    public void A_missing_model_is_one_error_line_and_exit_2()
    {
        string outDir = Path.Combine(Path.GetTempPath(), $"zett-train-{Guid.NewGuid():N}");
        var (code, _, err) = Zett.Run("train", "--model", "/nonexistent/model", "--out", outDir);
        Assert.Equal(2, code);
        Assert.StartsWith("error: ", err, StringComparison.Ordinal);
        Assert.Contains("/nonexistent/model", err, StringComparison.Ordinal);
        Assert.False(Directory.Exists(outDir));
    }

    private static string Temp(string name) =>
        Path.Combine(Path.GetTempPath(), $"zett-train-{Guid.NewGuid():N}-{name}");

    [Fact]
    public void Train_runs_the_identity_then_the_main_stage_on_text()
    {
        string outDir = Temp("out");
        try
        {
            var (code, output, err) = Zett.Run("train", "--model", Repo("assets/stories260K"),
                "--out", outDir, "--data",
                Path.Combine(Repo("tests/fixtures/lm/eval"), "tinystories-dev-25.jsonl"),
                "--train-tokenizer", "gpt2", "--vocab-subsample", "128", "--batch", "2",
                "--block-size", "16", "--identity-steps", "1", "--identity-batch", "32",
                "--steps", "3", "--hn-layers", "1", "--main-lr", "1e-3");
            Assert.True(code == 0, err);
            Assert.Contains("3 updates", output, StringComparison.Ordinal);
            Assert.Contains("main stage after 1 identity updates", err, StringComparison.Ordinal);
            Assert.Contains("step 3/3 main", err, StringComparison.Ordinal);
            string[] stages = [.. File.ReadAllLines(Path.Combine(outDir, "train_log.jsonl"))
                .Select(l => (string)JsonNode.Parse(l)!["stage"]!)];
            Assert.Equal(["identity", "main", "main"], stages);
            Assert.True(File.Exists(Path.Combine(outDir, "loss.png")));
            Assert.True(File.Exists(Path.Combine(outDir, "model.safetensors")));
        }
        finally
        {
            if (Directory.Exists(outDir))
            {
                Directory.Delete(outDir, recursive: true);
            }
        }
    }

    /// <summary>n-shot continued training from the CLI: a hypernetwork, then
    /// <c>--backbone-training full --lexical-loss-to-init</c> from it under one fixed tokenizer;
    /// the trained models load in <c>zett eval</c>; bad values are one error line, exit 2, no
    /// output.</summary>
    [Fact]
    public void N_shot_training_writes_the_trained_models_and_refuses_bad_options()
    {
        string init = Temp("init"), outDir = Temp("nshot"), refused = Temp("refused");
        string stories = Repo("assets/stories260K");
        string text = Path.Combine(Repo("tests/fixtures/lm/eval"), "tinystories-dev-25.jsonl");
        try
        {
            var (code, _, err) = Zett.Run("train", "--model", stories, "--out", init, "--data", text,
                "--train-tokenizer", "gpt2", "--vocab-subsample", "128", "--batch", "2",
                "--block-size", "16", "--identity-steps", "1", "--identity-batch", "32",
                "--steps", "3", "--hn-layers", "1");
            Assert.True(code == 0, err);
            (code, string output, err) = Zett.Run("train", "--model", stories, "--out", outDir,
                "--data", text, "--init-from", init, "--backbone-training", "full",
                "--lexical-loss-to-init", "--train-tokenizer", stories, "--batch", "2",
                "--block-size", "16", "--steps", "2", "--warmup-steps", "0",
                "--learning-rate-alpha", "1", "--main-lr", "1e-3");
            Assert.True(code == 0, err);
            Assert.Contains("2 updates", output, StringComparison.Ordinal);
            Assert.Contains("backbone trained too", err, StringComparison.Ordinal);
            (code, output, err) = Zett.Run("eval", "--model", stories, "--model",
                Path.Combine(outDir, "full_model"), "--model", Path.Combine(outDir, "model"),
                "--data", text, "--max-bytes", "2000");
            Assert.True(code == 0, err);
            Assert.Contains("full_model", output, StringComparison.Ordinal);

            foreach (string[] bad in new[]
            {
                new[] { "--backbone-training", "maybe" },
                ["--backbone-training", "full", "--identity-steps", "3"],
                ["--lexical-loss-to-init", "--vocab-subsample", "64"],
                ["--learning-rate-alpha", "2"],
            })
            {
                (code, _, err) = Zett.Run([.. (string[])["train", "--model", stories, "--out",
                    refused, "--data", text, "--train-tokenizer", stories], .. bad]);
                Assert.Equal(2, code);
                Assert.StartsWith("error: ", err, StringComparison.Ordinal);
                Assert.Single(err.Trim().Split('\n'));
                Assert.False(Directory.Exists(refused), string.Join(" ", bad));
            }
        }
        finally
        {
            foreach (string d in new[] { init, outDir, refused })
            {
                if (Directory.Exists(d))
                {
                    Directory.Delete(d, recursive: true);
                }
            }
        }
    }

    [Fact]
    public void Train_two_languages_with_language_rows_then_transfer_with_lang()
    {
        string outDir = Temp("multi");
        string udhr = Repo("tests/fixtures/train/udhr");
        try
        {
            var (code, output, err) = Zett.Run("train", "--model", Repo("assets/stories260K"),
                "--out", outDir,
                "--data", Path.Combine(udhr, "eng-train.jsonl") + ":lang=en",
                "--data", Path.Combine(udhr, "deu-train.jsonl") + ":lang=de",
                "--language-sampling-alpha", "0.5", "--embed-lang-id", "--pieces", "512",
                "--batch", "2", "--block-size", "16", "--identity-steps", "1",
                "--identity-batch", "32", "--steps", "4", "--hn-layers", "1",
                "--valid-tokenizer", "gpt2",
                "--valid-data", Path.Combine(udhr, "eng-valid.jsonl") + ":lang=en",
                "--valid-data", Path.Combine(udhr, "deu-valid.jsonl") + ":lang=de");
            Assert.True(code == 0, err);
            Assert.Contains("4 updates", output, StringComparison.Ordinal);
            Assert.Matches(@"validation en \d+\.\d{4}, de \d+\.\d{4} bits/byte", output);
            Assert.Contains("; one language per batch", err, StringComparison.Ordinal);
            JsonNode[] log = [.. File.ReadAllLines(Path.Combine(outDir, "train_log.jsonl"))
                .Select(l => JsonNode.Parse(l)!)];
            Assert.All(log.Where(l => (string)l["stage"]! == "main"),
                l => Assert.Contains((string)l["lang"]!, new[] { "en", "de" }));
            Assert.Contains(log, l => l["valid/de_bpb"] is not null);
            Assert.Contains(log, l => l["valid/en_bpb"] is not null);
            JsonNode config = JsonNode.Parse(File.ReadAllText(Path.Combine(outDir, "config.json")))!;
            Assert.True((bool)config["hn_embed_lang_id"]!);
            Assert.Equal(["en", "de"], config["langs"]!.AsArray().Select(x => (string)x!));

            string transferred = Temp("multi-de");
            try
            {
                (code, _, err) = Zett.Run("transfer", "--model", Repo("assets/stories260K"),
                    "--hypernet", outDir, "--tokenizer", "gpt2", "--lang", "de", "--out",
                    transferred);
                Assert.True(code == 0, err);
                Assert.True(File.Exists(Path.Combine(transferred, "model.safetensors")));
                (code, _, err) = Zett.Run("transfer", "--model", Repo("assets/stories260K"),
                    "--hypernet", outDir, "--tokenizer", "gpt2", "--lang", "fr", "--out",
                    Temp("multi-fr"));
                Assert.Equal(2, code);
                Assert.StartsWith("error: --lang fr: unknown language; valid: en, de", err,
                    StringComparison.Ordinal);
            }
            finally
            {
                if (Directory.Exists(transferred))
                {
                    Directory.Delete(transferred, recursive: true);
                }
            }
        }
        finally
        {
            if (Directory.Exists(outDir))
            {
                Directory.Delete(outDir, recursive: true);
            }
        }
    }

    private static async Task<string> ParquetWithout(string path)
    {
        DataField<string>[] fields = [new("title"), new("body")];
        await using (FileStream stream = File.Create(path))
        await using (ParquetWriter writer = await ParquetWriter.CreateAsync(
            new ParquetSchema(fields), stream,
            cancellationToken: TestContext.Current.CancellationToken))
        {
            using ParquetRowGroupWriter group = writer.CreateRowGroup();
            await group.WriteAsync(fields[0], new[] { "t" }, null);
            await group.WriteAsync(fields[1], new[] { "b" }, null);
        }
        return path;
    }

    [Fact]
    public async Task Bad_input_is_one_error_line_before_any_work()
    {
        string dir = Directory.CreateTempSubdirectory("zett-train-bad-").FullName;
        try
        {
            string model = Repo("assets/stories260K");
            string good = Path.Combine(Repo("tests/fixtures/lm/eval"), "tinystories-dev-25.jsonl");
            string missing = Path.Combine(dir, "missing.jsonl");
            string empty = Path.Combine(dir, "empty.jsonl");
            File.WriteAllText(empty, "");
            string parquet = await ParquetWithout(Path.Combine(dir, "no-text.parquet"));
            string mamba = Path.Combine(dir, "mamba");
            Directory.CreateDirectory(mamba);
            foreach (string f in Directory.GetFiles(model))
            {
                File.Copy(f, Path.Combine(mamba, Path.GetFileName(f)));
            }
            string configPath = Path.Combine(mamba, "config.json");
            JsonNode config = JsonNode.Parse(File.ReadAllText(configPath))!;
            config["model_type"] = "mamba";
            File.WriteAllText(configPath, config.ToJsonString());
            string[] tok = ["--train-tokenizer", "gpt2"];
            (string[] Args, string Names, string Says)[] cases =
            [
                (["--model", model, "--data", missing, .. tok], missing, "not found"),
                (["--model", model, "--data", empty, .. tok], empty, "no text"),
                (["--model", model, "--data", parquet, .. tok], parquet, "no string column 'text'"),
                (["--model", mamba, "--data", good, .. tok], configPath, "model_type 'mamba'"),
                (["--model", model, "--data", good, "--pieces", "500"], "--pieces 500",
                    "multiple of 128"),
                (["--model", model, "--train-tokenizer", "gpt2"], "--data", "training text"),
                (["--model", model, "--data", good, .. tok, "--valid-tokenizer", "gpt2"],
                    "--valid-data", "validation needs both"),
                (["--model", model, "--data", good, "--train-tokenizer", missing], missing, ""),
                (["--model", model, "--data", good + ":lang=", .. tok], good,
                    "lang='' is not a language code"),
                (["--model", model, "--data", good + ":lang=e n", .. tok], good,
                    "lang='e n' is not a language code"),
                (["--model", model, "--data", good + ":0:lang=de", .. tok], good,
                    "mixture weight must be a positive number, not '0'"),
                (["--model", model, "--data", good + ":-2", .. tok], good,
                    "mixture weight must be a positive number, not '-2'"),
                (["--model", model, "--data", good + ":lang=all", .. tok], good,
                    "lang=all is reserved"),
                (["--model", model, "--data", good, "--data", good + ":lang=de", .. tok,
                    "--valid-tokenizer", "gpt2", "--valid-data", good + ":lang=fr"],
                    $"--valid-data {good}", "unknown language 'fr'; the training languages are en, de"),
                (["--model", model, "--data", good, .. tok, "--valid-tokenizer", "gpt2",
                    "--valid-data", good, "--valid-data", good + ":lang=en"],
                    $"--valid-data {good}", "a second validation set for language en"),
                (["--model", model, "--data", good, .. tok, "--mix-languages"],
                    "--mix-languages", "at least two languages"),
                (["--model", model, "--embed-lang-id"], "--embed-lang-id", "training text"),
                (["--model", model, "--data", good, "--data", good + ":lang=de", .. tok,
                    "--language-sampling-alpha", "0"], "--language-sampling-alpha 0",
                    "positive number"),
                (["--model", model, "--init-from", Path.Combine(dir, "no-hypernet")],
                    Path.Combine(dir, "no-hypernet"), ""),
                (["--model", model, "--init-from", mamba, "--resume", mamba], "--init-from",
                    "give one of them"),
                (["--model", model, "--init-from", mamba, "--hn-layers", "2"], "--init-from",
                    "shape is its own"),
                (["--model", model, "--device", "tpu"], "--device", "must be one of auto, cpu, cuda"),
                (["--model", model, "--device", "cpu", "--gpu", "1"], "--gpu", "does not apply to --device cpu"),
                .. (ZeTT.Kernels.Cuda.IsAvailable ? Array.Empty<(string[], string, string)>()
                    : [(["--model", model, "--device", "cuda"], "--device cuda", "no usable CUDA device")]),
            ];
            foreach ((string[] args, string names, string says) in cases)
            {
                string outDir = Path.Combine(dir, "out");
                var (code, _, err) = Zett.Run(["train", "--out", outDir, .. args]);
                string what = string.Join(' ', args);
                Assert.True(code == 2, $"{what}: exit {code}, {err}");
                Assert.StartsWith("error: ", err, StringComparison.Ordinal);
                Assert.Single(err.TrimEnd().Split('\n'));
                Assert.Contains(names, err, StringComparison.Ordinal);
                Assert.Contains(says, err, StringComparison.Ordinal);
                Assert.False(Directory.Exists(outDir), what);
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
    /// <summary>Data parallelism from the command line: two <c>zett train</c> processes of one
    /// job (ranks 0 and 1, a rendezvous directory) end as one process with
    /// <c>--accumulation 2</c> does, to fp32 rounding of the gradient sum (losses within 1e-6
    /// relative); rank 1 writes nothing to its --out; bad values are one error line, exit 2,
    /// no output.</summary>
    [Fact]
    public async Task Two_train_processes_are_one_with_twice_the_accumulation()
    {
        string dist = Temp("dist"), ddp = Temp("ddp"), other = Temp("rank1"), single = Temp("single");
        string refused = Temp("refused");
        string text = Path.Combine(Repo("tests/fixtures/lm/eval"), "tinystories-dev-25.jsonl");
        string[] common = ["train", "--model", Repo("assets/stories260K"), "--data", text,
            "--train-tokenizer", "gpt2", "--vocab-subsample", "128", "--batch", "2",
            "--block-size", "16", "--identity-steps", "1", "--identity-batch", "32",
            "--steps", "3", "--hn-layers", "1", "--main-lr", "1e-3"];
        try
        {
            string exe = Path.Combine(AppContext.BaseDirectory, "zett");
            System.Diagnostics.Process Start(int rank, string outDir)
            {
                var info = new System.Diagnostics.ProcessStartInfo(exe)
                {
                    RedirectStandardOutput = true,
                    RedirectStandardError = true,
                };
                foreach (string a in common.Concat(["--out", outDir, "--world-size", "2", "--rank",
                    rank.ToString(System.Globalization.CultureInfo.InvariantCulture), "--dist-dir", dist,
                    "--dist-timeout", "120"]))
                {
                    info.ArgumentList.Add(a);
                }
                return System.Diagnostics.Process.Start(info)!;
            }
            using System.Diagnostics.Process p0 = Start(0, ddp), p1 = Start(1, other);
            using var limit = CancellationTokenSource.CreateLinkedTokenSource(
                TestContext.Current.CancellationToken);
            limit.CancelAfter(TimeSpan.FromMinutes(3));
            Task<string> e0 = p0.StandardError.ReadToEndAsync(limit.Token);
            Task<string> e1 = p1.StandardError.ReadToEndAsync(limit.Token);
            Task<string> o0 = p0.StandardOutput.ReadToEndAsync(limit.Token);
            Task<string> o1 = p1.StandardOutput.ReadToEndAsync(limit.Token);
            await Task.WhenAll(p0.WaitForExitAsync(limit.Token), p1.WaitForExitAsync(limit.Token));
            string err0 = await e0, err1 = await e1, out0 = await o0, out1 = await o1;
            Assert.True(p0.ExitCode == 0, err0);
            Assert.True(p1.ExitCode == 0, err1);
            Assert.Contains("rank 0 of 2, gradients summed by files in", err0, StringComparison.Ordinal);
            Assert.Contains("rank 1: step 3/3 main", err1, StringComparison.Ordinal);
            Assert.Contains("3 updates", out0, StringComparison.Ordinal);
            Assert.StartsWith("rank 1 of 2: 3 updates", out1, StringComparison.Ordinal);
            Assert.False(Directory.Exists(other));
            Assert.Empty(Directory.EnumerateFileSystemEntries(dist));

            var (code, _, err) = Zett.Run([.. common, "--out", single, "--accumulation", "2"]);
            Assert.True(code == 0, err);
            double[] Losses(string dir) => [.. File.ReadAllLines(Path.Combine(dir, "train_log.jsonl"))
                .Select(l => (double)JsonNode.Parse(l)!["loss"]!)];
            double[] a = Losses(ddp), b = Losses(single);
            Assert.Equal(b.Length, a.Length);
            for (int i = 0; i < a.Length; i++)
            {
                Assert.True(Math.Abs(a[i] - b[i]) <= 1e-6 * Math.Abs(b[i]), $"update {i + 1}: {a[i]} vs {b[i]}");
            }

            foreach (string[] bad in new[]
            {
                new[] { "--world-size", "2", "--rank", "0" },
                ["--rank", "1", "--dist-dir", dist],
                ["--world-size", "2", "--rank", "2", "--dist-dir", dist],
                ["--world-size", "0", "--rank", "0", "--dist-dir", dist],
                ["--world-size", "2", "--rank", "-1", "--dist-dir", dist],
                ["--world-size", "2", "--rank", "0", "--dist-dir", dist, "--dist-timeout", "0"],
                ["--dist-timeout", "5"],
            })
            {
                (code, _, err) = Zett.Run([.. common, "--out", refused, .. bad]);
                Assert.True(code == 2, string.Join(' ', bad) + ": " + err);
                Assert.StartsWith("error: ", err, StringComparison.Ordinal);
                Assert.Single(err.Trim().Split('\n'));
                Assert.False(Directory.Exists(refused));
            }
        }
        finally
        {
            foreach (string d in new[] { dist, ddp, other, single, refused })
            {
                if (Directory.Exists(d))
                {
                    Directory.Delete(d, recursive: true);
                }
            }
        }
    }
}
