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
            if (!float.IsFinite(System.Numerics.Tensors.TensorPrimitives.Sum(logits))
                && logits.Any(x => !float.IsFinite(x)))
            {
                throw new ZettException($"{model.Path}: the logits hold NaN or infinite values: "
                    + "so do the model's weights");
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

/// <summary>Text generation with a tokenizer: the prompt encoded as Hugging Face does (with
/// special tokens), an empty prompt starting from the BOS token alone, the continuation
/// decoded and streamed piece by piece.</summary>
public static class TextStreaming
{
    /// <summary>Yields the continuation of <paramref name="prompt"/> as text pieces, as soon
    /// as they decode to whole characters; stops at the EOS token or after
    /// <paramref name="maxNewTokens"/>.</summary>
    public static IEnumerable<string> Generate(LanguageModel model,
        Tokenizers.HfTokenizer tokenizer, string prompt, int maxNewTokens,
        SamplingOptions sampling)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(prompt);
        int[] ids;
        if (prompt.Length == 0)
        {
            int bos = tokenizer.BosTokenId ?? throw new ZettException($"{model.Path}: an empty "
                + "prompt starts from the BOS token, but the tokenizer has none");
            ids = [bos];
        }
        else
        {
            ids = tokenizer.Encode(prompt, addSpecialTokens: true).Ids;
        }
        return Stream(model, tokenizer, ids, maxNewTokens, sampling);
    }

    private static IEnumerable<string> Stream(LanguageModel model,
        Tokenizers.HfTokenizer tokenizer, int[] prompt, int maxNewTokens, SamplingOptions sampling)
    {
        var all = new List<int>(prompt);
        int printed = tokenizer.Decode(prompt, skipSpecialTokens: true).Length;
        foreach (int id in TextGeneration.Generate(model, prompt, maxNewTokens, sampling,
            tokenizer.EosTokenId))
        {
            all.Add(id);
            string text = tokenizer.Decode(all.ToArray(), skipSpecialTokens: true);
            // A byte-fallback or byte-level character may need the next token: hold back a
            // trailing replacement character until it completes.
            int end = text.EndsWith('\uFFFD') ? text.TrimEnd('\uFFFD').Length : text.Length;
            if (end > printed)
            {
                yield return text[printed..end];
                printed = end;
            }
        }
        string final = tokenizer.Decode(all.ToArray(), skipSpecialTokens: true);
        if (final.Length > printed)
        {
            yield return final[printed..];
        }
    }
}
