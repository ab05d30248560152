using System.Diagnostics;
using System.Text.Json;
using ZeTT.Runtime.Tokenizers;
using ZeTT.Runtime.Training;
using RustTokenizer = Tokenizers.DotNet.Tokenizer;

namespace ZeTT.Bench;

/// <summary>
/// <c>sampler</c>: milliseconds per batch of the per-batch tokenizer sampler (TRAINING.md §4)
/// at the reference's sizes: 128 texts of 2048 characters of TinyStories training text
/// (../shared/data/text/tinystories/train.jsonl, packed with <c>&lt;/s&gt;</c> and cropped by
/// TrainText as <c>zett train</c> does), a 16-batch window, 32,768 pieces, surface forms of
/// length 7 under the byte-level stories260K tokenizer. Each batch is split into counting,
/// scoring (window, noise, selection), building the tokenizer, surface forms, and encoding the
/// batch (<c>EncodeBatch</c>, all cores); the anchor for the encoding is the Rust
/// <c>tokenizers</c> library on the same saved tokenizer.json in the same run (ids checked
/// equal).
/// </summary>
internal static class SamplerBenchmark
{
    private const int BatchSize = 128;
    private const int SpanChars = 2048;

    public static int Run(BenchContext context)
    {
        string data = Path.Combine("..", "shared", "data", "text", "tinystories", "train.jsonl");
        if (!File.Exists(data))
        {
            Console.Error.WriteLine($"error: {data}: not found (the TinyStories training text)");
            return 1;
        }
        HfTokenizer baseTokenizer = HfTokenizer.Load(Path.Combine("assets", "stories260K"));
        HfTokenizer hn = ByteLevelConverter.Convert(baseTokenizer);
        hn = hn.WithPadToken(hn.SpecialTokens.Eos);
        var options = new TokenizerSamplerOptions();
        using var text = new TrainText([new TextSource(data, 1)], BatchSize, SpanChars, "</s>",
            seed: 1);
        var sampler = new TokenizerSampler(options, baseTokenizer, hn, seed: 1);

        var primeTexts = new List<string>();
        for (int i = 0; i < options.WindowBatches; i++)
        {
            primeTexts.AddRange(text.Next().Texts);
        }
        long start = Stopwatch.GetTimestamp();
        sampler.Prime(primeTexts);
        double prime = Stopwatch.GetElapsedTime(start).TotalSeconds;

        const int warmup = 2, timed = 9;
        var count = new List<double>();
        var score = new List<double>();
        var build = new List<double>();
        var surface = new List<double>();
        var encode = new List<double>();
        var rustEncode = new List<double>();
        var total = new List<double>();
        string temp = Directory.CreateTempSubdirectory("zett-bench-sampler-").FullName;
        int failures = 0, rows = 0;
        long tokens = 0;
        try
        {
            for (int b = 0; b < warmup + timed; b++)
            {
                string[] batch = text.Next().Texts;
                start = Stopwatch.GetTimestamp();
                SampledTokenizer s = sampler.Sample(batch);
                double sample = Stopwatch.GetElapsedTime(start).TotalSeconds;
                start = Stopwatch.GetTimestamp();
                IReadOnlyList<TokenizerEncoding> encodings = s.Tokenizer.EncodeBatch(batch);
                double enc = Stopwatch.GetElapsedTime(start).TotalSeconds;

                string dir = Path.Combine(temp, $"b{b}");
                s.Tokenizer.Save(dir);
                using var rust = new RustTokenizer(Path.Combine(dir, "tokenizer.json"));
                start = Stopwatch.GetTimestamp();
                var rustIds = new uint[batch.Length][];
                Parallel.For(0, batch.Length, i => rustIds[i] = rust.Encode(batch[i]));
                double rustEnc = Stopwatch.GetElapsedTime(start).TotalSeconds;
                for (int i = 0; i < batch.Length; i++)
                {
                    if (!rustIds[i].AsSpan().SequenceEqual([.. encodings[i].Ids.Select(x => (uint)x)]))
                    {
                        Console.WriteLine($"  batch {b} text {i}: ids differ from the Rust library");
                        failures = 1;
                    }
                }
                if (b < warmup)
                {
                    continue;
                }
                SamplerTimings t = sampler.LastTimings;
                count.Add(t.Count);
                score.Add(t.Score);
                build.Add(t.Build);
                surface.Add(t.SurfaceForms);
                encode.Add(enc);
                rustEncode.Add(rustEnc);
                total.Add(sample + enc);
                rows = s.Rows;
                tokens += encodings.Sum(e => (long)e.Ids.Length);
            }
        }
        finally
        {
            Directory.Delete(temp, recursive: true);
        }

        double Ms(List<double> xs) => Math.Round(Median(xs) * 1e3, 2);
        Console.WriteLine($"{BatchSize} x {SpanChars} chars, {rows} rows, " +
            $"{Environment.ProcessorCount} cores; prime {prime * 1e3:F0} ms ({primeTexts.Count} texts)");
        Console.WriteLine($"median ms per batch: count {Ms(count)}, score {Ms(score)}, build " +
            $"{Ms(build)}, surface forms {Ms(surface)}, encode {Ms(encode)} (rust {Ms(rustEncode)}), " +
            $"total {Ms(total)}");
        string path = Path.Combine(context.OutputDirectory, "sampler-cpu.json");
        File.WriteAllText(path, JsonSerializer.Serialize(new
        {
            benchmark = "sampler",
            machine = $"{Environment.ProcessorCount} logical cores",
            data = "TinyStories train.jsonl, packed with </s>, cropped to 2048 chars (TrainText seed 1)",
            batch = BatchSize,
            span_chars = SpanChars,
            pieces = options.Pieces,
            window_batches = options.WindowBatches,
            rows,
            padded_rows = sampler.PaddedRows,
            statistic = $"median of {timed} batches after {warmup} warm-up",
            prime_ms = Math.Round(prime * 1e3, 1),
            count_ms = Ms(count),
            score_ms = Ms(score),
            build_ms = Ms(build),
            surface_forms_ms = Ms(surface),
            sample_ms = Math.Round(Median([.. count.Select((c, i) => c + score[i] + build[i] + surface[i])]) * 1e3, 2),
            encode_ms = Ms(encode),
            rust_encode_ms = Ms(rustEncode),
            total_ms = Ms(total),
            tokens_per_batch = tokens / timed,
            encodings_equal_rust = failures == 0,
        }, new JsonSerializerOptions { WriteIndented = true }));
        Console.WriteLine($"wrote {path}");
        return failures;
    }

    private static double Median(List<double> xs)
    {
        double[] sorted = [.. xs.Order()];
        return sorted[sorted.Length / 2];
    }
}
