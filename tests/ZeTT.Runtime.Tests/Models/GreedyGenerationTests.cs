using System.Text.Json;
using ZeTT.Ops.Cpu;
using ZeTT.Runtime.Models;
using ZeTT.Runtime.Transfer;

namespace ZeTT.Runtime.Tests.Models;

public class GreedyGenerationTests
{
    private static string RepoFile(string relative)
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            string candidate = Path.Combine(d.FullName, relative);
            if (File.Exists(candidate) || Directory.Exists(candidate))
            {
                return candidate;
            }
        }
        throw new FileNotFoundException(relative);
    }

    [Fact]
    public void Stories260K_reproduces_its_256_greedy_reference_tokens_on_the_cpu()
    {
        string dir = RepoFile(DefaultTransfer.AssetPath);
        using JsonDocument reference = JsonDocument.Parse(
            File.ReadAllText(Path.Combine(dir, "reference_greedy_generation.json")));
        int[] expected = reference.RootElement.GetProperty("generated_ids").EnumerateArray()
            .Select(e => e.GetInt32()).ToArray();
        int start = reference.RootElement.GetProperty("start_token").GetInt32();
        using var model = LanguageModel.Open(dir, new CpuBackend());
        int[] generated = TextGeneration.Generate(model, [start], expected.Length,
            new SamplingOptions()).ToArray();
        Assert.Equal(256, expected.Length);
        Assert.Equal(expected, generated);
    }
}
