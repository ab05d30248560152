using System.Buffers;
using System.Runtime.InteropServices;
using MessagePack;
using ZeTT.Ops;
using ZeTT.Runtime.Formats;
using ZeTT.Runtime.Tensors;

namespace ZeTT.Runtime.Tests.Formats;

public sealed class HypernetCheckpointTests : IDisposable
{
    private const int H = TinyHypernet.H;
    private const string Config = TinyHypernet.Config;

    private readonly string _dir = Directory.CreateTempSubdirectory("zett-hn-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static Dictionary<string, HostTensor> RandomPyTorch(int seed) => TinyHypernet.RandomPyTorch(seed);

    /// <summary>The documented Flax name and layout of a PyTorch parameter.</summary>
    private static (string Name, int[] Shape, float[] Data) ToFlax(HostTensor t)
    {
        if (t.Name == "lang_embeddings.weight")
        {
            return ("model.embeddings.lang_embedding.embedding", t.Shape, t.Data);
        }
        string[] parts = t.Name.Split('.');
        if (parts[0] is "input_projection" or "output_projection" or "output_projection_out")
        {
            parts[1] = "layers_" + parts[1];
        }
        if (parts[^1] != "weight")
        {
            return (string.Join('.', parts), t.Shape, t.Data);
        }
        if (t.Name.Contains("embeddings.weight", StringComparison.Ordinal))
        {
            parts[^1] = "embedding";
            return (string.Join('.', parts), t.Shape, t.Data);
        }
        if (t.Rank == 1)
        {
            parts[^1] = "scale";
            return (string.Join('.', parts), t.Shape, t.Data);
        }
        parts[^1] = "kernel";
        int o = t.Shape[0], i = t.Shape[1];
        float[] kernel = new float[t.Data.Length];
        for (int r = 0; r < o; r++)
        {
            for (int c = 0; c < i; c++)
            {
                kernel[(c * o) + r] = t.Data[(r * i) + c];
            }
        }
        return (string.Join('.', parts), [i, o], kernel);
    }

    private sealed record Leaf(int[] Shape, string DType, byte[] Bytes, bool Chunked = false);

    private static Dictionary<string, object> FlaxTree(Dictionary<string, HostTensor> pytorch,
        Func<string, int[], float[], (int[], float[])>? tamper = null, string? drop = null)
    {
        var root = new Dictionary<string, object>(StringComparer.Ordinal);
        foreach (HostTensor t in pytorch.Values)
        {
            (string name, int[] shape, float[] data) = ToFlax(t);
            if (name == drop)
            {
                continue;
            }
            if (tamper is not null)
            {
                (shape, data) = tamper(name, shape, data);
            }
            Leaf leaf = name.EndsWith("dense2.kernel", StringComparison.Ordinal)
                ? new Leaf(shape, "bfloat16", MemoryMarshal.AsBytes(
                    data.Select(BFloat16.FromFloat).ToArray().AsSpan()).ToArray())
                : new Leaf(shape, "float32", MemoryMarshal.AsBytes(data.AsSpan()).ToArray(),
                    Chunked: name == "fallback_embeddings.embedding");
            Insert(root, name, leaf);
        }
        // Parameters the Flax model has but never uses for prediction.
        Insert(root, "model.embeddings.word_embeddings.embedding", new Leaf([1, H], "float32", new byte[4 * H]));
        Insert(root, "model.encoder.layer.inter_token_blocks", new Leaf([16, H], "float32", new byte[64 * H]));
        return root;
    }

    private static void Insert(Dictionary<string, object> root, string dotted, Leaf leaf)
    {
        string[] parts = dotted.Split('.');
        Dictionary<string, object> node = root;
        foreach (string part in parts[..^1])
        {
            if (!node.TryGetValue(part, out object? child))
            {
                node[part] = child = new Dictionary<string, object>(StringComparer.Ordinal);
            }
            node = (Dictionary<string, object>)child;
        }
        node[parts[^1]] = leaf;
    }

    private static byte[] Serialize(Dictionary<string, object> tree)
    {
        var buffer = new ArrayBufferWriter<byte>();
        var w = new MessagePackWriter(buffer);
        WriteNode(ref w, tree);
        w.Flush();
        return buffer.WrittenSpan.ToArray();
    }

    private static void WriteNode(ref MessagePackWriter w, object node)
    {
        if (node is Dictionary<string, object> map)
        {
            w.WriteMapHeader(map.Count);
            foreach ((string k, object v) in map)
            {
                w.Write(k);
                WriteNode(ref w, v);
            }
            return;
        }
        var leaf = (Leaf)node;
        if (!leaf.Chunked)
        {
            WriteNdArray(ref w, leaf.Shape, leaf.DType, leaf.Bytes);
            return;
        }
        // Flax's layout for arrays over its chunk size: a flat array split into pieces.
        w.WriteMapHeader(3);
        w.Write("__msgpack_chunked_array__");
        w.Write(true);
        w.Write("shape");
        w.WriteMapHeader(leaf.Shape.Length);
        for (int i = 0; i < leaf.Shape.Length; i++)
        {
            w.Write(i.ToString(System.Globalization.CultureInfo.InvariantCulture));
            w.Write(leaf.Shape[i]);
        }
        w.Write("chunks");
        int half = leaf.Bytes.Length / 8 * 4;
        w.WriteMapHeader(2);
        w.Write("0");
        WriteNdArray(ref w, [half / 4], leaf.DType, leaf.Bytes[..half]);
        w.Write("1");
        WriteNdArray(ref w, [(leaf.Bytes.Length - half) / 4], leaf.DType, leaf.Bytes[half..]);
    }

    private static void WriteNdArray(ref MessagePackWriter w, int[] shape, string dtype, byte[] bytes)
    {
        var inner = new ArrayBufferWriter<byte>();
        var iw = new MessagePackWriter(inner);
        iw.WriteArrayHeader(3);
        iw.WriteArrayHeader(shape.Length);
        foreach (int d in shape)
        {
            iw.Write(d);
        }
        iw.Write(dtype);
        iw.Write(bytes.AsSpan());
        iw.Flush();
        w.WriteExtensionFormat(new ExtensionResult(1, new ReadOnlySequence<byte>(inner.WrittenMemory)));
    }

    private string MakeDir(string name, byte[]? flax, Dictionary<string, HostTensor>? safetensors)
    {
        string dir = Path.Combine(_dir, name);
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "config.json"), Config);
        if (flax is not null)
        {
            File.WriteAllBytes(Path.Combine(dir, "flax_model.msgpack"), flax);
        }
        if (safetensors is not null)
        {
            SafetensorsWriter.Write(Path.Combine(dir, "model.safetensors"),
                safetensors.Values.Select(t => SafetensorsEntry.FromTensor(t)).ToList());
        }
        return dir;
    }

    [Fact]
    public void Flax_and_safetensors_checkpoints_load_to_identical_parameters()
    {
        Dictionary<string, HostTensor> pytorch = RandomPyTorch(11);
        string st = MakeDir("st", null, pytorch);
        string fx = MakeDir("fx", Serialize(FlaxTree(pytorch)), null);
        File.WriteAllText(Path.Combine(fx, "tokenizer.json"), "{}");

        HypernetCheckpoint a = HypernetCheckpoint.Load(st);
        HypernetCheckpoint b = HypernetCheckpoint.Load(fx);
        Assert.Equal(HypernetCheckpointFormat.Safetensors, a.Format);
        Assert.Equal(HypernetCheckpointFormat.FlaxMsgpack, b.Format);
        Assert.Equal(pytorch.Keys.Order(), a.Weights.Tensors.Keys.Order());
        Assert.Equal(pytorch.Keys.Order(), b.Weights.Tensors.Keys.Order());
        foreach ((string name, HostTensor expected) in pytorch)
        {
            Assert.Equal(expected.Shape, b.Weights.Tensors[name].Shape);
            Assert.Equal(expected.Data, a.Weights.Tensors[name].Data);
            Assert.Equal(expected.Data, b.Weights.Tensors[name].Data);
        }
        Assert.Equal(3, b.Config.NumLangs);
        Assert.Equal(b.Weights.LangEmbeddings!.Data, pytorch["lang_embeddings.weight"].Data);
        Assert.Equal(Path.Combine(fx, "tokenizer.json"), b.TokenizerJsonPath);
        Assert.Null(b.TokenizerConfigPath);
        Assert.Null(a.TokenizerJsonPath);
    }

    [Fact]
    public void A_top_level_params_collection_is_accepted()
    {
        Dictionary<string, HostTensor> pytorch = RandomPyTorch(12);
        var wrapped = new Dictionary<string, object> { ["params"] = FlaxTree(pytorch) };
        HypernetCheckpoint c = HypernetCheckpoint.Load(MakeDir("p", Serialize(wrapped), null));
        Assert.Equal(pytorch["output_projection.1.weight"].Data, c.Weights.OutputLinear.Weight.Data);
    }

    [Fact]
    public void Misshaped_flax_parameter_names_parameter_expected_and_found()
    {
        Dictionary<string, HostTensor> pytorch = RandomPyTorch(13);
        byte[] flax = Serialize(FlaxTree(pytorch, (name, shape, data) =>
            name == "model.encoder.layer.1.attention.self.query.kernel"
                ? ([H, H + 1], new float[H * (H + 1)])
                : (shape, data)));
        var e = Assert.ThrowsAny<ZettException>(() => HypernetCheckpoint.Load(MakeDir("m", flax, null)));
        Assert.Contains("'model.encoder.layer.1.attention.self.query.weight'", e.Message, StringComparison.Ordinal);
        Assert.Contains("shape [9, 8], expected [8, 8]", e.Message, StringComparison.Ordinal);
        Assert.Contains("flax_model.msgpack", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Missing_flax_parameter_is_named()
    {
        byte[] flax = Serialize(FlaxTree(RandomPyTorch(14), drop: "bias_projection.kernel"));
        var e = Assert.ThrowsAny<ZettException>(() => HypernetCheckpoint.Load(MakeDir("x", flax, null)));
        Assert.Contains("'bias_projection.weight' is missing (expected shape [1, 8])", e.Message,
            StringComparison.Ordinal);
    }

    [Fact]
    public void Hostile_msgpack_is_a_typed_error()
    {
        byte[] valid = Serialize(FlaxTree(RandomPyTorch(15)));
        var cases = new List<byte[]>
        {
            Array.Empty<byte>(),
            new byte[] { 0x81 },
            new byte[] { 0xdf, 0xff, 0xff, 0xff, 0xff },
            new byte[] { 0xc1 },
            new byte[] { 0x91, 0x01 },
        };
        foreach (int cut in new[] { 1, 2, 10, 100, valid.Length / 2, valid.Length - 1 })
        {
            cases.Add(valid[..cut]);
        }
        cases.Add([.. valid, 0x00]);
        var deep = new List<byte>();
        for (int i = 0; i < 100; i++)
        {
            deep.AddRange([0x81, 0xa1, (byte)'k']);
        }
        deep.Add(0xc0);
        cases.Add([.. deep]);
        // An ndarray ext whose shape claims more bytes than its buffer holds.
        var buffer = new ArrayBufferWriter<byte>();
        var w = new MessagePackWriter(buffer);
        w.WriteMapHeader(1);
        w.Write("k");
        WriteNdArray(ref w, [1000, 1000], "float32", new byte[8]);
        w.Flush();
        cases.Add(buffer.WrittenSpan.ToArray());
        string path = Path.Combine(_dir, "h.msgpack");
        foreach (byte[] bytes in cases)
        {
            File.WriteAllBytes(path, bytes);
            var e = Assert.ThrowsAny<ZettException>(() => FlaxMsgpack.ReadTensors(path));
            Assert.StartsWith(path, e.Message, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void Directory_without_weights_is_a_clear_error()
    {
        string dir = MakeDir("empty", null, null);
        var e = Assert.ThrowsAny<ZettException>(() => HypernetCheckpoint.Load(dir));
        Assert.Contains("no model.safetensors or flax_model.msgpack", e.Message, StringComparison.Ordinal);
    }
}
