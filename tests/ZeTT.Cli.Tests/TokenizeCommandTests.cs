using System.Text.Json.Nodes;

namespace ZeTT.Cli.Tests;

/// <summary><c>zett tokenize</c>: JSON lines out, every input form, the decode direction, and
/// bad input as one line with exit code 2 and nothing written.</summary>
public sealed class TokenizeCommandTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("zett-cli-tokenize-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static string Data(string name)
    {
        for (DirectoryInfo? d = new(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            string path = Path.Combine(d.FullName, "tests", "data", "tokenizers", name);
            if (Directory.Exists(path))
            {
                return path;
            }
        }
        throw new InvalidOperationException($"tests/data/tokenizers/{name} not found");
    }

    private static JsonObject[] Lines(string text) =>
        [.. text.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => (JsonObject)JsonNode.Parse(l)!)];

    private static int[] Ids(JsonObject line) => [.. line["ids"]!.AsArray().Select(v => v!.GetValue<int>())];

    [Fact]
    public void Text_is_encoded_with_and_without_special_tokens()
    {
        var (code, stdout, err) = Zett.Run("tokenize", "--tokenizer", Data("bert-base-uncased"),
            "--text", "Führer naïve");
        Assert.True(code == 0, err);
        JsonObject line = Assert.Single(Lines(stdout));
        // The Rust library's ids (BertNormalizer strips accents after a real NFD).
        Assert.Equal([101, 11865, 17875, 15743, 102], Ids(line));
        Assert.Equal(["[CLS]", "fu", "##hrer", "naive", "[SEP]"],
            line["tokens"]!.AsArray().Select(v => v!.GetValue<string>()));

        (code, stdout, err) = Zett.Run("tokenize", "--tokenizer", Data("bert-base-uncased"),
            "--text", "Führer naïve", "--no-special-tokens");
        Assert.True(code == 0, err);
        Assert.Equal([11865, 17875, 15743], Ids(Assert.Single(Lines(stdout))));
    }

    [Fact]
    public void Jsonl_documents_come_out_in_input_order_and_decode_back()
    {
        string input = Path.Combine(_dir, "docs.jsonl");
        string[] texts = [.. Enumerable.Range(0, 3000).Select(i => $"Document {i}: héllo wörld {i * 7}")];
        File.WriteAllLines(input, texts.Select(t => new JsonObject { ["text"] = t }.ToJsonString()));
        string output = Path.Combine(_dir, "ids.jsonl");
        var (code, _, err) = Zett.Run("tokenize", "--tokenizer", Data("mistral-7b-v0.1"),
            "--input", input, "--out", output, "--no-special-tokens");
        Assert.True(code == 0, err);
        JsonObject[] lines = Lines(File.ReadAllText(output));
        Assert.Equal(texts.Length, lines.Length);

        string decoded = Path.Combine(_dir, "text.jsonl");
        (code, _, err) = Zett.Run("tokenize", "--tokenizer", Data("mistral-7b-v0.1"), "--decode",
            "--input", output, "--out", decoded);
        Assert.True(code == 0, err);
        Assert.Equal(texts, Lines(File.ReadAllText(decoded)).Select(l => l["text"]!.GetValue<string>()));
    }

    [Fact]
    public void Txt_file_is_one_document_and_ids_decode()
    {
        string input = Path.Combine(_dir, "doc.txt");
        File.WriteAllText(input, "line one\nline two\n");
        var (code, stdout, err) = Zett.Run("tokenize", "--tokenizer", "gpt2", "--input", input);
        Assert.True(code == 0, err);
        int[] ids = Ids(Assert.Single(Lines(stdout)));
        (code, stdout, err) = Zett.Run("tokenize", "--tokenizer", "gpt2", "--decode", "--ids",
            string.Join(',', ids));
        Assert.True(code == 0, err);
        Assert.Equal("line one\nline two\n", Assert.Single(Lines(stdout))["text"]!.GetValue<string>());
    }

    [Fact]
    public void A_jsonl_line_without_text_names_the_line_and_writes_nothing()
    {
        string input = Path.Combine(_dir, "bad.jsonl");
        File.WriteAllLines(input, ["{\"text\": \"fine\"}", "", "{\"body\": \"no text\"}"]);
        string output = Path.Combine(_dir, "out.jsonl");
        var (code, stdout, err) = Zett.Run("tokenize", "--tokenizer", "gpt2", "--input", input,
            "--out", output);
        Assert.Equal(2, code);
        Assert.Equal($"error: {input}:3: no \"text\" string field", err.Trim());
        Assert.Equal("", stdout);
        Assert.False(File.Exists(output));
        Assert.Empty(Directory.GetFiles(_dir, "*.tmp*"));
    }

    [Theory]
    [InlineData("normalizer", "{\"type\":\"Shout\"}", "normalizer type 'Shout'")]
    [InlineData("pre_tokenizer", "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Chop\"}]}",
        "pre-tokenizer type 'Chop'")]
    [InlineData("decoder", "{\"type\":\"Unbyte\"}", "decoder type 'Unbyte'")]
    [InlineData("post_processor", "{\"type\":\"Wrap\"}", "post-processor type 'Wrap'")]
    [InlineData("model", "{\"type\":\"WordChunks\",\"vocab\":{}}", "model type 'WordChunks'")]
    public void Unknown_component_type_names_the_type_and_the_file(string slot, string json,
        string expected)
    {
        var root = (JsonObject)JsonNode.Parse(File.ReadAllText(
            Path.Combine(Data("gpt2"), "tokenizer.json")))!;
        root[slot] = JsonNode.Parse(json);
        string file = Path.Combine(_dir, "tokenizer.json");
        File.WriteAllText(file, root.ToJsonString());
        var (code, stdout, err) = Zett.Run("tokenize", "--tokenizer", file, "--text", "hi");
        Assert.Equal(2, code);
        Assert.Equal("", stdout);
        Assert.StartsWith($"error: {file}: ", err, StringComparison.Ordinal);
        Assert.Contains(expected, err, StringComparison.Ordinal);
        Assert.Single(err.Trim().Split('\n'));
    }

    [Fact]
    public void Broken_SentencePiece_and_tiktoken_files_are_refused_in_one_line()
    {
        string spm = Path.Combine(_dir, "tokenizer.model");
        File.WriteAllBytes(spm, [0x0A, 0x09, 0x0A, 0x05, (byte)'<', (byte)'u', (byte)'n', (byte)'k', (byte)'>']);
        var (code, _, err) = Zett.Run("tokenize", "--tokenizer", _dir, "--text", "hi");
        Assert.Equal(2, code);
        Assert.Equal($"error: {spm}: not a SentencePiece model: a message of 9 bytes runs past " +
            "its parent (at byte 2)", err.Trim());

        string ranks = Path.Combine(_dir, "ranks.tiktoken");
        File.WriteAllLines(ranks, ["IQ== 0", "Ig== 1"]);
        (code, _, err) = Zett.Run("tokenize", "--tokenizer", ranks, "--text", "hi");
        Assert.Equal(2, code);
        Assert.StartsWith($"error: {ranks}: unsupported format: tiktoken ranks of 2 tokens", err,
            StringComparison.Ordinal);
        Assert.Single(err.Trim().Split('\n'));
    }

    [Fact]
    public void BPE_dropout_is_refused()
    {
        var root = (JsonObject)JsonNode.Parse(File.ReadAllText(
            Path.Combine(Data("gpt2"), "tokenizer.json")))!;
        root["model"]!["dropout"] = 0.1;
        string file = Path.Combine(_dir, "tokenizer.json");
        File.WriteAllText(file, root.ToJsonString());
        var (code, _, err) = Zett.Run("tokenize", "--tokenizer", file, "--text", "hi");
        Assert.Equal(2, code);
        Assert.Contains("dropout", err, StringComparison.Ordinal);
    }
}
