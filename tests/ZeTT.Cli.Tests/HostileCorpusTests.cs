using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using ZeTT.Runtime.Formats;
using ZeTT.Runtime.Tests.Transfer;
using ZeTT.Runtime.Training;

namespace ZeTT.Cli.Tests;

/// <summary>
/// The hostile-input corpus: generated bad inputs of every kind (model directories,
/// config.json, tokenizer.json, hypernetwork directories, safetensors, msgpack, surface forms,
/// token lists, command lines, output paths), each run through the CLI's entry point against
/// every command that reads it. Every case must keep the promise: exit 2, exactly one line
/// <c>error: …</c> naming the bad input, no stack trace, no output, no temporary left beside
/// it, and every input byte for byte as before.
/// </summary>
[Collection("current directory")]
public sealed class HostileCorpusTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("zett-hostile-").FullName;
    private readonly ITestOutputHelper _log;

    public HostileCorpusTests(ITestOutputHelper log) => _log = log;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    /// <summary>One generated case: files it sets up in its own directory, the command line,
    /// and the text the error line must contain (the bad file, directory or option).</summary>
    private sealed record Case(string Name, Func<string, string[]> Build, Func<string, string> Expect);

    private string Pristine(string name) => Path.Combine(_root, "pristine", name);

    private void WriteFixtures()
    {
        TransferTestData.WriteModel(Pristine("model"), "xlm-roberta");
        TransferTestData.WriteHypernet(Pristine("hn"), untied: false);
        TransferTestData.WriteTarget(Pristine("target"));
        File.WriteAllText(Pristine("tokens.txt"), "Ġthe\nĠan\nhe\n");
        int[] ids = [261, 5, 263, 70, 71, 263];
        SafetensorsWriter.Write(Pristine("sf.safetensors"),
            [SafetensorsEntry.FromInt32("surface_forms", [2, 3], ids)]);
        var (code, _, err) = Zett.Run("transfer", "--model", Pristine("model"), "--tokenizer",
            Pristine("target"), "--out", Pristine("transferred"), "--method", "fvt");
        Assert.True(code == 0, err);
        // A causal LM (eval, generate, train, export-gguf), text and id lists, and a training
        // checkpoint to resume from.
        CopyDirectory(ZeTT.Runtime.Transfer.DefaultTransfer.FindAsset(), Pristine("llama"));
        File.WriteAllText(Pristine("text.jsonl"), "{\"text\": \"the world\"}\n{\"text\": \"an ant\"}\n");
        File.WriteAllText(Pristine("text.txt"), "the world, an ant\n");
        File.WriteAllText(Pristine("ids.jsonl"), "{\"ids\": [70, 71, 72]}\n");
        WriteParquet(Pristine("text.parquet"), ("text", ["the world", "an ant"]));
        (code, _, err) = Zett.Run(Train(Pristine("trained"), Pristine("llama")));
        Assert.True(code == 0, err);
        // A continued-training checkpoint: the backbone, its moments and the lexical targets.
        (code, _, err) = Zett.Run(Train(Pristine("nshot"), Pristine("llama"), NShot));
        Assert.True(code == 0, err);
    }

    private string[] NShot =>
        ["--data", Pristine("text.jsonl"), "--train-tokenizer", Pristine("llama"),
         "--block-size", "8", "--backbone-training", "full", "--lexical-loss-to-init"];

    private static string[] Train(string output, string model, params string[] more) =>
        TrainFor(1, output, model, more);

    private static string[] TrainFor(int steps, string output, string model, params string[] more) =>
        ["train", "--model", model, "--out", output, "--steps", $"{steps}", "--batch", "16", "--hn-layers",
         "1", "--hn-hidden-size", "16", "--hn-intermediate-size", "32", "--hn-heads", "2", .. more];

    private static void WriteParquet(string path, params (string Name, string[] Values)[] columns)
    {
        Parquet.Schema.DataField<string>[] fields = [.. columns.Select(c => new Parquet.Schema.DataField<string>(c.Name))];
        WriteParquetGroup(path, fields, group =>
        {
            for (int i = 0; i < fields.Length; i++)
            {
                group.WriteAsync(fields[i], columns[i].Values, null).GetAwaiter().GetResult();
            }
        });
    }

    private static void WriteParquetGroup(string path, Parquet.Schema.DataField[] fields,
        Action<Parquet.ParquetRowGroupWriter> write)
    {
        using FileStream stream = File.Create(path);
        Parquet.ParquetWriter writer = Parquet.ParquetWriter.CreateAsync(
            new Parquet.Schema.ParquetSchema(fields), stream).GetAwaiter().GetResult();
        try
        {
            using Parquet.ParquetRowGroupWriter group = writer.CreateRowGroup();
            write(group);
        }
        finally
        {
            writer.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }
    }

    // ---- generators of hostile bytes --------------------------------------------------------

    /// <summary>Hostile replacements for a JSON file's whole content.</summary>
    private static IEnumerable<(string, byte[])> JsonGarbage(byte[] valid)
    {
        yield return ("empty", []);
        yield return ("bom-only", [0xEF, 0xBB, 0xBF]);
        yield return ("array", "[1, 2]"u8.ToArray());
        yield return ("string", "\"x\""u8.ToArray());
        yield return ("deep", Encoding.UTF8.GetBytes(new string('[', 5000) + new string(']', 5000)));
        yield return ("deep-object", Encoding.UTF8.GetBytes(
            "{\"a\":" + string.Concat(Enumerable.Repeat("{\"a\":", 3000)) + "1" + new string('}', 3001)));
        yield return ("trailing-garbage", [.. valid, (byte)'x']);
        yield return ("invalid-utf8-key", [(byte)'{', (byte)'"', 0xFF, 0xFE, (byte)'"', (byte)':', (byte)'1', (byte)'}']);
        yield return ("nul", [0, 0, 0, 0]);
        foreach (double f in new[] { 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99 })
        {
            yield return ($"truncated-{f}", valid[..(int)(valid.Length * f)]);
        }
        string text = Encoding.UTF8.GetString(valid);
        int brace = text.IndexOf('{', StringComparison.Ordinal);
        yield return ("duplicate-key", Encoding.UTF8.GetBytes(
            text[..(brace + 1)] + "\"dup\": 1, \"dup\": 2, " + text[(brace + 1)..]));
        yield return ("lone-surrogate", Encoding.UTF8.GetBytes(
            text[..(brace + 1)] + "\"s\": \"\\ud800\", " + text[(brace + 1)..]));
        yield return ("lone-low-surrogate-key", Encoding.UTF8.GetBytes(
            text[..(brace + 1)] + "\"\\udc00x\": 1, " + text[(brace + 1)..]));
        int quote = text.IndexOf('"', brace);
        byte[] bad = Encoding.UTF8.GetBytes(text);
        if (quote > 0)
        {
            yield return ("invalid-utf8-in-string", [.. bad[..(quote + 1)], 0xC3, 0x28, .. bad[(quote + 1)..]]);
            yield return ("overlong-utf8", [.. bad[..(quote + 1)], 0xC0, 0xAF, .. bad[(quote + 1)..]]);
            yield return ("surrogate-utf8", [.. bad[..(quote + 1)], 0xED, 0xA0, 0x80, .. bad[(quote + 1)..]]);
        }
    }

    /// <summary>Values that are wrong for every key of a config this corpus edits.</summary>
    private static readonly string[] WrongTypes = ["\"x\"", "[]", "{}", "[1]", "{\"a\": 1}"];

    private static readonly string[] BadSizes =
        ["-1", "-2147483648", "0", "2147483648", "9223372036854775808", "1e400", "1.5", "\"8\"",
         "true", "[]", "{}"];

    private static JsonObject ReadObject(string path) =>
        (JsonObject)JsonNode.Parse(File.ReadAllText(path))!;

    private static string WithValue(string path, string key, string rawValue)
    {
        JsonObject o = ReadObject(path);
        o[key] = JsonNode.Parse("0");
        string text = o.ToJsonString();
        string marker = $"\"{key}\":0";
        int at = text.IndexOf(marker, StringComparison.Ordinal);
        return text[..at] + $"\"{key}\":" + rawValue + text[(at + marker.Length)..];
    }

    /// <summary>Hostile safetensors bytes derived from a valid file.</summary>
    private static IEnumerable<(string, byte[])> SafetensorsGarbage(byte[] valid)
    {
        yield return ("empty", []);
        yield return ("short", valid[..5]);
        yield return ("huge-header-length", [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F, .. valid[8..]]);
        yield return ("header-past-end", [.. BitConverter.GetBytes((ulong)valid.Length), .. valid[8..]]);
        foreach (double f in new[] { 0.02, 0.3, 0.6, 0.95 })
        {
            yield return ($"truncated-{f}", valid[..Math.Max(9, (int)(valid.Length * f))]);
        }
        ulong headerLength = BitConverter.ToUInt64(valid, 0);
        string header = Encoding.UTF8.GetString(valid, 8, (int)headerLength);
        byte[] Rewrite(string h)
        {
            byte[] hb = Encoding.UTF8.GetBytes(h.PadRight((int)headerLength));
            return hb.Length == (int)headerLength
                ? [.. valid[..8], .. hb, .. valid[(8 + (int)headerLength)..]]
                : [.. BitConverter.GetBytes((ulong)hb.Length), .. hb, .. valid[(8 + (int)headerLength)..]];
        }
        yield return ("dtype", Rewrite(header.Replace("\"F32\"", "\"Q9\"", StringComparison.Ordinal).Replace("\"I32\"", "\"Q9\"", StringComparison.Ordinal)));
        yield return ("dtype-int", Rewrite(header.Replace("\"F32\"", "7", StringComparison.Ordinal).Replace("\"I32\"", "7", StringComparison.Ordinal)));
        yield return ("offsets-negative", Rewrite(header.Replace("\"data_offsets\":[0,", "\"data_offsets\":[-8,", StringComparison.Ordinal)));
        yield return ("shape-negative", Rewrite(header.Replace("\"shape\":[", "\"shape\":[-1,", StringComparison.Ordinal)));
        yield return ("header-not-json", Rewrite("{" + header[1..^1].Replace(":", ";", StringComparison.Ordinal) + "}"));
        yield return ("header-duplicate", Rewrite(header.Replace("{", "{\"__metadata__\":{},\"__metadata__\":{},", StringComparison.Ordinal)));
        byte[] nan = (byte[])valid.Clone();
        // A NaN in the first data element and an infinity in the last.
        BitConverter.GetBytes(float.NaN).CopyTo(nan, 8 + (int)headerLength);
        BitConverter.GetBytes(float.PositiveInfinity).CopyTo(nan, nan.Length - 4);
        yield return ("nan-and-inf", nan);
        byte[] flipped = (byte[])valid.Clone();
        flipped[12] ^= 0x80;
        yield return ("high-bit-in-header", flipped);
    }

    // ---- special files ------------------------------------------------------------------------

    private static void MakeFifo(string path)
    {
        using var p = Process.Start(new ProcessStartInfo("mkfifo", path) { UseShellExecute = false })!;
        p.WaitForExit();
        Assert.Equal(0, p.ExitCode);
    }

    /// <summary>Ways to put something that is not a regular file at a path.</summary>
    private static IEnumerable<(string, Action<string>)> NotAFile() =>
    [
        ("fifo", MakeFifo),
        ("dev-zero", p => File.CreateSymbolicLink(p, "/dev/zero")),
        ("dev-null", p => File.CreateSymbolicLink(p, "/dev/null")),
        ("directory", p => Directory.CreateDirectory(p)),
        ("symlink-loop", p =>
        {
            File.CreateSymbolicLink(p, p + ".loop");
            File.CreateSymbolicLink(p + ".loop", p);
        }),
        ("dangling-link", p => File.CreateSymbolicLink(p, p + ".nowhere")),
        ("oversized-sparse", p =>
        {
            using var f = File.Create(p);
            f.SetLength((2L << 30) + 1);
        }),
    ];

    // ---- the cases ------------------------------------------------------------------------------

    /// <summary>The commands that read a model directory (given as the case's copy).</summary>
    private IEnumerable<(string, Func<string, string, string[]>)> ModelReaders() =>
    [
        ("transfer-fvt", (model, c) => ["transfer", "--model", model, "--tokenizer", Pristine("target"),
            "--out", Path.Combine(c, "out"), "--method", "fvt"]),
        ("transfer-hn", (model, c) => ["transfer", "--model", model, "--tokenizer", Pristine("target"),
            "--out", Path.Combine(c, "out"), "--hypernet", Pristine("hn"), "--lang", "en",
            "--device", "cpu", "--dtype", "fp32"]),
        ("predict", (model, c) => ["predict", "--hypernet", Pristine("hn"), "--model", model,
            "--surface-forms", Pristine("sf.safetensors"), "--out", Path.Combine(c, "out.safetensors"),
            "--lang", "en", "--device", "cpu"]),
        ("apply-to-ft-base", (model, c) => ["apply-to-ft", "--base", model, "--ft", Pristine("model"),
            "--transferred-base", Pristine("transferred"), "--out", Path.Combine(c, "out")]),
        ("apply-to-ft-ft", (model, c) => ["apply-to-ft", "--base", Pristine("model"), "--ft", model,
            "--transferred-base", Pristine("transferred"), "--out", Path.Combine(c, "out")]),
        ("inspect", (model, _) => ["inspect", model]),
    ];

    /// <summary>The commands that read a causal LM's directory (given as the case's copy).
    /// </summary>
    private IEnumerable<(string, Func<string, string, string[]>)> CausalModelReaders() =>
    [
        ("eval", (model, _) => ["eval", "--model", model, "--data", Pristine("text.jsonl")]),
        ("generate", (model, _) => ["generate", "--model", model, "--prompt", "the",
            "--max-new-tokens", "2"]),
        ("train", (model, c) => Train(Path.Combine(c, "out"), model)),
        ("export-gguf", (model, c) => ["export-gguf", "--model", model, "--out",
            Path.Combine(c, "out.gguf")]),
        ("transfer-eval", (model, c) => ["transfer", "--model", model, "--tokenizer",
            Pristine("target"), "--out", Path.Combine(c, "out"), "--method", "fvt", "--eval-data",
            Pristine("text.jsonl")]),
    ];

    /// <summary>The commands that read a text file (eval data, tokenize input, a transfer's
    /// evaluation text), given as the case's file.</summary>
    private IEnumerable<(string, Func<string, string, string[]>)> TextReaders(bool onlyEvaluationRefuses) =>
    [
        ("eval", (text, _) => ["eval", "--model", Pristine("llama"), "--data", text]),
        ("transfer-eval", (text, c) => ["transfer", "--model", Pristine("llama"), "--tokenizer",
            Pristine("target"), "--out", Path.Combine(c, "out"), "--method", "fvt", "--eval-data", text]),
        .. onlyEvaluationRefuses ? Array.Empty<(string, Func<string, string, string[]>)>()
            : [("tokenize", (text, c) => ["tokenize", "--tokenizer", Pristine("target"), "--input", text,
                "--out", Path.Combine(c, "out.jsonl")])],
    ];

    /// <summary>Hostile text files by extension: what is wrong in every reader, and what only
    /// evaluation refuses (no text at all; tokenize encodes an empty document).</summary>
    private static IEnumerable<(string Ext, string Name, Action<string> Make, bool EmptyOnly)> TextGarbage()
    {
        byte[][] badUtf8 = [[0x61, 0xFF, 0xFE], [0x61, 0xC0, 0xAF], [0x61, 0xED, 0xA0, 0x80], [0xC3]];
        for (int i = 0; i < badUtf8.Length; i++)
        {
            byte[] b = badUtf8[i];
            yield return (".txt", $"invalid-utf8-{i}", Bytes(b), false);
            yield return (".jsonl", $"invalid-utf8-{i}", Bytes([.. "{\"text\": \""u8, .. b, .. "\"}\n"u8]), false);
        }
        foreach ((string name, Action<string> make) in NotAFile())
        {
            yield return (".txt", name, make, false);
            yield return (".jsonl", name, make, false);
            yield return (".parquet", name, make, false);
        }
        yield return (".txt", "empty", Text(""), true);
        yield return (".txt", "bom-only", Bytes([0xEF, 0xBB, 0xBF]), true);
        yield return (".jsonl", "empty", Text(""), true);
        yield return (".jsonl", "blank-lines", Text("\n \n\r\n"), true);
        foreach (string line in new[] { "x", "{", "[1]", "\"text\"", "5", "null", "{}", "{\"body\": \"a\"}",
            "{\"text\": 5}", "{\"text\": null}", "{\"text\": [\"a\"]}", "{\"text\": {}}",
            "{\"text\": \"a\", \"text\": \"b\"}", "{\"text\": \"\\ud800\"}", "{\"text\": \"\\udc00x\"}",
            "{\"text\": \"a\"} x", new string('[', 3000) + new string(']', 3000),
            "{\"a\":" + string.Concat(Enumerable.Repeat("{\"a\":", 2000)) + "1" + new string('}', 2001) })
        {
            string label = line.Length > 40 ? $"deep-{line[1]}" : line;
            yield return (".jsonl", $"line={label}", Text("{\"text\": \"fine\"}\n" + line + "\n"), false);
        }
        yield return (".jsonl", "nul-bytes", Bytes([0, 0, 0, (byte)'\n']), false);
        yield return (".csv", "unknown-extension", Text("text\nthe world\n"), false);
        yield return (".parquet", "empty", Text(""), false);
        yield return (".parquet", "not-parquet", Text("PAR1 this is not a parquet file PAR1"), false);
        yield return (".parquet", "magic-only", Text("PAR1PAR1"), false);
        var number = new Parquet.Schema.DataField<int>("n");
        yield return (".parquet", "no-string-column", p => WriteParquetGroup(p, [number], group =>
            group.WriteAsync<int>(number, new[] { 1, 2 }.AsMemory(), null, null, default)
                .GetAwaiter().GetResult()), false);
        yield return (".parquet", "two-string-columns-no-text", p => WriteParquet(p, ("a", ["x"]), ("b", ["y"])), false);
        var parquetBytes = new Lazy<byte[]>(() =>
        {
            string temp = Path.Combine(Path.GetTempPath(), $"zett-corpus-{Guid.NewGuid():N}.parquet");
            WriteParquet(temp, ("text", ["the world", "an ant", "a third document"]));
            byte[] bytes = File.ReadAllBytes(temp);
            File.Delete(temp);
            return bytes;
        });
        foreach (double f in new[] { 0.1, 0.3, 0.5, 0.7, 0.9, 0.98 })
        {
            yield return (".parquet", $"truncated-{f}", p => File.WriteAllBytes(p,
                parquetBytes.Value[..(int)(parquetBytes.Value.Length * f)]), false);
        }
        // Flips in the first page header (Parquet has no checksum by default: a flip in
        // statistics or created_by can read the same text, so those are not bad inputs).
        foreach (int at in new[] { 4, 5, 8 })
        {
            yield return (".parquet", $"flipped-byte-{at}", p =>
            {
                byte[] b = (byte[])parquetBytes.Value.Clone();
                b[at] ^= 0xFF;
                File.WriteAllBytes(p, b);
            }, false);
        }
        yield return (".parquet", "footer-length-huge", p =>
        {
            byte[] b = (byte[])parquetBytes.Value.Clone();
            BitConverter.GetBytes(int.MaxValue).CopyTo(b, b.Length - 8);
            File.WriteAllBytes(p, b);
        }, false);
    }

    private IEnumerable<(string, Func<string, string, string[]>)> HypernetReaders() =>
    [
        ("transfer-hn", (hn, c) => ["transfer", "--model", Pristine("model"), "--tokenizer",
            Pristine("target"), "--out", Path.Combine(c, "out"), "--hypernet", hn, "--lang", "en",
            "--device", "cpu"]),
        ("predict", (hn, c) => ["predict", "--hypernet", hn, "--model", Pristine("model"),
            "--tokens", Pristine("tokens.txt"), "--out", Path.Combine(c, "out.safetensors"),
            "--lang", "en", "--device", "cpu"]),
        ("inspect", (hn, _) => ["inspect", hn]),
        ("train-init", (hn, c) => ["train", "--model", Pristine("llama"), "--out",
            Path.Combine(c, "out"), "--init-from", hn, "--steps", "1", "--batch", "16"]),
    ];

    /// <summary>Commands reading a tokenizer directory (a target, or the hn tokenizer).</summary>
    private IEnumerable<(string, Func<string, string, string[]>)> TokenizerReaders() =>
    [
        ("transfer-fvt", (t, c) => ["transfer", "--model", Pristine("model"), "--tokenizer", t,
            "--out", Path.Combine(c, "out"), "--method", "fvt"]),
        ("convert-tokenizer", (t, c) => ["convert-tokenizer", "--tokenizer", t, "--out",
            Path.Combine(c, "out")]),
        ("surface-forms-target", (t, c) => ["surface-forms", "--hn-tokenizer", Pristine("target"),
            "--tokenizer", t, "--maxlen", "3", "--out", Path.Combine(c, "out.safetensors")]),
        ("surface-forms-hn", (t, c) => ["surface-forms", "--hn-tokenizer", t, "--tokenizer",
            Pristine("target"), "--maxlen", "3", "--out", Path.Combine(c, "out.safetensors")]),
    ];

    private static void CopyDirectory(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (string f in Directory.EnumerateFiles(from))
        {
            File.Copy(f, Path.Combine(to, Path.GetFileName(f)));
        }
    }

    /// <summary>A case that copies <paramref name="source"/> into the case directory, replaces
    /// one file of it with <paramref name="mutate"/>, and runs <paramref name="command"/>.</summary>
    private static Case InDirectory(string name, string source, string file, Action<string> mutate,
        Func<string, string, string[]> command) =>
        new(name, c =>
        {
            string copy = Path.Combine(c, "in");
            CopyDirectory(source, copy);
            string target = Path.Combine(copy, file);
            File.Delete(target);
            mutate(target);
            return command(copy, c);
        }, c => Path.Combine(c, "in"));

    private static Action<string> Bytes(byte[] b) => p => File.WriteAllBytes(p, b);

    private static Action<string> Text(string t) => p => File.WriteAllText(p, t);

    private IEnumerable<Case> Cases() => ModelCases(Pristine("model"), ModelReaders())
        .Concat(ModelCases(Pristine("llama"), CausalModelReaders()))
        .Concat(CausalTokenizerCases()).Concat(TextCases()).Concat(ResumeCases()).Concat(OtherCases());

    private IEnumerable<Case> ModelCases(string source,
        IEnumerable<(string, Func<string, string, string[]>)> readers)
    {
        // Model directories: config.json and model.safetensors, and the directory itself.
        string modelConfig = Path.Combine(source, "config.json");
        byte[] modelConfigBytes = File.ReadAllBytes(modelConfig);
        var modelConfigMutations = new List<(string, Action<string>)>();
        modelConfigMutations.AddRange(JsonGarbage(modelConfigBytes).Select(g => (g.Item1, Bytes(g.Item2))));
        modelConfigMutations.AddRange(NotAFile());
        foreach (string key in new[] { "vocab_size", "hidden_size" })
        {
            modelConfigMutations.AddRange(BadSizes.Select(v => ($"{key}={v}", Text(WithValue(modelConfig, key, v)))));
            modelConfigMutations.Add(($"{key}=wrong", Text(WithValue(modelConfig, key, "7"))));
        }
        foreach (string key in new[] { "bos_token_id", "eos_token_id", "pad_token_id" })
        {
            // The model's vocabulary size: the first id past its end.
            string vocab = ReadObject(modelConfig)["vocab_size"]!.ToJsonString();
            modelConfigMutations.AddRange(new[] { "-5", "\"x\"", "2147483647", "99999", vocab, "true", "{}", "1.5" }
                .Select(v => ($"{key}={v}", Text(WithValue(modelConfig, key, v)))));
        }
        modelConfigMutations.AddRange(new[] { "5", "\"no-such-family\"", "[]", "{}", "true" }
            .Select(v => ($"model_type={v}", Text(WithValue(modelConfig, "model_type", v)))));
        modelConfigMutations.AddRange(WrongTypes.Append("5").Select(v => ($"tie={v}",
            Text(WithValue(modelConfig, "tie_word_embeddings", v)))));
        byte[] weights = File.ReadAllBytes(Path.Combine(source, "model.safetensors"));
        var weightMutations = SafetensorsGarbage(weights).Select(g => (g.Item1, Bytes(g.Item2)))
            .Concat(NotAFile()).ToList();
        foreach ((string reader, Func<string, string, string[]> command) in readers)
        {
            foreach ((string m, Action<string> mutate) in modelConfigMutations)
            {
                yield return InDirectory($"{reader}/model-config/{m}", source, "config.json", mutate, command);
            }
            if (reader == "inspect")
            {
                continue;
            }
            // apply-to-ft replaces the embedding and bias tensors that hold this file's NaN and
            // infinity by B''s (it never reads them), so the output is clean: not a bad input there.
            foreach ((string m, Action<string> mutate) in weightMutations.Where(w =>
                !(reader.StartsWith("apply-to-ft", StringComparison.Ordinal) && w.Item1 == "nan-and-inf")))
            {
                yield return InDirectory($"{reader}/model-weights/{m}", source, "model.safetensors", mutate, command);
            }
            foreach ((string m, Action<string> make) in NotAFile().Where(n => n.Item1 != "directory"))
            {
                yield return new($"{reader}/model-dir/{m}", c =>
                {
                    string p = Path.Combine(c, "in");
                    make(p);
                    return command(p, c);
                }, c => Path.Combine(c, "in"));
            }
            yield return new($"{reader}/model-dir/empty", c =>
            {
                string p = Path.Combine(c, "in");
                Directory.CreateDirectory(p);
                return command(p, c);
            }, c => Path.Combine(c, "in"));
        }
    }

    /// <summary>The tokenizer.json of a causal LM, read by eval, generate, train and
    /// transfer's evaluation.</summary>
    private IEnumerable<Case> CausalTokenizerCases()
    {
        string tokenizerJson = Path.Combine(Pristine("target"), "tokenizer.json");
        var tokMutations = JsonGarbage(File.ReadAllBytes(tokenizerJson)).Select(g => (g.Item1, Bytes(g.Item2)))
            .Concat(NotAFile()).ToList();
        foreach ((string reader, Func<string, string, string[]> command) in CausalModelReaders()
            .Where(r => r.Item1 != "export-gguf"))
        {
            foreach ((string m, Action<string> mutate) in tokMutations)
            {
                yield return InDirectory($"{reader}/model-tokenizer/{m}", Pristine("llama"), "tokenizer.json", mutate, command);
            }
        }
    }

    /// <summary>Text files for every reader of text, and id lists for tokenize --decode.</summary>
    private IEnumerable<Case> TextCases()
    {
        foreach ((string ext, string name, Action<string> make, bool emptyOnly) in TextGarbage())
        {
            foreach ((string reader, Func<string, string, string[]> command) in TextReaders(emptyOnly))
            {
                yield return new($"{reader}/text{ext}/{name}", c =>
                {
                    string p = Path.Combine(c, "data" + ext);
                    make(p);
                    return command(p, c);
                }, c => Path.Combine(c, "data" + ext));
            }
        }
        var ids = new List<(string, Action<string>)>(NotAFile());
        foreach (string line in new[] { "x", "[1]", "{}", "{\"ids\": 5}", "{\"ids\": \"1,2\"}",
            "{\"ids\": [\"1\"]}", "{\"ids\": [1.5]}", "{\"ids\": [2147483648]}", "{\"ids\": [null]}",
            "{\"ids\": [1], \"ids\": [2]}", "{\"ids\": [1], \"s\": \"\\ud800\"}", new string('[', 3000) })
        {
            ids.Add(($"line={(line.Length > 40 ? "deep" : line)}", Text("{\"ids\": [70]}\n" + line + "\n")));
        }
        ids.Add(("invalid-utf8", Bytes([.. "{\"ids\": [70], \"s\": \""u8, 0xFF, .. "\"}\n"u8])));
        foreach ((string m, Action<string> make) in ids)
        {
            yield return new($"tokenize-decode/ids/{m}", c =>
            {
                string p = Path.Combine(c, "ids.jsonl");
                make(p);
                return ["tokenize", "--tokenizer", Pristine("target"), "--decode", "--input", p];
            }, c => Path.Combine(c, "ids.jsonl"));
        }
    }

    /// <summary>Training checkpoints given to --resume.</summary>
    private IEnumerable<Case> ResumeCases()
    {
        string checkpoint = Path.Combine(Pristine("trained"), "checkpoints", "step-1");
        string state = Path.Combine(checkpoint, "trainer_state.json");
        var stateMutations = JsonGarbage(File.ReadAllBytes(state)).Select(g => (g.Item1, Bytes(g.Item2)))
            .Concat(NotAFile()).ToList();
        // The seed of a resumed run comes from the command line; the update count from here.
        stateMutations.AddRange(BadSizes.Select(v => ($"step={v}", Text(WithValue(state, "step", v)))));
        string[] Resume(string copy, string c) => Train(Path.Combine(c, "out"), Pristine("llama"),
            "--resume", copy);
        foreach ((string m, Action<string> mutate) in stateMutations)
        {
            yield return InDirectory($"train-resume/state/{m}", checkpoint, "trainer_state.json", mutate, Resume);
        }
        foreach (string file in new[] { "optimizer.safetensors", "model.safetensors" })
        {
            byte[] bytes = File.ReadAllBytes(Path.Combine(checkpoint, file));
            foreach ((string m, Action<string> mutate) in SafetensorsGarbage(bytes)
                .Select(g => (g.Item1, Bytes(g.Item2))).Concat(NotAFile()))
            {
                yield return InDirectory($"train-resume/{file}/{m}", checkpoint, file, mutate, Resume);
            }
        }
        foreach ((string m, Action<string> mutate) in JsonGarbage(File.ReadAllBytes(
            Path.Combine(checkpoint, "config.json"))).Select(g => (g.Item1, Bytes(g.Item2))).Concat(NotAFile()))
        {
            yield return InDirectory($"train-resume/config/{m}", checkpoint, "config.json", mutate, Resume);
        }
        // Continued training's files.
        string nshot = Path.Combine(Pristine("nshot"), "checkpoints", "step-1");
        // Two updates: the resumed one meets the lexical targets' vocabulary.
        string[] ResumeNShot(string copy, string c) => TrainFor(2, Path.Combine(c, "out"),
            Pristine("llama"), [.. NShot, "--resume", copy]);
        foreach (string file in new[]
        {
            TrainingCheckpoint.BackboneFile, TrainingCheckpoint.BackboneOptimizerFile,
            TrainingCheckpoint.LexicalTargetsFile,
        })
        {
            byte[] bytes = File.ReadAllBytes(Path.Combine(nshot, file));
            foreach ((string m, Action<string> mutate) in SafetensorsGarbage(bytes)
                .Select(g => (g.Item1, Bytes(g.Item2))).Concat(NotAFile()))
            {
                yield return InDirectory($"train-resume-nshot/{file}/{m}", nshot, file, mutate, ResumeNShot);
            }
        }
    }

    private IEnumerable<Case> OtherCases()
    {

        // Tokenizers: tokenizer.json of a target, the model's (transfer reads it) and the
        // hypernetwork's, plus tokenizer_config.json.
        string tokenizerJson = Path.Combine(Pristine("target"), "tokenizer.json");
        byte[] tokBytes = File.ReadAllBytes(tokenizerJson);
        var tokMutations = JsonGarbage(tokBytes).Select(g => (g.Item1, Bytes(g.Item2)))
            .Concat(NotAFile()).Concat(TokenizerSemantics(tokenizerJson)).ToList();
        foreach ((string reader, Func<string, string, string[]> command) in TokenizerReaders())
        {
            foreach ((string m, Action<string> mutate) in tokMutations)
            {
                yield return InDirectory($"{reader}/tokenizer/{m}", Pristine("target"), "tokenizer.json", mutate, command);
            }
        }
        string tokConfig = Path.Combine(Pristine("model"), "tokenizer_config.json");
        var tokConfigMutations = JsonGarbage(File.ReadAllBytes(tokConfig)).Select(g => (g.Item1, Bytes(g.Item2)))
            .Concat(NotAFile()).ToList();
        foreach ((string m, Action<string> mutate) in tokConfigMutations)
        {
            yield return InDirectory($"convert-tokenizer/tokenizer-config/{m}", Pristine("model"),
                "tokenizer_config.json", mutate, (t, c) => ["convert-tokenizer", "--tokenizer", t, "--out", Path.Combine(c, "out")]);
            yield return InDirectory($"transfer-fvt/model-tokenizer-config/{m}", Pristine("model"),
                "tokenizer_config.json", mutate, ModelReaders().First().Item2);
        }
        foreach ((string m, Action<string> mutate) in tokMutations.Where(t => !t.Item1.StartsWith("sem", StringComparison.Ordinal)))
        {
            yield return InDirectory($"transfer-fvt/model-tokenizer/{m}", Pristine("model"), "tokenizer.json", mutate,
                ModelReaders().First().Item2);
        }

        // Hypernetwork directories: config.json, weights (safetensors and msgpack), tokenizer.
        string hnConfig = Path.Combine(Pristine("hn"), "config.json");
        var hnMutations = JsonGarbage(File.ReadAllBytes(hnConfig)).Select(g => (g.Item1, Bytes(g.Item2)))
            .Concat(NotAFile()).ToList();
        foreach (string key in new[] { "n_embd", "hn_hidden_size", "hn_intermediate_size", "hn_n_layers",
            "hn_num_attention_heads", "hn_surface_maxlen", "original_vocab_size", "n_langs" })
        {
            hnMutations.AddRange(BadSizes.Select(v => ($"{key}={v}", Text(WithValue(hnConfig, key, v)))));
        }
        hnMutations.AddRange(new[] { "-1", "\"x\"", "268", "2147483647", "1.5", "[]" }
            .Select(v => ($"pad_token_id={v}", Text(WithValue(hnConfig, "pad_token_id", v)))));
        hnMutations.AddRange(new[] { "-1", "\"x\"", "2147483647", "1.5", "[]" }
            .Select(v => ($"hn_n_extra_tokens={v}", Text(WithValue(hnConfig, "hn_n_extra_tokens", v)))));
        foreach (string key in new[] { "hn_rescale_embeddings", "hn_predict_bias", "hn_single_head",
            "hn_embed_lang_id", "separate_out_embeddings", "hn_concat_last_hidden_state",
            "hn_embed_using_source_embeddings" })
        {
            hnMutations.AddRange(new[] { "\"true\"", "1", "[]", "{}" }.Select(v => ($"{key}={v}", Text(WithValue(hnConfig, key, v)))));
        }
        hnMutations.AddRange(new[] { "\"en\"", "[1, 2, 3]", "{}", "[\"a\", \"b\", \"c\", \"d\"]", "[null]" }
            .Select(v => ($"langs={v}", Text(WithValue(hnConfig, "langs", v)))));
        hnMutations.AddRange(new[] { "5", "\"roberta\"", "[]" }.Select(v => ($"model_type={v}",
            Text(WithValue(hnConfig, "model_type", v)))));
        byte[] hnWeights = File.ReadAllBytes(Path.Combine(Pristine("hn"), "model.safetensors"));
        var hnWeightMutations = SafetensorsGarbage(hnWeights).Select(g => (g.Item1, Bytes(g.Item2)))
            .Concat(NotAFile()).ToList();
        foreach ((string reader, Func<string, string, string[]> command) in HypernetReaders())
        {
            foreach ((string m, Action<string> mutate) in hnMutations)
            {
                yield return InDirectory($"{reader}/hn-config/{m}", Pristine("hn"), "config.json", mutate, command);
            }
            if (reader == "inspect")
            {
                continue;
            }
            foreach ((string m, Action<string> mutate) in hnWeightMutations)
            {
                yield return InDirectory($"{reader}/hn-weights/{m}", Pristine("hn"), "model.safetensors", mutate, command);
            }
            foreach ((string m, byte[] bytes) in MsgpackGarbage())
            {
                yield return new($"{reader}/hn-msgpack/{m}", c =>
                {
                    string copy = Path.Combine(c, "in");
                    CopyDirectory(Pristine("hn"), copy);
                    File.Delete(Path.Combine(copy, "model.safetensors"));
                    File.WriteAllBytes(Path.Combine(copy, "flax_model.msgpack"), bytes);
                    return command(copy, c);
                }, c => Path.Combine(c, "in"));
            }
            foreach ((string m, Action<string> mutate) in tokMutations.Where(t => !t.Item1.StartsWith("sem", StringComparison.Ordinal)))
            {
                yield return InDirectory($"{reader}/hn-tokenizer/{m}", Pristine("hn"), "tokenizer.json", mutate, command);
            }
        }

        // Surface forms and token lists (predict).
        string[] Predict(string c, string kind, string file) => ["predict", "--hypernet", Pristine("hn"),
            "--model", Pristine("model"), kind, file, "--out", Path.Combine(c, "out.safetensors"),
            "--lang", "en", "--device", "cpu"];
        byte[] sf = File.ReadAllBytes(Pristine("sf.safetensors"));
        var sfCases = SafetensorsGarbage(sf).Where(g => !g.Item1.StartsWith("nan", StringComparison.Ordinal))
            .Select(g => (g.Item1, Bytes(g.Item2))).Concat(NotAFile()).ToList();
        foreach (int bad in new[] { -1, 268, int.MaxValue, int.MinValue })
        {
            sfCases.Add(($"id={bad}", p => SafetensorsWriter.Write(p,
                [SafetensorsEntry.FromInt32("surface_forms", [1, 3], [261, bad, 263])])));
        }
        sfCases.Add(("wrong-width", p => SafetensorsWriter.Write(p,
            [SafetensorsEntry.FromInt32("surface_forms", [2, 2], [1, 2, 3, 4])])));
        sfCases.Add(("wrong-name", p => SafetensorsWriter.Write(p,
            [SafetensorsEntry.FromInt32("ids", [1, 3], [1, 2, 3])])));
        sfCases.Add(("float", p => SafetensorsWriter.Write(p,
            [SafetensorsEntry.FromFloat32("surface_forms", [1, 3], [1, 2, 3])])));
        foreach ((string m, Action<string> mutate) in sfCases)
        {
            yield return new($"predict/surface-forms/{m}", c =>
            {
                string p = Path.Combine(c, "sf.safetensors");
                mutate(p);
                return Predict(c, "--surface-forms", p);
            }, c => Path.Combine(c, "sf.safetensors"));
        }
        var tokenLists = new List<(string, Action<string>)>
        {
            ("empty", Text("")),
            ("only-newlines", Text("\n\n\n")),
            ("empty-line", Text("a\n\nb\n")),
            ("invalid-utf8", Bytes([0x61, 0x0A, 0xFF, 0xFE, 0x0A])),
            ("lone-surrogate-utf8", Bytes([0x61, 0x0A, 0xED, 0xA0, 0x80, 0x0A])),
            ("megabyte-token", Text(new string('a', 1 << 20) + "\n")),
        };
        tokenLists.AddRange(NotAFile());
        foreach ((string m, Action<string> mutate) in tokenLists)
        {
            yield return new($"predict/tokens/{m}", c =>
            {
                string p = Path.Combine(c, "tokens.txt");
                mutate(p);
                return Predict(c, "--tokens", p);
            }, c => Path.Combine(c, "tokens.txt"));
        }

        // Command lines and output paths, for every command that writes.
        foreach (Case c in CommandLineCases())
        {
            yield return c;
        }
    }

    private static IEnumerable<(string, Action<string>)> TokenizerSemantics(string tokenizerJson)
    {
        JsonObject root = ReadObject(tokenizerJson);
        string Edit(Action<JsonObject> edit)
        {
            JsonObject copy = (JsonObject)root.DeepClone();
            edit(copy);
            return copy.ToJsonString();
        }
        JsonNode V(string raw) => JsonNode.Parse(raw)!;
        foreach (string v in new[] { "\"x\"", "-1", "2147483647", "2147483648", "1.5", "[]", "null", "true" })
        {
            yield return ($"sem/vocab-id={v}", Text(Edit(r => r["model"]!["vocab"]!["Ġ"] = v == "null" ? null : V(v))));
            yield return ($"sem/added-id={v}", Text(Edit(r => r["added_tokens"]![0]!["id"] = v == "null" ? null : V(v))));
        }
        foreach (string v in new[] { "{}", "{\"a\": \"b\"}", "\"a b\"", "5", "true" })
        {
            yield return ($"sem/merges={v}", Text(Edit(r => r["model"]!["merges"] = V(v))));
            yield return ($"sem/vocab={v}", Text(Edit(r => r["model"]!["vocab"] = V(v))));
        }
        foreach (string v in new[] { "5", "\"x\"", "[]", "{}", "[\"a\"]", "[\"a\", \"b\", \"c\"]", "[1, 2]", "\"nospace\"" })
        {
            yield return ($"sem/merge-entry={v}", Text(Edit(r => r["model"]!["merges"]![0] = V(v))));
        }
        foreach (string v in new[] { "5", "\"Foo\"", "[]" })
        {
            yield return ($"sem/model-type={v}", Text(Edit(r => r["model"]!["type"] = V(v))));
        }
        foreach (string v in new[] { "5", "\"x\"", "[]", "{\"type\": 5}", "{\"type\": \"NoSuchNormalizer\"}" })
        {
            yield return ($"sem/normalizer={v}", Text(Edit(r => r["normalizer"] = V(v))));
            yield return ($"sem/pre-tokenizer={v}", Text(Edit(r => r["pre_tokenizer"] = V(v))));
            yield return ($"sem/decoder={v}", Text(Edit(r => r["decoder"] = V(v))));
            yield return ($"sem/post-processor={v}", Text(Edit(r => r["post_processor"] = V(v))));
        }
        foreach (string v in new[] { "5", "\"x\"", "{}", "[5]", "[{\"id\": 1}]", "[{\"content\": \"x\"}]" })
        {
            yield return ($"sem/added-tokens={v}", Text(Edit(r => r["added_tokens"] = V(v))));
        }
        foreach (string v in new[] { "5", "[]", "{}" })
        {
            yield return ($"sem/added-content={v}", Text(Edit(r => r["added_tokens"]![0]!["content"] = V(v))));
            yield return ($"sem/added-special={v}", Text(Edit(r => r["added_tokens"]![0]!["special"] = V(v))));
        }
        yield return ("sem/empty-vocab", Text(Edit(r =>
        {
            r["model"]!["vocab"] = new JsonObject();
            r["model"]!["merges"] = new JsonArray();
            r["added_tokens"] = new JsonArray();
        })));
        yield return ("sem/megabyte-vocab-token", Text(Edit(r => r["model"]!["vocab"]![new string('a', 1 << 20)] = 9999)));
        yield return ("sem/megabyte-added-token", Text(Edit(r => r["added_tokens"]![0]!["content"] = new string('b', 1 << 20))));
    }

    private static IEnumerable<(string, byte[])> MsgpackGarbage()
    {
        yield return ("empty", []);
        yield return ("nil", [0xC0]);
        yield return ("fixint", [0x05]);
        yield return ("map-truncated", [0x81, 0xA1]);
        yield return ("map32-huge", [0xDF, 0xFF, 0xFF, 0xFF, 0xFF]);
        yield return ("str32-huge", [0x81, 0xDB, 0x7F, 0xFF, 0xFF, 0xFF]);
        yield return ("bin32-huge", [0x81, 0xA1, 0x61, 0xC6, 0xFF, 0xFF, 0xFF, 0xFF]);
        yield return ("ext-truncated", [0x81, 0xA1, 0x61, 0xC7, 0x10, 0x01]);
        yield return ("deep", [.. Enumerable.Repeat((byte)0x81, 2000).SelectMany(b => new byte[] { b, 0xA1, 0x61 }), 0xC0]);
        yield return ("empty-map", [0x80]);
        yield return ("array-root", [0x92, 0x01, 0x02]);
        yield return ("reserved-byte", [0xC1]);
    }

    private static bool IsFileWriter(string name) =>
        name is "surface-forms" or "predict" or "eval-json" or "tokenize" or "export-gguf" or "transfer-gguf";

    private IEnumerable<Case> CommandLineCases()
    {
        // Training grows its output directory over a run (checkpoints, resumed into): only
        // the relation to its inputs and the path itself are checked.
        foreach ((string label, Func<string, string> output, Func<string, string> expect) in new (string, Func<string, string>, Func<string, string>)[]
        {
            ("out-is-model", _ => Pristine("llama"), _ => "the output is an input"),
            ("out-inside-model", _ => Path.Combine(Pristine("llama"), "x"), _ => "lies inside an input"),
            ("out-contains-model", _ => Pristine(""), _ => "the output contains an input"),
            ("out-root", _ => "/", _ => "/"),
            ("out-empty", _ => "", _ => "--out"),
        })
        {
            yield return new($"train/{label}", c => Train(output(c), Pristine("llama")), expect);
        }
        yield return new("train/out-is-file", c =>
        {
            File.WriteAllText(Path.Combine(c, "f"), "keep");
            return Train(Path.Combine(c, "f"), Pristine("llama"));
        }, c => Path.Combine(c, "f"));

        string Out(string c) => Path.Combine(c, "out");
        string[] Transfer(string c, string out_) => ["transfer", "--model", Pristine("model"), "--tokenizer",
            Pristine("target"), "--out", out_, "--method", "fvt"];
        string[] Convert(string c, string out_) => ["convert-tokenizer", "--tokenizer", Pristine("target"), "--out", out_];
        string[] Surface(string c, string out_) => ["surface-forms", "--hn-tokenizer", Pristine("target"),
            "--tokenizer", Pristine("target"), "--maxlen", "3", "--out", out_];
        string[] PredictTo(string c, string out_) => ["predict", "--hypernet", Pristine("hn"), "--model",
            Pristine("model"), "--tokens", Pristine("tokens.txt"), "--out", out_, "--lang", "en", "--device", "cpu"];
        string[] Apply(string c, string out_) => ["apply-to-ft", "--base", Pristine("model"), "--ft",
            Pristine("model"), "--transferred-base", Pristine("transferred"), "--out", out_];
        string[] EvalJson(string c, string out_) => ["eval", "--model", Pristine("llama"), "--data",
            Pristine("text.jsonl"), "--json", out_];
        string[] Tokenize(string c, string out_) => ["tokenize", "--tokenizer", Pristine("target"),
            "--input", Pristine("text.jsonl"), "--out", out_];
        string[] Gguf(string c, string out_) => ["export-gguf", "--model", Pristine("llama"), "--out", out_];
        string[] TransferGguf(string c, string out_) => ["transfer", "--model", Pristine("llama"),
            "--tokenizer", Pristine("target"), "--out", out_, "--method", "fvt", "--format", "gguf"];
        var writers = new (string, Func<string, string, string[]>, string[])[]
        {
            ("eval-json", EvalJson, [Pristine("llama"), Pristine("text.jsonl")]),
            ("tokenize", Tokenize, [Pristine("target"), Pristine("text.jsonl")]),
            ("export-gguf", Gguf, [Pristine("llama")]),
            ("transfer-gguf", TransferGguf, [Pristine("llama"), Pristine("target")]),
            ("transfer", Transfer, [Pristine("model"), Pristine("target")]),
            ("convert-tokenizer", Convert, [Pristine("target")]),
            ("surface-forms", Surface, [Pristine("target")]),
            ("predict", PredictTo, [Pristine("hn"), Pristine("model"), Pristine("tokens.txt")]),
            ("apply-to-ft", Apply, [Pristine("model"), Pristine("transferred")]),
        };
        foreach ((string name, Func<string, string, string[]> cmd, string[] inputs) in writers)
        {
            foreach (bool overwrite in new[] { false, true })
            {
                string[] Ow(string[] a) => overwrite ? [.. a, "--overwrite"] : a;
                string tag = overwrite ? "overwrite" : "plain";
                foreach (string input in inputs)
                {
                    string label = Path.GetFileName(input);
                    yield return new($"{name}/{tag}/out-is-input-{label}", c => Ow(cmd(c, input)), _ => "the output is an input");
                    yield return new($"{name}/{tag}/out-is-parent-of-{label}", c => Ow(cmd(c, Path.GetDirectoryName(input)!)),
                        _ => "the output contains an input");
                    yield return new($"{name}/{tag}/out-inside-{label}", c => Ow(cmd(c, Path.Combine(input, "x"))),
                        _ => "lies inside an input");
                    yield return new($"{name}/{tag}/out-symlink-to-{label}", c =>
                    {
                        string link = Path.Combine(c, "link");
                        File.CreateSymbolicLink(link, input);
                        return Ow(cmd(c, link));
                    }, _ => "the output is an input");
                    yield return new($"{name}/{tag}/out-trailing-slash-{label}", c => Ow(cmd(c, input + "/")),
                        _ => "the output is an input");
                    yield return new($"{name}/{tag}/out-dotdot-{label}", c => Ow(cmd(c, Path.Combine(input, "..", label))),
                        _ => "the output is an input");
                }
                yield return new($"{name}/{tag}/out-root", c => Ow(cmd(c, "/")), _ => "/");
                yield return new($"{name}/{tag}/out-empty", c => Ow(cmd(c, "")), _ => "--out");
                yield return new($"{name}/{tag}/out-fifo", c =>
                {
                    MakeFifo(Out(c));
                    return Ow(cmd(c, Out(c)));
                }, Out);
                yield return new($"{name}/{tag}/out-loop", c =>
                {
                    File.CreateSymbolicLink(Out(c), Out(c) + "2");
                    File.CreateSymbolicLink(Out(c) + "2", Out(c));
                    return Ow(cmd(c, Out(c)));
                }, Out);
                yield return new($"{name}/{tag}/out-under-file", c =>
                {
                    File.WriteAllText(Path.Combine(c, "f"), "keep");
                    return Ow(cmd(c, Path.Combine(c, "f", "out")));
                }, c => Path.Combine(c, "f"));
            }
            yield return new($"{name}/existing-without-overwrite", c =>
            {
                bool isFile = IsFileWriter(name);
                if (isFile)
                {
                    File.WriteAllText(Out(c), "keep");
                }
                else
                {
                    Directory.CreateDirectory(Out(c));
                    File.WriteAllText(Path.Combine(Out(c), "keep"), "keep");
                }
                return cmd(c, Out(c));
            }, Out);
            yield return new($"{name}/wrong-kind", c =>
            {
                if (IsFileWriter(name))
                {
                    Directory.CreateDirectory(Out(c));
                }
                else
                {
                    File.WriteAllText(Out(c), "keep");
                }
                return [.. cmd(c, Out(c)), "--overwrite"];
            }, Out);
        }
        foreach (string v in new[] { "0", "-1", "99999999999", "x", "1.5", "" })
        {
            yield return new($"predict/batch-size={v}", c => [.. PredictTo(c, Out(c)), "--batch-size", v], _ => "--batch-size");
            yield return new($"surface-forms/maxlen={v}", c => ["surface-forms", "--hn-tokenizer", Pristine("target"),
                "--tokenizer", Pristine("target"), "--maxlen", v, "--out", Out(c)], _ => "--maxlen");
            if (v == "0")
            {
                continue;
            }
            yield return new($"transfer/gpu={v}", c => ["transfer", "--model", Pristine("model"), "--tokenizer",
                Pristine("target"), "--out", Out(c), "--hypernet", Pristine("hn"), "--gpu", v], _ => "--gpu");
        }
        foreach (string v in new[] { "xx", "", "-1", "99" })
        {
            yield return new($"predict/lang={v}", c => [.. PredictTo(c, Out(c))[..^4], "--lang", v, "--device", "cpu"], _ => "--lang");
        }
        foreach (string v in new[] { "nan", "inf", "x", "" })
        {
            yield return new($"apply-to-ft/lambdas={v}", c => [.. Apply(c, Out(c)), "--lambdas", v], _ => "lambda");
        }
        yield return new("apply-to-ft/lambdas-duplicate", c => [.. Apply(c, Out(c)), "--lambdas", "0.5", "0.5"], _ => "lambda");
        yield return new("transfer/no-such-tokenizer", c => ["transfer", "--model", Pristine("model"), "--tokenizer",
            Path.Combine(c, "none"), "--out", Out(c), "--method", "fvt"], c => Path.Combine(c, "none"));
        yield return new("transfer/unknown-option", c => [.. Transfer(c, Out(c)), "--frobnicate"], _ => "--frobnicate");
        yield return new("transfer/response-file-missing", c => ["transfer", "@" + Path.Combine(c, "none.rsp")], c => "none.rsp");
    }

    // ---- the run ---------------------------------------------------------------------------------

    private static Dictionary<string, string> Hashes(string root)
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        if (!Directory.Exists(root))
        {
            return result;
        }
        foreach (string f in Directory.EnumerateFileSystemEntries(root, "*", new EnumerationOptions
        {
            RecurseSubdirectories = true,
            AttributesToSkip = 0,
        }))
        {
            var info = new FileInfo(f);
            if (info.LinkTarget is not null)
            {
                result[f] = "link:" + info.LinkTarget;
            }
            else if (Directory.Exists(f))
            {
                result[f] = "dir";
            }
            else if (ZeTT.Runtime.IO.InputFile.KindOf(f) != ZeTT.Runtime.IO.PathKind.RegularFile)
            {
                // A FIFO would block a read forever.
                result[f] = "special";
            }
            else if (info.Length > 64 << 20)
            {
                result[f] = "big:" + info.Length;
            }
            else
            {
                try
                {
                    result[f] = Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(f)));
                }
                catch (IOException)
                {
                    result[f] = "special";
                }
            }
        }
        return result;
    }

    [Fact]
    public async Task Every_hostile_case_is_one_error_line_exit_2_no_output_no_temp_inputs_unchanged()
    {
        WriteFixtures();
        Dictionary<string, string> pristine = Hashes(Path.Combine(_root, "pristine"));
        var failures = new List<string>();
        int count = 0, crashes = 0, traces = 0, dataLoss = 0, hangs = 0, accepted = 0, unnamed = 0;
        var clock = Stopwatch.StartNew();
        foreach (Case c in Cases())
        {
            count++;
            string dir = Path.Combine(_root, "case", count.ToString(System.Globalization.CultureInfo.InvariantCulture));
            Directory.CreateDirectory(dir);
            string[] args = c.Build(dir);
            Dictionary<string, string> before = Hashes(dir);
            if (Environment.GetEnvironmentVariable("ZETT_CORPUS_TRACE") is { } trace)
            {
                File.AppendAllText(trace, $"{clock.Elapsed.TotalSeconds:F1} {c.Name}\n");
            }
            (int, string, string) result;
            try
            {
                result = await Task.Run(() => Zett.Run(args), TestContext.Current.CancellationToken)
                    .WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken);
            }
            catch (TimeoutException)
            {
                hangs++;
                failures.Add($"{c.Name}: hung");
                continue;
            }
            var (code, _, err) = result;
            string[] errorLines = err.Split('\n').Where(l => l.StartsWith("error:", StringComparison.Ordinal)).ToArray();
            string problem = "";
            if (code == 0)
            {
                accepted++;
                problem = "accepted (exit 0)";
            }
            else if (code != 2)
            {
                crashes++;
                problem = $"exit {code}";
            }
            if (err.Contains("   at ", StringComparison.Ordinal) || err.Contains("Exception", StringComparison.Ordinal))
            {
                traces++;
                problem += " stack trace";
            }
            if (code != 0 && (errorLines.Length != 1 || !errorLines[0].Contains(c.Expect(dir), StringComparison.Ordinal)))
            {
                unnamed++;
                problem += $" error line does not name '{c.Expect(dir)}'";
            }
            Dictionary<string, string> after = Hashes(dir);
            string[] changed = before.Where(kv => !after.TryGetValue(kv.Key, out string? h) || h != kv.Value)
                .Select(kv => kv.Key).ToArray();
            string[] added = after.Keys.Where(k => !before.ContainsKey(k)).ToArray();
            if (changed.Length > 0)
            {
                dataLoss++;
                problem += " changed " + string.Join(", ", changed.Select(Path.GetFileName));
            }
            if (added.Length > 0 && code != 0)
            {
                problem += " left " + string.Join(", ", added.Select(a => Path.GetRelativePath(dir, a)));
            }
            if (problem.Length > 0)
            {
                failures.Add($"{c.Name}: {problem.Trim()}: {err.Trim().Split('\n')[^1]}");
            }
            Directory.Delete(dir, recursive: true);
        }
        Dictionary<string, string> pristineAfter = Hashes(Path.Combine(_root, "pristine"));
        string[] pristineChanged = pristine.Where(kv => !pristineAfter.TryGetValue(kv.Key, out string? h) || h != kv.Value)
            .Select(kv => kv.Key).ToArray();
        dataLoss += pristineChanged.Length;
        _log.WriteLine($"{count} cases in {clock.Elapsed.TotalSeconds:F1} s: {crashes} crashes, {traces} stack traces, "
            + $"{dataLoss} data loss, {hangs} hangs, {accepted} silent acceptances, {unnamed} unnamed errors");
        Assert.True(count >= 2000, $"only {count} cases");
        Assert.True(pristineChanged.Length == 0, "inputs changed: " + string.Join(", ", pristineChanged));
        Assert.True(failures.Count == 0, $"{failures.Count} of {count} cases broke the promise:\n"
            + string.Join("\n", failures.Take(200)));
    }
}
