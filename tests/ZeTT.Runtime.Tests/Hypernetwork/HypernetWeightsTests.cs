using ZeTT.Runtime.Hypernetwork;
using ZeTT.Runtime.Tensors;

namespace ZeTT.Runtime.Tests.Hypernetwork;

public sealed class HypernetWeightsTests
{
    private static HypernetConfig Config(int maxLen, bool lang, bool concat) => HypernetConfig.Parse($$"""
        {"model_type": "zett_hypernetwork", "n_embd": 8, "hn_hidden_size": 16,
         "hn_intermediate_size": 24, "hn_n_layers": 1, "hn_num_attention_heads": 2,
         "hn_surface_maxlen": {{maxLen}}, "hn_embed_lang_id": {{(lang ? "true" : "false")}},
         "n_langs": 2, "original_vocab_size": 10, "pad_token_id": 1,
         "hn_concat_last_hidden_state": {{(concat ? "true" : "false")}},
         "hn_embed_using_source_embeddings": true}
        """, "test");

    /// <summary>Every tensor the reference creates for <paramref name="c"/>, with H-wide output
    /// heads (the reference builds them as ProjectorBlock(H, H, I) and Linear(H, ·)).</summary>
    private static Dictionary<string, HostTensor> Tensors(HypernetConfig c)
    {
        int h = c.HiddenSize, i = c.IntermediateSize, d = c.SourceWidth;
        var t = new Dictionary<string, HostTensor>();
        void Add(string name, params int[] shape) =>
            t[name] = new HostTensor(name, shape, new float[shape.Aggregate(1, (a, b) => a * b)]);
        void Lin(string p, int fanIn, int fanOut)
        {
            Add(p + ".weight", fanOut, fanIn);
            Add(p + ".bias", fanOut);
        }
        void Ln(string p)
        {
            Add(p + ".weight", h);
            Add(p + ".bias", h);
        }
        void Block(string p)
        {
            Lin(p + ".dense1", h, i);
            Lin(p + ".dense2", i, h);
            Ln(p + ".ln");
        }
        Add("model.embeddings.position_embeddings.weight", 514, h);
        Add("model.embeddings.token_type_embeddings.weight", 1, h);
        Ln("model.embeddings.LayerNorm");
        foreach (string s in new[] { "query", "key", "value" })
        {
            Lin("model.encoder.layer.0.attention.self." + s, h, h);
        }
        Lin("model.encoder.layer.0.attention.output.dense", h, h);
        Ln("model.encoder.layer.0.attention.output.LayerNorm");
        Lin("model.encoder.layer.0.intermediate.dense", h, i);
        Lin("model.encoder.layer.0.output.dense", i, h);
        Ln("model.encoder.layer.0.output.LayerNorm");
        Add("fallback_embeddings.weight", 1, d);
        Add("lang_embeddings.weight", 2, h);
        Lin("input_projection.0", d, h);
        Block("input_projection.1");
        Block("output_projection.0");
        Lin("output_projection.1", h, c.NEmbd);
        Lin("bias_projection", h, 1);
        return t;
    }

    [Fact]
    public void Concat_last_hidden_state_binds_H_wide_heads_when_the_sequence_has_length_one()
    {
        HypernetConfig c = Config(1, lang: false, concat: true);
        HypernetWeights w = HypernetWeights.FromTensors(c, Tensors(c), "test");
        Assert.Equal(16, w.OutputBlock.Dense1.In);
        Assert.Equal(16, w.BiasProjection!.In);
    }

    [Theory]
    [InlineData(7, false)]
    [InlineData(1, true)]
    public void Concat_last_hidden_state_with_a_longer_sequence_is_a_clear_error(int maxLen, bool lang)
    {
        HypernetConfig c = Config(maxLen, lang, concat: true);
        var e = Assert.Throws<ZettException>(() => HypernetWeights.FromTensors(c, Tensors(c), "ckpt"));
        Assert.Contains("hn_concat_last_hidden_state", e.Message);
        Assert.Contains($"{c.SequenceLength}·16", e.Message);
    }
}
