using ZeTT.Ops;
using ZeTT.Runtime.Hypernetwork;
using ZeTT.Runtime.Models;

namespace ZeTT.Runtime.Training;

/// <summary>
/// Continued (n-shot) training (TRAINING.md §12.2): the language model's backbone trained
/// beside the hypernetwork, which still produces the embeddings every step, and the lexical
/// loss pulling the predictions towards the hypernetwork's initial ones
/// (apply_lexical_loss_to_init).
/// </summary>
public sealed partial class HypernetTrainer
{
    private readonly HashSet<string> _backboneDecayed = new(StringComparer.Ordinal);
    private LanguageModel? _backboneModel;
    private double[] _lexicalNorms = [];
    private string? _lexicalSource;

    /// <summary>The attached backbone's weights (the model's own tensors, borrowed), or null.
    /// </summary>
    public HypernetParameters? Backbone { get; private set; }

    /// <summary>The backbone's gradients (one flat buffer), or null.</summary>
    public HypernetParameters? BackboneGradients { get; private set; }

    /// <summary>The backbone's first AdamW moments, or null.</summary>
    public HypernetParameters? BackboneM { get; private set; }

    /// <summary>The backbone's second AdamW moments, or null.</summary>
    public HypernetParameters? BackboneV { get; private set; }

    /// <summary>The lexical loss measures the distance to the hypernetwork's initial
    /// predictions for the (fixed) target vocabulary over all its rows, instead of to the
    /// source embeddings over the overlapping rows (the reference's
    /// apply_lexical_loss_to_init, §7.3): a pull towards the zero-shot transfer. The targets
    /// are the predictions of the first main-stage micro-batch (special rows replaced), kept
    /// in <see cref="LexicalTargets"/>.</summary>
    public bool LexicalLossToInit { get; set; }

    /// <summary>With <see cref="LexicalLossToInit"/>, once the first main-stage micro-batch
    /// has run: the initial predictions, "in" (and "out" when the hypernetwork predicts output
    /// rows), [rows, n_embd].</summary>
    public HypernetParameters? LexicalTargets { get; private set; }

    /// <summary>The surface forms of the vocabulary <see cref="LexicalTargets"/> belong to.
    /// </summary>
    public int[]? LexicalSurfaceForms { get; private set; }

    /// <summary>Trains <paramref name="lm"/>'s backbone (opened trainable, on this trainer's
    /// backend and dtype) with the hypernetwork: its weights get gradients in every main-stage
    /// micro-batch, join the global-norm clip and take the same AdamW update, decayed as
    /// <see cref="TrainableWeight.Decayed"/> says.</summary>
    public void AttachBackbone(LanguageModel lm)
    {
        ArgumentNullException.ThrowIfNull(lm);
        if (Backbone is not null)
        {
            throw new InvalidOperationException("a backbone is already attached");
        }
        if (lm.TrainableWeights.Count == 0)
        {
            throw new ArgumentException("the model was not opened trainable", nameof(lm));
        }
        if (!ReferenceEquals(lm.Ops, _ops) || lm.ActivationType != _dt)
        {
            throw new ArgumentException($"the model computes in {lm.ActivationType} on "
                + $"{lm.Ops.Name}, the trainer in {_dt} on {_ops.Name}", nameof(lm));
        }
        Backbone = new HypernetParameters(_ops, _dt);
        foreach (TrainableWeight w in lm.TrainableWeights)
        {
            Backbone.AddBorrowed(w.Name, w.Weight);
            if (w.Decayed)
            {
                _backboneDecayed.Add(w.Name);
            }
        }
        BackboneGradients = Backbone.ZerosLike(flat: true);
        BackboneM = Backbone.ZerosLike(flat: true);
        BackboneV = Backbone.ZerosLike(flat: true);
        lm.AccumulateWeightGradients(BackboneGradients.Names.ToDictionary(n => n,
            n => BackboneGradients[n], StringComparer.Ordinal));
        _backboneModel = lm;
    }

    /// <summary>Whether AdamW decays backbone weight <paramref name="name"/>.</summary>
    public bool IsBackboneDecayed(string name) => _backboneDecayed.Contains(name);

    /// <summary>Sets <see cref="LexicalTargets"/> (a resumed run's): <paramref name="input"/>
    /// (and <paramref name="output"/> when the hypernetwork predicts output rows) [rows,
    /// n_embd] for the vocabulary <paramref name="surfaceForms"/>; <paramref name="source"/>
    /// names the file they came from in the error of a batch with another vocabulary.</summary>
    public void SetLexicalTargets(Tensor input, Tensor? output, int[] surfaceForms,
        string? source = null)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(surfaceForms);
        int n = Config.NEmbd;
        long rows = input.Shape[0];
        if (input.Rank != 2 || input.Shape[1] != n || surfaceForms.Length != rows * Config.SurfaceMaxLen
            || (output is null) != !Config.SeparateOutEmbeddings
            || (output is not null && !output.Shape.AsSpan().SequenceEqual(input.Shape)))
        {
            throw new ArgumentException($"lexical targets {Tensor.ShapeText(input.Shape)} do not "
                + $"fit {surfaceForms.Length} surface-form ids of {Config.SurfaceMaxLen} and "
                + (Config.SeparateOutEmbeddings ? "two heads" : "one head"));
        }
        LexicalTargets?.Dispose();
        var set = new HypernetParameters(_ops, _dt);
        foreach ((string name, Tensor? t) in new[] { ("in", input), ("out", output) })
        {
            if (t is null)
            {
                continue;
            }
            Tensor copy = _ops.Empty(_dt, [rows, n], "lexical target " + name);
            Tensor up = _ops.Upload(t);
            _ops.Copy(up, copy);
            if (!ReferenceEquals(up, t))
            {
                up.Dispose();
            }
            set.Add(name, copy);
        }
        LexicalTargets = set;
        LexicalSurfaceForms = (int[])surfaceForms.Clone();
        _lexicalSource = source;
        _lexicalNorms = [.. set.Names.Select(name => MeanRowNorm(set.ToDoubles(name), n))];
    }

    private static double MeanRowNorm(double[] values, int n)
    {
        int rows = values.Length / n;
        double total = 0;
        for (int i = 0; i < rows; i++)
        {
            double sq = 0;
            for (int k = 0; k < n; k++)
            {
                sq += values[(i * n) + k] * values[(i * n) + k];
            }
            total += Math.Sqrt(sq);
        }
        return total / rows;
    }

    /// <summary>L_lex towards the initial predictions (apply_lexical_loss_to_init: overlap ≡ 1):
    /// per head Σ_i ‖e_i − t_i‖² / (rows + 1e-8) / mean_i ‖t_i‖, averaged over the heads; adds
    /// weight · ∂L/∂e. The first call keeps the pass's (special-replaced) predictions as the
    /// targets; later batches must have the same vocabulary.</summary>
    private double LexicalLossToInitial(HypernetPass pass, MainBatch batch, double weight,
        Tensor dIn, Tensor? dOut)
    {
        if (LexicalTargets is null)
        {
            SetLexicalTargets(pass.EmbeddingsIn, pass.EmbeddingsOut, batch.SurfaceForms);
        }
        if (!LexicalSurfaceForms.AsSpan().SequenceEqual(batch.SurfaceForms))
        {
            if (_lexicalSource is not null)
            {
                throw new ZettException($"{_lexicalSource}: the lexical targets belong to another "
                    + "vocabulary than this run's --train-tokenizer (resume with the run's options)");
            }
            throw new ZettException("the lexical loss towards the initial predictions needs one "
                + "fixed target vocabulary (one --train-tokenizer, no --vocab-subsample): this "
                + "batch's vocabulary is not the first batch's");
        }
        int rows = batch.Rows, n = Config.NEmbd;
        int heads = LexicalTargets!.Names.Count;
        double total = 0;
        for (int h = 0; h < heads; h++)
        {
            Tensor e = h == 0 ? pass.EmbeddingsIn : pass.EmbeddingsOut!;
            double scale = 1 / ((rows + 1e-8) * _lexicalNorms[h]);
            using Tensor d = _ops.Empty(_dt, [rows, n], "lexical difference");
            total += Difference(e, LexicalTargets[LexicalTargets.Names[h]], d) * scale / heads;
            _ops.AddScaled(d, (float)(2 * scale * weight / heads), h == 0 ? dIn : dOut!);
        }
        return total;
    }

    private void DisposeBackbone()
    {
        _backboneModel?.AccumulateWeightGradients(null);
        _backboneModel = null;
        Backbone?.Dispose();
        BackboneGradients?.Dispose();
        BackboneM?.Dispose();
        BackboneV?.Dispose();
        LexicalTargets?.Dispose();
    }
}
