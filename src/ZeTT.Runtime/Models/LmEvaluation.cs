using System.Text.Json;
using ZeTT.Ops;
using ZeTT.Runtime.IO;
using ZeTT.Runtime.Tokenizers;
using ZeTT.Runtime.Transfer;

namespace ZeTT.Runtime.Models;

/// <summary>What <see cref="LmEvaluation"/> measured for one model on one text.</summary>
/// <param name="Model">The model directory.</param>
/// <param name="ModelType">config.json's model_type.</param>
/// <param name="Tokens">Tokens whose loss counts (predicted tokens that are not special;
/// masked LMs: the selected tokens).</param>
/// <param name="EncodedTokens">All tokens of the encoded documents, special tokens
/// included.</param>
/// <param name="Bytes">UTF-8 bytes of the documents.</param>
/// <param name="LossNats">Σ of the counted tokens' cross-entropy, natural log.</param>
/// <param name="Context">Window length in tokens.</param>
/// <param name="Accuracy">Masked LMs: share of selected tokens whose argmax is the original
/// token; null for causal LMs.</param>
public sealed record LmEvalResult(string Model, string ModelType, long Tokens, long EncodedTokens,
    long Bytes, double LossNats, int Context, double? Accuracy)
{
    /// <summary>Σ loss in bits / Σ UTF-8 bytes.</summary>
    public double BitsPerByte => Bytes == 0 ? double.NaN : LossNats / Math.Log(2) / Bytes;

    /// <summary>Counted tokens per UTF-8 byte.</summary>
    public double TokensPerByte => Bytes == 0 ? double.NaN : (double)Tokens / Bytes;

    /// <summary>exp(mean loss per counted token).</summary>
    public double Perplexity => Tokens == 0 ? double.NaN : Math.Exp(LossNats / Tokens);

    /// <summary>Mean loss per counted token, in bits.</summary>
    public double BitsPerToken => Tokens == 0 ? double.NaN : LossNats / Math.Log(2) / Tokens;
}

/// <summary>
/// The evaluation protocol (the numbers are compared across tokenizers, so it is fixed):
/// each document is encoded with the model's own tokenizer with special tokens
/// (add_special_tokens=True, as Hugging Face does); the ids are cut into consecutive,
/// non-overlapping windows of <c>context</c> tokens (the last may be shorter); within a
/// window every token after the first is predicted from the ones before it; predicted
/// special tokens are left out of the loss; bits per byte = Σ loss in bits / Σ UTF-8 bytes of
/// the documents. Masked LMs instead select 15 % of each window's non-special tokens with
/// a fixed seed (of those 80 % become the mask token, 10 % a random token, 10 % stay, as
/// Hugging Face's DataCollatorForLanguageModeling) and count the loss of predicting the
/// originals at the selected positions.
/// </summary>
public static class LmEvaluation
{
    /// <summary>The default window: min(1024, positions of the model).</summary>
    public static int DefaultContext(LanguageModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        return Math.Min(1024, model.Architecture.MaxPositions);
    }

    /// <summary>Evaluates <paramref name="model"/> with <paramref name="tokenizer"/> on
    /// <paramref name="documents"/>.</summary>
    public static LmEvalResult Evaluate(LanguageModel model, HfTokenizer tokenizer,
        IReadOnlyList<EvalDocument> documents, int? context = null, int seed = 0,
        IProgress<ProgressUpdate>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(documents);
        int window = context ?? DefaultContext(model);
        if (window < 2)
        {
            throw new ZettException($"--context {window}: a window needs at least 2 tokens");
        }
        if (window > model.Architecture.MaxPositions)
        {
            throw new ZettException($"{model.Path}: --context {window} exceeds the model's "
                + $"{model.Architecture.MaxPositions} positions (max_position_embeddings)");
        }
        var special = new HashSet<int>(tokenizer.AllSpecialTokens.Select(t => t.Id));
        foreach (HfAddedToken t in tokenizer.AddedTokens.Where(t => t.Special))
        {
            special.Add(t.Id);
        }
        IReadOnlyList<TokenizerEncoding> encodings =
            tokenizer.EncodeBatch(documents.Select(d => d.Text).ToArray());
        long encoded = encodings.Sum(e => (long)e.Ids.Length);
        long bytes = documents.Sum(d => d.Bytes);
        long done = 0, counted = 0, correct = 0;
        double loss = 0;
        bool masked = !model.Architecture.Causal;
        int? maskId = masked ? MaskId(model, tokenizer) : null;
        var rng = new Random(seed);
        foreach (TokenizerEncoding encoding in encodings)
        {
            int[] ids = encoding.Ids;
            for (int start = 0; start < ids.Length; start += window)
            {
                int len = Math.Min(window, ids.Length - start);
                ReadOnlySpan<int> w = ids.AsSpan(start, len);
                CheckVocabulary(model, w);
                (double l, long n, long c) = masked
                    ? MaskedWindow(model, w, special, maskId!.Value, rng)
                    : CausalWindow(model, w, special);
                loss += l;
                counted += n;
                correct += c;
                done += len;
                progress?.Report(new ProgressUpdate(Path.GetFileName(model.Path), done, encoded,
                    "tokens"));
            }
        }
        if (!double.IsFinite(loss))
        {
            // Finite weights give a finite loss (log-sum-exp in double): this is the model's.
            throw new ZettException($"{model.Path}: the loss on this text is {loss}: the model's "
                + "weights hold NaN or infinite values");
        }
        return new LmEvalResult(model.Path, model.Architecture.ModelType, counted, encoded, bytes,
            loss, window, masked ? (counted == 0 ? double.NaN : (double)correct / counted) : null);
    }

    private static void CheckVocabulary(LanguageModel model, ReadOnlySpan<int> ids)
    {
        foreach (int id in ids)
        {
            if (id >= model.Architecture.Vocab)
            {
                throw new ZettException($"{model.Path}: the tokenizer produced id {id}, outside "
                    + $"the model's vocabulary of {model.Architecture.Vocab}");
            }
        }
    }

    private static (double Loss, long Count, long Correct) CausalWindow(LanguageModel model,
        ReadOnlySpan<int> ids, HashSet<int> special)
    {
        int n = ids.Length;
        var targets = new int[n];
        long count = 0;
        for (int i = 0; i < n; i++)
        {
            int next = i + 1 < n ? ids[i + 1] : -1;
            targets[i] = next >= 0 && !special.Contains(next) ? next : -1;
            count += targets[i] >= 0 ? 1 : 0;
        }
        if (count == 0)
        {
            return (0, 0, 0);
        }
        using Tensor hidden = model.Forward(ids, 1);
        using Tensor head = model.HeadInput(hidden);
        using Tensor losses = model.TokenLosses(head, targets);
        using Tensor host = Tensor.Host(DType.F32, losses.Shape);
        model.Ops.Download(losses, host);
        double sum = 0;
        foreach (float l in host.AsSpan<float>())
        {
            sum += l;
        }
        return (sum, count, 0);
    }

    private static (double Loss, long Count, long Correct) MaskedWindow(LanguageModel model,
        ReadOnlySpan<int> ids, HashSet<int> special, int maskId, Random rng)
    {
        int n = ids.Length;
        int[] input = ids.ToArray();
        var selected = new List<int>();
        for (int i = 0; i < n; i++)
        {
            if (special.Contains(ids[i]) || rng.NextDouble() >= 0.15)
            {
                continue;
            }
            selected.Add(i);
            double r = rng.NextDouble();
            if (r < 0.8)
            {
                input[i] = maskId;
            }
            else if (r < 0.9)
            {
                input[i] = rng.Next(model.Architecture.Vocab);
            }
        }
        if (selected.Count == 0)
        {
            return (0, 0, 0);
        }
        using Tensor hidden = model.Forward(input, 1);
        using Tensor rows = model.Ops.Empty(DType.F32, [selected.Count, hidden.Shape[1]]);
        for (int s = 0; s < selected.Count; s++)
        {
            model.Ops.Copy(hidden.Slice(0, selected[s], 1), rows.Slice(0, s, 1));
        }
        using Tensor head = model.HeadInput(rows);
        using Tensor logits = model.Logits(head);
        using Tensor host = Tensor.Host(DType.F32, logits.Shape);
        model.Ops.Download(logits, host);
        ReadOnlySpan<float> all = host.AsSpan<float>();
        int v = model.Architecture.Vocab;
        double loss = 0;
        long correct = 0;
        for (int s = 0; s < selected.Count; s++)
        {
            ReadOnlySpan<float> row = all.Slice(s * v, v);
            int target = ids[selected[s]];
            float max = float.NegativeInfinity;
            int arg = 0;
            for (int j = 0; j < v; j++)
            {
                if (row[j] > max)
                {
                    max = row[j];
                    arg = j;
                }
            }
            double sum = 0;
            for (int j = 0; j < v; j++)
            {
                sum += Math.Exp(row[j] - max);
            }
            loss += max + Math.Log(sum) - row[target];
            correct += arg == target ? 1 : 0;
        }
        return (loss, selected.Count, correct);
    }

    /// <summary>Evaluates each model directory on the same documents, one after another (each
    /// with its own tokenizer, loaded from its directory), on <paramref name="backend"/> with
    /// <paramref name="activations"/> (F32, or BF16 on CUDA).</summary>
    public static IReadOnlyList<LmEvalResult> Run(IReadOnlyList<string> models,
        IReadOnlyList<EvalDocument> documents, int? context, int seed, IOpBackend backend,
        IProgress<ProgressUpdate>? progress = null, DType activations = DType.F32)
    {
        ArgumentNullException.ThrowIfNull(models);
        var results = new List<LmEvalResult>();
        foreach (string dir in models)
        {
            using LanguageModel model = LanguageModel.Open(dir, backend, activations);
            HfTokenizer tokenizer = HfTokenizer.Load(dir);
            results.Add(Evaluate(model, tokenizer, documents, context, seed, progress));
        }
        return results;
    }

    /// <summary>Writes <paramref name="results"/> as JSON (one object per model with model,
    /// bits_per_byte, tokens_per_byte, perplexity, tokens, bytes and more) under the output
    /// policy (<see cref="OutputTarget"/>): never over an input (the data files, the
    /// <paramref name="models"/>), an existing file only with <paramref name="overwrite"/>,
    /// through a temporary renamed when complete.</summary>
    public static void WriteJson(string path, IReadOnlyList<LmEvalResult> results,
        IReadOnlyList<string> dataFiles, bool overwrite = false, IEnumerable<string>? models = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(results);
        ArgumentNullException.ThrowIfNull(dataFiles);
        string full = OutputTarget.Check(path, OutputKind.File, overwrite,
            [.. dataFiles, .. models ?? []]);
        using OutputTarget target = OutputTarget.Begin(full, OutputKind.File);
        using (var stream = new FileStream(target.TempPath, FileMode.Create, FileAccess.Write))
        using (var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            json.WriteStartObject();
            json.WriteStartArray("data");
            foreach (string f in dataFiles)
            {
                json.WriteStringValue(f);
            }
            json.WriteEndArray();
            json.WriteStartArray("models");
            foreach (LmEvalResult r in results)
            {
                json.WriteStartObject();
                json.WriteString("model", r.Model);
                json.WriteString("model_type", r.ModelType);
                WriteNumber(json, "bits_per_byte", r.BitsPerByte);
                WriteNumber(json, "tokens_per_byte", r.TokensPerByte);
                WriteNumber(json, "perplexity", r.Perplexity);
                WriteNumber(json, "bits_per_token", r.BitsPerToken);
                json.WriteNumber("tokens", r.Tokens);
                json.WriteNumber("encoded_tokens", r.EncodedTokens);
                json.WriteNumber("bytes", r.Bytes);
                WriteNumber(json, "loss_nats", r.LossNats);
                json.WriteNumber("context", r.Context);
                if (r.Accuracy is { } acc)
                {
                    WriteNumber(json, "masked_accuracy", acc);
                }
                json.WriteEndObject();
            }
            json.WriteEndArray();
            json.WriteEndObject();
        }
        target.Commit();
    }

    private static void WriteNumber(Utf8JsonWriter json, string name, double value)
    {
        if (double.IsFinite(value))
        {
            json.WriteNumber(name, value);
        }
        else
        {
            json.WriteNull(name);
        }
    }

    private static int MaskId(LanguageModel model, HfTokenizer tokenizer) =>
        tokenizer.SpecialTokens.Mask is { } mask && tokenizer.TokenToId(mask) is { } id
            ? id
            : throw new ZettException($"{model.Path}: a masked LM needs a mask token in its "
                + "tokenizer (mask_token)");
}
