using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using ZeTT.Runtime.Tokenizers;
using RustTokenizer = Tokenizers.DotNet.Tokenizer;

namespace ZeTT.Bench;

/// <summary>
/// <c>tokenize</c>: encoding throughput (MB of UTF-8 text per second) of <c>HfTokenizer</c>
/// against the Rust Hugging Face <c>tokenizers</c> library (0.22 through Tokenizers.DotNet
/// 1.4.1, <c>encode_fast(text, add_special_tokens=true)</c>) on the same documents in the same
/// run: one thread each, then all cores each (ours <c>EncodeBatch</c>; Rust one shared
/// tokenizer called from a <c>Parallel.For</c>, the library being thread-safe). The documents
/// are ../shared/data/text: TinyStories, UDHR in 30 languages, books in English, German,
/// Japanese and Chinese, and source code, cut into documents of at most 4,000 characters. The
/// ids of every document are checked equal before timing.
/// </summary>
internal static class TokenizeBenchmark
{
    private static readonly string[] Tokenizers =
    [
        "gpt2", "llama2-tinyllama", "bert-base-uncased", "t5-small", "gpt-neox-20b", "cl100k_base",
    ];

    public static int Run(BenchContext context)
    {
        List<string> docs = Corpus();
        long bytes = docs.Sum(d => (long)Encoding.UTF8.GetByteCount(d));
        double mb = bytes / 1e6;
        Console.WriteLine($"{docs.Count} documents, {mb:F2} MB, {Environment.ProcessorCount} cores");
        string temp = Directory.CreateTempSubdirectory("zett-bench-tok-").FullName;
        var results = new List<object>();
        int failures = 0;
        try
        {
            string[] selected = Environment.GetEnvironmentVariable("ZETT_BENCH_TOKENIZERS")
                ?.Split(',', StringSplitOptions.RemoveEmptyEntries) ?? Tokenizers;
            foreach (string name in selected)
            {
                HfTokenizer ours = HfTokenizer.Load(name.Contains('-', StringComparison.Ordinal)
                    ? Path.Combine("tests", "data", "tokenizers", name) : name);
                string file = Path.Combine("tests", "data", "tokenizers", name, "tokenizer.json");
                if (!File.Exists(file))
                {
                    ours.Save(Path.Combine(temp, name));
                    file = Path.Combine(temp, name, "tokenizer.json");
                }
                using var rust = new RustTokenizer(file);
                int mismatches = 0;
                foreach (string d in docs)
                {
                    uint[] expected = rust.Encode(d);
                    int[] actual = ours.Encode(d).Ids;
                    if (expected.AsSpan().SequenceEqual([.. actual.Select(i => (uint)i)]))
                    {
                        continue;
                    }
                    if (mismatches++ == 0)
                    {
                        int at = 0;
                        while (at < Math.Min(expected.Length, actual.Length) && expected[at] == actual[at])
                        {
                            at++;
                        }
                        Console.WriteLine($"  first difference at token {at}: rust [" +
                            string.Join(',', expected.Skip(Math.Max(0, at - 2)).Take(6)) + "] ours [" +
                            string.Join(',', actual.Skip(Math.Max(0, at - 2)).Take(6)) + "] " +
                            string.Join(' ', actual.Skip(Math.Max(0, at - 2)).Take(6).Select(ours.IdToToken)));
                    }
                }
                failures += mismatches == 0 ? 0 : 1;

                double oursOne = BenchContext.MedianSeconds(() =>
                {
                    foreach (string d in docs)
                    {
                        ours.Encode(d);
                    }
                }, repeats: 3);
                double rustOne = BenchContext.MedianSeconds(() =>
                {
                    foreach (string d in docs)
                    {
                        rust.Encode(d);
                    }
                }, repeats: 3);
                double oursAll = BenchContext.MedianSeconds(() => ours.EncodeBatch(docs), repeats: 3);
                double rustAll = BenchContext.MedianSeconds(() =>
                    Parallel.For(0, docs.Count, i => rust.Encode(docs[i])), repeats: 3);
                Console.WriteLine($"{name,-18} 1 thread: ours {mb / oursOne,6:F2} MB/s, rust " +
                    $"{mb / rustOne,6:F2} MB/s ({rustOne / oursOne:F2}x) | all cores: ours " +
                    $"{mb / oursAll,6:F2}, rust {mb / rustAll,6:F2} ({rustAll / oursAll:F2}x)" +
                    (mismatches == 0 ? "" : $" | {mismatches} documents DIFFER"));
                results.Add(new
                {
                    tokenizer = name,
                    documents_differing = mismatches,
                    ours_1thread_mb_s = Math.Round(mb / oursOne, 3),
                    rust_1thread_mb_s = Math.Round(mb / rustOne, 3),
                    speedup_1thread = Math.Round(rustOne / oursOne, 3),
                    ours_all_cores_mb_s = Math.Round(mb / oursAll, 3),
                    rust_all_cores_mb_s = Math.Round(mb / rustAll, 3),
                    speedup_all_cores = Math.Round(rustAll / oursAll, 3),
                });
            }
        }
        finally
        {
            Directory.Delete(temp, recursive: true);
        }
        string path = Path.Combine(context.OutputDirectory, "tokenize-cpu.json");
        File.WriteAllText(path, JsonSerializer.Serialize(new
        {
            benchmark = "tokenize",
            machine = $"{Environment.ProcessorCount} logical cores",
            anchor = "Rust tokenizers 0.22.2 (Tokenizers.DotNet 1.4.1), encode_fast(text, true)",
            documents = docs.Count,
            megabytes = Math.Round(mb, 3),
            statistic = "median of 3 timed runs after 1 warm-up",
            results,
        }, new JsonSerializerOptions { WriteIndented = true }));
        Console.WriteLine($"wrote {path}");
        return failures;
    }

    /// <summary>../shared/data/text cut into documents of at most 4,000 characters (at line
    /// ends), TinyStories as its own documents.</summary>
    private static List<string> Corpus()
    {
        string root = Path.Combine("..", "shared", "data", "text");
        if (!Directory.Exists(root))
        {
            throw new InvalidOperationException($"{root} not found (the benchmark text)");
        }
        var docs = new List<string>();
        foreach (string line in File.ReadLines(Path.Combine(root, "tinystories", "dev.jsonl")).Take(2000))
        {
            docs.Add(JsonNode.Parse(line)!["text"]!.GetValue<string>());
        }
        string[] files =
        [
            .. Directory.GetFiles(Path.Combine(root, "udhr"), "*.txt").Order(StringComparer.Ordinal),
            .. Directory.GetFiles(Path.Combine(root, "code"), "*.txt").Order(StringComparer.Ordinal),
            Path.Combine(root, "gutenberg_en", "pg11_alice_in_wonderland.txt"),
            Path.Combine(root, "gutenberg_multi", "de_pg22367_kafka_die_verwandlung.txt"),
            Path.Combine(root, "gutenberg_multi", "ja_aozora_wagahaiwa_nekodearu.txt"),
            Path.Combine(root, "gutenberg_multi", "zh_hant_pg23962_xiyouji.txt"),
        ];
        foreach (string f in files)
        {
            string text = File.ReadAllText(f);
            int limit = f.Contains("code", StringComparison.Ordinal) ? 400_000 : 200_000;
            text = text[..Math.Min(text.Length, limit)];
            for (int start = 0; start < text.Length;)
            {
                int end = Math.Min(text.Length, start + 4000);
                int newline = end < text.Length ? text.LastIndexOf('\n', end - 1, end - start) : -1;
                if (newline > start)
                {
                    end = newline + 1;
                }
                docs.Add(text[start..end]);
                start = end;
            }
        }
        return docs;
    }
}
