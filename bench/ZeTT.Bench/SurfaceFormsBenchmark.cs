using System.Text.Json;
using ZeTT.Runtime.Tokenizers;

namespace ZeTT.Bench;

/// <summary>
/// <c>surface-forms</c>: time to build the surface-form matrix (L = 7) of a large target
/// vocabulary (o200k_base, 200k tokens, and cl100k_base, 100k) against the converted Mistral
/// hn tokenizer — the CPU step transfer runs before prediction. Conversion of the target is
/// timed separately.
/// </summary>
internal static class SurfaceFormsBenchmark
{
    public static int Run(BenchContext context)
    {
        string hnDir = Path.Combine("tests", "data", "tokenizers", "mistral-7b-v0.1");
        HfTokenizer hnOriginal = HfTokenizer.Load(hnDir);
        HfTokenizer hn = ByteLevelConverter.Convert(hnOriginal);
        hn = hn.WithPadToken(hn.SpecialTokens.Eos);
        var results = new List<object>();
        foreach (string target in new[] { "cl100k_base", "o200k_base" })
        {
            HfTokenizer original = HfTokenizer.Load(target);
            HfTokenizer converted = null!;
            double convert = BenchContext.MedianSeconds(() => converted =
                ByteLevelConverter.Convert(original, true, hnOriginal), repeats: 3);
            SurfaceFormMatrix m = null!;
            double build = BenchContext.MedianSeconds(() => m =
                SurfaceFormMatrix.Build(converted, hn, 7), repeats: 5);
            Console.WriteLine($"{target}: {m.Rows} tokens, convert {convert:F3} s, surface forms " +
                $"{build:F3} s ({m.Rows / build / 1e3:F0}k tokens/s), truncated {m.TruncatedCount}");
            results.Add(new
            {
                target,
                hn = "mistral-7b-v0.1",
                rows = m.Rows,
                maxlen = m.MaxLen,
                truncated = m.TruncatedCount,
                convert_median_s = Math.Round(convert, 4),
                surface_forms_median_s = Math.Round(build, 4),
            });
        }
        string path = Path.Combine(context.OutputDirectory, "surface-forms-cpu.json");
        File.WriteAllText(path, JsonSerializer.Serialize(new
        {
            benchmark = "surface-forms",
            machine = $"{Environment.ProcessorCount} logical cores",
            results,
        }, new JsonSerializerOptions { WriteIndented = true }));
        Console.WriteLine($"wrote {path}");
        return 0;
    }
}
