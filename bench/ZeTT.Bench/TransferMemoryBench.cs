using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using ZeTT.Runtime.Formats;
using ZeTT.Runtime.Transfer;

namespace ZeTT.Bench;

/// <summary>
/// <c>transfer-memory</c>: host memory of <c>zett transfer --method fvt</c> on a synthetic
/// Mistral-7B-shaped directory (real names and shapes: 32000×4096 embeddings and LM head, 32
/// layers, BF16, two shards like the released checkpoint; all data zeros, written as sparse
/// files so creating it is instant) to GPT-2's tokenizer. A sampler thread reads
/// /proc/self/status every 20 ms for the peak anonymous memory (heap: what the transfer holds);
/// VmHWM (which also counts file pages of the memory-mapped weights that were touched while
/// streaming them to the output) is reported beside it. Everything is in a temporary folder,
/// deleted afterwards. Writes bench/results/transfer-memory.json.
/// </summary>
internal static class TransferMemoryBench
{
    private const int Intermediate = 14336, KvHidden = 1024;

    /// <summary>A synthetic model shape: the Mistral-7B layout, or only embeddings and LM
    /// head (no layers).</summary>
    private sealed record Shape(string Benchmark, string What, int Vocab, int Hidden, int Layers);

    private static readonly Shape Mistral = new("transfer-memory",
        "zett transfer --method fvt, synthetic Mistral-7B-shaped directory (BF16, 2 shards, zeros) -> gpt2",
        32000, 4096, 32);

    /// <summary>A 256k vocabulary at hidden size 8192: each embedding matrix has 2^31 elements,
    /// past one host array.</summary>
    private static readonly Shape Large = new("transfer-memory-large",
        "zett transfer --method fvt, synthetic untied [262144, 8192] BF16 embeddings and LM head "
        + "(2^31 elements each, zeros, no layers) -> gpt2", 262144, 8192, 0);

    public static int Run(BenchContext context) => Run(context, Mistral);

    /// <summary><c>transfer-memory-large</c>: the same measurement on the 2^31-element
    /// shape.</summary>
    public static int RunLarge(BenchContext context) => Run(context, Large);

    private static int Run(BenchContext context, Shape shape)
    {
        string root = Directory.CreateTempSubdirectory("zett-transfer-memory-").FullName;
        try
        {
            string model = Path.Combine(root, "mistral-7b-shaped");
            long weightBytes = WriteSyntheticMistral(model, shape.Vocab, shape.Hidden, shape.Layers);
            string output = Path.Combine(root, "out");
            using var sampler = new MemorySampler();
            long start = Stopwatch.GetTimestamp();
            TransferResult r = TokenizerTransfer.Run(new TransferOptions
            {
                ModelDirectory = model,
                Tokenizer = "gpt2",
                OutputDirectory = output,
                Method = TransferMethod.Fvt,
            });
            double seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
            sampler.Dispose();
            long embeddings = r.EmbeddingBytes;
            foreach (string line in r.SummaryLines())
            {
                Console.WriteLine(line);
            }
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"peak anonymous {sampler.PeakAnonymousBytes / 1048576.0:F0} MiB, VmHWM {r.PeakResidentBytes / 1048576.0:F0} MiB, "
                + $"fp32 embedding matrices {embeddings / 1048576.0:F0} MiB, checkpoint {weightBytes / 1048576.0:F0} MiB, "
                + $"{seconds:F1} s"));
            var json = new
            {
                benchmark = shape.Benchmark,
                what = shape.What,
                model = new { vocab = shape.Vocab, hidden = shape.Hidden, layers = shape.Layers, checkpoint_bytes = weightBytes },
                new_vocab = r.VocabSize,
                seconds = Math.Round(seconds, 1),
                phases = r.Times.Phases.ToDictionary(p => p.Phase, p => Math.Round(p.Time.TotalSeconds, 2)),
                peak_anonymous_bytes = sampler.PeakAnonymousBytes,
                peak_vmhwm_bytes = r.PeakResidentBytes,
                fp32_embedding_matrices_bytes = embeddings,
                peak_anonymous_over_embeddings = Math.Round((double)sampler.PeakAnonymousBytes / embeddings, 2),
                note = "VmHWM includes file-backed pages of the memory-mapped checkpoint touched while "
                    + "copying the other tensors (reclaimable page cache, not heap)",
                cores = Environment.ProcessorCount,
            };
            Directory.CreateDirectory(context.OutputDirectory);
            File.WriteAllText(Path.Combine(context.OutputDirectory, shape.Benchmark + ".json"),
                JsonSerializer.Serialize(json, new JsonSerializerOptions
                {
                    WriteIndented = true,
                    Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
                }) + "\n");
            return 0;
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    internal static long WriteSyntheticMistral(string dir) =>
        WriteSyntheticMistral(dir, Mistral.Vocab, Mistral.Hidden, Mistral.Layers);

    private static long WriteSyntheticMistral(string dir, int vocab, int hidden, int layers)
    {
        Directory.CreateDirectory(dir);
        var shards = new List<(string Name, long[] Shape)>[] { [], [] };
        shards[0].Add(("model.embed_tokens.weight", [vocab, hidden]));
        for (int l = 0; l < layers; l++)
        {
            List<(string, long[])> s = shards[l < layers * 23 / 32 ? 0 : 1];
            string p = $"model.layers.{l}.";
            s.Add((p + "input_layernorm.weight", [hidden]));
            s.Add((p + "mlp.down_proj.weight", [hidden, Intermediate]));
            s.Add((p + "mlp.gate_proj.weight", [Intermediate, hidden]));
            s.Add((p + "mlp.up_proj.weight", [Intermediate, hidden]));
            s.Add((p + "post_attention_layernorm.weight", [hidden]));
            s.Add((p + "self_attn.k_proj.weight", [KvHidden, hidden]));
            s.Add((p + "self_attn.o_proj.weight", [hidden, hidden]));
            s.Add((p + "self_attn.q_proj.weight", [hidden, hidden]));
            s.Add((p + "self_attn.v_proj.weight", [KvHidden, hidden]));
        }
        shards[1].Add(("model.norm.weight", [hidden]));
        shards[1].Add(("lm_head.weight", [vocab, hidden]));
        var weightMap = new List<KeyValuePair<string, string>>();
        long total = 0;
        for (int i = 0; i < shards.Length; i++)
        {
            string name = SafetensorsWriter.ShardFileName(i, shards.Length);
            total += WriteSparse(Path.Combine(dir, name), shards[i]);
            weightMap.AddRange(shards[i].Select(t => new KeyValuePair<string, string>(t.Name, name)));
        }
        SafetensorsWriter.WriteIndex(Path.Combine(dir, SafetensorsWriter.IndexFileName), weightMap, total);
        File.WriteAllText(Path.Combine(dir, "config.json"), $$"""
            {"architectures": ["MistralForCausalLM"], "model_type": "mistral", "vocab_size": {{vocab}},
             "hidden_size": {{hidden}}, "intermediate_size": {{Intermediate}},
             "num_hidden_layers": {{layers}}, "num_attention_heads": 32, "num_key_value_heads": 8,
             "bos_token_id": 1, "eos_token_id": 2, "tie_word_embeddings": false,
             "torch_dtype": "bfloat16"}
            """);
        string tokenizers = Path.Combine(FindRepoRoot(), "tests", "data", "tokenizers", "mistral-7b-v0.1");
        foreach (string f in Directory.EnumerateFiles(tokenizers))
        {
            File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
        }
        return total;
    }

    /// <summary>A safetensors file whose data section is a hole (all zeros, no disk blocks).</summary>
    private static long WriteSparse(string path, List<(string Name, long[] Shape)> tensors)
    {
        var header = new StringBuilder("{\"__metadata__\":{\"format\":\"pt\"}");
        long offset = 0;
        foreach ((string name, long[] shape) in tensors)
        {
            long bytes = shape.Aggregate(2L, (a, b) => a * b);
            header.Append(CultureInfo.InvariantCulture, $",\"{name}\":{{\"dtype\":\"BF16\",\"shape\":[{string.Join(",", shape)}],\"data_offsets\":[{offset},{offset + bytes}]}}");
            offset += bytes;
        }
        header.Append('}');
        while ((header.Length + 8) % 8 != 0)
        {
            header.Append(' ');
        }
        byte[] h = Encoding.UTF8.GetBytes(header.ToString());
        using var fs = new FileStream(path, FileMode.CreateNew, FileAccess.Write);
        fs.Write(BitConverter.GetBytes((long)h.Length));
        fs.Write(h);
        fs.SetLength(8 + h.Length + offset);
        return offset;
    }

    internal static string FindRepoRoot()
    {
        foreach (string start in new[] { AppContext.BaseDirectory, Environment.CurrentDirectory })
        {
            for (DirectoryInfo? d = new(start); d is not null; d = d.Parent)
            {
                if (Directory.Exists(Path.Combine(d.FullName, "tests", "data", "tokenizers")))
                {
                    return d.FullName;
                }
            }
        }
        throw new DirectoryNotFoundException("tests/data/tokenizers not found above the benchmark");
    }
}
