using ZeTT.Ops;
using ZeTT.Runtime.Hypernetwork;
using ZeTT.Runtime.Models;
using ZeTT.Runtime.Tokenizers;

namespace ZeTT.Runtime.Training;

/// <summary>One main-stage micro-batch under a target tokenizer's vocabulary.</summary>
/// <param name="SurfaceForms">The target vocabulary's surface forms [rows, L] under the hn
/// tokenizer, padded with the pad id.</param>
/// <param name="Rows">The target vocabulary's size.</param>
/// <param name="Ids">Input ids under the target tokenizer [batch · tokens].</param>
/// <param name="Targets">The next id at each position, or −1 where it is not a target (the
/// caller applies the reference's mask at the input position, TRAINING.md §7.2).</param>
/// <param name="Batch">Sequences in <paramref name="Ids"/>.</param>
public sealed record MainBatch(int[] SurfaceForms, int Rows, int[] Ids, int[] Targets, int Batch)
{
    /// <summary>The texts encoded under <paramref name="target"/> (with its special tokens),
    /// cut to <paramref name="blockSize"/> ids and right-padded with <paramref name="padId"/>;
    /// the target at position t is the id at t + 1 where position t is a real token — the
    /// reference's mask at the input position, so the first pad after a text is a target
    /// (TRAINING.md §7.2 [QUIRK]); the last position has none.</summary>
    public static MainBatch FromTexts(IReadOnlyList<string> texts, HfTokenizer target,
        int blockSize, int padId, int[] surfaceForms, int rows)
    {
        ArgumentNullException.ThrowIfNull(texts);
        ArgumentNullException.ThrowIfNull(target);
        ArgumentOutOfRangeException.ThrowIfLessThan(blockSize, 2);
        var ids = new int[texts.Count * blockSize];
        var targets = new int[ids.Length];
        Array.Fill(ids, padId);
        Array.Fill(targets, -1);
        for (int b = 0; b < texts.Count; b++)
        {
            int[] enc = target.Encode(texts[b]).Ids;
            int len = Math.Min(enc.Length, blockSize);
            enc.AsSpan(0, len).CopyTo(ids.AsSpan(b * blockSize));
            for (int t = 0; t < Math.Min(len, blockSize - 1); t++)
            {
                targets[(b * blockSize) + t] = ids[(b * blockSize) + t + 1];
            }
        }
        return new MainBatch(surfaceForms, rows, ids, targets, texts.Count);
    }
}

public sealed partial class HypernetTrainer
{
    /// <summary>
    /// The main-stage loss (TRAINING.md §7.2–7.3) of <paramref name="batch"/> for the frozen
    /// causal LM <paramref name="lm"/>: its input embeddings (and, untied, its output
    /// embeddings) replaced by the hypernetwork's predictions for the target vocabulary,
    /// L = mean CE over the targets + <paramref name="lexicalWeight"/> · L_lex. The gradients
    /// flow back through the LM into the predicted embeddings and through the hypernetwork;
    /// they are added to <see cref="Gradients"/> times <paramref name="gradientWeight"/>.
    /// Not yet here: the special-token override (§6.1), the padded vocabulary's logit mask
    /// (the vocabulary is used at its own size), masked LMs and the predicted bias.
    /// </summary>
    /// <returns>The total loss, the LM loss and the lexical loss.</returns>
    public (double Loss, double LmLoss, double LexicalLoss) MainLossAndGradients(
        LanguageModel lm, MainBatch batch, double lexicalWeight, double gradientWeight = 1)
    {
        ArgumentNullException.ThrowIfNull(lm);
        ArgumentNullException.ThrowIfNull(batch);
        if (lm.Architecture.Hidden != Config.NEmbd)
        {
            throw new ArgumentException($"the model's hidden size {lm.Architecture.Hidden} is "
                + $"not the hypernetwork's n_embd {Config.NEmbd}");
        }
        int rows = batch.Rows, n = Config.NEmbd, count = batch.Targets.Count(t => t >= 0);
        if (count == 0)
        {
            throw new ArgumentException("the batch has no targets");
        }
        using HypernetPass pass = _graph.Forward(batch.SurfaceForms, rows, -1);
        Tensor eIn = pass.EmbeddingsIn;
        Tensor eOut = pass.EmbeddingsOut ?? eIn;
        long tokens = batch.Ids.Length;
        using Tensor idT = Upload(batch.Ids);
        using Tensor x = _ops.Empty(_dt, [tokens, n], "embedding rows");
        _ops.EmbeddingForward(eIn, idT, x);
        using var tape = new ForwardTape();
        using var headTape = new HeadTape();
        using Tensor hidden = lm.ForwardFromEmbeddings(x, batch.Batch, tape: tape);
        using Tensor head = lm.HeadInput(hidden, headTape);
        using Tensor lse = _ops.Empty(_dt, [tokens], "log-sum-exp");
        using Tensor losses = lm.TokenLosses(head, batch.Targets, eOut, lse);
        double lmLoss = HostDoubles(losses).Sum() / count;

        var dl = new double[tokens];
        for (int i = 0; i < dl.Length; i++)
        {
            dl[i] = batch.Targets[i] >= 0 ? gradientWeight / count : 0;
        }
        using Tensor dLosses = UploadDoubles(dl, tokens);
        using Tensor dEOut = _ops.Zeros(_dt, [rows, n], "d embeddings_out");
        using Tensor dHead = lm.TokenLossesBackward(head, batch.Targets, lse, dLosses, dEOut, eOut);
        using Tensor dHidden = lm.HeadInputBackward(headTape, dHead);
        using Tensor dX = lm.Backward(tape, dHidden);
        using Tensor dEIn = _ops.Zeros(_dt, [rows, n], "d embeddings_in");
        _ops.EmbeddingBackward(dX, idT, dEIn);
        if (pass.EmbeddingsOut is null)
        {
            _ops.AddScaled(dEOut, 1f, dEIn);
        }

        double lexical = 0;
        if (lexicalWeight != 0)
        {
            lexical = LexicalLoss(pass, batch, lexicalWeight * gradientWeight, dEIn,
                pass.EmbeddingsOut is null ? null : dEOut);
        }
        _graph.Backward(pass, dEIn, pass.EmbeddingsOut is null ? null : dEOut, null, Gradients);
        return (lmLoss + (lexicalWeight * lexical), lmLoss, lexical);
    }

    /// <summary>L_lex of §7.3 on the host (float64): for each row whose surface form is one
    /// hn id (the rest pad), ‖e − E[id]‖² summed over those rows, divided by their count
    /// (+1e-8) and by the mean L2 norm of E[first id] over all rows; the two heads averaged
    /// (tied: the input head only). A first id past the source vocabulary is clamped, as JAX
    /// indexing does. Adds weight · ∂L_lex/∂e to the gradients.</summary>
    private double LexicalLoss(HypernetPass pass, MainBatch batch, double weight, Tensor dIn,
        Tensor? dOut)
    {
        int rows = batch.Rows, l = batch.SurfaceForms.Length / rows, n = Config.NEmbd;
        int v0 = Config.OriginalVocabSize, pad = Config.PadTokenId;
        var overlap = new bool[rows];
        var first = new int[rows];
        int overlaps = 0;
        for (int i = 0; i < rows; i++)
        {
            first[i] = Math.Clamp(batch.SurfaceForms[i * l], 0, v0 - 1);
            bool one = true;
            for (int j = 1; j < l; j++)
            {
                one &= batch.SurfaceForms[(i * l) + j] == pad;
            }
            overlap[i] = one;
            overlaps += one ? 1 : 0;
        }
        double[] source = HostDoubles(_source);
        int width = Config.SourceWidth;
        int heads = dOut is null ? 1 : 2;
        double total = 0;
        for (int h = 0; h < heads; h++)
        {
            double[] e = HostDoubles(h == 0 ? pass.EmbeddingsIn : pass.EmbeddingsOut!);
            double norms = 0;
            for (int i = 0; i < rows; i++)
            {
                double sq = 0;
                for (int k = 0; k < n; k++)
                {
                    double t = source[(first[i] * width) + (h * n) + k];
                    sq += t * t;
                }
                norms += Math.Sqrt(sq);
            }
            double scale = 1 / ((overlaps + 1e-8) * (norms / rows));
            var grad = new double[rows * n];
            double sum = 0;
            for (int i = 0; i < rows; i++)
            {
                if (!overlap[i])
                {
                    continue;
                }
                for (int k = 0; k < n; k++)
                {
                    double d = e[(i * n) + k] - source[(first[i] * width) + (h * n) + k];
                    sum += d * d;
                    grad[(i * n) + k] = 2 * d * scale * weight / heads;
                }
            }
            total += sum * scale / heads;
            using Tensor g = UploadDoubles(grad, rows, n);
            _ops.AddScaled(g, 1f, h == 0 ? dIn : dOut!);
        }
        return total;
    }

    private double[] HostDoubles(Tensor t)
    {
        using Tensor host = Tensor.Host(t.DType, t.Shape);
        _ops.Download(t, host);
        return host.ToDoubles();
    }

    private Tensor UploadDoubles(double[] values, params long[] shape)
    {
        Tensor host = _dt == DType.F64 ? Tensor.FromDoubles(values, shape)
            : Tensor.FromFloats(Array.ConvertAll(values, v => (float)v), shape);
        Tensor dev = _ops.Upload(host);
        if (!ReferenceEquals(dev, host))
        {
            host.Dispose();
        }
        return dev;
    }
}
