using ZeTT.Ops;
using ZeTT.Runtime.Formats;
using ZeTT.Runtime.Hypernetwork;
using ZeTT.Runtime.Models;
using ZeTT.Runtime.Tensors;
using ZeTT.Runtime.Training;

namespace ZeTT.Runtime.Tests.Training;

/// <summary><see cref="TrainStepFlops"/>: against hand counts of every matrix product of tiny
/// shapes, against the parameter count, and its scaling.</summary>
public sealed class TrainStepFlopsTests
{
    /// <summary>A multiply [m, k] · [k, n]: 2·m·k·n FLOPs.</summary>
    private static double Gemm(double m, double k, double n) => 2 * m * k * n;

    /// <summary>1 layer, d 4, 2 query heads of 2, 1 key/value head, gated MLP of 6.</summary>
    private static LmArchitecture TinyLm(bool causal = true) => new()
    {
        ModelType = "llama",
        Causal = causal,
        Layers = 1,
        Hidden = 4,
        Heads = 2,
        KvHeads = 1,
        HeadDim = 2,
        Intermediate = 6,
        Vocab = 16,
        MaxPositions = 32,
        Norm = NormKind.Rms,
        NormEps = 1e-5f,
        Block = BlockKind.PreNorm,
        Activation = ActivationFunction.Silu,
        GatedMlp = true,
        AttentionScale = 0.5f,
        Tied = false,
    };

    /// <summary>n_embd 4 untied (D_in 8), H 6, I 10, 1 layer of 2 heads, L 2, two output heads.
    /// </summary>
    private static HypernetConfig TinyHypernet(int length = 2, bool bias = false) =>
        HypernetInit.Config(4, untied: true, originalVocab: 16, extraTokens: 0, padId: 0,
            predictBias: bias, new HypernetShape(6, 10, 1, 2, length));

    [Fact]
    public void Equals_the_hand_count_of_every_product_of_a_tiny_step()
    {
        const int Rows = 10, Batch = 2, Tokens = 3;
        TrainStepFlopCount f = TrainStepFlops.Count(TinyLm(), TinyHypernet(), Rows, Batch, Tokens);

        // LM, T = 6 tokens: q, k, v, o, gate, up, down; per sequence and head the scores
        // [3, 2]·[2, 3] and the values [3, 3]·[3, 2]; the head [6, 4]·[4, 10].
        double t = Batch * Tokens;
        double layers = Gemm(t, 4, 4) + Gemm(t, 4, 2) + Gemm(t, 4, 2) + Gemm(t, 4, 4)
            + Gemm(t, 4, 6) + Gemm(t, 4, 6) + Gemm(t, 6, 4);
        double attention = Batch * 2 * (Gemm(3, 2, 3) + Gemm(3, 3, 2));
        double head = Gemm(t, 4, Rows);
        Assert.Equal(layers + attention + head, f.LmForward);
        Assert.Equal(2208, f.LmForward);
        // Data gradients only: dX of each layer product, dQ dK dV dP of the attention, and the
        // head's d hidden [6, 10]·[10, 4] and d rows [10, 6]·[6, 4].
        Assert.Equal(layers + (2 * attention) + Gemm(t, Rows, 4) + Gemm(Rows, t, 4), f.LmBackward);

        // Hypernetwork, 20 positions (10 rows × 2): input projection 8 → 6, its block
        // 6 → 10 → 6; the layer's q k v o, per row and head (head size 3) scores [2, 3]·[3, 2]
        // and values [2, 2]·[2, 3], the feed-forward 6 → 10 → 6; the two output heads on the
        // 10 pooled rows: block 6 → 10 → 6 and 6 → 4 each.
        double pos = Rows * 2;
        double input = Gemm(pos, 8, 6);
        double rest = Gemm(pos, 6, 10) + Gemm(pos, 10, 6)
            + (4 * Gemm(pos, 6, 6)) + (Rows * 2 * (Gemm(2, 3, 2) + Gemm(2, 2, 3)))
            + Gemm(pos, 6, 10) + Gemm(pos, 10, 6)
            + (2 * (Gemm(Rows, 6, 10) + Gemm(Rows, 10, 6) + Gemm(Rows, 6, 4)));
        Assert.Equal(input + rest, f.HypernetForward);
        Assert.Equal(24000, f.HypernetForward);
        // Weight and data gradients of each product, but no data gradient into the source rows.
        Assert.Equal((2 * input) + (2 * rest) - input, f.HypernetBackward);
        Assert.Equal(f.Lm + f.Hypernet, f.Total);
    }

    [Fact]
    public void A_masked_lm_counts_its_dense_head_transform_and_the_bias_projection_is_counted()
    {
        const int Rows = 10, Batch = 2, Tokens = 3;
        TrainStepFlopCount causal = TrainStepFlops.Count(TinyLm(), TinyHypernet(), Rows, Batch, Tokens);
        TrainStepFlopCount masked = TrainStepFlops.Count(TinyLm(causal: false),
            TinyHypernet(bias: true), Rows, Batch, Tokens);
        Assert.Equal(Gemm(Batch * Tokens, 4, 4), masked.LmForward - causal.LmForward);
        Assert.Equal(Gemm(Batch * Tokens, 4, 4), masked.LmBackward - causal.LmBackward);
        Assert.Equal(Gemm(Rows, 6, 1), masked.HypernetForward - causal.HypernetForward);
        Assert.Equal(2 * Gemm(Rows, 6, 1), masked.HypernetBackward - causal.HypernetBackward);
    }

    [Fact]
    public void One_position_surface_forms_cost_two_flops_per_weight_per_row_forward()
    {
        // With P = 1 every matrix multiplies one vector per row, once (plus the 1×1 attention):
        // the forward is 2 · rows · the matrices' elements, counted from the random weights.
        HypernetConfig c = TinyHypernet(length: 1, bias: true);
        Dictionary<string, HostTensor> w = HypernetInit.RandomWeights(c, 1);
        long matrices = w.Where(kv => kv.Key.EndsWith(".weight", StringComparison.Ordinal)
                && kv.Value.Shape.Length == 2 && !kv.Key.StartsWith("model.embeddings.", StringComparison.Ordinal)
                && !kv.Key.StartsWith("fallback_embeddings.", StringComparison.Ordinal))
            .Sum(kv => (long)kv.Value.Shape[0] * kv.Value.Shape[1]);
        const int Rows = 7;
        TrainStepFlopCount f = TrainStepFlops.Count(TinyLm(), c, Rows, 1, 1);
        double attention = Rows * c.NumLayers * 4.0 * c.HiddenSize;
        Assert.Equal((2.0 * Rows * matrices) + attention, f.HypernetForward);
    }

    [Fact]
    public void Scales_with_the_batch_the_sequence_and_the_vocabulary()
    {
        using HfModelDirectory model = HfModelDirectory.Open(Path.Combine(ZeTT.Runtime.Tests.Hypernetwork.HypernetFixture.RepoRoot,
            "assets", "stories260K"));
        LmArchitecture lm = LmArchitecture.FromConfig(model);
        HypernetConfig hn = HypernetInit.Config(lm.Hidden, untied: !lm.Tied, originalVocab: lm.Vocab,
            extraTokens: 0, padId: 0, predictBias: false, new HypernetShape(64, 128, 3, 1, 7));
        TrainStepFlopCount a = TrainStepFlops.Count(lm, hn, 4096, 8, 128);
        TrainStepFlopCount twiceBatch = TrainStepFlops.Count(lm, hn, 4096, 16, 128);
        TrainStepFlopCount twiceRows = TrainStepFlops.Count(lm, hn, 8192, 8, 128);
        TrainStepFlopCount twiceTokens = TrainStepFlops.Count(lm, hn, 4096, 8, 256);
        // The LM is linear in the sequences; the hypernetwork does not see them.
        Assert.Equal(2 * a.Lm, twiceBatch.Lm, 1e-9 * a.Lm);
        Assert.Equal(a.Hypernet, twiceBatch.Hypernet);
        // The hypernetwork is linear in the rows; so is the LM's head, not its body.
        Assert.Equal(2 * a.Hypernet, twiceRows.Hypernet, 1e-9 * a.Hypernet);
        double headFlops = 3 * Gemm(8 * 128, lm.Hidden, 4096);
        Assert.Equal(a.Lm + headFlops, twiceRows.Lm, 1e-9 * a.Lm);
        // Longer sequences: linear parts double, attention (5 layers × 4·B·T²·q) quadruples.
        double attention = lm.Layers * 4.0 * 8 * 128 * 128 * lm.Heads * lm.HeadDim;
        Assert.Equal((2 * a.Lm) + (2 * 3 * attention), twiceTokens.Lm, 1e-9 * a.Lm);
        Assert.Throws<ArgumentOutOfRangeException>(() => TrainStepFlops.Count(lm, hn, 0, 8, 128));
    }
}
