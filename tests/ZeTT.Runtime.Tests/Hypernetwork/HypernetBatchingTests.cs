using ZeTT.Runtime.Hypernetwork;

namespace ZeTT.Runtime.Tests.Hypernetwork;

public sealed class HypernetBatchingTests
{
    /// <summary>A streaming backend (the CUDA one) gets the whole job in one call and pipelines
    /// it itself; PredictAll must not cut it into MaxBatchSize pieces.</summary>
    [Fact]
    public void A_streaming_backend_gets_every_row_in_one_call()
    {
        var o = new TinyOptions();
        var (weights, _) = TinyHypernet.Create(o, 3);
        int[] ids = TinyHypernet.SurfaceForms(o, 10, 2);
        var backend = new RecordingBackend(maxBatch: 3);
        var progress = new List<int>();
        HypernetOutput output = HypernetBatching.PredictAll(backend, ids, 10, 1, weights.Config,
            progress.Add);
        Assert.Equal([10], backend.Calls);
        Assert.Equal([10], progress);
        Assert.Same(backend.Returned, output);
    }

    private sealed class RecordingBackend(int maxBatch) : IStreamingHypernetBackend
    {
        public List<int> Calls { get; } = [];

        public HypernetOutput? Returned { get; private set; }

        public string Name => "recording";

        public int MaxBatchSize => maxBatch;

        public HypernetOutput Predict(ReadOnlySpan<int> surfaceForms, int rows, int langIndex) =>
            throw new InvalidOperationException("PredictAll must not fall back to Predict");

        public HypernetOutput PredictAll(ReadOnlySpan<int> surfaceForms, int rows, int langIndex,
            Action<int>? progress)
        {
            Calls.Add(rows);
            progress?.Invoke(rows);
            Returned = new HypernetOutput(new float[rows], null, null);
            return Returned;
        }

        public void Dispose()
        {
        }
    }
}
