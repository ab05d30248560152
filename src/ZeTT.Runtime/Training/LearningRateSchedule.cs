namespace ZeTT.Runtime.Training;

/// <summary>
/// The reference's learning-rate schedule (TRAINING.md §7.6, optax.join_schedules): a linear
/// ramp 0 → <see cref="IdentityPeak"/> over the identity stage, a second ramp 0 →
/// <see cref="Peak"/> over <see cref="WarmupSteps"/>, then cosine decay from the peak to
/// <see cref="Alpha"/>·peak at <see cref="TotalSteps"/>. A stage of zero steps is skipped.
/// </summary>
/// <param name="IdentitySteps">Steps of the identity stage (10 000 in the reference).</param>
/// <param name="IdentityPeak">Learning rate the identity ramp reaches (3e-4).</param>
/// <param name="WarmupSteps">Ramp steps of the main stage (10 000).</param>
/// <param name="Peak">Main-stage peak learning rate (6e-5).</param>
/// <param name="TotalSteps">All steps of the run (200 000).</param>
/// <param name="Alpha">Final fraction of the peak (learning_rate_alpha, 0.1).</param>
public sealed record LearningRateSchedule(long IdentitySteps, double IdentityPeak,
    long WarmupSteps, double Peak, long TotalSteps, double Alpha)
{
    /// <summary>The learning rate of update <paramref name="step"/> (counting from 0, as the
    /// reference evaluates the schedule before incrementing: the first update has lr 0 when a
    /// ramp starts the schedule).</summary>
    public double At(long step)
    {
        if (step < IdentitySteps)
        {
            return IdentityPeak * step / IdentitySteps;
        }
        long s = step - IdentitySteps;
        if (s < WarmupSteps)
        {
            return Peak * s / WarmupSteps;
        }
        long c = s - WarmupSteps, d = TotalSteps - IdentitySteps - WarmupSteps;
        if (d <= 0)
        {
            return Peak;
        }
        double progress = Math.Min(c, d) / (double)d;
        return Peak * (((1 - Alpha) * 0.5 * (1 + Math.Cos(Math.PI * progress))) + Alpha);
    }
}
