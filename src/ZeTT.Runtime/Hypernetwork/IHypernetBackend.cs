namespace ZeTT.Runtime.Hypernetwork;

/// <summary>Numeric precision of a backend's weights and matmul inputs.</summary>
public enum HypernetPrecision
{
    /// <summary>fp32 everywhere (parity runs; no TF32).</summary>
    Float32,

    /// <summary>bf16 weights, activations and matmul inputs; fp32 accumulation, softmax and
    /// LayerNorm statistics.</summary>
    BFloat16,
}

/// <summary>What a backend predicts for a batch of n target tokens (row-major).</summary>
/// <param name="EmbeddingsIn">[n, n_embd] predicted input embeddings.</param>
/// <param name="EmbeddingsOut">[n, n_embd] predicted output embeddings (untied models only).</param>
/// <param name="Bias">[n] predicted bias (when the config predicts one).</param>
public sealed record HypernetOutput(float[] EmbeddingsIn, float[]? EmbeddingsOut, float[]? Bias);

/// <summary>
/// Runs the hypernetwork forward pass (ZETT.md §3). A backend is built from
/// <see cref="HypernetWeights"/>, the source embeddings <c>E</c> [V, D_in] (row-major; for untied
/// models the concatenation [E_in, E_out] along the row) and a precision, and then predicts
/// batches. Implementations: the CPU backend (the reference) and the CUDA backend.
/// </summary>
public interface IHypernetBackend : IDisposable
{
    /// <summary>"cpu" or "cuda: &lt;device&gt;", for messages.</summary>
    string Name { get; }

    /// <summary>The largest batch (rows) the backend takes in one <see cref="Predict"/>.</summary>
    int MaxBatchSize { get; }

    /// <summary>Predicts embeddings for <paramref name="rows"/> surface forms.</summary>
    /// <param name="surfaceForms">[rows, L] hn-tokenizer ids, pad-padded on the right.</param>
    /// <param name="rows">Number of rows, at most <see cref="MaxBatchSize"/>.</param>
    /// <param name="langIndex">Language index for multilingual hypernetworks, else -1.</param>
    HypernetOutput Predict(ReadOnlySpan<int> surfaceForms, int rows, int langIndex);
}

/// <summary>
/// A backend that takes any number of rows in one call and overlaps its own batches (the CUDA
/// backend: the host packs the next batch and copies the last one's results while the device
/// computes). <see cref="HypernetBatching.PredictAll"/> hands it the whole job.
/// </summary>
public interface IStreamingHypernetBackend : IHypernetBackend
{
    /// <summary>Predicts embeddings for every row, in row order; <paramref name="progress"/>
    /// gets the number of rows done after each batch.</summary>
    HypernetOutput PredictAll(ReadOnlySpan<int> surfaceForms, int rows, int langIndex,
        Action<int>? progress);
}
