using System.Text;
using System.Text.Json.Nodes;
using ZeTT.Runtime.Tokenizers;
using RustTokenizer = Tokenizers.DotNet.Tokenizer;

namespace ZeTT.Runtime.Tests.Tokenizers;

/// <summary>
/// SentencePiece <c>.model</c> files and tiktoken rank files loaded into the tokenizer.json
/// pipeline: the Llama 2 and Mistral models of ../shared/data give the vocabulary, the merges
/// (merge for merge) and the ids (through the Rust library) of the tokenizer.json each ships; a
/// Unigram model written here from t5-small's pieces and charsmap encodes as the tokenizer.json
/// transformers' converter makes of it; Llama 3's ranks file gives the ids Hugging Face's
/// Llama 3 tokenizer gives (llama.cpp's test vectors); a cl100k_base ranks file equals the
/// built-in.
/// </summary>
public sealed class ModelFileTests : IDisposable
{
    private readonly string dir = Directory.CreateTempSubdirectory("zett-modelfile-").FullName;

    public void Dispose() => Directory.Delete(dir, recursive: true);

    private static string SharedTokenizers => Path.GetFullPath(Path.Combine(TokenizerTestData.Root,
        "..", "shared", "data", "tokenizers"));

    private static string SharedVocab => Path.GetFullPath(Path.Combine(TokenizerTestData.Root,
        "..", "shared", "data", "gguf-vocab"));

    /// <summary>tinyllama's tokenizer.json is the legacy form (Prepend ▁ normalizer), which is
    /// what a .model without tokenizer_config.json gets; Mistral's config says
    /// <c>legacy: false</c> and its tokenizer.json has the Metaspace form.</summary>
    [Theory]
    [InlineData("llama2-tinyllama", false)]
    [InlineData("mistral-7b-v0.1", true)]
    public void SentencePiece_bpe_model_equals_its_tokenizer_json(string name, bool withConfig)
    {
        string source = Path.Combine(SharedTokenizers, name);
        Assert.SkipUnless(File.Exists(Path.Combine(source, "tokenizer.model")),
            $"{source}/tokenizer.model is not there");
        string copy = Path.Combine(dir, name);
        Directory.CreateDirectory(copy);
        File.Copy(Path.Combine(source, "tokenizer.model"), Path.Combine(copy, "tokenizer.model"));
        if (withConfig)
        {
            File.Copy(Path.Combine(source, "tokenizer_config.json"),
                Path.Combine(copy, "tokenizer_config.json"));
        }
        string json = Path.Combine(source, "tokenizer.json");
        HfTokenizer fromModel = HfTokenizer.Load(copy);
        HfTokenizer fromJson = HfTokenizer.Load(json);

        var model = (BpeModel)fromModel.Model;
        var reference = (BpeModel)fromJson.Model;
        Assert.Equal(reference.Vocab.OrderBy(kv => kv.Value), model.Vocab.OrderBy(kv => kv.Value));
        Assert.Equal(reference.Merges, model.Merges);

        using var rust = new RustTokenizer(json);
        int texts = 0;
        foreach ((string textName, string text) in RustParityTests.Texts())
        {
            int[] ids = fromModel.Encode(text).Ids;
            Assert.True(rust.Encode(text).SequenceEqual(ids.Select(i => (uint)i)),
                $"{name} {textName}: ids differ");
            Assert.Equal(fromJson.Encode(text, false).Ids, fromModel.Encode(text, false).Ids);
            Assert.Equal(rust.Decode([.. ids.Select(i => (uint)i)]),
                fromModel.Decode(ids, skipSpecialTokens: true));
            texts++;
        }
        Assert.True(texts >= 45);
    }

    /// <summary>llama.cpp's test strings with the ids Hugging Face's tokenizer gave them
    /// (<c>add_special_tokens=False</c>): Llama 2's SentencePiece model and Llama 3's ranks.
    /// </summary>
    [Theory]
    [InlineData("llama-spm", "llama2-tinyllama/tokenizer.model")]
    [InlineData("llama-bpe", "llama3-tiktoken/tokenizer.model")]
    public void Model_files_give_hugging_faces_ids_on_llama_cpp_test_vectors(string vocab,
        string file)
    {
        string path = Path.Combine(SharedTokenizers, file);
        string inp = Path.Combine(SharedVocab, $"ggml-vocab-{vocab}.gguf.inp");
        Assert.SkipUnless(File.Exists(path) && File.Exists(inp), $"{path} or {inp} is not there");
        string copy = Path.Combine(dir, vocab);
        Directory.CreateDirectory(copy);
        File.Copy(path, Path.Combine(copy, "tokenizer.model"));
        HfTokenizer t = HfTokenizer.Load(copy);
        string[] texts = File.ReadAllText(inp).Split("\n__ggml_vocab_test__\n");
        string[] expected = File.ReadAllText(Path.ChangeExtension(inp, ".out")).Split('\n');
        Assert.Equal(texts.Length, expected.Length);
        int compared = 0;
        for (int i = 0; i < texts.Length - 1; i++)
        {
            int[] ids = [.. expected[i].Split(' ', StringSplitOptions.RemoveEmptyEntries)
                .Select(int.Parse)];
            Assert.True(ids.SequenceEqual(t.Encode(texts[i], addSpecialTokens: false).Ids),
                $"{vocab} {JsonValue.Create(texts[i]).ToJsonString()}: expected " +
                $"[{string.Join(' ', ids)}], got [{string.Join(' ', t.Encode(texts[i], false).Ids)}]");
            compared++;
        }
        Assert.Equal(46, compared);
    }

    [Fact]
    public void Llama3_ranks_have_its_special_tokens_and_bos()
    {
        string path = Path.Combine(SharedTokenizers, "llama3-tiktoken", "tokenizer.model");
        Assert.SkipUnless(File.Exists(path), $"{path} is not there");
        HfTokenizer t = HfTokenizer.Load(path);
        Assert.Equal(128_256, t.VocabSize);
        Assert.Equal([128000, 9906, 1917], t.Encode("Hello world").Ids);
        Assert.Equal(128009, t.TokenToId("<|eot_id|>"));
        Assert.Equal(128000, t.BosTokenId);
        Assert.Equal(128001, t.EosTokenId);
        Assert.Equal([128000, 128006, 882, 128007], t.Encode("<|start_header_id|>user<|end_header_id|>").Ids);
        Assert.Equal("Hello world", t.Decode(t.Encode("Hello world").Ids, skipSpecialTokens: true));
    }

    [Fact]
    public void A_cl100k_ranks_file_equals_the_built_in()
    {
        HfTokenizer builtin = TokenizerTestData.LoadBuiltin("cl100k_base");
        var sb = new StringBuilder();
        for (int id = 0; id < 100_256; id++)
        {
            byte[] bytes = ByteLevelAlphabet.TryDecode(builtin.IdToToken(id)!)!;
            sb.Append(Convert.ToBase64String(bytes)).Append(' ').Append(id).Append('\n');
        }
        string file = Path.Combine(dir, "cl100k_base.tiktoken");
        File.WriteAllText(file, sb.ToString());
        HfTokenizer t = HfTokenizer.Load(file);
        Assert.Equal(builtin.VocabSize, t.VocabSize);
        foreach ((string _, string text) in RustParityTests.Texts())
        {
            Assert.Equal(builtin.Encode(text).Ids, t.Encode(text).Ids);
        }
    }

    [Theory]
    [InlineData("QUJD 0\nQUJD 1\n", "listed twice")]
    [InlineData("QUJD 0\n!!!! 1\n", ":2: not a tiktoken line")]
    [InlineData("QUJD 0\nREVG 1\n", "unsupported format: tiktoken ranks of 2 tokens")]
    public void Bad_ranks_files_name_the_file_and_what_is_wrong(string content, string message)
    {
        string file = Path.Combine(dir, "bad.tiktoken");
        File.WriteAllText(file, content);
        var e = Assert.Throws<ZettException>(() => HfTokenizer.Load(file));
        Assert.StartsWith(file, e.Message, StringComparison.Ordinal);
        Assert.Contains(message, e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(new byte[] { 0x0A, 0x05, 0x0A, 0x01, 0x61 }, "runs past")]
    [InlineData(new byte[] { 0x0A, 0x03, 0x0A, 0x01, 0xFF }, "not UTF-8")]
    [InlineData(new byte[] { 0x0A, 0x03, 0x0A, 0x01, 0x61, 0x12, 0x02, 0x18, 0x03 }, "model type 3")]
    [InlineData(new byte[] { 0x0A, 0x03, 0x0A, 0x01, 0x61, 0x0F }, "wire type 7")]
    public void Bad_sentencepiece_models_name_the_file_and_what_is_wrong(byte[] content,
        string message)
    {
        string file = Path.Combine(dir, "bad.model");
        File.WriteAllBytes(file, content);
        var e = Assert.Throws<ZettException>(() => HfTokenizer.Load(file));
        Assert.StartsWith(file, e.Message, StringComparison.Ordinal);
        Assert.Contains(message, e.Message, StringComparison.Ordinal);
    }

    /// <summary>A Unigram model written here (protobuf) from t5-small's first 32,000 pieces,
    /// scores and precompiled charsmap, against the tokenizer.json the generic SentencePiece
    /// converter makes of it, run by the Rust library.</summary>
    [Fact]
    public void Sentencepiece_unigram_model_encodes_as_the_converted_tokenizer_json()
    {
        JsonObject t5 = (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(
            TokenizerTestData.Dir("t5-small"), "tokenizer.json")))!;
        JsonArray vocab = t5["model"]!["vocab"]!.AsArray();
        string charsmap = t5["normalizer"]!["precompiled_charsmap"]!.GetValue<string>();
        var pieces = new List<(string Piece, float Score, int Type)>();
        for (int i = 0; i < 32_000; i++)
        {
            string piece = vocab[i]![0]!.GetValue<string>();
            float score = (float)vocab[i]![1]!.GetValue<double>();
            pieces.Add((piece, score, i < 2 ? 3 : i == 2 ? 2 : 1));
        }
        string model = Path.Combine(dir, "t5.model");
        File.WriteAllBytes(model, SentencePieceProto.Write(pieces, modelType: 1, unkId: 2,
            byteFallback: false, Convert.FromBase64String(charsmap), addDummyPrefix: true));

        var expectedVocab = new JsonArray();
        foreach ((string piece, float score, int _) in pieces)
        {
            expectedVocab.Add((JsonNode)new JsonArray(piece, (double)score));
        }
        JsonObject Added(int id, string content) => new()
        {
            ["id"] = id,
            ["content"] = content,
            ["single_word"] = false,
            ["lstrip"] = false,
            ["rstrip"] = false,
            ["normalized"] = false,
            ["special"] = true,
        };
        var metaspace = new JsonObject
        {
            ["type"] = "Metaspace",
            ["replacement"] = "▁",
            ["prepend_scheme"] = "always",
            ["split"] = true,
        };
        var expected = new JsonObject
        {
            ["version"] = "1.0",
            ["truncation"] = null,
            ["padding"] = null,
            ["added_tokens"] = new JsonArray(Added(0, "<pad>"), Added(1, "</s>"), Added(2, "<unk>")),
            ["normalizer"] = new JsonObject
            {
                ["type"] = "Sequence",
                ["normalizers"] = new JsonArray(
                    new JsonObject { ["type"] = "Precompiled", ["precompiled_charsmap"] = charsmap },
                    new JsonObject { ["type"] = "Strip", ["strip_left"] = false, ["strip_right"] = true },
                    new JsonObject
                    {
                        ["type"] = "Replace",
                        ["pattern"] = new JsonObject { ["Regex"] = " {2,}" },
                        ["content"] = "▁",
                    }),
            },
            ["pre_tokenizer"] = metaspace,
            ["post_processor"] = null,
            ["decoder"] = metaspace.DeepClone(),
            ["model"] = new JsonObject
            {
                ["type"] = "Unigram",
                ["unk_id"] = 2,
                ["vocab"] = expectedVocab,
                ["byte_fallback"] = false,
            },
        };
        string json = Path.Combine(dir, "t5-converted.json");
        File.WriteAllText(json, expected.ToJsonString(), new UTF8Encoding(false));

        HfTokenizer ours = HfTokenizer.Load(model);
        using var rust = new RustTokenizer(json);
        foreach ((string textName, string text) in RustParityTests.Texts())
        {
            int[] ids = ours.Encode(text).Ids;
            Assert.True(rust.Encode(text).SequenceEqual(ids.Select(i => (uint)i)),
                $"{textName}: ids differ");
            Assert.Equal(rust.Decode([.. ids.Select(i => (uint)i)]), ours.Decode(ids, true));
        }
    }
}

/// <summary>A minimal protobuf writer for SentencePiece's <c>ModelProto</c> (the fields the
/// reader uses, plus one it must skip).</summary>
internal static class SentencePieceProto
{
    public static byte[] Write(IReadOnlyList<(string Piece, float Score, int Type)> pieces,
        int modelType, int unkId, bool byteFallback, byte[] charsmap, bool addDummyPrefix)
    {
        var output = new MemoryStream();
        foreach ((string piece, float score, int type) in pieces)
        {
            var p = new MemoryStream();
            Bytes(p, 1, Encoding.UTF8.GetBytes(piece));
            Key(p, 2, 5);
            p.Write(BitConverter.GetBytes(score));
            Key(p, 3, 0);
            Varint(p, (ulong)type);
            Bytes(output, 1, p.ToArray());
        }
        var trainer = new MemoryStream();
        Bytes(trainer, 2, "model_prefix"u8.ToArray());
        Key(trainer, 3, 0);
        Varint(trainer, (ulong)modelType);
        Key(trainer, 35, 0);
        Varint(trainer, byteFallback ? 1UL : 0);
        Key(trainer, 40, 0);
        Varint(trainer, (ulong)unkId);
        Bytes(trainer, 45, Encoding.UTF8.GetBytes(pieces[unkId].Piece));
        Bytes(output, 2, trainer.ToArray());
        var normalizer = new MemoryStream();
        Bytes(normalizer, 1, "nmt_nfkc"u8.ToArray());
        Bytes(normalizer, 2, charsmap);
        Key(normalizer, 3, 0);
        Varint(normalizer, addDummyPrefix ? 1UL : 0);
        Bytes(output, 3, normalizer.ToArray());
        return output.ToArray();
    }

    private static void Key(Stream s, int field, int wire) => Varint(s, ((ulong)field << 3) | (uint)wire);

    private static void Bytes(Stream s, int field, byte[] bytes)
    {
        Key(s, field, 2);
        Varint(s, (ulong)bytes.Length);
        s.Write(bytes);
    }

    private static void Varint(Stream s, ulong value)
    {
        while (value >= 0x80)
        {
            s.WriteByte((byte)(value | 0x80));
            value >>= 7;
        }
        s.WriteByte((byte)value);
    }
}
