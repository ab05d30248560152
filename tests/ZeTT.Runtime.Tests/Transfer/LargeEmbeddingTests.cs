using System.Buffers.Binary;
using System.Text;
using System.Text.Json.Nodes;
using ZeTT.Ops;
using ZeTT.Runtime.Formats;
using ZeTT.Runtime.Tensors;
using ZeTT.Runtime.Tokenizers;
using ZeTT.Runtime.Transfer;

namespace ZeTT.Runtime.Tests.Transfer;

/// <summary>
/// Transfer of an embedding matrix past 2^31 elements (a 256k-vocabulary model at hidden size
/// 8192 has that many; one host array cannot hold it). The model is a sparse file: a real
/// [300000, 8192] F16 header over a data region that is a hole except for the rows written, so
/// the tests need a few MB of disk and RAM while every 64-bit offset is exercised.
/// </summary>
public sealed class LargeEmbeddingTests : IDisposable
{
    private const long Rows = 300_000;
    private const int Cols = 8192;
    private const string Embedding = "model.embed_tokens.weight";
    private const int LastToken = (int)Rows - 1;
    private readonly string _dir = Directory.CreateTempSubdirectory("zett-big-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string P(string name) => Path.Combine(_dir, name);

    /// <summary>
    /// FVT from the sparse model to a small target: rows copied from the model's tokens
    /// (among them row 299999, which starts at element 2,457,591,808, past 2^31), rows
    /// averaged from their pieces, and the special tokens' rows. The rows are read from the
    /// memory map in F16 and written back as F16; the fallback mean reads all 300000 rows.
    /// </summary>
    [Fact]
    public void Fvt_transfers_an_embedding_past_2_pow_31_elements()
    {
        string model = WriteSparseModel(P("model"));
        string target = TransferTestData.WriteTarget(P("target"));
        AddToVocabulary(target, new Dictionary<string, int> { ["Ġzebra"] = HfTokenizer.Load(target).VocabSize });

        TransferResult r = TokenizerTransfer.Run(new TransferOptions
        {
            ModelDirectory = model,
            Tokenizer = target,
            OutputDirectory = P("out"),
            Method = TransferMethod.Fvt,
        });

        HfTokenizer source = HfTokenizer.Load(model);
        HfTokenizer written = HfTokenizer.Load(P("out"));
        Assert.Equal(written.VocabSize, r.VocabSize);
        Assert.Equal((int)Rows, r.SourceVocabSize);
        using SafetensorsFile output = SafetensorsFile.Open(Path.Combine(P("out"), "model.safetensors"));
        SafetensorsTensorInfo info = output.GetInfo(Embedding);
        Assert.Equal(DType.F16, info.DType);
        Assert.Equal([written.VocabSize, Cols], info.Shape);
        float[] Out(string token) => ReadRow(output, written.TokenToId(token)
            ?? throw new InvalidOperationException($"no '{token}' in the output tokenizer"));

        // Tokens of the model's vocabulary are copied: a byte symbol and a merge both share.
        foreach (string token in new[] { "a", "Ġthe" })
        {
            Assert.Equal(SourceRow(source.TokenToId(token)!.Value), Out(token));
        }
        // "Ġw" is not in the model's vocabulary: the mean of its pieces "Ġ" and "w".
        float[] g = SourceRow(source.TokenToId("Ġ")!.Value), w = SourceRow(source.TokenToId("w")!.Value);
        Assert.Equal(g.Zip(w, (a, b) => (float)(Half)(float)((a + (double)b) / 2)), Out("Ġw"));
        // "Ġzebra" is the model's last token, row 299999 (from element 2,457,591,808): copied.
        Assert.Equal(LastToken, source.TokenToId("Ġzebra"));
        float[] zebra = Out("Ġzebra");
        Assert.Equal(SourceRow(LastToken), zebra);
        Assert.All(zebra, x => Assert.Equal(64f, x));
        // The special tokens matched to the model's keep its rows.
        Assert.Equal(SourceRow(262), Out("</s>"));
        Assert.Equal(r.VocabSize, r.FvtCopied + r.FvtAveraged + r.FvtFallback);
        Assert.True(r.FvtAveraged > 0 && r.FvtCopied > 256, $"{r.FvtCopied} copied, {r.FvtAveraged} averaged");
        using HfModelDirectory o = HfModelDirectory.Open(P("out"));
        Assert.Equal(written.VocabSize, o.VocabSize);
    }

    /// <summary>A NaN in a row past element 2^31 is found and named: the check reads every
    /// row through 64-bit offsets, and the transfer writes nothing.</summary>
    [Fact]
    public void A_nan_past_element_2_pow_31_is_named_and_nothing_is_written()
    {
        string model = WriteSparseModel(P("model"), nanRow: 280_001);
        string target = TransferTestData.WriteTarget(P("target"));
        ZettException e = Assert.Throws<ZettException>(() => TokenizerTransfer.Run(new TransferOptions
        {
            ModelDirectory = model,
            Tokenizer = target,
            OutputDirectory = P("out"),
            Method = TransferMethod.Fvt,
        }));
        Assert.Contains("model.safetensors", e.Message);
        Assert.Contains($"'{Embedding}': row 280001", e.Message);
        Assert.False(Directory.Exists(P("out")));
        Assert.Empty(Directory.EnumerateFileSystemEntries(_dir, "out*"));
    }

    /// <summary>The writer streams a native matrix past 2^31 elements row block by row block:
    /// the bytes of rows on both sides of element 2^31 and of the last row land at their 64-bit
    /// offsets (checked by a stream that keeps only those bytes, so nothing is written to
    /// disk).</summary>
    [Fact]
    public void FromRows_streams_a_matrix_past_2_pow_31_elements_to_its_offsets()
    {
        using var m = new NativeMatrix(Rows, Cols, "big");
        long[] rows = [0, 262_143, 262_144, Rows - 1];
        foreach (long row in rows)
        {
            Span<float> dst = m.Row(row);
            for (int j = 0; j < Cols; j++)
            {
                dst[j] = (float)Value(row, j);
            }
        }
        SafetensorsEntry entry = SafetensorsEntry.FromRows("big", m, DType.BF16);
        Assert.Equal(Rows * Cols * 2, entry.ByteLength);
        Assert.Equal([Rows, Cols], entry.Shape);
        var probe = new ProbeStream([.. rows.Select(row => row * Cols * 2)], Cols * 2);
        entry.WriteData(probe);
        Assert.Equal(entry.ByteLength, probe.Length);
        foreach (long row in rows)
        {
            float[] got = new float[Cols];
            DTypeConverter.ToFloat32(DType.BF16, probe.Captured[row * Cols * 2], got);
            Assert.Equal(m.Row(row).ToArray(), got);
        }
    }

    /// <summary>Rows of the sparse model written with values: the 264 tokens of the test
    /// tokenizer and the last row, which alone holds large values; the rest is a hole.</summary>
    private static IEnumerable<long> WrittenRows() =>
        Enumerable.Range(0, TransferTestData.Vocab).Select(i => (long)i).Append(Rows - 1);

    /// <summary>Small multiples of 1/64 for the tokens (exact in F16 and in any summation
    /// order); 64 everywhere in the last row.</summary>
    private static double Value(long row, int col) =>
        row == Rows - 1 ? 64 : (((row * 7) + (col * 3)) % 61 - 30) / 64.0;

    private static float[] SourceRow(long row) =>
        [.. Enumerable.Range(0, Cols).Select(j => (float)Value(row, j))];

    private static float[] ReadRow(SafetensorsFile file, long row)
    {
        float[] values = new float[Cols];
        file.ReadFloat32(Embedding, row * Cols, values);
        return values;
    }

    /// <summary>Adds tokens (not reachable by merges, found by lookup) to a BPE
    /// tokenizer.json's vocabulary.</summary>
    private static void AddToVocabulary(string dir, Dictionary<string, int> tokens)
    {
        string path = Path.Combine(dir, "tokenizer.json");
        JsonObject root = HfModelDirectory.ReadJsonObject(path);
        JsonObject vocab = root["model"]!["vocab"]!.AsObject();
        foreach ((string token, int id) in tokens)
        {
            vocab[token] = id;
        }
        HfModelWriter.WriteJson(path, root);
    }

    /// <summary>The model: the test tokenizer (ids 0-263) grown to 300000 tokens, fillers up to
    /// "Ġzebra" at 299999, over the sparse [300000, 8192] F16 embedding.</summary>
    private static string WriteSparseModel(string dir, long? nanRow = null)
    {
        TransferTestData.WriteBpe(dir, TransferTestData.ModelMerges, TransferTestData.ModelSpecials,
            TransferTestData.ModelTokenizerConfig());
        var more = new Dictionary<string, int>();
        for (int id = TransferTestData.Vocab; id < LastToken; id++)
        {
            more[$"filler{id}"] = id;
        }
        more["Ġzebra"] = LastToken;
        AddToVocabulary(dir, more);
        HfModelWriter.WriteJson(Path.Combine(dir, "config.json"), new JsonObject
        {
            ["model_type"] = "llama",
            ["architectures"] = new JsonArray("LlamaForCausalLM"),
            ["vocab_size"] = Rows,
            ["hidden_size"] = Cols,
            ["tie_word_embeddings"] = true,
            ["bos_token_id"] = 261,
            ["eos_token_id"] = 262,
        });
        long dataBytes = Rows * Cols * 2;
        byte[] header = Encoding.UTF8.GetBytes($"{{\"{Embedding}\":{{\"dtype\":\"F16\",\"shape\":"
            + $"[{Rows},{Cols}],\"data_offsets\":[0,{dataBytes}]}}}}");
        long dataStart = 8 + header.Length;
        using FileStream fs = File.Create(Path.Combine(dir, "model.safetensors"));
        Span<byte> length = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)header.Length);
        fs.Write(length);
        fs.Write(header);
        fs.SetLength(dataStart + dataBytes);
        byte[] bytes = new byte[Cols * 2];
        foreach (long row in WrittenRows())
        {
            for (int j = 0; j < Cols; j++)
            {
                BinaryPrimitives.WriteHalfLittleEndian(bytes.AsSpan(j * 2), (Half)Value(row, j));
            }
            fs.Position = dataStart + (row * Cols * 2);
            fs.Write(bytes);
        }
        if (nanRow is long bad)
        {
            BinaryPrimitives.WriteHalfLittleEndian(bytes, Half.NaN);
            fs.Position = dataStart + (bad * Cols * 2) + 2 * 5;
            fs.Write(bytes, 0, 2);
        }
        return dir;
    }

    /// <summary>A write-only stream that counts bytes and keeps <paramref name="width"/> bytes
    /// from each of the given offsets.</summary>
    private sealed class ProbeStream(long[] offsets, int width) : Stream
    {
        private long _position;

        public Dictionary<long, byte[]> Captured { get; } = offsets.ToDictionary(o => o, _ => new byte[width]);

        public override bool CanRead => false;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => _position;

        public override long Position
        {
            get => _position;
            set => throw new NotSupportedException();
        }

        public override void Write(byte[] buffer, int offset, int count) =>
            Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            long start = _position, end = _position + buffer.Length;
            foreach ((long at, byte[] kept) in Captured)
            {
                long from = Math.Max(at, start), to = Math.Min(at + width, end);
                if (from < to)
                {
                    buffer[(int)(from - start)..(int)(to - start)].CopyTo(kept.AsSpan((int)(from - at)));
                }
            }
            _position = end;
        }

        public override void Flush()
        {
        }

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();
    }
}
