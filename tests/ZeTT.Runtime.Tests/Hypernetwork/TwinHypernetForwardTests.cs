namespace ZeTT.Runtime.Tests.Hypernetwork;

/// <summary>Properties of the parity oracle itself, on the CPU: rows are independent of their
/// batch, the language embedding matters, padding positions do not leak into real ones.
/// </summary>
public sealed class TwinHypernetForwardTests
{
    [Fact]
    public void Rows_do_not_depend_on_their_batch_and_language_matters()
    {
        var o = new TinyOptions(Separate: true);
        var (w, source) = TinyHypernet.Create(o, 3);
        int rows = 5;
        int[] ids = TinyHypernet.SurfaceForms(o, rows, 4);
        var batch = TwinHypernetForward.Run(w, source, ids, rows, 1);
        Assert.All(batch.EmbeddingsIn, v => Assert.True(float.IsFinite(v)));
        for (int r = 0; r < rows; r++)
        {
            var single = TwinHypernetForward.Run(w, source,
                ids.AsSpan(r * o.MaxLen, o.MaxLen).ToArray(), 1, 1);
            Assert.Equal(batch.EmbeddingsIn.AsSpan(r * o.NEmbd, o.NEmbd).ToArray(),
                single.EmbeddingsIn);
            Assert.Equal(batch.EmbeddingsOut!.AsSpan(r * o.NEmbd, o.NEmbd).ToArray(),
                single.EmbeddingsOut!);
            Assert.Equal(batch.Bias![r], single.Bias![0]);
        }
        var other = TwinHypernetForward.Run(w, source, ids, rows, 2);
        Assert.NotEqual(batch.EmbeddingsIn, other.EmbeddingsIn);
    }

    [Fact]
    public void Ids_at_padded_positions_do_not_change_the_output()
    {
        var o = new TinyOptions(Lang: false);
        var (w, source) = TinyHypernet.Create(o, 5);
        int[] ids = [7, 9, o.Pad, o.Pad, o.Pad, o.Pad, o.Pad];
        var a = TwinHypernetForward.Run(w, source, ids, 1, -1);
        // Changing a padded position to another pad keeps it masked; a real id there changes
        // the row (it is attended).
        int[] real = [.. ids];
        real[3] = 12;
        var b = TwinHypernetForward.Run(w, source, real, 1, -1);
        Assert.NotEqual(a.EmbeddingsIn, b.EmbeddingsIn);
        var again = TwinHypernetForward.Run(w, source, ids, 1, -1);
        Assert.Equal(a.EmbeddingsIn, again.EmbeddingsIn);
    }
}
