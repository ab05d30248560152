using ZeTT.Runtime.Tests.Tokenizers;
using ZeTT.Runtime.Tokenizers;
using ZeTT.Runtime.Training;
using RustTokenizer = Tokenizers.DotNet.Tokenizer;

namespace ZeTT.Runtime.Tests.Training;

/// <summary>The per-batch tokenizer sampler (TRAINING.md §4) on the built-in stories260K base
/// tokenizer (llama-style <c>&lt;unk&gt; &lt;s&gt; &lt;/s&gt;</c> at 0–2) and its byte-level
/// conversion as the hn tokenizer.</summary>
public sealed class TokenizerSamplerTests : IDisposable
{
    private static readonly Lazy<(HfTokenizer Base, HfTokenizer Hn)> Tokenizers = new(() =>
    {
        HfTokenizer b = HfTokenizer.Load(Path.Combine(TokenizerTestData.Root, "assets",
            "stories260K"));
        HfTokenizer hn = ByteLevelConverter.Convert(b);
        return (b, hn.SpecialTokens.Pad is null ? hn.WithPadToken(hn.SpecialTokens.Eos) : hn);
    });

    /// <summary>The multilingual fixture texts cut into 300-character texts (Latin, Cyrillic,
    /// Greek, CJK, Arabic, Hebrew, Ethiopic, Bengali: multi-byte characters everywhere).</summary>
    private static readonly Lazy<string[]> Texts = new(() =>
    {
        var texts = new List<string>();
        string dir = Path.Combine(TokenizerTestData.Root, "tests", "fixtures", "tokenizer-text");
        foreach (string f in Directory.GetFiles(dir, "*.txt").Order(StringComparer.Ordinal))
        {
            string all = File.ReadAllText(f);
            for (int i = 0; i + 1 < all.Length; i += 300)
            {
                int end = Math.Min(all.Length, i + 300);
                if (char.IsHighSurrogate(all[end - 1]))
                {
                    end--;
                }
                texts.Add(all[i..end]);
            }
        }
        return [.. texts];
    });

    private static readonly TokenizerSamplerOptions Small = new(Pieces: 1024,
        WindowBatches: 4, PadToMultipleOf: 128);

    private static readonly TokenizerSamplerOptions Noiseless = Small with
    {
        NoiseLogMean = double.NegativeInfinity,
    };

    private readonly string dir = Directory.CreateTempSubdirectory("zett-sampler-").FullName;

    public void Dispose() => Directory.Delete(dir, recursive: true);

    private static TokenizerSampler NewSampler(TokenizerSamplerOptions options, int seed = 1) =>
        new(options, Tokenizers.Value.Base, Tokenizers.Value.Hn, seed);

    private static string[] Batch(int index, int size = 32) =>
        [.. Enumerable.Range(0, size).Select(i => Texts.Value[((index * size) + i) % Texts.Value.Length])];

    private static Dictionary<string, uint> Counts(params string[] texts)
    {
        Dictionary<SubstringKey, uint> counts = new SubstringCounter(16, 4).CountBatch(texts);
        return counts.ToDictionary(kv => kv.Key.ToByteLevel(), kv => kv.Value, StringComparer.Ordinal);
    }

    private static List<(string Piece, double Score)> Pieces(SampledTokenizer s) =>
        ((UnigramModel)s.Tokenizer.Model).Pieces;

    [Fact]
    public void Counts_every_fourth_start_with_the_first_pretokens_extra_zero()
    {
        // " hello" is the first pretoken: offsets [0, 0, 1, 2, 3, 4, 5], every 4th: starts 0
        // and 3 ("llo"). " world": offsets [0, 1, 2, 3, 4, 5]: starts 0 and 4. A substring adds its
        // byte-level UTF-8 length (Ġ is 2 bytes).
        var expected = new Dictionary<string, uint>
        {
            ["Ġ"] = 4,
            ["Ġh"] = 3,
            ["Ġhe"] = 4,
            ["Ġhel"] = 5,
            ["Ġhell"] = 6,
            ["Ġhello"] = 7,
            ["l"] = 2,
            ["ll"] = 2,
            ["llo"] = 3,
            ["Ġw"] = 3,
            ["Ġwo"] = 4,
            ["Ġwor"] = 5,
            ["Ġworl"] = 6,
            ["Ġworld"] = 7,
            ["ld"] = 2,
        };
        Assert.Equal(expected.OrderBy(kv => kv.Key, StringComparer.Ordinal),
            Counts("hello world").OrderBy(kv => kv.Key, StringComparer.Ordinal));
    }

    [Fact]
    public void Counts_keep_the_reference_offsets_after_a_multi_byte_character()
    {
        // " café": the reference's offsets are [0, 1, 2, 3, 5] (each char's offset adds its
        // own length, not the previous one's), so the 5th start is byte 5, the continuation
        // byte '©' of é, where the true offset 4 would have counted 'Ã' and 'Ã©'.
        Dictionary<string, uint> counts = Counts("x café");
        var expected = new Dictionary<string, uint>
        {
            ["Ġ"] = 4,
            ["Ġx"] = 3,
            ["Ġc"] = 3,
            ["Ġca"] = 4,
            ["Ġcaf"] = 5,
            ["ĠcafÃ"] = 7,
            ["ĠcafÃ©"] = 9,
            ["©"] = 2,
        };
        Assert.Equal(expected.OrderBy(kv => kv.Key, StringComparer.Ordinal),
            counts.OrderBy(kv => kv.Key, StringComparer.Ordinal));
    }

    [Fact]
    public void Counts_stop_at_fifteen_bytes_and_a_repeated_text_counts_once()
    {
        string word = new('a', 20);
        Dictionary<string, uint> once = Counts(word);
        Dictionary<string, uint> twice = Counts(word, word);
        Assert.Equal(once, twice);
        // First pretoken "Ġaaaa…" (21 bytes): starts 0, 3, 7, 11, 15, 19 (list indices 0, 4,
        // 8, … of [0, 0, 1, …, 20]); from 0: Ġ + up to 14 a's.
        Assert.Equal(15, once.Keys.Max(k => k.Length));
        Assert.Equal(2u, once["Ġ"]);
        Assert.True(once.ContainsKey("Ġ" + new string('a', 14)));
        Assert.False(once.ContainsKey("Ġ" + new string('a', 15)));
        // The a-runs start at 3, 7, 11, 15 and 19 (18, 14, 10, 6 and 2 bytes left): "a" five
        // times, "aaaaaa" four times, 15 a's once.
        Assert.Equal(5u, once["a"]);
        Assert.Equal(4u * 6, once["aaaaaa"]);
        Assert.Equal(1u * 15, once[new string('a', 15)]);
    }

    [Fact]
    public void Substring_keys_round_trip_and_order_lexicographically()
    {
        SubstringKey ab = SubstringKey.FromByteLevel("Ġab")!.Value;
        Assert.Equal("Ġab", ab.ToByteLevel());
        Assert.Equal(3, ab.Length);
        Assert.Equal(1, ab.WhitespaceCount());
        string fifteen = "ĊĠ" + new string('z', 13);
        Assert.Equal(fifteen, SubstringKey.FromByteLevel(fifteen)!.Value.ToByteLevel());
        Assert.Null(SubstringKey.FromByteLevel(fifteen + "z"));
        Assert.Null(SubstringKey.FromByteLevel("hé"[..1] + "\u4E00"));
        Assert.True(SubstringKey.FromByteLevel("a")!.Value < SubstringKey.FromByteLevel("a!")!.Value);
        Assert.True(SubstringKey.FromByteLevel("ab")!.Value < SubstringKey.FromByteLevel("b")!.Value);
        Assert.NotEqual(SubstringKey.From([0]), SubstringKey.From([0, 0]));
    }

    [Fact]
    public void Seed_list_is_bytes_then_whitespace_runs_then_best_substrings()
    {
        TokenizerSampler sampler = NewSampler(Noiseless);
        SampledTokenizer s = sampler.Sample(Batch(0));
        List<(string Piece, double Score)> pieces = Pieces(s);
        Assert.Equal(1024 + 3, pieces.Count);
        Assert.Equal(1027, s.Rows);
        Assert.Equal(1024 + 128, s.PaddedRows);

        Dictionary<string, uint> counts = Counts(Batch(0));
        double sum = counts.Values.Sum(v => (double)v);
        double minLogProb = Math.Log(counts.Values.Min() / sum);
        Assert.Equal([("<unk>", 0.0), ("<s>", 0.0), ("</s>", 0.0)], pieces.Take(3));
        for (int b = 0; b < 256; b++)
        {
            Assert.Equal((ByteLevelAlphabet.ToChar((byte)b).ToString(), minLogProb), pieces[3 + b]);
        }
        var whitespace = pieces.Skip(259).Take(135).ToList();
        Assert.All(whitespace, p => Assert.Equal(0.0, p.Score));
        Assert.Equal("ĠĠ", whitespace[0].Piece);
        Assert.Equal("ĊĠ", whitespace[1].Piece);
        Assert.Equal("ĉ" + new string('ĉ', 15), whitespace[^1].Piece);
        Assert.All(whitespace, p => Assert.True(p.Piece.Length >= 2 && p.Piece.All(c => c is 'Ġ' or 'Ċ' or 'ĉ')));

        var rest = pieces.Skip(394).ToList();
        Assert.Equal(1024 - 256 - 135, rest.Count);
        foreach ((string piece, double score) in rest)
        {
            Assert.True(piece.Length > 1, piece);
            Assert.True(piece.Count(c => c is 'Ġ' or 'Ċ' or 'ĉ') < 2, piece);
            // Without noise the score is ln(count / total).
            Assert.Equal(Math.Log(counts[piece] / sum), score, 12);
        }
        Assert.Equal(pieces.Count, pieces.Select(p => p.Piece).Distinct().Count());
        for (int i = 1; i < rest.Count; i++)
        {
            Assert.True(rest[i - 1].Score >= rest[i].Score);
        }
        // Nothing left out scores higher than the last one kept.
        double last = rest[^1].Score;
        var kept = new HashSet<string>(pieces.Select(p => p.Piece));
        Assert.DoesNotContain(counts, kv => !kept.Contains(kv.Key) && kv.Key.Length > 1
            && kv.Key.Count(c => c is 'Ġ' or 'Ċ' or 'ĉ') < 2 && Math.Log(kv.Value / sum) > last);
    }

    [Fact]
    public void Same_seed_gives_the_same_tokenizers_and_another_seed_other_ones()
    {
        TokenizerSampler a = NewSampler(Small, seed: 7);
        TokenizerSampler b = NewSampler(Small, seed: 7);
        TokenizerSampler c = NewSampler(Small, seed: 8);
        foreach (TokenizerSampler s in new[] { a, b, c })
        {
            s.Prime(Texts.Value[..64]);
        }
        List<(string, double)>? previous = null;
        for (int batch = 0; batch < 3; batch++)
        {
            List<(string, double)> pa = Pieces(a.Sample(Batch(batch)));
            List<(string, double)> pb = Pieces(b.Sample(Batch(batch)));
            List<(string, double)> pc = Pieces(c.Sample(Batch(batch)));
            Assert.Equal(pa, pb);
            Assert.NotEqual(pa, pc);
            if (previous is not null)
            {
                Assert.NotEqual(previous, pa);
            }
            previous = pa;
        }
    }

    [Fact]
    public void Noise_scale_follows_the_log_normal_options()
    {
        // Noise of σ = e^-2 dwarfs every probability: the kept substrings are a noisy draw, not
        // the most frequent ones; with σ = 0 they are exactly the most frequent.
        var loud = Noiseless with { NoiseLogMean = -2, NoiseLogStd = 0 };
        List<(string Piece, double Score)> quiet = Pieces(NewSampler(Noiseless).Sample(Batch(0)));
        List<(string Piece, double Score)> noisy = Pieces(NewSampler(loud).Sample(Batch(0)));
        var quietSet = quiet.Skip(394).Select(p => p.Piece).ToHashSet();
        int common = noisy.Skip(394).Count(p => quietSet.Contains(p.Piece));
        Assert.True(common < quietSet.Count * 0.8, $"{common} of {quietSet.Count} in common");
        Assert.All(noisy.Skip(394), p => Assert.True(p.Score > Math.Log(1e-6)));
    }

    [Fact]
    public void Window_drops_the_oldest_batch_and_validation_leaves_it_unchanged()
    {
        var options = Noiseless with { WindowBatches = 2 };
        TokenizerSampler sampler = NewSampler(options);
        sampler.Prime([.. Batch(0), .. Batch(1)]);
        Assert.Equal(2, sampler.WindowCount);

        // Training: batch 0 leaves, the window is batches 1 and 2.
        AssertScoresFrom(sampler.Sample(Batch(2)), [.. Batch(1), .. Batch(2)]);
        // Validation: batch 1 would leave, the window would be batches 2 and 3 …
        AssertScoresFrom(sampler.Sample(Batch(3), validation: true), [.. Batch(2), .. Batch(3)]);
        // … but it was put back: batches 2 and 4 now.
        AssertScoresFrom(sampler.Sample(Batch(4)), [.. Batch(2), .. Batch(4)]);
        Assert.Equal(2, sampler.WindowCount);

        // With noise, validation batches do not move the training stream either.
        TokenizerSampler x = NewSampler(Small with { WindowBatches = 2 });
        TokenizerSampler y = NewSampler(Small with { WindowBatches = 2 });
        x.Sample(Batch(0));
        y.Sample(Batch(0));
        y.Sample(Batch(5), validation: true);
        Assert.Equal(Pieces(x.Sample(Batch(1))), Pieces(y.Sample(Batch(1))));
    }

    [Fact]
    public void Window_grows_to_its_capacity_without_priming()
    {
        TokenizerSampler sampler = NewSampler(Noiseless);
        AssertScoresFrom(sampler.Sample(Batch(0)), Batch(0));
        AssertScoresFrom(sampler.Sample(Batch(1)), [.. Batch(0), .. Batch(1)]);
        Assert.Equal(2, sampler.WindowCount);
    }

    private static void AssertScoresFrom(SampledTokenizer s, string[] windowTexts)
    {
        // The same text in two batches counts in each (one map per batch).
        Dictionary<string, uint> counts = [];
        foreach (string[] part in windowTexts.Chunk(32))
        {
            foreach (KeyValuePair<string, uint> kv in Counts(part))
            {
                counts[kv.Key] = counts.GetValueOrDefault(kv.Key) + kv.Value;
            }
        }
        double sum = counts.Values.Sum(v => (double)v);
        List<(string Piece, double Score)> pieces = Pieces(s);
        Assert.Equal(Math.Log(counts.Values.Min() / sum), pieces[3].Score, 12);
        foreach ((string piece, double score) in pieces.Skip(394))
        {
            Assert.Equal(Math.Log(counts[piece] / sum), score, 12);
        }
    }

    [Fact]
    public void Special_tokens_sit_at_the_base_ids_with_its_post_processor()
    {
        SampledTokenizer s = NewSampler(Small).Sample(Batch(0));
        HfTokenizer t = s.Tokenizer;
        Assert.Equal("<unk>", t.IdToToken(0));
        Assert.Equal("<s>", t.IdToToken(1));
        Assert.Equal("</s>", t.IdToToken(2));
        Assert.Equal([("<unk>", 0), ("<s>", 1), ("</s>", 2)],
            t.AllSpecialTokens.OrderBy(x => x.Id));
        Assert.Equal(2, t.PadTokenId);
        // BOS from the post-processor; the packed-document separator is the eos id (an added
        // token), not the pieces '</', 's', '>'.
        int[] ids = t.Encode("Once upon a time</s>The end").Ids;
        Assert.Equal(1, ids[0]);
        Assert.Single(ids, 2);
        Assert.Equal(" Once upon a time The end", t.Decode(ids, skipSpecialTokens: true));
        Assert.Equal(5, s.ByteLengths[0]);
        Assert.Equal(3, s.ByteLengths[1]);
        Assert.Equal(4, s.ByteLengths[2]);
    }

    [Fact]
    public void Special_tokens_that_are_substrings_are_moved_not_repeated()
    {
        string[] texts = [.. Enumerable.Repeat("<s> </s> <unk> <s> <s>", 20).Select((t, i) => t + i)];
        SampledTokenizer s = NewSampler(Noiseless).Sample(texts);
        List<(string Piece, double Score)> pieces = Pieces(s);
        Assert.Single(pieces, p => p.Piece == "<s>");
        Assert.Equal(("<s>", 0.0), pieces[1]);
    }

    [Fact]
    public void Byte_lengths_mask_and_surface_forms_rows()
    {
        SampledTokenizer s = NewSampler(Small).Sample(Batch(0));
        HfTokenizer hn = Tokenizers.Value.Hn;
        int l = Small.SurfaceMaxLen;
        Assert.Equal(s.PaddedRows * l, s.SurfaceForms.Length);
        Assert.Equal(s.PaddedRows, s.Mask.Length);
        Assert.Equal(s.Rows, s.ByteLengths.Length);
        Assert.All(Enumerable.Range(0, s.PaddedRows), r => Assert.Equal(r < s.Rows, s.Mask[r]));
        int pad = hn.PadTokenId!.Value;
        for (int r = 0; r < s.Rows; r++)
        {
            string token = s.Tokenizer.IdToToken(r);
            ReadOnlySpan<int> row = s.SurfaceForms.AsSpan(r * l, l);
            int[] expected = r < 3 ? [hn.TokenToId(token)!.Value]
                : [.. hn.TokenizeRawModel(token).Take(l)];
            Assert.True(row[..expected.Length].SequenceEqual(expected), $"row {r} '{token}'");
            Assert.All(row[expected.Length..].ToArray(), id => Assert.Equal(pad, id));
            Assert.Equal(r < 3 ? token.Length : ByteLevelAlphabet.TryDecode(token)!.Length,
                s.ByteLengths[r]);
        }
        Assert.All(s.SurfaceForms[(s.Rows * l)..], id => Assert.Equal(0, id));
    }

    [Fact]
    public void Encoding_equals_the_rust_library_on_the_saved_tokenizer_json()
    {
        TokenizerSampler sampler = NewSampler(new TokenizerSamplerOptions(Pieces: 4096,
            WindowBatches: 4));
        sampler.Prime(Texts.Value);
        SampledTokenizer s = sampler.Sample(Batch(1));
        string saved = Path.Combine(dir, "sampled");
        s.Tokenizer.Save(saved);
        HfTokenizer reloaded = HfTokenizer.Load(saved);
        using var rust = new RustTokenizer(Path.Combine(saved, "tokenizer.json"));
        int tokens = 0;
        foreach (string text in Texts.Value.Concat(RustParityTests.HardTexts))
        {
            int[] ours = s.Tokenizer.Encode(text).Ids;
            tokens += ours.Length;
            Assert.Equal(rust.Encode(text).Select(i => (int)i), ours);
            Assert.Equal(ours, reloaded.Encode(text).Ids);
        }
        Assert.True(tokens > 10_000, $"{tokens} tokens");
        Assert.Equal(s.Rows, reloaded.VocabSize);
    }

    [Fact]
    public void Viterbi_takes_the_highest_scoring_split()
    {
        SampledTokenizer s = NewSampler(Small).Sample(Batch(0));
        var model = (UnigramModel)s.Tokenizer.Model;
        foreach (string word in new[] { "Ġthe", "Ġdignity", "Ġrights", "Ġhuman" })
        {
            int[] ids = s.Tokenizer.TokenizeRawModel(word);
            double best = BestSplit(word, model);
            Assert.Equal(best, ids.Sum(i => model.Pieces[i].Score), 9);
            Assert.Equal(word, string.Concat(ids.Select(i => model.Pieces[i].Piece)));
        }
    }

    private static double BestSplit(string word, UnigramModel model)
    {
        var best = new double[word.Length + 1];
        Array.Fill(best, double.NegativeInfinity);
        best[0] = 0;
        for (int end = 1; end <= word.Length; end++)
        {
            for (int start = 0; start < end; start++)
            {
                if (model.TokenToId(word[start..end]) is int id)
                {
                    best[end] = Math.Max(best[end], best[start] + model.Pieces[id].Score);
                }
            }
        }
        return best[^1];
    }

    [Fact]
    public void Bad_options_and_a_non_byte_level_hn_tokenizer_are_refused()
    {
        (HfTokenizer b, HfTokenizer hn) = Tokenizers.Value;
        Assert.Contains("multiple of PadToMultipleOf",
            Assert.Throws<ZettException>(() => new TokenizerSampler(Small with { Pieces = 1000 },
                b, hn, 0)).Message, StringComparison.Ordinal);
        Assert.Contains("byte and whitespace pieces",
            Assert.Throws<ZettException>(() => new TokenizerSampler(Small with { Pieces = 384 },
                b, hn, 0)).Message, StringComparison.Ordinal);
        Assert.Contains("MaxPieceLength", Assert.Throws<ZettException>(() =>
            new TokenizerSampler(Small with { MaxPieceLength = 17 }, b, hn, 0)).Message,
            StringComparison.Ordinal);
        Assert.Contains("byte level", Assert.Throws<ZettException>(() =>
            new TokenizerSampler(Small, b, b, 0)).Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => NewSampler(Small).Sample([]));
    }
}
