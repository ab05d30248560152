using ZeTT.Ops;
using ZeTT.Runtime.Hypernetwork;
using ZeTT.Runtime.Models;
using ZeTT.Runtime.Tokenizers;

namespace ZeTT.Runtime.Training;

/// <summary>One main-stage micro-batch under a target tokenizer's vocabulary.</summary>
/// <param name="SurfaceForms">The target vocabulary's surface forms [rows, L] under the hn
/// tokenizer, padded with the pad id (rows past the real vocabulary: zeros, TRAINING.md §4.4).
/// </param>
/// <param name="Rows">Rows of <paramref name="SurfaceForms"/>: the vocabulary the hypernetwork
/// predicts and the softmax runs over (the padded size under a sampled tokenizer).</param>
/// <param name="Ids">Input ids under the target tokenizer [batch · tokens].</param>
/// <param name="Targets">The id the head predicts at each position, or −1 where there is none:
/// causal LMs the next id (the caller applies the reference's mask at the input position,
/// TRAINING.md §7.2), masked LMs the original id at the masked positions
/// (<see cref="MaskedFromTexts"/>).</param>
/// <param name="Batch">Sequences in <paramref name="Ids"/>.</param>
public sealed record MainBatch(int[] SurfaceForms, int Rows, int[] Ids, int[] Targets, int Batch)
{
    /// <summary>The logit added to rows outside the real vocabulary
    /// (NEGATIVE_INF_FILL_VALUE).</summary>
    public const double MaskedLogit = -100_000;

    /// <summary>The <see cref="SeedMix"/> stream of a micro-batch's MLM masking: the masking
    /// is a function of (seed, micro-batch), so a resumed run masks as the uninterrupted one.
    /// </summary>
    public const int MaskingStream = 0x4d;

    /// <summary>[<see cref="Rows"/>]: true for the real vocabulary's rows; the logits of the
    /// others get <see cref="MaskedLogit"/> (TRAINING.md §4.4). Null: every row is real.</summary>
    public bool[]? Mask { get; init; }

    /// <summary>Rows of the special tokens in the target vocabulary (all_special_ids): their
    /// predicted embeddings are replaced by the base model's rows
    /// <see cref="SpecialIdsInReference"/> (§6.1), so they get no gradient. Null: none.</summary>
    public int[]? SpecialIds { get; init; }

    /// <summary>The same special tokens' ids in the base model's vocabulary, one per entry of
    /// <see cref="SpecialIds"/>.</summary>
    public int[]? SpecialIdsInReference { get; init; }

    /// <summary>The batch's language: the row of <c>lang_embeddings</c> the hypernetwork
    /// appends as its last sequence element (TRAINING.md §4.6 <c>lang_index</c>); −1 for a
    /// hypernetwork without language embeddings.</summary>
    public int LangIndex { get; init; } = -1;

    /// <summary>The texts encoded under <paramref name="target"/> (with its special tokens),
    /// truncated to <paramref name="blockSize"/> ids as Hugging Face's truncation does (the
    /// post-processor's tokens kept) and right-padded with <paramref name="padId"/>;
    /// the target at position t is the id at t + 1 where position t is a real token — the
    /// reference's mask at the input position, so the first pad after a text is a target
    /// (TRAINING.md §7.2 [QUIRK]); the last position has none.</summary>
    public static MainBatch FromTexts(IReadOnlyList<string> texts, HfTokenizer target,
        int blockSize, int padId, int[] surfaceForms, int rows)
    {
        (int[] ids, int[] lengths) = Encode(texts, target, blockSize, padId);
        var targets = new int[ids.Length];
        Array.Fill(targets, -1);
        for (int b = 0; b < texts.Count; b++)
        {
            for (int t = 0; t < Math.Min(lengths[b], blockSize - 1); t++)
            {
                targets[(b * blockSize) + t] = ids[(b * blockSize) + t + 1];
            }
        }
        return new MainBatch(surfaceForms, rows, ids, targets, texts.Count);
    }

    /// <summary>A masked-LM batch (TRAINING.md §4.5): the texts encoded, truncated and padded as
    /// <see cref="FromTexts"/>, then masked as Hugging Face's DataCollatorForLanguageModeling
    /// (mlm_probability 0.15): each position whose id is not one of
    /// <paramref name="target"/>'s special ids (padding included) is selected with probability
    /// 0.15; a selected position becomes the mask token with probability 0.8, else a uniform id
    /// of [0, <paramref name="vocabulary"/>) (len(tokenizer): special ids included, as the
    /// collator draws them) with probability 0.5, else stays. Targets are the original ids at
    /// the selected positions. Deterministic for <paramref name="seed"/>.</summary>
    /// <exception cref="ZettException">The tokenizer has no pad or mask token.</exception>
    public static MainBatch MaskedFromTexts(IReadOnlyList<string> texts, HfTokenizer target,
        int blockSize, int[] surfaceForms, int rows, int vocabulary, int seed)
    {
        ArgumentNullException.ThrowIfNull(target);
        ArgumentOutOfRangeException.ThrowIfLessThan(vocabulary, 1);
        int padId = target.PadTokenId
            ?? throw new ZettException($"{target.Source}: a masked LM needs a pad token");
        int maskId = (target.SpecialTokens.Mask is { } m ? target.TokenToId(m) : null)
            ?? throw new ZettException($"{target.Source}: a masked LM needs a mask token");
        var special = target.AllSpecialTokens.Select(t => t.Id).ToHashSet();
        (int[] ids, _) = Encode(texts, target, blockSize, padId);
        var targets = new int[ids.Length];
        Array.Fill(targets, -1);
        var rng = new Random(seed);
        for (int i = 0; i < ids.Length; i++)
        {
            if (special.Contains(ids[i]) || rng.NextDouble() >= 0.15)
            {
                continue;
            }
            targets[i] = ids[i];
            if (rng.NextDouble() < 0.8)
            {
                ids[i] = maskId;
            }
            else if (rng.NextDouble() < 0.5)
            {
                ids[i] = rng.Next(vocabulary);
            }
        }
        return new MainBatch(surfaceForms, rows, ids, targets, texts.Count);
    }

    /// <summary>The special tokens of <paramref name="target"/> (all_special_ids) and the ids
    /// of the same strings in <paramref name="reference"/>: the values of
    /// <see cref="SpecialIds"/> and <see cref="SpecialIdsInReference"/>.</summary>
    /// <exception cref="ZettException">A special token of the target is not in the reference.
    /// </exception>
    public static (int[] SpecialIds, int[] InReference) SpecialRows(HfTokenizer target,
        HfTokenizer reference)
    {
        ArgumentNullException.ThrowIfNull(target);
        ArgumentNullException.ThrowIfNull(reference);
        var ids = new List<int>();
        var inRef = new List<int>();
        foreach ((string token, int id) in target.AllSpecialTokens)
        {
            if (id < 0)
            {
                continue;
            }
            ids.Add(id);
            inRef.Add(reference.TokenToId(token) ?? throw new ZettException(
                $"{reference.Source}: the special token '{token}' of {target.Source} is not in "
                + "the base model's vocabulary"));
        }
        return ([.. ids], [.. inRef]);
    }

    /// <summary>Encodes, truncates to <paramref name="blockSize"/> keeping the
    /// post-processor's leading and trailing tokens (as truncation before post-processing does
    /// in Hugging Face tokenizers), right-pads; returns the ids and each text's length.</summary>
    private static (int[] Ids, int[] Lengths) Encode(IReadOnlyList<string> texts,
        HfTokenizer target, int blockSize, int padId)
    {
        ArgumentNullException.ThrowIfNull(texts);
        ArgumentNullException.ThrowIfNull(target);
        ArgumentOutOfRangeException.ThrowIfLessThan(blockSize, 2);
        var ids = new int[texts.Count * blockSize];
        var lengths = new int[texts.Count];
        Array.Fill(ids, padId);
        IReadOnlyList<TokenizerEncoding> encoded = target.EncodeBatch(texts);
        for (int b = 0; b < texts.Count; b++)
        {
            int[] enc = encoded[b].Ids;
            if (enc.Length > blockSize)
            {
                enc = Truncate(enc, target.Encode(texts[b], addSpecialTokens: false).Ids,
                    blockSize);
            }
            enc.CopyTo(ids.AsSpan(b * blockSize));
            lengths[b] = enc.Length;
        }
        return (ids, lengths);
    }

    /// <summary>The post-processed ids <paramref name="full"/> cut to <paramref name="max"/>:
    /// the tokens it adds before and after <paramref name="plain"/> (the ids without them) are
    /// kept, the text's ids cut in between.</summary>
    private static int[] Truncate(int[] full, int[] plain, int max)
    {
        int before = 0;
        while (before + plain.Length <= full.Length
            && !full.AsSpan(before, plain.Length).SequenceEqual(plain))
        {
            before++;
        }
        if (before + plain.Length > full.Length)
        {
            return full[..max];   // the post-processor changed the ids themselves: cut the end
        }
        int after = full.Length - before - plain.Length;
        int keep = Math.Max(0, max - before - after);
        int[] cut = [.. full[..before], .. plain[..keep], .. full[^after..]];
        return cut.Length > max ? cut[..max] : cut;
    }
}

public sealed partial class HypernetTrainer
{
    /// <summary>
    /// The main-stage loss (TRAINING.md §7.2–7.3) of <paramref name="batch"/> for the frozen
    /// LM <paramref name="lm"/>, causal or masked: the hypernetwork predicts every row of the
    /// batch's vocabulary (padded rows too), the special tokens' rows are replaced by the base
    /// model's (§6.1), the LM's input embeddings (and, untied, its output embeddings) are those
    /// rows, the logits of rows outside <see cref="MainBatch.Mask"/> get −100000, and
    /// L = mean CE over the targets + <paramref name="lexicalWeight"/> · L_lex. A masked LM's
    /// own output bias is replaced (the reference zeroes it): by the hypernetwork's predicted
    /// bias when it predicts one (learnable_bias, as the reference's XLM-R run), else by zero;
    /// its learned positions are Hugging Face's ids from the input ids (pads at padding_idx,
    /// as the reference's Flax RoBERTa computes them; no attention mask, pads are attended —
    /// [QUIRK] §7.2). The gradients flow back through the LM into the predicted rows (not the
    /// replaced ones) and the bias, and through the hypernetwork; they are added to
    /// <see cref="Gradients"/> times <paramref name="gradientWeight"/>.
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
        CheckVocabulary(batch);
        SyncCompute();
        using HypernetPass pass = _graph.Forward(batch.SurfaceForms, rows, batch.LangIndex);
        Tensor eIn = pass.EmbeddingsIn;
        Tensor eOut = pass.EmbeddingsOut ?? eIn;
        ReplaceSpecialRows(batch, pass);
        bool predictedBias = !lm.Architecture.Causal && pass.Bias is not null;
        using Tensor? bias = HeadBias(batch, predictedBias ? pass.Bias : null);
        long tokens = batch.Ids.Length;
        using Tensor idT = Upload(batch.Ids);
        using Tensor x = _ops.Empty(_dt, [tokens, n], "embedding rows");
        _ops.EmbeddingForward(eIn, idT, x);
        using var tape = new ForwardTape();
        using var headTape = new HeadTape();
        int[]? positions = lm.Architecture.PositionOffset > 0
            ? PaddedPositionRows(batch.Ids, batch.Batch, lm.Architecture.PositionOffset - 1)
            : null;
        using Tensor hidden = lm.ForwardFromEmbeddings(x, batch.Batch, tape: tape,
            learnedPositionRows: positions);
        using Tensor head = lm.HeadInput(hidden, headTape);
        using Tensor lse = _ops.Empty(_dt, [tokens], "log-sum-exp");
        using Tensor losses = lm.TokenLosses(head, batch.Targets, eOut, lse, bias);
        double lmLoss = HostDoubles(losses).Sum() / count;

        var dl = new double[tokens];
        for (int i = 0; i < dl.Length; i++)
        {
            dl[i] = batch.Targets[i] >= 0 ? gradientWeight / count : 0;
        }
        using Tensor dLosses = UploadDoubles(dl, tokens);
        using Tensor dEOut = _ops.Zeros(_dt, [rows, n], "d embeddings_out");
        using Tensor? dBias = predictedBias ? _ops.Zeros(_dt, [rows], "d bias") : null;
        using Tensor dHead = lm.TokenLossesBackward(head, batch.Targets, lse, dLosses, dEOut, eOut,
            bias, dBias);
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
            lexical = LexicalLossToInit
                ? LexicalLossToInitial(pass, batch, lexicalWeight * gradientWeight, dEIn,
                    pass.EmbeddingsOut is null ? null : dEOut)
                : LexicalLoss(pass, batch, lexicalWeight * gradientWeight, dEIn,
                    pass.EmbeddingsOut is null ? null : dEOut);
        }
        // The replaced rows are constants: nothing flows back into their predictions.
        foreach (int id in batch.SpecialIds ?? [])
        {
            _ops.Fill(dEIn.Slice(0, id, 1), 0);
            _ops.Fill(dEOut.Slice(0, id, 1), 0);
        }
        _graph.Backward(pass, dEIn, pass.EmbeddingsOut is null ? null : dEOut,
            dBias?.View(rows, 1), Gradients);
        return (lmLoss + (lexicalWeight * lexical), lmLoss, lexical);
    }

    /// <summary>Hugging Face's RoBERTa position ids (create_position_ids_from_input_ids): per
    /// sequence, a running count of the non-pad ids plus padding_idx at non-pad ids and
    /// padding_idx itself at pad ids — the rows of the learned position table.</summary>
    internal static int[] PaddedPositionRows(int[] ids, int batch, int padId)
    {
        int length = ids.Length / batch;
        var rows = new int[ids.Length];
        for (int b = 0; b < batch; b++)
        {
            int seen = 0;
            for (int t = 0; t < length; t++)
            {
                int i = (b * length) + t;
                seen += ids[i] != padId ? 1 : 0;
                rows[i] = ids[i] != padId ? seen + padId : padId;
            }
        }
        return rows;
    }

    private void CheckVocabulary(MainBatch batch)
    {
        int rows = batch.Rows;
        if (batch.SurfaceForms.Length != (long)rows * Config.SurfaceMaxLen)
        {
            throw new ArgumentException($"{batch.SurfaceForms.Length} surface-form ids for {rows} "
                + $"rows of {Config.SurfaceMaxLen}");
        }
        if (batch.Mask is { } mask && mask.Length != rows)
        {
            throw new ArgumentException($"the mask has {mask.Length} entries for {rows} rows");
        }
        int[] special = batch.SpecialIds ?? [], inRef = batch.SpecialIdsInReference ?? [];
        if (special.Length != inRef.Length)
        {
            throw new ArgumentException($"{special.Length} special ids but {inRef.Length} ids in "
                + "the reference");
        }
        for (int k = 0; k < special.Length; k++)
        {
            if ((uint)special[k] >= (uint)rows || (uint)inRef[k] >= (uint)Config.OriginalVocabSize)
            {
                throw new ArgumentException($"special token {k}: row {special[k]} of {rows}, "
                    + $"reference id {inRef[k]} of {Config.OriginalVocabSize}");
            }
        }
        foreach (int t in batch.Targets)
        {
            if (t >= rows)
            {
                throw new ArgumentException($"target {t} is outside the {rows} rows");
            }
        }
    }

    /// <summary>§6.1: e_in[special] = E_in[special in reference] (and e_out from E_out when
    /// the hypernetwork predicts output rows), in the pass's own outputs: the backward reads
    /// the rescalers' inputs, not these.</summary>
    private void ReplaceSpecialRows(MainBatch batch, HypernetPass pass)
    {
        int[] special = batch.SpecialIds ?? [], inRef = batch.SpecialIdsInReference ?? [];
        int n = Config.NEmbd;
        for (int k = 0; k < special.Length; k++)
        {
            Tensor source = _source.Slice(0, inRef[k], 1);
            _ops.Copy(source.Slice(1, 0, n), pass.EmbeddingsIn.Slice(0, special[k], 1));
            if (pass.EmbeddingsOut is not null)
            {
                _ops.Copy(source.Slice(1, n, n), pass.EmbeddingsOut.Slice(0, special[k], 1));
            }
        }
    }

    /// <summary>The logit bias [rows]: the predicted bias (or 0) plus −100000 on the masked
    /// rows; null when both are absent.</summary>
    private Tensor? HeadBias(MainBatch batch, Tensor? predicted)
    {
        if (batch.Mask is null && predicted is null)
        {
            return null;
        }
        int rows = batch.Rows;
        var add = new double[rows];
        for (int i = 0; i < rows; i++)
        {
            add[i] = batch.Mask is { } m && !m[i] ? MainBatch.MaskedLogit : 0;
        }
        Tensor bias = UploadDoubles(add, rows);
        if (predicted is not null)
        {
            _ops.AddScaled(predicted.View(rows), 1f, bias);
        }
        return bias;
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
