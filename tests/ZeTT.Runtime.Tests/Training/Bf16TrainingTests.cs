using ZeTT.Ops;
using ZeTT.Ops.Cpu;
using ZeTT.Runtime.Hypernetwork;
using ZeTT.Runtime.Tensors;
using ZeTT.Runtime.Training;

namespace ZeTT.Runtime.Tests.Training;

/// <summary>
/// bf16 training (TRAINING.md §7.7): fp32 masters rounded to bf16 compute copies for the
/// hypernetwork's forward and backward, fp32 gradients, masters and AdamW state. The loss and
/// gradients against the fp32 step are in <see cref="TrainStepOracleTests"/>.
/// </summary>
public sealed class Bf16TrainingTests
{
    private static readonly CpuBackend Cpu = new();

    [Fact]
    public void Masters_stay_fp32_and_take_the_fp32_adamw_update_of_the_bf16_gradients()
    {
        (HypernetConfig c, Dictionary<string, HostTensor> w, HostTensor e) =
            HypernetTrainerTests.Tiny();
        TrainSettings s = HypernetTrainerTests.Settings(lr: 3e-3, batch: 20);
        using var bf16 = new HypernetTrainer(c, w, e, Cpu, s, precision: HypernetPrecision.BFloat16);
        using var fp32 = new HypernetTrainer(c, w, e, Cpu, s);
        for (int k = 0; k < 3; k++)
        {
            bf16.IdentityStep();
        }
        // The fp32 twin holds the bf16 trainer's masters and moments; both run step 3 from there.
        foreach (string name in bf16.Parameters.Names)
        {
            Cpu.Copy(bf16.Parameters[name], fp32.Parameters[name]);
        }
        foreach (string name in bf16.Gradients.Names)
        {
            Cpu.Copy(bf16.M[name], fp32.M[name]);
            Cpu.Copy(bf16.V[name], fp32.V[name]);
        }
        fp32.Step = bf16.Step;
        fp32.MastersChanged();
        bf16.IdentityStep();
        // The fp32 gradients of the same batch differ from the bf16 ones (else the check below
        // would not show which gradients were applied) ...
        fp32.Gradients.Clear();
        fp32.IdentityLossAndGradients(fp32.IdentityIds(3));
        Assert.Contains(bf16.Gradients.Names, n =>
            !bf16.Gradients[n].AsSpan<float>().SequenceEqual(fp32.Gradients[n].AsSpan<float>()));
        // ... and the fp32 update of the bf16 gradients gives the bf16 trainer's masters exactly.
        foreach (string name in bf16.Gradients.Names)
        {
            Cpu.Copy(bf16.Gradients[name], fp32.Gradients[name]);
        }
        fp32.Update(1);
        long unrounded = 0;
        foreach (string name in bf16.Parameters.Names)
        {
            Tensor master = bf16.Parameters[name];
            Assert.Equal(DType.F32, master.DType);
            Assert.Equal(fp32.Parameters[name].AsSpan<float>().ToArray(),
                master.AsSpan<float>().ToArray());
            unrounded += master.AsSpan<float>().ToArray().Count(x => BFloat16.Round(x) != x);
        }
        Assert.True(unrounded > bf16.Parameters.Count / 2, $"{unrounded} masters hold more "
            + "than bf16 precision");
        Assert.All(bf16.Gradients.Names, n => Assert.Equal(DType.F32, bf16.Gradients[n].DType));
        Assert.All(bf16.Gradients.Names, n => Assert.Equal(DType.F32, bf16.M[n].DType));
    }

    [Fact]
    public void Compute_copies_are_the_round_to_nearest_even_masters()
    {
        (HypernetConfig c, Dictionary<string, HostTensor> w, HostTensor e) =
            HypernetTrainerTests.Tiny();
        using var trainer = new HypernetTrainer(c, w, e, Cpu, HypernetTrainerTests.Settings(),
            precision: HypernetPrecision.BFloat16);
        trainer.IdentityStep();
        trainer.IdentityStep();
        HypernetParameters compute = trainer.ComputeParameters;
        int bf16Matrices = 0;
        foreach (string name in trainer.Parameters.Names)
        {
            float[] master = trainer.Parameters[name].AsSpan<float>().ToArray();
            double[] copy = compute.ToDoubles(name);
            bf16Matrices += compute[name].DType == DType.BF16 ? 1 : 0;
            for (int i = 0; i < master.Length; i++)
            {
                Assert.Equal((double)BFloat16.Round(master[i]), copy[i]);
            }
        }
        // The GEMM matrices are stored bf16 (read in place by the bf16 GEMM): 2 per block,
        // input projection, 6 per layer, output head and the untied out head.
        Assert.Equal(1 + 2 + (6 * c.NumLayers) + 2 + 1 + 2 + 1, bf16Matrices);
    }

    [Fact]
    public void Bf16_identity_training_lowers_the_loss()
    {
        (HypernetConfig c, Dictionary<string, HostTensor> w, HostTensor e) =
            HypernetTrainerTests.Tiny();
        using var trainer = new HypernetTrainer(c, w, e, Cpu,
            HypernetTrainerTests.Settings(lr: 3e-3, batch: 20),
            precision: HypernetPrecision.BFloat16);
        var losses = new List<double>();
        for (int s = 0; s < 40; s++)
        {
            losses.Add(trainer.IdentityStep().Loss);
        }
        Assert.True(losses[^1] < 0.5 * losses[0], $"loss {losses[0]} → {losses[^1]}");
    }

    [Fact]
    public void Bf16_needs_fp32_masters()
    {
        (HypernetConfig c, Dictionary<string, HostTensor> w, HostTensor e) =
            HypernetTrainerTests.Tiny();
        Assert.Throws<ArgumentException>(() => new HypernetTrainer(c, w, e, Cpu,
            HypernetTrainerTests.Settings(), DType.F64, HypernetPrecision.BFloat16));
    }
}
