using System.Text.Json;
using Parquet;
using Parquet.Schema;
using ZeTT.Runtime.Training;

namespace ZeTT.Runtime.Tests.Training;

public sealed class TrainTextTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("zett-traintext-").FullName;

    public void Dispose() => Directory.Delete(_dir, true);

    private string Jsonl(string name, params string[] docs)
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllLines(path, docs.Select(d => JsonSerializer.Serialize(new { text = d })));
        return path;
    }

    private async Task<string> Parquet(string name, params (string Name, string[] Values)[] columns)
    {
        string path = Path.Combine(_dir, name);
        DataField<string>[] fields = [.. columns.Select(c => new DataField<string>(c.Name))];
        await using FileStream stream = File.Create(path);
        await using ParquetWriter writer = await ParquetWriter.CreateAsync(
            new ParquetSchema(fields), stream,
            cancellationToken: TestContext.Current.CancellationToken);
        using ParquetRowGroupWriter group = writer.CreateRowGroup();
        for (int i = 0; i < fields.Length; i++)
        {
            await group.WriteAsync(fields[i], columns[i].Values, null);
        }
        return path;
    }

    [Fact]
    public void PacksStrippedDocumentsWithTheSeparatorAndSkipsBlankOnes()
    {
        string file = Jsonl("a.jsonl", " one ", "two", "  ", "three", "four");
        using var text = new TrainText([new TextSource(file, 1)], batchSize: 3, spanChars: 10,
            eos: "</s>", seed: 1, shuffleBuffer: 1);
        (string[] texts, int source) = text.Next();
        Assert.Equal(0, source);
        // "one</s>" is 7 < 10 characters, "one</s>two</s>" reaches 14: the trailing separator
        // goes and the 10-character text is its own only window. "three</s>four" (13) is cut
        // to one of its 10-character windows; the file then wraps around.
        Assert.Equal("one</s>two", texts[0]);
        Assert.Equal(10, texts[1].Length);
        Assert.Contains(texts[1], "three</s>four", StringComparison.Ordinal);
        Assert.Equal("one</s>two", texts[2]);
    }

    [Fact]
    public void CropsLongTextsToWindowsOfTheSpan()
    {
        string doc = string.Concat(Enumerable.Range(0, 50).Select(i => (char)('a' + (i % 26))));
        string file = Jsonl("long.jsonl", doc + doc);
        using var text = new TrainText([new TextSource(file, 1)], batchSize: 64, spanChars: 12,
            eos: "|", seed: 3);
        string[] texts = text.Next().Texts;
        Assert.All(texts, t =>
        {
            Assert.Equal(12, t.Length);
            Assert.Contains(t, doc + doc, StringComparison.Ordinal);
        });
        // Uniform starts over 0..88: 64 windows are not all the same one.
        Assert.True(texts.Distinct().Count() > 10);
    }

    [Fact]
    public void WindowsNeverSplitASurrogatePair()
    {
        string file = Jsonl("emoji.jsonl", string.Concat(Enumerable.Repeat("a\U0001F600", 40)));
        using var text = new TrainText([new TextSource(file, 1)], batchSize: 200, spanChars: 7,
            eos: "", seed: 5);
        Assert.All(text.Next().Texts, t =>
        {
            Assert.False(char.IsLowSurrogate(t[0]));
            Assert.False(char.IsHighSurrogate(t[^1]));
        });
    }

    [Fact]
    public async Task MixesSourcesByTheirWeights()
    {
        string a = Jsonl("a.jsonl", "aaaaaaaaaaaa");
        string b = await Parquet("b.parquet", ("text", ["bbbbbbbbbbb", "bbbbbbbbbbbbbbb"]));
        using var text = new TrainText([new TextSource(a, 3), new TextSource(b, 1)],
            batchSize: 2, spanChars: 8, eos: " ", seed: 7);
        int fromA = 0;
        const int n = 2000;
        for (int i = 0; i < n; i++)
        {
            (string[] texts, int source) = text.Next();
            Assert.All(texts, t => Assert.Equal(new string(source == 0 ? 'a' : 'b', 8), t));
            fromA += source == 0 ? 1 : 0;
        }
        // 0.75 expected; 4 binomial standard deviations are ±0.039.
        Assert.InRange(fromA / (double)n, 0.71, 0.79);
    }

    [Fact]
    public void TheSeedFixesTheStream()
    {
        string file = Jsonl("s.jsonl", [.. Enumerable.Range(0, 300).Select(i => $"document {i}")]);
        string[] Run(int seed)
        {
            using var text = new TrainText([new TextSource(file, 1)], 4, 30, "</s>", seed, 16);
            return [.. Enumerable.Range(0, 20).SelectMany(_ => text.Next().Texts)];
        }
        Assert.Equal(Run(11), Run(11));
        Assert.NotEqual(Run(11), Run(12));
    }

    [Fact]
    public void ParsesFileAndWeight()
    {
        Assert.Equal(new TextSource("en.parquet", 0.7), TextSource.Parse("en.parquet:0.7"));
        Assert.Equal(new TextSource("code.jsonl"), TextSource.Parse("code.jsonl"));
        var e = Assert.Throws<ZettException>(() => TextSource.Parse("x.jsonl:-1"));
        Assert.Contains("x.jsonl: mixture weight", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task BadInputFailsWhenTheStreamOpens()
    {
        string missing = Path.Combine(_dir, "missing.jsonl");
        string empty = Path.Combine(_dir, "empty.jsonl");
        File.WriteAllText(empty, "\n\n");
        string blank = Jsonl("blank.jsonl", " ", "\n");
        string noColumn = await Parquet("nocol.parquet", ("body", ["x"]));
        string noColumn2 = await Parquet("two.parquet", ("title", ["t"]), ("body", ["b"]));
        string good = Jsonl("good.jsonl", "fine");
        (string File, string Message)[] cases =
        [
            (missing, "file not found"),
            (empty, "no text"),
            (blank, "no text"),
            (noColumn2, "no string column 'text'"),
        ];
        foreach ((string file, string message) in cases)
        {
            var e = Assert.Throws<ZettException>(() => new TrainText(
                [new TextSource(good, 1), new TextSource(file, 1)], 1, 8, " ", 0));
            Assert.StartsWith(file + ":", e.Message, StringComparison.Ordinal);
            Assert.Contains(message, e.Message, StringComparison.Ordinal);
        }
        // A single string column is the text, whatever its name (as zett eval reads it).
        using var one = new TrainText([new TextSource(noColumn, 1)], 1, 1, " ", 0);
        Assert.Equal("x", one.Next().Texts[0]);
    }
}
