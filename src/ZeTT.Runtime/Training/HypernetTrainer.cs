using System.Diagnostics;
using ZeTT.Ops;
using ZeTT.Runtime.Hypernetwork;
using ZeTT.Runtime.Models;
using ZeTT.Runtime.Tensors;

namespace ZeTT.Runtime.Training;

/// <summary>Optimisation settings (the reference's values by default, TRAINING.md §2, §7.5).
/// </summary>
/// <param name="Schedule">The learning-rate schedule.</param>
/// <param name="IdentityBatch">Tokens per identity-stage micro-batch (16 384; at most the
/// vocabulary).</param>
/// <param name="Accumulation">Micro-batches per update (gradient_accumulation_steps).</param>
/// <param name="MaxGradNorm">Global-norm clip of the hypernetwork's gradients (0.1 in the
/// reference, which clips over the frozen LM's gradients too; here the hypernetwork's own).
/// </param>
/// <param name="WeightDecay">AdamW decay outside the mask (0.01).</param>
/// <param name="Beta1">AdamW β1 (0.9).</param>
/// <param name="Beta2">AdamW β2 (0.95).</param>
/// <param name="Eps">AdamW ε (1e-8).</param>
/// <param name="Seed">Seed of the batches: batch k of a run depends on (seed, k) only, so a
/// resumed run draws the same batches.</param>
public sealed record TrainSettings(LearningRateSchedule Schedule, int IdentityBatch = 16384,
    int Accumulation = 1, double MaxGradNorm = 0.1, double WeightDecay = 0.01,
    double Beta1 = 0.9, double Beta2 = 0.95, double Eps = 1e-8, int Seed = 0);

/// <summary>What one update did.</summary>
/// <param name="Step">The update's index (from 0).</param>
/// <param name="Loss">Mean loss over its micro-batches.</param>
/// <param name="GradNorm">Global norm of the averaged gradients before clipping.</param>
/// <param name="LearningRate">Learning rate applied.</param>
/// <param name="Tokens">Target tokens predicted.</param>
/// <param name="SampleSeconds">Time drawing batches.</param>
/// <param name="HypernetSeconds">Time in the hypernetwork forward and backward.</param>
/// <param name="LmSeconds">Time in the language model (0 in the identity stage).</param>
/// <param name="OptimizerSeconds">Time clipping and updating.</param>
/// <param name="LmLoss">Main stage: the LM's cross-entropy part of the loss (NaN in the
/// identity stage).</param>
/// <param name="LexicalLoss">Main stage: the lexical loss, unweighted (NaN in the identity
/// stage).</param>
/// <param name="VocabularyRows">Main stage: target-vocabulary rows the hypernetwork predicted
/// per micro-batch (their mean).</param>
public sealed record StepReport(long Step, double Loss, double GradNorm, double LearningRate,
    long Tokens, double SampleSeconds, double HypernetSeconds, double LmSeconds,
    double OptimizerSeconds, double LmLoss = double.NaN, double LexicalLoss = double.NaN,
    double VocabularyRows = 0);

/// <summary>
/// Trains a hypernetwork on an <see cref="IOpBackend"/> (TRAINING.md §7): fp32 master
/// parameters with AdamW moments, the reference's decay mask and trainability (in_scaler and
/// scaler frozen; out_scaler trained, a quirk kept), global-norm clipping, gradient
/// accumulation. The identity stage (§7.1) is implemented: MSE between the predictions for
/// single-id surface forms and the model's own embeddings.
/// </summary>
public sealed partial class HypernetTrainer : IDisposable
{
    private readonly IOpBackend _ops;
    private readonly Tensor _source;   // E [V0, D_in], raw (the targets)
    private readonly HypernetGraph _graph;
    private readonly DType _dt;
    private readonly HypernetParameters? _compute; // bf16 compute copies (null in fp32)
    private bool _computeStale;

    /// <summary>Sets up training from initial <paramref name="weights"/> (by the PyTorch port's
    /// names) and the source embeddings <paramref name="e"/> [≥V0, D_in].</summary>
    /// <param name="config">The hypernetwork's config.</param>
    /// <param name="weights">Initial parameters.</param>
    /// <param name="e">Source embeddings.</param>
    /// <param name="backend">Where to compute.</param>
    /// <param name="settings">Optimisation settings.</param>
    /// <param name="dtype">F32, or F64 (the finite-difference test path).</param>
    /// <param name="precision">The hypernetwork's compute precision: fp32, or bf16 compute
    /// copies of the fp32 masters (TRAINING.md §7.7; F32 masters only).</param>
    public HypernetTrainer(HypernetConfig config, IReadOnlyDictionary<string, HostTensor> weights,
        HostTensor e, IOpBackend backend, TrainSettings settings, DType dtype = DType.F32,
        HypernetPrecision precision = HypernetPrecision.Float32)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentNullException.ThrowIfNull(e);
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentNullException.ThrowIfNull(settings);
        Config = config;
        Settings = settings;
        _ops = backend;
        _dt = dtype;
        Precision = precision;
        if (precision == HypernetPrecision.BFloat16 && dtype != DType.F32)
        {
            throw new ArgumentException($"bf16 training keeps F32 masters, not {dtype}",
                nameof(dtype));
        }
        HypernetWeights bound = HypernetWeights.FromTensors(config, weights, "hypernetwork");
        Parameters = HypernetParameters.FromWeights(bound, backend, dtype);
        try
        {
            if (precision == HypernetPrecision.BFloat16)
            {
                // GEMM matrices stored bf16 (read in place by the matrix products); the other
                // tensors F32 holding bf16 values, refreshed from the masters before each update.
                _compute = HypernetParameters.FromWeights(bound, backend, DType.F32, DType.BF16,
                    consume: false, fuseAttention: false);
                RoundToCompute(Parameters, _compute, backend);
            }
            using Tensor host = Tensor.FromFloats(e.Data, e.Shape[0], e.Shape[1]);
            Tensor up = backend.Upload(host);
            _source = backend.Empty(dtype, [config.OriginalVocabSize, config.SourceWidth], "E");
            backend.Copy(up.Slice(0, 0, config.OriginalVocabSize), _source);
            if (!ReferenceEquals(up, host))
            {
                up.Dispose();
            }
            _graph = new HypernetGraph(config, _compute ?? Parameters, host);
            // One flat buffer each (TRAINING item 7): a clear is one fill, and a data-parallel
            // all-reduce of the gradients one call on Gradients.Flat.
            Gradients = Parameters.ZerosLike(IsTrainable, flat: true);
            M = Parameters.ZerosLike(IsTrainable, flat: true);
            V = Parameters.ZerosLike(IsTrainable, flat: true);
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>The hypernetwork's config.</summary>
    public HypernetConfig Config { get; }

    /// <summary>The optimisation settings (replaceable between updates: a time-boxed run lays
    /// its schedule out once it has measured a step).</summary>
    public TrainSettings Settings { get; set; }

    /// <summary>The hypernetwork's compute precision (the masters are F32 either way).</summary>
    public HypernetPrecision Precision { get; }

    /// <summary>What the hypernetwork's forward and backward read: the masters in fp32; in
    /// bf16 their round-to-nearest-even copies (GEMM matrices stored BF16, the rest F32 tensors
    /// holding bf16 values), refreshed from the masters before each micro-batch after an
    /// update.</summary>
    public HypernetParameters ComputeParameters
    {
        get
        {
            SyncCompute();
            return _compute ?? Parameters;
        }
    }

    /// <summary>The parameters (fp32 masters).</summary>
    public HypernetParameters Parameters { get; }

    /// <summary>Gradients of the trainable parameters (accumulated over micro-batches).</summary>
    public HypernetParameters Gradients { get; } = null!;

    /// <summary>AdamW first moments.</summary>
    public HypernetParameters M { get; } = null!;

    /// <summary>AdamW second moments.</summary>
    public HypernetParameters V { get; } = null!;

    /// <summary>The language row of the identity stage: 0 (the reference's
    /// <c>langs[0]</c>, "all" in a mixed run) when the hypernetwork embeds a language id, else
    /// −1.</summary>
    public int IdentityLangIndex => Config.EmbedLangId ? 0 : -1;

    /// <summary>Updates done so far (the next update's index).</summary>
    public long Step { get; set; }

    /// <summary>Data parallelism: the collectives of this rank (null: one process). With R
    /// ranks and <see cref="TrainSettings.Accumulation"/> k, update s uses the global
    /// micro-batches s·k·R … s·k·R + k·R − 1 and this rank computes every R-th of them
    /// (rank, rank + R, …): together exactly the micro-batches of one process accumulating
    /// k·R. The gradients (and the backbone's) are summed over the ranks before the update,
    /// which then divides by k·R; the reported losses are the means over all k·R.</summary>
    public IGradientReducer? Reducer { get; set; }

    /// <summary>Micro-batches per update over all ranks (k·R).</summary>
    public int GlobalMicroBatches => Settings.Accumulation * (Reducer?.WorldSize ?? 1);

    /// <summary>The global index of this rank's micro-batch <paramref name="micro"/> (0 … k − 1)
    /// of update <paramref name="step"/>: (step·k + micro)·R + rank, so rank r's micro-batches
    /// are r, r + R, r + 2R, … in the order of one process's stream.</summary>
    public long MicroBatchIndex(long step, int micro)
    {
        int r = Reducer?.WorldSize ?? 1;
        return (((step * Settings.Accumulation) + micro) * r) + (Reducer?.Rank ?? 0);
    }

    /// <summary>Per-micro-batch numbers in the slots of their position within the update
    /// (micro·R + rank), summed over the ranks (the other ranks' slots are zeros, so the sum is
    /// exact), so each rank reads all k·R values in one process's order.</summary>
    private double[] Gather(double[] slots)
    {
        Reducer?.Sum(slots);
        return slots;
    }

    /// <summary>Sums the gradients over the ranks (nothing with one process).</summary>
    private void ReduceGradients(bool backbone)
    {
        if (Reducer is null)
        {
            return;
        }
        Reducer.Sum(Gradients.Flat!);
        if (backbone && BackboneGradients is not null)
        {
            Reducer.Sum(BackboneGradients.Flat!);
        }
    }

    /// <summary>Whether the reference trains parameter <paramref name="name"/>: all but the
    /// in_scaler and the scaler (get_labels, train.py:607-622).</summary>
    public static bool IsTrainable(string name) =>
        !name.StartsWith("in_scaler.", StringComparison.Ordinal)
        && !name.StartsWith("scaler.", StringComparison.Ordinal);

    /// <summary>Whether AdamW decays parameter <paramref name="name"/>: not biases, not
    /// LayerNorm parameters (decay_mask_fn); the rescalers' w and b are decayed.</summary>
    public static bool IsDecayed(string name) =>
        !name.EndsWith(".bias", StringComparison.Ordinal)
        && !name.Contains("LayerNorm", StringComparison.Ordinal)
        && !name.Contains(".ln.", StringComparison.Ordinal);

    /// <summary>The token ids of identity micro-batch <paramref name="index"/>: a sample
    /// without replacement from the vocabulary, from (seed, index) alone.</summary>
    public int[] IdentityIds(long index)
    {
        int v = Config.OriginalVocabSize, b = Math.Min(Settings.IdentityBatch, v);
        var rng = new Random(SeedMix.Of(Settings.Seed, index, 0x1d));
        int[] all = Enumerable.Range(0, v).ToArray();
        for (int k = 0; k < b; k++)
        {
            int j = k + rng.Next(v - k);
            (all[k], all[j]) = (all[j], all[k]);
        }
        return all[..b];
    }

    /// <summary>The identity loss (TRAINING.md §7.1) of <paramref name="ids"/>, its gradients
    /// added to <see cref="Gradients"/> times <paramref name="gradientWeight"/>:
    /// L = mean over heads of mean_i ‖pred_i − E[id_i]‖².</summary>
    public double IdentityLossAndGradients(int[] ids, double gradientWeight = 1)
    {
        ArgumentNullException.ThrowIfNull(ids);
        int b = ids.Length, n = Config.NEmbd;
        SyncCompute();
        using HypernetPass pass = _graph.Forward(ids, b, IdentityLangIndex, surfaceLength: 1);
        using Tensor idT = Upload(ids);
        using Tensor targets = _ops.Empty(_dt, [b, Config.SourceWidth], "targets");
        _ops.EmbeddingForward(_source, idT, targets);
        int heads = pass.EmbeddingsOut is null ? 1 : 2;
        using Tensor dIn = _ops.Empty(_dt, [b, n], "d embeddings_in");
        double loss = Difference(pass.EmbeddingsIn, targets.Slice(1, 0, n), dIn) / b;
        Tensor? dOut = null;
        try
        {
            if (pass.EmbeddingsOut is not null)
            {
                dOut = _ops.Empty(_dt, [b, n], "d embeddings_out");
                loss += Difference(pass.EmbeddingsOut, targets.Slice(1, n, n), dOut) / b;
                _ops.Scale(dOut, (float)(2.0 * gradientWeight / (b * heads)), dOut);
            }
            _ops.Scale(dIn, (float)(2.0 * gradientWeight / (b * heads)), dIn);
            _graph.Backward(pass, dIn, dOut, null, Gradients);
        }
        finally
        {
            dOut?.Dispose();
        }
        return loss / heads;
    }

    /// <summary>One identity-stage update: <see cref="TrainSettings.Accumulation"/>
    /// micro-batches, then clip and AdamW.</summary>
    /// <exception cref="ZettException">The loss is not finite (the message names the step).
    /// </exception>
    public StepReport IdentityStep()
    {
        var clock = Stopwatch.StartNew();
        double sample = 0, hn = 0;
        int k = Settings.Accumulation, all = GlobalMicroBatches, r = all / k;
        int rank = Reducer?.Rank ?? 0;
        // Slots [0, all): losses; [all, 2·all): tokens.
        var slots = new double[2 * all];
        Gradients.Clear();
        for (int micro = 0; micro < k; micro++)
        {
            double t0 = clock.Elapsed.TotalSeconds;
            int[] ids = IdentityIds(MicroBatchIndex(Step, micro));
            double t1 = clock.Elapsed.TotalSeconds;
            int slot = (micro * r) + rank;
            slots[slot] = IdentityLossAndGradients(ids);
            slots[all + slot] = ids.Length;
            sample += t1 - t0;
            hn += clock.Elapsed.TotalSeconds - t1;
        }
        double t2 = clock.Elapsed.TotalSeconds;
        ReduceGradients(backbone: false);
        Gather(slots);
        double loss = 0;
        long tokens = 0;
        for (int m = 0; m < all; m++)
        {
            loss += slots[m] / all;
            tokens += (long)slots[all + m];
        }
        if (!double.IsFinite(loss))
        {
            throw new ZettException($"step {Step}: the loss is {loss}; stopping (the last "
                + "checkpoint is kept)");
        }
        (double norm, double lr) = Update(all);
        return new StepReport(Step - 1, loss, norm, lr, tokens, sample, hn, 0,
            clock.Elapsed.TotalSeconds - t2);
    }

    /// <summary>One main-stage update (TRAINING.md §7.2–7.3): <see
    /// cref="TrainSettings.Accumulation"/> micro-batches from <paramref name="batchFor"/>
    /// (given the micro-batch's running index), each through
    /// <see cref="MainLossAndGradients"/>, then clip and AdamW. The time split: drawing the
    /// batch (text, tokenizer, encoding) is sampling; the hypernetwork's forward and backward
    /// are measured inside its graph; the rest of the loss (the LM's forward and backward, the
    /// head, the lexical loss) is the LM's.</summary>
    /// <exception cref="ZettException">The loss is not finite (the message names the step).
    /// </exception>
    public StepReport MainStep(LanguageModel lm, Func<long, MainBatch> batchFor,
        double lexicalWeight)
    {
        ArgumentNullException.ThrowIfNull(batchFor);
        var clock = Stopwatch.StartNew();
        double sample = 0, hn = 0, lmTime = 0;
        int k = Settings.Accumulation, all = GlobalMicroBatches, r = all / k;
        int rank = Reducer?.Rank ?? 0;
        // Per micro-batch, in its slot: loss, LM loss, lexical loss, rows, tokens.
        var slots = new double[5 * all];
        Gradients.Clear();
        BackboneGradients?.Clear();
        for (int micro = 0; micro < k; micro++)
        {
            double t0 = clock.Elapsed.TotalSeconds;
            MainBatch batch = batchFor(MicroBatchIndex(Step, micro));
            double t1 = clock.Elapsed.TotalSeconds, h0 = _graph.Elapsed.TotalSeconds;
            (double l, double lmPart, double lexPart) = MainLossAndGradients(lm, batch,
                lexicalWeight);
            double dh = _graph.Elapsed.TotalSeconds - h0;
            int slot = (micro * r) + rank;
            slots[slot] = l;
            slots[all + slot] = lmPart;
            slots[(2 * all) + slot] = lexPart;
            slots[(3 * all) + slot] = batch.Rows;
            slots[(4 * all) + slot] = batch.Ids.Length;
            sample += t1 - t0;
            hn += dh;
            lmTime += clock.Elapsed.TotalSeconds - t1 - dh;
        }
        double t2 = clock.Elapsed.TotalSeconds;
        ReduceGradients(backbone: true);
        Gather(slots);
        double loss = 0, lmLoss = 0, lexical = 0, rows = 0;
        long tokens = 0;
        // The order and the divisions of one process accumulating k·R micro-batches.
        for (int m = 0; m < all; m++)
        {
            loss += slots[m] / all;
            lmLoss += slots[all + m] / all;
            lexical += slots[(2 * all) + m] / all;
            rows += slots[(3 * all) + m] / all;
            tokens += (long)slots[(4 * all) + m];
        }
        if (!double.IsFinite(loss))
        {
            throw new ZettException($"step {Step}: the loss is {loss}; stopping (the last "
                + "checkpoint is kept)");
        }
        (double norm, double lr) = Update(all, backbone: true);
        return new StepReport(Step - 1, loss, norm, lr, tokens, sample, hn, lmTime,
            clock.Elapsed.TotalSeconds - t2, lmLoss, lexical, rows);
    }

    /// <summary>Clips the gradients summed over <paramref name="microBatches"/> micro-batches
    /// (their mean is what is clipped and applied, as optax.MultiSteps does) and applies one
    /// AdamW update; returns the mean gradient's global norm before clipping and the learning
    /// rate. With <paramref name="backbone"/> and an attached backbone
    /// (<see cref="AttachBackbone"/>) its gradients join the global norm (the reference clips
    /// over the whole parameter tree) and it takes the same AdamW update; otherwise (the
    /// identity stage, where it gets no gradient) it is left as it is.</summary>
    public (double GradNorm, double LearningRate) Update(int microBatches, bool backbone = false)
    {
        double sq = 0;
        foreach (string name in Gradients.Names)
        {
            sq += SumOfSquares(Gradients[name]);
        }
        bool withBackbone = backbone && BackboneGradients is not null;
        if (withBackbone)
        {
            foreach (string name in BackboneGradients!.Names)
            {
                sq += SumOfSquares(BackboneGradients[name]);
            }
        }
        double norm = Math.Sqrt(sq) / microBatches;
        if (!double.IsFinite(norm))
        {
            throw new ZettException($"step {Step}: the gradient norm is {norm}; stopping (the "
                + "last checkpoint is kept)");
        }
        // optax.clip_by_global_norm: g · max / ‖g‖ when ‖g‖ exceeds max.
        double clip = norm < Settings.MaxGradNorm ? 1 : Settings.MaxGradNorm / norm;
        double lr = Settings.Schedule.At(Step);
        foreach (string name in Gradients.Names)
        {
            var step = new AdamWStep(lr, Settings.Beta1, Settings.Beta2, Settings.Eps,
                IsDecayed(name) ? Settings.WeightDecay : 0, Step + 1, clip / microBatches);
            _ops.AdamW(Parameters[name], Gradients[name], M[name], V[name], step);
        }
        if (withBackbone)
        {
            foreach (string name in BackboneGradients!.Names)
            {
                var step = new AdamWStep(lr, Settings.Beta1, Settings.Beta2, Settings.Eps,
                    _backboneDecayed.Contains(name) ? Settings.WeightDecay : 0, Step + 1,
                    clip / microBatches);
                _ops.AdamW(Backbone![name], BackboneGradients[name], BackboneM![name],
                    BackboneV![name], step);
            }
        }
        _computeStale = _compute is not null;
        Step++;
        return (norm, lr);
    }

    /// <summary>Marks the bf16 compute copies out of date (after the masters were written
    /// other than by <see cref="Update"/>: a restored checkpoint).</summary>
    public void MastersChanged() => _computeStale = _compute is not null;

    /// <summary>Rounds the masters into the compute copies when an update changed them.
    /// </summary>
    private void SyncCompute()
    {
        if (_computeStale)
        {
            RoundToCompute(Parameters, _compute!, _ops);
            _computeStale = false;
        }
    }

    /// <summary>compute[name] = bf16(masters[name]) (round to nearest even; a F32 compute
    /// tensor gets the bf16 value widened back, exactly).</summary>
    private static void RoundToCompute(HypernetParameters masters, HypernetParameters compute,
        IOpBackend ops)
    {
        foreach (string name in masters.Names)
        {
            Tensor m = masters[name], c = compute[name];
            if (c.DType == DType.BF16)
            {
                ops.Copy(m, c);
                continue;
            }
            using Tensor rounded = ops.Empty(DType.BF16, m.Shape, name + " (bf16)");
            ops.Copy(m, rounded);
            ops.Copy(rounded, c);
        }
    }

    /// <summary>d = pred − target (d overwritten); returns Σ d².</summary>
    private double Difference(Tensor pred, Tensor target, Tensor d)
    {
        _ops.Copy(pred, d);
        _ops.AddScaled(target, -1f, d);
        return SumOfSquares(d);
    }

    /// <summary>Σ x² of a contiguous tensor, as the 1×1 product x·xᵀ of its [1, count] view
    /// (the op layer's reduction; accumulation at least fp32).</summary>
    private double SumOfSquares(Tensor x)
    {
        Tensor row = x.View(1, x.Count);
        using Tensor c = _ops.Empty(_dt, [1, 1], "sum of squares");
        _ops.MatMul(row, false, row, true, c);
        using Tensor host = Tensor.Host(_dt, [1, 1]);
        _ops.Download(c, host);
        return host.ToDoubles()[0];
    }

    private Tensor Upload(int[] values)
    {
        Tensor host = Tensor.FromInts(values);
        Tensor dev = _ops.Upload(host);
        if (!ReferenceEquals(dev, host))
        {
            host.Dispose();
        }
        return dev;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _graph?.Dispose();
        _compute?.Dispose();
        _source?.Dispose();
        Gradients?.Dispose();
        M?.Dispose();
        V?.Dispose();
        Parameters.Dispose();
        DisposeBackbone();
    }
}
