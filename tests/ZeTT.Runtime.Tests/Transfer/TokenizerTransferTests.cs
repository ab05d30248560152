using System.Text.Json.Nodes;
using ZeTT.Ops.Cpu;
using ZeTT.Runtime.Formats;
using ZeTT.Runtime.Hypernetwork;
using ZeTT.Runtime.Tensors;
using ZeTT.Runtime.Tests.Formats;
using ZeTT.Runtime.Tokenizers;
using ZeTT.Runtime.Transfer;

namespace ZeTT.Runtime.Tests.Transfer;

public sealed class TokenizerTransferTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("zett-transfer-test-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string P(string name) => Path.Combine(_dir, name);

    public static TheoryData<string> Families() => [.. TinyModels.Families];

    [Theory]
    [MemberData(nameof(Families))]
    public void Hypernet_transfer_writes_predicted_rows_special_rows_and_unchanged_tensors(string family)
    {
        bool untied = TransferTestData.IsUntied(family);
        TinyModel m = TransferTestData.WriteModel(P("model"), family, maxShardBytes: 400);
        string hn = TransferTestData.WriteHypernet(P("hn"), untied);
        string target = TransferTestData.WriteTarget(P("target"));
        TransferResult result = TokenizerTransfer.Run(new TransferOptions
        {
            ModelDirectory = m.Directory,
            Tokenizer = target,
            OutputDirectory = P("out"),
            HypernetDirectory = hn,
            Language = "de",
            Device = "cpu",
            Precision = HypernetPrecision.Float32,
            BatchSize = 7,
        });

        // The expectation, computed independently of the transfer's plumbing.
        TransferTokenizers tok = TransferTokenizers.Prepare(hn, target, m.Directory, 3);
        int rows = tok.TargetTokenizer.VocabSize, d = m.Hidden;
        HypernetCheckpoint ckpt = HypernetCheckpoint.Load(hn);
        float[] src = Stack(m, untied);
        using var backend = new HypernetPredictor(new CpuBackend(), ckpt.Weights,
            new HostTensor("E", [m.Vocab, untied ? 2 * d : d], src), HypernetPrecision.Float32, 64);
        HypernetOutput want = HypernetBatching.PredictAll(backend, tok.SurfaceForms.Ids, rows, 1);

        Assert.Equal(rows, result.VocabSize);
        Assert.False(Directory.Exists(P("out") + ".tmp-" + Environment.ProcessId));
        using HfModelDirectory o = HfModelDirectory.Open(P("out"));
        Assert.Equal(rows, o.VocabSize);
        float[] gotIn = o.ReadInputEmbeddings().Data;
        float[]? gotOut = o.ReadOutputEmbeddings()?.Data;
        Assert.Equal(untied, gotOut is not null);

        HfTokenizer modelTok = HfTokenizer.Load(m.Directory);
        var special = new Dictionary<int, int>();
        foreach ((string t, int oldId) in modelTok.AllSpecialTokens.Where(s => s.Id >= 0))
        {
            special[tok.TargetTokenizer.TokenToId(t)!.Value] = oldId;
        }
        Assert.Equal(3, special.Count);
        Assert.Equal(3, result.SpecialTokenRows);
        for (int r = 0; r < rows; r++)
        {
            if (special.TryGetValue(r, out int oldId))
            {
                Assert.Equal(m.Tensors[m.Input].AsSpan(oldId * d, d), gotIn.AsSpan(r * d, d));
                if (untied)
                {
                    Assert.Equal(m.Tensors[m.Output!].AsSpan(oldId * d, d), gotOut!.AsSpan(r * d, d));
                }
                continue;
            }
            Assert.Equal(want.EmbeddingsIn.AsSpan(r * d, d), gotIn.AsSpan(r * d, d));
            if (untied)
            {
                Assert.Equal(want.EmbeddingsOut!.AsSpan(r * d, d), gotOut!.AsSpan(r * d, d));
            }
        }

        // Bias: lm_head.bias for masked LMs; a causal LM has no bias parameter that would read
        // it, so nothing is written and the summary says so.
        if (m.Bias is not null)
        {
            Assert.Equal(want.Bias!, o.ReadOutputBias()!.Data);
            Assert.Equal(m.Bias, result.BiasDestination);
            Assert.False(result.BiasNotWritten);
        }
        else
        {
            Assert.NotNull(want.Bias);
            Assert.Null(result.BiasDestination);
            Assert.True(result.BiasNotWritten);
            Assert.Contains(result.SummaryLines(), l => l.Contains("predicted but not written",
                StringComparison.Ordinal));
            Assert.DoesNotContain("bias", File.ReadAllText(Path.Combine(P("out"), "README.md")),
                StringComparison.OrdinalIgnoreCase);
        }
        Assert.Empty(Directory.EnumerateFiles(P("out"), "*bias*"));

        // Every other tensor bit for bit.
        using HfModelDirectory src0 = HfModelDirectory.Open(m.Directory);
        foreach (SafetensorsTensorInfo t in src0.Weights.Tensors)
        {
            if (src0.EmbeddingTensorNames.Contains(t.Name))
            {
                continue;
            }
            Assert.True(src0.Weights.GetSpan(t.Name, 0, (int)t.ByteLength)
                .SequenceEqual(o.Weights.GetSpan(t.Name, 0, (int)t.ByteLength)), t.Name);
        }

        // config.json and generation_config.json ids follow the special tokens.
        JsonObject config = HfModelDirectory.ReadJsonObject(Path.Combine(P("out"), "config.json"));
        Assert.Equal(rows, (int)config["vocab_size"]!);
        Assert.Equal(tok.TargetTokenizer.TokenToId("<s>"), (int)config["bos_token_id"]!);
        Assert.Equal(tok.TargetTokenizer.TokenToId("<pad>"), (int)config["pad_token_id"]!);
        JsonObject gen = HfModelDirectory.ReadJsonObject(Path.Combine(P("out"), "generation_config.json"));
        Assert.Equal(tok.TargetTokenizer.TokenToId("</s>"), (int)gen["eos_token_id"]![0]!);

        AssertTokenizerFiles(P("out"), tok.TargetTokenizer);
    }

    private static void AssertTokenizerFiles(string outDir, HfTokenizer expected)
    {
        JsonObject tc = HfModelDirectory.ReadJsonObject(Path.Combine(outDir, "tokenizer_config.json"));
        Assert.Equal("PreTrainedTokenizerFast", (string)tc["tokenizer_class"]!);
        Assert.Equal(TransferTestData.ModelTokenizerConfig()["chat_template"]!.GetValue<string>(),
            (string)tc["chat_template"]!);
        Assert.Equal(2048, (int)tc["model_max_length"]!);
        Assert.Equal("<s>", (string)tc["bos_token"]!);
        Assert.False(tc.ContainsKey("add_bos_token"));
        Assert.False(tc.ContainsKey("legacy"));
        foreach ((string key, JsonNode? value) in tc["added_tokens_decoder"]!.AsObject())
        {
            Assert.Equal(expected.TokenToId((string)value!["content"]!), int.Parse(key,
                System.Globalization.CultureInfo.InvariantCulture));
        }
        Assert.False(File.Exists(Path.Combine(outDir, "vocab.json")));
        HfTokenizer back = HfTokenizer.Load(outDir);
        Assert.Equal(expected.VocabSize, back.VocabSize);
        for (int id = 0; id < expected.VocabSize; id++)
        {
            Assert.Equal(expected.IdToToken(id), back.IdToToken(id));
        }
    }

    private static float[] Stack(TinyModel m, bool untied)
    {
        int d = m.Hidden;
        if (!untied)
        {
            return m.Tensors[m.Input];
        }
        var s = new float[m.Vocab * 2 * d];
        for (int r = 0; r < m.Vocab; r++)
        {
            Array.Copy(m.Tensors[m.Input], r * d, s, r * 2 * d, d);
            Array.Copy(m.Tensors[m.Output!], r * d, s, r * 2 * d + d, d);
        }
        return s;
    }

    [Theory]
    [InlineData("llama")]
    [InlineData("xlm-roberta")]
    [InlineData("gpt2")]
    public void Fvt_rows_are_means_of_the_model_tokenizer_pieces(string family)
    {
        TinyModel m = TransferTestData.WriteModel(P("model"), family);
        string target = TransferTestData.WriteTarget(P("target"));
        TransferResult result = TokenizerTransfer.Run(new TransferOptions
        {
            ModelDirectory = m.Directory,
            Tokenizer = target,
            OutputDirectory = P("out"),
            Method = TransferMethod.Fvt,
        });
        HfTokenizer t = ByteLevelConverter.Convert(HfTokenizer.Load(target), true, HfTokenizer.Load(m.Directory));
        using HfModelDirectory o = HfModelDirectory.Open(P("out"));
        float[] gotIn = o.ReadInputEmbeddings().Data;
        int d = m.Hidden;
        float[] srcIn = m.Tensors[m.Input];

        float[] Mean(float[] src, params int[] ids)
        {
            var r = new float[d];
            for (int j = 0; j < d; j++)
            {
                double s = 0;
                foreach (int id in ids)
                {
                    s += src[id * d + j];
                }
                r[j] = (float)(s / ids.Length);
            }
            return r;
        }

        // "Ġworld": not in the model vocabulary; the model's BPE leaves the bytes of " world".
        int world = t.TokenToId("Ġworld")!.Value;
        int[] worldPieces = [.. " world".Select(c => (int)c)];
        Assert.Equal(Mean(srcIn, worldPieces), gotIn.AsSpan(world * d, d).ToArray());
        // "Ġthe" is a model token (id 258): copied exactly.
        int the = t.TokenToId("Ġthe")!.Value;
        Assert.Equal(srcIn.AsSpan(258 * d, d), gotIn.AsSpan(the * d, d));
        // "Ġwor" is split by the model's merges into "Ġ" "w" "o" "r".
        int wor = t.TokenToId("Ġwor")!.Value;
        Assert.Equal(Mean(srcIn, 32, 119, 111, 114), gotIn.AsSpan(wor * d, d).ToArray());
        // Special tokens: the source rows.
        Assert.Equal(srcIn.AsSpan(262 * d, d), gotIn.AsSpan(t.TokenToId("</s>")!.Value * d, d));
        if (m.Output is not null)
        {
            float[] gotOut = o.ReadOutputEmbeddings()!.Data;
            Assert.Equal(Mean(m.Tensors[m.Output], worldPieces), gotOut.AsSpan(world * d, d).ToArray());
        }
        if (m.Bias is not null)
        {
            float[] bias = o.ReadOutputBias()!.Data;
            float[] b = m.Tensors[m.Bias];
            Assert.Equal((float)(worldPieces.Sum(id => (double)b[id]) / worldPieces.Length), bias[world]);
        }
        Assert.Empty(Directory.EnumerateFiles(P("out"), "*bias*"));
        Assert.Equal(t.VocabSize, result.VocabSize);
        Assert.Equal(t.VocabSize, result.FvtCopied + result.FvtAveraged + result.FvtFallback);
        Assert.True(result.FvtCopied > 256, $"{result.FvtCopied} copied");
        AssertTokenizerFiles(P("out"), t);
    }

    [Fact]
    public void Matching_special_tokens_counts_the_target_ids_it_shifts()
    {
        TinyModel m = TransferTestData.WriteModel(P("model"), "llama");
        string target = TransferTestData.WriteTarget(P("target"));
        HfTokenizer original = HfTokenizer.Load(target);
        HfTokenizer matched = ByteLevelConverter.Convert(original, true, HfTokenizer.Load(m.Directory),
            out SpecialTokenMatch? match);
        Assert.NotNull(match);
        ByteLevelConverter.Convert(original, true, null, out SpecialTokenMatch? none);
        Assert.Null(none);

        // Independently, by token string: each token's id without matching against its id now.
        HfTokenizer unmatched = ByteLevelConverter.Convert(original, true);
        int shifted = 0, kept = 0;
        var offsets = new HashSet<int>();
        for (int id = 0; id < matched.VocabSize; id++)
        {
            string token = matched.IdToToken(id);
            if (TransferTestData.ModelSpecials.Contains(token))
            {
                continue;
            }
            int before = unmatched.TokenToId(token)!.Value;
            if (before < original.VocabSize)
            {
                kept++;
                if (before != id)
                {
                    shifted++;
                    offsets.Add(id - before);
                }
            }
        }
        // The model's 3 specials go to ids 261-263: the target's tokens from 261 move up by 3 and
        // its own special token goes.
        Assert.Equal(3, shifted);
        Assert.Equal([3], offsets);
        Assert.Equal(shifted, match.Shifted);
        Assert.Equal(original.VocabSize - kept, match.Removed);
        Assert.Equal(1, match.Removed);
        Assert.Equal((3, 3), match.Offsets);

        TransferResult result = TokenizerTransfer.Run(new TransferOptions
        {
            ModelDirectory = m.Directory,
            Tokenizer = target,
            OutputDirectory = P("out"),
            Method = TransferMethod.Fvt,
        });
        Assert.Equal(match.PreviousIds, result.TargetIds!.PreviousIds);
        Assert.Contains($"  target ids      3 of the target tokenizer's {original.VocabSize} tokens have a "
            + "new id (shifted by +3) and 1 were removed: encode with the new tokenizer, not the "
            + "original", result.SummaryLines());
    }

    [Fact]
    public void Failure_midway_leaves_no_output_and_no_temp_directory()
    {
        TinyModel m = TransferTestData.WriteModel(P("model"), "llama", maxShardBytes: 400);
        string target = TransferTestData.WriteTarget(P("target"));
        int seen = 0;
        var e = Assert.Throws<IOException>(() => TokenizerTransfer.Run(new TransferOptions
        {
            ModelDirectory = m.Directory,
            Tokenizer = target,
            OutputDirectory = P("out"),
            Method = TransferMethod.Fvt,
            OnTensorWritten = _ =>
            {
                if (++seen == 3)
                {
                    throw new IOException("injected failure");
                }
            },
        }));
        Assert.Equal("injected failure", e.Message);
        Assert.Equal(3, seen);
        Assert.False(Directory.Exists(P("out")));
        Assert.Empty(Directory.EnumerateFileSystemEntries(_dir, "out*"));
    }

    [Fact]
    public void Failure_midway_keeps_an_existing_output_untouched()
    {
        TinyModel m = TransferTestData.WriteModel(P("model"), "gpt2");
        string target = TransferTestData.WriteTarget(P("target"));
        Directory.CreateDirectory(P("out"));
        File.WriteAllText(Path.Combine(P("out"), "old.txt"), "previous run");
        Assert.Throws<IOException>(() => TokenizerTransfer.Run(new TransferOptions
        {
            ModelDirectory = m.Directory,
            Tokenizer = target,
            OutputDirectory = P("out"),
            Method = TransferMethod.Fvt,
            Overwrite = true,
            OnTensorWritten = _ => throw new IOException("injected failure"),
        }));
        Assert.Equal(["old.txt"], Directory.EnumerateFileSystemEntries(P("out")).Select(Path.GetFileName));
        Assert.Single(Directory.EnumerateFileSystemEntries(_dir, "out*"));
    }

    [Fact]
    public void Default_run_transfers_the_asset_to_gpt2()
    {
        TransferOptions options = DefaultTransfer.Options() with { OutputDirectory = P("default") };
        Assert.EndsWith(Path.Combine("assets", "stories260K"), options.ModelDirectory, StringComparison.Ordinal);
        TransferResult r = TokenizerTransfer.Run(options);
        HfTokenizer expected = ByteLevelConverter.Convert(HfTokenizer.Load("gpt2"), true,
            HfTokenizer.Load(options.ModelDirectory));
        Assert.Equal(expected.VocabSize, r.VocabSize);
        Assert.InRange(r.VocabSize, 50257, 50257 + 200);
        using HfModelDirectory o = HfModelDirectory.Open(P("default"));
        Assert.Equal(expected.VocabSize, o.VocabSize);
        Assert.Equal(3, r.SpecialTokenRows);
        // stories260K's <unk> <s> </s> sit at 0 1 2 in the base model and keep those ids.
        HfTokenizer baseTok = HfTokenizer.Load(options.ModelDirectory);
        var pairs = baseTok.AllSpecialTokens.Where(t => t.Id >= 0)
            .Select(t => (t.Token, t.Id, expected.TokenToId(t.Token)!.Value)).ToList();
        Assert.Equal(pairs, r.SpecialTokens);
        Assert.All(r.SpecialTokens, t => Assert.Equal(t.SourceId, t.TargetId));
        Assert.Equal("  special ids     at the base model's ids: <unk>=0 <s>=1 </s>=2",
            r.SummaryLines().Single(l => l.StartsWith("  special ids", StringComparison.Ordinal)));
        // gpt2 is converted like every target, so the text gets a leading space.
        Assert.True(r.PrependsSpace);
        Assert.Contains("  normalizer      the new tokenizer prepends a space to the text (byte-level conversion)",
            r.SummaryLines());
        AssertLoadable(P("default"), expected);
    }

    private static void AssertLoadable(string dir, HfTokenizer expected)
    {
        HfTokenizer back = HfTokenizer.Load(dir);
        Assert.Equal(expected.VocabSize, back.VocabSize);
        Assert.Equal(expected.TokenToId("Ġthe"), back.TokenToId("Ġthe"));
        JsonObject tc = HfModelDirectory.ReadJsonObject(Path.Combine(dir, "tokenizer_config.json"));
        Assert.Equal("PreTrainedTokenizerFast", (string)tc["tokenizer_class"]!);
        // The Rust tokenizers library loads it and encodes as our model code does.
        using var rust = new global::Tokenizers.DotNet.Tokenizer(Path.Combine(dir, "tokenizer.json"));
        const string Text = "Once upon a time, there was a little dog.";
        var specials = expected.AllSpecialTokens.Select(s => (uint)s.Id).ToHashSet();
        uint[] content = [.. rust.Encode(Text).Where(id => !specials.Contains(id))];
        Assert.Equal(ZeTT.Runtime.Tests.Tokenizers.TokenizerTestData.EncodeConverted(expected, Text)
            .Select(i => (uint)i), content);
        Assert.Equal(" " + Text, rust.Decode(content));
    }

    [Fact]
    public void Language_is_required_and_checked_before_any_work()
    {
        TinyModel m = TransferTestData.WriteModel(P("model"), "llama");
        string hn = TransferTestData.WriteHypernet(P("hn"), untied: true);
        TransferOptions o = new()
        {
            ModelDirectory = m.Directory,
            Tokenizer = "gpt2",
            OutputDirectory = P("out"),
            HypernetDirectory = hn,
        };
        var missing = Assert.Throws<ZettException>(() => TokenizerTransfer.Run(o));
        Assert.Contains("choose --lang from en, de, fr", missing.Message, StringComparison.Ordinal);
        var unknown = Assert.Throws<ZettException>(() => TokenizerTransfer.Run(o with { Language = "xx" }));
        Assert.Contains("--lang xx: unknown language; valid: en, de, fr", unknown.Message, StringComparison.Ordinal);
        Assert.False(Directory.Exists(P("out")));
    }

    [Fact]
    public void Tied_hypernet_on_untied_model_is_a_clear_error()
    {
        TinyModel m = TransferTestData.WriteModel(P("model"), "mistral");
        string hn = TransferTestData.WriteHypernet(P("hn"), untied: false);
        var e = Assert.Throws<ZettException>(() => TokenizerTransfer.Run(new TransferOptions
        {
            ModelDirectory = m.Directory,
            Tokenizer = "gpt2",
            OutputDirectory = P("out"),
            HypernetDirectory = hn,
            Language = "en",
        }));
        Assert.Contains("separate_out_embeddings is false", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Model_class_mismatch_is_a_clear_error()
    {
        TinyModel m = TransferTestData.WriteModel(P("model"), "roberta");
        var e = Assert.Throws<ZettException>(() => TokenizerTransfer.Run(new TransferOptions
        {
            ModelDirectory = m.Directory,
            Tokenizer = "gpt2",
            OutputDirectory = P("out"),
            Method = TransferMethod.Fvt,
            ModelClass = ModelClass.Causal,
        }));
        Assert.Contains("--model-class causal", e.Message, StringComparison.Ordinal);
        Assert.Contains("masked LM", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Predict_with_tokens_file_and_model_equals_the_backend()
    {
        TinyModel m = TransferTestData.WriteModel(P("model"), "llama");
        string hn = TransferTestData.WriteHypernet(P("hn"), untied: true);
        File.WriteAllLines(P("tokens.txt"), ["Ġthe", "Ġworld", "hello", "<s>"]);
        PredictResult r = EmbeddingPrediction.Run(new PredictOptions
        {
            HypernetDirectory = hn,
            ModelDirectory = m.Directory,
            TokensFile = P("tokens.txt"),
            OutputFile = P("pred.safetensors"),
            Language = "fr",
            Device = "cpu",
        });
        HfTokenizer hnTok = ByteLevelConverter.Convert(HfTokenizer.Load(hn));
        SurfaceFormMatrix sf = SurfaceFormMatrix.BuildForTokens(["Ġthe", "Ġworld", "hello", "<s>"], hnTok, 3);
        HypernetCheckpoint ckpt = HypernetCheckpoint.Load(hn);
        using var backend = new HypernetPredictor(new CpuBackend(), ckpt.Weights,
            new HostTensor("E", [m.Vocab, 2 * m.Hidden], Stack(m, true)), HypernetPrecision.Float32);
        HypernetOutput want = backend.Predict(sf.Ids, 4, 2);
        using SafetensorsFile f = SafetensorsFile.Open(P("pred.safetensors"));
        Assert.Equal(4, r.Rows);
        Assert.Equal(2, r.TruncatedTokens);
        Assert.Equal(want.EmbeddingsIn, f.ReadFloat32("embeddings_in").Data);
        Assert.Equal(want.EmbeddingsOut!, f.ReadFloat32("embeddings_out").Data);
        Assert.Equal(want.Bias!, f.ReadFloat32("bias").Data);
        Assert.Equal([4, m.Hidden], f.ReadFloat32("embeddings_in").Shape);
    }
}
