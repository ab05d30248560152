using ZeTT.Ops;
using ZeTT.Ops.Cpu;
using ZeTT.Runtime.Formats;
using ZeTT.Runtime.Hypernetwork;
using ZeTT.Runtime.Tensors;
using ZeTT.Runtime.Training;

namespace ZeTT.Runtime.Tests.Training;

/// <summary>The identity-stage training step, the optimizer, the schedule and checkpoints.
/// </summary>
public sealed class HypernetTrainerTests
{
    private static readonly CpuBackend Cpu = new();

    private static readonly LearningRateSchedule Reference = new(10_000, 3e-4, 10_000, 6e-5,
        200_000, 0.1);

    /// <summary>A small untied model: n_embd 8, H 16 (2 heads), I 24, 2 layers, L 3, 20 tokens
    /// plus 3 extra, pad id 2.</summary>
    internal static (HypernetConfig Config, Dictionary<string, HostTensor> Weights, HostTensor E)
        Tiny(int seed = 1)
    {
        HypernetConfig c = HypernetInit.Config(8, untied: true, originalVocab: 20, extraTokens: 3,
            padId: 2, predictBias: false, new HypernetShape(16, 24, 2, 2, 3));
        var rng = new Random(seed);
        float[] e = Enumerable.Range(0, 20 * 16).Select(_ => (float)(rng.NextDouble() - 0.5)).ToArray();
        var source = new HostTensor("E", [20, 16], e);
        Dictionary<string, HostTensor> w = HypernetInit.RandomWeights(c, seed);
        HypernetInit.InitInScaler(w, source);
        int[] anchors = new int[20 * 3];
        Array.Fill(anchors, 2);
        for (int t = 0; t < 20; t++)
        {
            anchors[t * 3] = t;
            anchors[(t * 3) + 1] = (t * 7 + 3) % 23;
        }
        HypernetInit.InitOutputScalers(c, w, source, anchors, Cpu);
        return (c, w, source);
    }

    internal static TrainSettings Settings(double lr = 1e-3, int batch = 12, int accumulation = 1) =>
        new(new LearningRateSchedule(0, 0, 2, lr, 40, 0.1), IdentityBatch: batch,
            Accumulation: accumulation, MaxGradNorm: 1.0);

    [Fact]
    public void Schedule_has_the_reference_values()
    {
        Assert.Equal(0, Reference.At(0));
        Assert.Equal(1.5e-4, Reference.At(5_000), 12);
        Assert.Equal(0, Reference.At(10_000));
        Assert.Equal(3e-5, Reference.At(15_000), 12);
        Assert.Equal(6e-5, Reference.At(20_000), 12);
        Assert.Equal(6e-5 * 0.55, Reference.At(110_000), 12);
        Assert.Equal(6e-6, Reference.At(200_000), 12);
        Assert.Equal(6e-6, Reference.At(300_000), 12);
    }

    [Fact]
    public void Initialisation_standardises_the_source_columns_and_matches_the_embedding_scale()
    {
        (HypernetConfig c, Dictionary<string, HostTensor> w, HostTensor e) = Tiny();
        // in_scaler: each column of E maps to mean 0, std 0.02 over the rows padded to 128.
        float[] sw = w["in_scaler.w"].Data, sb = w["in_scaler.b"].Data;
        for (int j = 0; j < 16; j++)
        {
            double sum = 0, sq = 0;
            for (int r = 0; r < 128; r++)
            {
                double x = r < 20 ? (e.Data[(r * 16) + j] * sw[j]) + sb[j] : 0;
                sum += r < 20 ? x : sb[j];
                sq += r < 20 ? x * x : sb[j] * sb[j];
            }
            double mean = sum / 128, std = Math.Sqrt((sq / 128) - (mean * mean));
            Assert.True(Math.Abs(mean) < 1e-6, $"column {j}: mean {mean}");
            Assert.True(Math.Abs(std - 0.02) < 1e-4, $"column {j}: std {std}");
        }
        Assert.All(w["scaler.w"].Data, x => Assert.True(x > 0 && float.IsFinite(x)));
        Assert.Contains(w["out_scaler.w"].Data, x => Math.Abs(x - 1) > 1e-3);
        Assert.Equal(3, c.NumExtraTokens);
    }

    /// <summary>The whole identity loss's gradient with respect to every trainable parameter
    /// (sampled elements) equals the central finite difference in float64.</summary>
    [Fact]
    public void Identity_step_gradients_match_finite_differences()
    {
        (HypernetConfig c, Dictionary<string, HostTensor> w, HostTensor e) = Tiny();
        using var trainer = new HypernetTrainer(c, w, e, Cpu, Settings(), DType.F64);
        int[] ids = [0, 2, 5, 7, 11, 19, 13];
        trainer.Gradients.Clear();
        trainer.IdentityLossAndGradients(ids);
        var analytic = trainer.Gradients.Names.ToDictionary(n => n, n => trainer.Gradients.ToDoubles(n));
        const double H = 1e-5;
        int count = 0;
        foreach (string name in trainer.Gradients.Names)
        {
            Span<double> x = trainer.Parameters[name].AsSpan<double>();
            int step = Math.Max(1, x.Length / 4);
            for (int i = name.Length % step; i < x.Length; i += step)
            {
                double saved = x[i];
                x[i] = saved + H;
                double plus = trainer.IdentityLossAndGradients(ids);
                x[i] = saved - H;
                double minus = trainer.IdentityLossAndGradients(ids);
                x[i] = saved;
                double fd = (plus - minus) / (2 * H);
                double a = analytic[name][i];
                Assert.True(Math.Abs(a - fd) <= 1e-8 + 1e-5 * Math.Abs(fd),
                    $"{name}[{i}]: backward {a:R}, finite difference {fd:R}");
                count++;
            }
        }
        Assert.True(count > 100, $"{count} elements checked");
        Assert.DoesNotContain("in_scaler.w", trainer.Gradients.Names);
        Assert.DoesNotContain("scaler.w", trainer.Gradients.Names);
        Assert.Contains("out_scaler.w", trainer.Gradients.Names);
    }

    /// <summary>AdamW as optax computes it, for three steps with decay, against a scalar
    /// float64 loop.</summary>
    [Fact]
    public void AdamW_matches_the_optax_update()
    {
        double[] p0 = [0.5, -1.0, 2.0, 0.0, 3.0], g = [0.1, -0.2, 0.3, 1e-9, -4.0];
        using Tensor p = Tensor.FromDoubles(p0, 5), grad = Tensor.FromDoubles(g, 5);
        using Tensor m = Tensor.Host(DType.F64, 5), v = Tensor.Host(DType.F64, 5);
        double[] ep = (double[])p0.Clone(), em = new double[5], ev = new double[5];
        for (int t = 1; t <= 3; t++)
        {
            Cpu.AdamW(p, grad, m, v, new AdamWStep(1e-2, 0.9, 0.95, 1e-8, 0.01, t, 0.5));
            for (int i = 0; i < 5; i++)
            {
                double gi = g[i] * 0.5;
                em[i] = (0.9 * em[i]) + (0.1 * gi);
                ev[i] = (0.95 * ev[i]) + (0.05 * gi * gi);
                double mh = em[i] / (1 - Math.Pow(0.9, t)), vh = ev[i] / (1 - Math.Pow(0.95, t));
                ep[i] -= 1e-2 * ((mh / (Math.Sqrt(vh) + 1e-8)) + (0.01 * ep[i]));
            }
        }
        double[] got = p.ToDoubles();
        for (int i = 0; i < 5; i++)
        {
            Assert.Equal(ep[i], got[i], 14);
        }
    }

    /// <summary>A mean gradient above the limit is scaled to norm MaxGradNorm before AdamW: the
    /// first moment after one update is (1 − β1) times the clipped gradient.</summary>
    [Fact]
    public void Clipping_scales_the_mean_gradient_to_the_limit()
    {
        (HypernetConfig c, Dictionary<string, HostTensor> w, HostTensor e) = Tiny();
        using var trainer = new HypernetTrainer(c, w, e, Cpu, Settings() with { MaxGradNorm = 1e-3 },
            DType.F64);
        trainer.Gradients.Clear();
        trainer.IdentityLossAndGradients(trainer.IdentityIds(0));
        trainer.IdentityLossAndGradients(trainer.IdentityIds(1));
        double raw = Math.Sqrt(trainer.Gradients.Names.Sum(n => trainer.Gradients.ToDoubles(n).Sum(x => x * x)));
        (double norm, _) = trainer.Update(2);
        Assert.Equal(raw / 2, norm, 10);
        Assert.True(norm > 1e-3);
        double mNorm = Math.Sqrt(trainer.M.Names.Sum(n => trainer.M.ToDoubles(n).Sum(x => x * x)));
        Assert.Equal(0.1 * 1e-3, mNorm, 12);
    }

    /// <summary>Gradients and moments are views of one flat buffer each (TRAINING item 7: one
    /// buffer to all-reduce): every trainable parameter's gradient starts at an aligned offset
    /// and holds what the backward wrote, the gaps stay zero, and one clear zeroes it all.</summary>
    [Fact]
    public void Gradients_and_moments_are_views_of_one_flat_buffer()
    {
        (HypernetConfig c, Dictionary<string, HostTensor> w, HostTensor e) = Tiny();
        using var trainer = new HypernetTrainer(c, w, e, Cpu, Settings(), DType.F64);
        trainer.Gradients.Clear();
        trainer.IdentityLossAndGradients(trainer.IdentityIds(0));
        HypernetParameters g = trainer.Gradients;
        Tensor flat = g.Flat ?? throw new InvalidOperationException("no flat gradient buffer");
        Assert.NotNull(trainer.M.Flat);
        Assert.NotNull(trainer.V.Flat);
        double[] all = flat.ToDoubles();
        var covered = new bool[all.Length];
        long expected = 0;
        foreach (string name in g.Names)
        {
            long at = g.FlatOffset(name);
            Assert.Equal(0, at % HypernetParameters.FlatAlignment);
            Assert.Equal(expected, at);
            double[] own = g.ToDoubles(name);
            Assert.Equal(own, all.AsSpan((int)at, own.Length).ToArray());
            Array.Fill(covered, true, (int)at, own.Length);
            expected = at + ((own.Length + 63) / 64 * 64);
        }
        Assert.Equal(expected, all.Length);
        Assert.Contains(all, x => x != 0);
        Assert.All(Enumerable.Range(0, all.Length).Where(i => !covered[i]), i => Assert.Equal(0, all[i]));
        g.Clear();
        Assert.All(flat.ToDoubles(), x => Assert.Equal(0, x));
    }

    [Fact]
    public void Decay_mask_and_trainability_follow_the_reference()
    {
        Assert.False(HypernetTrainer.IsDecayed("model.encoder.layer.0.attention.self.query.bias"));
        Assert.False(HypernetTrainer.IsDecayed("model.embeddings.LayerNorm.weight"));
        Assert.False(HypernetTrainer.IsDecayed("input_projection.1.ln.weight"));
        Assert.True(HypernetTrainer.IsDecayed("input_projection.1.dense1.weight"));
        Assert.True(HypernetTrainer.IsDecayed("out_scaler.b"));
        Assert.True(HypernetTrainer.IsDecayed("fallback_embeddings.weight"));
        Assert.False(HypernetTrainer.IsTrainable("in_scaler.w"));
        Assert.False(HypernetTrainer.IsTrainable("scaler.b"));
        Assert.True(HypernetTrainer.IsTrainable("out_scaler.w"));
    }

    [Fact]
    public void Identity_training_lowers_the_loss()
    {
        (HypernetConfig c, Dictionary<string, HostTensor> w, HostTensor e) = Tiny();
        using var trainer = new HypernetTrainer(c, w, e, Cpu, Settings(lr: 3e-3, batch: 20));
        var losses = new List<double>();
        for (int s = 0; s < 40; s++)
        {
            losses.Add(trainer.IdentityStep().Loss);
        }
        Assert.True(losses[^1] < 0.5 * losses[0], $"loss {losses[0]} → {losses[^1]}");
    }

    [Theory]
    [InlineData(HypernetPrecision.Float32)]
    [InlineData(HypernetPrecision.BFloat16)]
    public void Resumed_training_continues_bit_identically(HypernetPrecision precision)
    {
        (HypernetConfig c, Dictionary<string, HostTensor> w, HostTensor e) = Tiny();
        TrainSettings s = Settings(accumulation: 2);
        using var straight = new HypernetTrainer(c, w, e, Cpu, s, precision: precision);
        for (int k = 0; k < 4; k++)
        {
            straight.IdentityStep();
        }
        string dir = Path.Combine(Path.GetTempPath(), $"zett-resume-{Guid.NewGuid():N}");
        try
        {
            using (var first = new HypernetTrainer(c, w, e, Cpu, s, precision: precision))
            {
                first.IdentityStep();
                first.IdentityStep();
                TrainingCheckpoint.Save(dir, first, null);
            }
            using var resumed = new HypernetTrainer(c, TrainingCheckpoint.ReadParameters(dir), e,
                Cpu, s, precision: precision);
            TrainingCheckpoint.RestoreOptimizer(dir, resumed);
            Assert.Equal(2, resumed.Step);
            resumed.IdentityStep();
            resumed.IdentityStep();
            foreach (string name in straight.Parameters.Names)
            {
                Assert.Equal(straight.Parameters[name].AsSpan<float>().ToArray(),
                    resumed.Parameters[name].AsSpan<float>().ToArray());
            }
            // The checkpoint is a hypernetwork directory the inference path loads.
            HypernetCheckpoint loaded = HypernetCheckpoint.Load(dir);
            Assert.Equal(c.HiddenSize, loaded.Config.HiddenSize);
            Assert.True(loaded.Config.SeparateOutEmbeddings);
        }
        finally
        {
            if (Directory.Exists(dir))
            {
                Directory.Delete(dir, recursive: true);
            }
        }
    }

    [Fact]
    public void A_nan_loss_stops_naming_the_step()
    {
        (HypernetConfig c, Dictionary<string, HostTensor> w, HostTensor e) = Tiny();
        w["output_projection.1.bias"].Data[0] = float.NaN;
        using var trainer = new HypernetTrainer(c, w, e, Cpu, Settings());
        ZettException ex = Assert.Throws<ZettException>(() => trainer.IdentityStep());
        Assert.Contains("step 0", ex.Message);
    }
}
