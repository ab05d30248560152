using System.Text;
using System.Text.Json;
using ZeTT.Runtime.Training;

namespace ZeTT.Runtime.Tests.Training;

/// <summary>Languages of the training text: <c>FILE[:WEIGHT][:lang=CODE]</c>, the reference's
/// probabilities (summed weights, or (n/N)^α), the per-micro-batch draw and monolingual or
/// mixed batches.</summary>
public sealed class TrainLanguagesTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("zett-trainlangs-").FullName;

    public void Dispose() => Directory.Delete(_dir, true);

    private string Jsonl(string name, params string[] docs)
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllLines(path, docs.Select(d => JsonSerializer.Serialize(new { text = d })));
        return path;
    }

    [Fact]
    public void Parses_weight_and_language()
    {
        Assert.Equal(new TextSource("de.txt", null, "de"), TextSource.Parse("de.txt:lang=de"));
        Assert.Equal(new TextSource("x.jsonl", 2.5, "fr"), TextSource.Parse("x.jsonl:2.5:lang=fr"));
        Assert.Equal(new TextSource("x.jsonl", 3, "en"), TextSource.Parse("x.jsonl:3"));
        Assert.Equal(new TextSource("x.jsonl", null, "en"), TextSource.Parse("x.jsonl"));
        Assert.Equal(new TextSource("x.jsonl", null, "zh-Hans_2"),
            TextSource.Parse("x.jsonl:lang=zh-Hans_2"));
        foreach ((string spec, string message) in (ReadOnlySpan<(string, string)>)[
            ("x.jsonl:lang=", "x.jsonl: lang='' is not a language code"),
            ("x.jsonl:lang=d e", "x.jsonl: lang='d e' is not a language code"),
            ("x.jsonl:lang=de:2", "x.jsonl: lang='de:2' is not a language code"),
            ("x.jsonl:lang=all", "x.jsonl: lang=all is reserved"),
            ("x.jsonl:0:lang=de", "x.jsonl: mixture weight must be a positive number, not '0'"),
            ("x.jsonl:-1", "x.jsonl: mixture weight must be a positive number, not '-1'")])
        {
            var e = Assert.Throws<ZettException>(() => TextSource.Parse(spec));
            Assert.StartsWith(message, e.Message, StringComparison.Ordinal);
        }
        Assert.Equal(new ValidSet("v.jsonl", "de"), ValidSet.Parse("v.jsonl:lang=de"));
        Assert.Equal(new ValidSet("v.jsonl"), ValidSet.Parse("v.jsonl"));
        Assert.Throws<ZettException>(() => ValidSet.Parse("v.jsonl:lang=?"));
    }

    [Fact]
    public void Weights_sum_per_language_and_normalise()
    {
        var l = new TrainLanguages([new TextSource("a", 1, "en"), new TextSource("b", 2, "en"),
            new TextSource("c", null, "de"), new TextSource("d", 4, "fr")]);
        Assert.Equal(["en", "de", "fr"], l.Codes);
        // en 1 + 2, de counts 1 (no weight), fr 4: of 8.
        Assert.Equal(3.0 / 8, l.Probabilities[0], 15);
        Assert.Equal(1.0 / 8, l.Probabilities[1], 15);
        Assert.Equal(4.0 / 8, l.Probabilities[2], 15);
        Assert.Equal(["a", "b"], l.Sources[0].Select(s => s.File));
        Assert.Empty(l.Bytes);
    }

    [Fact]
    public void Without_weights_languages_follow_the_alpha_rule_of_their_text_bytes()
    {
        // UTF-8 bytes, not characters: "ü" is 2 bytes, "€" 3.
        string en = Jsonl("en.jsonl", "abcd", "efgh");                // 8 bytes
        string de = Jsonl("de.jsonl", "üü");                          // 4 bytes
        string fr = Jsonl("fr.jsonl", "€€€€€€€€€€€€");                // 36 bytes
        string fr2 = Jsonl("fr2.jsonl", "xyzw");                      // 4 bytes
        var l = new TrainLanguages([new TextSource(en, null, "en"), new TextSource(de, null, "de"),
            new TextSource(fr, null, "fr"), new TextSource(fr2, null, "fr")], alpha: 0.3);
        Assert.Equal(8, l.Bytes["en"]);
        Assert.Equal(4, l.Bytes["de"]);
        Assert.Equal(40, l.Bytes["fr"]);
        // train.py: p = (n / N)^α, normalised by jax.random.choice.
        double[] raw = [Math.Pow(8 / 52.0, 0.3), Math.Pow(4 / 52.0, 0.3), Math.Pow(40 / 52.0, 0.3)];
        for (int i = 0; i < 3; i++)
        {
            Assert.Equal(raw[i] / raw.Sum(), l.Probabilities[i], 14);
        }
        // α = 1 is proportional to size; a smaller α flattens it.
        var one = new TrainLanguages([new TextSource("a", null, "x"), new TextSource("b", null, "y")],
            alpha: 1, byteCounts: new Dictionary<string, long> { ["x"] = 900, ["y"] = 100 });
        Assert.Equal(0.9, one.Probabilities[0], 14);
        var flat = new TrainLanguages([new TextSource("a", null, "x"), new TextSource("b", null, "y")],
            alpha: 0.1, byteCounts: new Dictionary<string, long> { ["x"] = 900, ["y"] = 100 });
        double px = Math.Pow(0.9, 0.1), py = Math.Pow(0.1, 0.1);
        Assert.Equal(px / (px + py), flat.Probabilities[0], 14);
        Assert.Throws<ZettException>(() => new TrainLanguages([new TextSource("a")], alpha: 0));
    }

    [Fact]
    public void The_draw_follows_the_probabilities_and_depends_on_seed_and_index_only()
    {
        var l = new TrainLanguages([new TextSource("a", 6, "x"), new TextSource("b", 3, "y"),
            new TextSource("c", 1, "z")]);
        const int N = 30000;
        var counts = new int[3];
        for (long i = 0; i < N; i++)
        {
            counts[l.Draw(17, i)]++;
        }
        // Pearson's χ² with 2 degrees of freedom: 13.8 is its 0.999 quantile.
        double chi = 0;
        for (int k = 0; k < 3; k++)
        {
            double expected = N * l.Probabilities[k];
            chi += (counts[k] - expected) * (counts[k] - expected) / expected;
        }
        Assert.True(chi < 13.8, $"χ² {chi:F2}; counts {string.Join(", ", counts)}");
        // A function of (seed, index): in any order, again; another seed draws otherwise.
        Assert.Equal(l.Draw(17, 12345), l.Draw(17, 12345));
        int[] forward = [.. Enumerable.Range(0, 200).Select(i => l.Draw(17, i))];
        int[] backward = [.. Enumerable.Range(0, 200).Reverse().Select(i => l.Draw(17, i)).Reverse()];
        Assert.Equal(forward, backward);
        Assert.NotEqual(forward, Enumerable.Range(0, 200).Select(i => l.Draw(18, i)));
        Assert.All(Enumerable.Range(0, 50), i =>
            Assert.Equal(0, new TrainLanguages([new TextSource("a", 1, "x")]).Draw(3, i)));
    }

    [Fact]
    public void Batches_are_monolingual_unless_mixed()
    {
        string a = Jsonl("a.jsonl", "aaaaaaaaaaaaaaaa", "aaaaaaaaaaaa");
        string b = Jsonl("b.jsonl", "bbbbbbbbbbbbbbbbbbbb");
        var langs = new TrainLanguages([new TextSource(a, 3, "aa"), new TextSource(b, 1, "bb")]);
        using (var text = new MultilingualText(langs, batchSize: 8, spanChars: 10, eos: " ",
            seed: 4, mix: false))
        {
            var seen = new int[2];
            for (long i = 0; i < 400; i++)
            {
                (string[] texts, int lang) = text.Next(i);
                Assert.Equal(langs.Draw(4, i), lang);
                Assert.All(texts, t => Assert.Equal(new string(lang == 0 ? 'a' : 'b', 10), t));
                seen[lang]++;
            }
            Assert.InRange(seen[0], 260, 340); // 300 expected, ±4.3σ
        }
        using (var text = new MultilingualText(langs, batchSize: 64, spanChars: 10, eos: " ",
            seed: 4, mix: true))
        {
            int fromA = 0, n = 0;
            for (long i = 0; i < 50; i++)
            {
                (string[] texts, int lang) = text.Next(i);
                Assert.Equal(-1, lang);
                Assert.All(texts, t => Assert.True(t == new string('a', 10) || t == new string('b', 10), t));
                fromA += texts.Count(t => t[0] == 'a');
                n += texts.Length;
            }
            Assert.InRange(fromA / (double)n, 0.72, 0.78); // 0.75 expected, ±0.039 at 4σ
        }
    }

    [Fact]
    public void One_language_reads_the_single_stream_it_read_before()
    {
        string file = Jsonl("s.jsonl", [.. Enumerable.Range(0, 300).Select(i => $"document {i}")]);
        TextSource[] sources = [new TextSource(file), new TextSource(file, 2)];
        using var before = new TrainText(sources, 4, 30, "</s>", 11);
        using var now = new MultilingualText(new TrainLanguages(sources), 4, 30, "</s>", 11, false);
        for (long i = 0; i < 20; i++)
        {
            (string[] texts, int lang) = now.Next(i);
            Assert.Equal(0, lang);
            Assert.Equal(before.Next().Texts, texts);
        }
    }

    [Fact]
    public void An_unknown_language_is_named_with_the_valid_ones()
    {
        var l = new TrainLanguages([new TextSource("a", null, "en"), new TextSource("b", 1, "de")]);
        Assert.Equal(1, l.IndexOf("de", "--valid-data v"));
        var e = Assert.Throws<ZettException>(() => l.IndexOf("fr", "--valid-data v"));
        Assert.Equal("--valid-data v: unknown language 'fr'; the training languages are en, de",
            e.Message);
        Assert.Equal(Encoding.UTF8.GetByteCount("üü"), TrainLanguages.TextBytes(Jsonl("u.jsonl", "üü")));
    }
}
