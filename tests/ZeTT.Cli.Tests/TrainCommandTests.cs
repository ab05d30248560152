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
                "--out", outDir, "--steps", "3", "--batch", "64", "--hn-layers", "1",
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
}
