using ZeTT.Ops;

namespace ZeTT.Runtime.Models;

/// <summary>How the next token is chosen.</summary>
/// <param name="Temperature">0: greedy (argmax, lowest id on ties); otherwise logits are divided
/// by it before sampling.</param>
/// <param name="TopP">Nucleus sampling: sample among the most probable tokens whose
/// probabilities sum to at least this (1: all).</param>
/// <param name="Seed">Seed of the sampler (System.Random's seeded generator, stable across
/// runs and platforms).</param>
public sealed record SamplingOptions(float Temperature = 0f, float TopP = 1f, int Seed = 0);

/// <summary>Autoregressive decoding with a KV cache: the prompt in one forward pass, then one
/// position per new token.</summary>
public static class TextGeneration
{
    /// <summary>Yields up to <paramref name="maxNewTokens"/> ids continuing
    /// <paramref name="prompt"/> (at least one id), stopping after <paramref name="stopId"/>
    /// when it is produced (it is yielded). The prompt and the new tokens must fit the model's
    /// positions.</summary>
    public static IEnumerable<int> Generate(LanguageModel model, IReadOnlyList<int> prompt,
        int maxNewTokens, SamplingOptions sampling, int? stopId = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(prompt);
        ArgumentNullException.ThrowIfNull(sampling);
        if (!model.Architecture.Causal)
        {
            throw new ZettException($"{model.Path}: {model.Architecture.ModelType} is a masked "
                + "language model and does not generate text");
        }
        if (prompt.Count == 0)
        {
            throw new ArgumentException("the prompt needs at least one token", nameof(prompt));
        }
        int capacity = Math.Min(model.Architecture.MaxPositions, prompt.Count + maxNewTokens);
        if (prompt.Count + Math.Max(maxNewTokens, 1) - 1 > model.Architecture.MaxPositions)
        {
            throw new ZettException($"{model.Path}: {prompt.Count} prompt tokens and "
                + $"{maxNewTokens} new ones exceed the model's {model.Architecture.MaxPositions} "
                + "positions");
        }
        return Run(model, prompt, maxNewTokens, sampling, stopId, capacity);
    }

    private static IEnumerable<int> Run(LanguageModel model, IReadOnlyList<int> prompt,
        int maxNewTokens, SamplingOptions sampling, int? stopId, int capacity)
    {
        using KvCache cache = model.CreateCache(1, capacity);
        var rng = new Random(sampling.Seed);
        int[] input = [.. prompt];
        for (int step = 0; step < maxNewTokens; step++)
        {
            float[] logits;
            using (Tensor hidden = model.Forward(input, 1, cache))
            using (Tensor head = model.HeadInput(hidden.Slice(0, hidden.Shape[0] - 1, 1)))
            using (Tensor l = model.Logits(head))
            using (Tensor host = Tensor.Host(DType.F32, l.Shape))
            {
                model.Ops.Download(l, host);
                logits = host.ToFloats();
            }
            int next = Choose(logits, sampling, rng);
            yield return next;
            if (next == stopId || cache.Length >= capacity)
            {
                yield break;
            }
            input = [next];
        }
    }

    /// <summary>The next id from one row of logits.</summary>
    public static int Choose(float[] logits, SamplingOptions sampling, Random rng)
    {
        ArgumentNullException.ThrowIfNull(logits);
        ArgumentNullException.ThrowIfNull(sampling);
        ArgumentNullException.ThrowIfNull(rng);
        if (sampling.Temperature <= 0f)
        {
            int best = 0;
            for (int i = 1; i < logits.Length; i++)
            {
                if (logits[i] > logits[best])
                {
                    best = i;
                }
            }
            return best;
        }
        double max = logits.Max();
        var probs = new double[logits.Length];
        double sum = 0;
        for (int i = 0; i < probs.Length; i++)
        {
            probs[i] = Math.Exp((logits[i] - max) / sampling.Temperature);
            sum += probs[i];
        }
        int[] order = Enumerable.Range(0, probs.Length)
            .OrderByDescending(i => probs[i]).ThenBy(i => i).ToArray();
        double kept = 0;
        int count = 0;
        while (count < order.Length && (count == 0 || kept < sampling.TopP * sum))
        {
            kept += probs[order[count++]];
        }
        double u = rng.NextDouble() * kept;
        for (int i = 0; i < count; i++)
        {
            u -= probs[order[i]];
            if (u < 0)
            {
                return order[i];
            }
        }
        return order[count - 1];
    }
}
