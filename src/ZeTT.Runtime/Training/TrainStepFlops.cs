using ZeTT.Runtime.Hypernetwork;
using ZeTT.Runtime.Models;

namespace ZeTT.Runtime.Training;

/// <summary>The matrix-product FLOPs of one main-stage micro-batch (a multiply-add is 2 FLOPs),
/// split into the frozen LM's and the hypernetwork's forward and backward.</summary>
/// <param name="LmForward">The LM's layers, attention and head.</param>
/// <param name="LmBackward">Their data gradients (the LM's weights are frozen).</param>
/// <param name="HypernetForward">The hypernetwork over every row of the vocabulary.</param>
/// <param name="HypernetBackward">Its data and weight gradients.</param>
public sealed record TrainStepFlopCount(double LmForward, double LmBackward,
    double HypernetForward, double HypernetBackward)
{
    /// <summary>The LM's forward and backward.</summary>
    public double Lm => LmForward + LmBackward;

    /// <summary>The hypernetwork's forward and backward.</summary>
    public double Hypernet => HypernetForward + HypernetBackward;

    /// <summary>The whole step.</summary>
    public double Total => Lm + Hypernet;
}

/// <summary>
/// Model FLOPs of one main-stage training step (TRAINING.md §7.2-7.3), for MFU: the matrix
/// products of the dense step as the reference (and PyTorch eager) computes it, counted from
/// the shapes alone. Elementwise work, norms, softmax, the cross-entropy, the lexical loss and
/// AdamW are not counted (they are O(size), not O(size · width)).
/// <list type="bullet">
/// <item>LM forward, T = batch · tokens: per layer 2·T·(d·q + 2·d·kv + q·d + m·d·f) (q and kv
/// the query and key/value widths, m = 3 gated MLP matrices, else 2) and the attention
/// 4·batch·tokens²·q (scores and values over the full square); the head 2·T·d·rows (a masked
/// LM's dense head transform 2·T·d² more).</item>
/// <item>LM backward: the weights are frozen, so only data gradients: the layers 1×, the
/// attention 2× (four products), the head 2× (into the hidden states and into the output
/// rows the hypernetwork predicted).</item>
/// <item>Hypernetwork forward, per row over all P = L (+ 1 language) positions (padding too,
/// as the dense step computes it): the input projection 2·P·D_in·H, its block 4·P·H·I, per
/// layer 8·P·H² + 4·P²·H + 4·P·H·I, then on the pooled row each output head's block 4·H·I and
/// projection 2·H·width, the bias 2·H.</item>
/// <item>Hypernetwork backward: 2× (data and weight gradients), but the input projection 1×:
/// its input, the frozen source rows, needs no gradient.</item>
/// </list>
/// zett's hypernetwork graph skips padding positions, so it does less than this count: its
/// MFU against it is the useful work done per second.
/// </summary>
public static class TrainStepFlops
{
    /// <summary>The FLOPs of a micro-batch of <paramref name="batch"/> sequences of
    /// <paramref name="tokens"/> ids under a vocabulary of <paramref name="rows"/>.</summary>
    /// <exception cref="ArgumentException">A size is not positive, or the hypernetwork
    /// concatenates its last hidden states (not counted).</exception>
    public static TrainStepFlopCount Count(LmArchitecture lm, HypernetConfig hypernet, int rows,
        int batch, int tokens)
    {
        ArgumentNullException.ThrowIfNull(lm);
        ArgumentNullException.ThrowIfNull(hypernet);
        ArgumentOutOfRangeException.ThrowIfLessThan(rows, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(batch, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(tokens, 1);
        (double lmLinear, double lmAttention, double lmHead, double lmTransform) =
            LmParts(lm, rows, batch, tokens);
        (double hnInput, double hnRest) = HypernetParts(hypernet, rows);
        return new TrainStepFlopCount(
            LmForward: lmLinear + lmAttention + lmHead + lmTransform,
            LmBackward: lmLinear + (2 * lmAttention) + (2 * lmHead) + lmTransform,
            HypernetForward: hnInput + hnRest,
            HypernetBackward: hnInput + (2 * hnRest));
    }

    private static (double Linear, double Attention, double Head, double Transform) LmParts(
        LmArchitecture lm, int rows, int batch, int tokens)
    {
        double t = (double)batch * tokens, d = lm.Hidden, f = lm.Intermediate;
        double q = (double)lm.Heads * lm.HeadDim, kv = (double)lm.KvHeads * lm.HeadDim;
        double perToken = (d * q) + (2 * d * kv) + (q * d) + ((lm.GatedMlp ? 3 : 2) * d * f);
        double linear = 2 * t * lm.Layers * perToken;
        double attention = lm.Layers * 4.0 * batch * tokens * (double)tokens * q;
        double head = 2 * t * d * rows;
        double transform = lm.Causal ? 0 : 2 * t * d * d;
        return (linear, attention, head, transform);
    }

    private static (double Input, double Others) HypernetParts(HypernetConfig c, int rows)
    {
        if (c.ConcatLastHiddenState)
        {
            throw new ArgumentException("hn_concat_last_hidden_state is not counted");
        }
        double p = c.SequenceLength, h = c.HiddenSize, i = c.IntermediateSize;
        double input = 2 * p * c.SourceWidth * h;
        double block = 4 * h * i;
        double perRow = (p * block)
            + (c.NumLayers * ((8 * p * h * h) + (4 * p * p * h) + (p * block)));
        bool twoHeads = c.SeparateOutEmbeddings && !c.SingleHead;
        perRow += block + (2 * h * (c.SingleHead ? c.SourceWidth : c.NEmbd));
        if (twoHeads)
        {
            perRow += block + (2 * h * c.NEmbd);
        }
        if (c.PredictBias)
        {
            perRow += 2 * h;
        }
        return (rows * input, rows * perRow);
    }
}
