using ZeTT.Runtime.Tokenizers;

namespace ZeTT.Runtime.Training;

/// <summary>Where the target vocabulary of each main-stage batch comes from: a tokenizer
/// sampled for the batch (TRAINING.md §4) or fixed target tokenizers.</summary>
public interface IMainVocabulary
{
    /// <summary>What the vocabulary is, for the log.</summary>
    string Description { get; }

    /// <summary>The main-stage batch of <paramref name="texts"/> for micro-batch
    /// <paramref name="step"/>: the texts encoded under this step's target tokenizer (for a
    /// masked LM, masked as <see cref="MainBatch.MaskedFromTexts"/> with a seed of (seed,
    /// <paramref name="step"/>)), and that vocabulary's surface forms.</summary>
    MainBatch Batch(IReadOnlyList<string> texts, long step);

    /// <summary>Moves past the batch of <paramref name="texts"/> for update
    /// <paramref name="step"/> without making it (a resumed run's replay): a sampler's window
    /// and counters advance as <see cref="Batch"/> would advance them.</summary>
    void Skip(IReadOnlyList<string> texts, long step);
}

/// <summary>
/// Fixed target tokenizers (<c>zett train --train-tokenizer</c>), each converted as
/// <c>zett transfer</c> converts a target (byte level, whitespace-consistent, special tokens
/// at the base model's ids) with its surface forms built once. Each update draws one of them
/// from (seed, update). A vocabulary larger than <c>subsample</c> rows is cut per batch to the
/// ids the batch uses plus uniformly drawn other rows up to <c>subsample</c> (the reference's
/// <c>n_token_subsample</c>: the softmax then runs over that subset, ids renumbered), which
/// keeps a 50 000-token vocabulary's hypernetwork pass to the rows a step can learn from. The
/// special tokens' rows are always kept and replaced by the base model's (§6.1).
/// </summary>
public sealed class FixedTargetVocabulary : IMainVocabulary
{
    private readonly HfTokenizer[] _tokenizers;
    private readonly SurfaceFormMatrix[] _surfaceForms;
    private readonly int[] _pads;
    private readonly (int[] Ids, int[] InReference)[] _specials;
    private readonly int _blockSize, _subsample, _seed;

    /// <summary>Loads and converts <paramref name="sources"/> (anything
    /// <see cref="HfTokenizer.Load"/> accepts).</summary>
    /// <param name="sources">The tokenizers.</param>
    /// <param name="baseTokenizer">The base model's tokenizer (its special tokens' ids).</param>
    /// <param name="hnTokenizer">The hypernetwork's tokenizer (byte level, with a pad).</param>
    /// <param name="surfaceMaxLen">Surface-form length L.</param>
    /// <param name="blockSize">Tokens per sequence.</param>
    /// <param name="subsample">Rows per batch at most (0: the whole vocabulary).</param>
    /// <param name="seed">Seed of the tokenizer choice and the extra rows.</param>
    public FixedTargetVocabulary(IReadOnlyList<string> sources, HfTokenizer baseTokenizer,
        HfTokenizer hnTokenizer, int surfaceMaxLen, int blockSize, int subsample, int seed)
    {
        ArgumentNullException.ThrowIfNull(sources);
        ArgumentNullException.ThrowIfNull(baseTokenizer);
        ArgumentNullException.ThrowIfNull(hnTokenizer);
        if (sources.Count == 0)
        {
            throw new ZettException("no target tokenizer given (--train-tokenizer NAME|PATH)");
        }
        ArgumentOutOfRangeException.ThrowIfLessThan(blockSize, 2);
        ArgumentOutOfRangeException.ThrowIfNegative(subsample);
        _tokenizers = new HfTokenizer[sources.Count];
        _surfaceForms = new SurfaceFormMatrix[sources.Count];
        _pads = new int[sources.Count];
        _specials = new (int[], int[])[sources.Count];
        for (int i = 0; i < sources.Count; i++)
        {
            HfTokenizer t = ByteLevelConverter.Convert(HfTokenizer.Load(sources[i]),
                makeWhitespaceConsistent: true, matchSpecialTokensTo: baseTokenizer);
            _tokenizers[i] = t;
            _surfaceForms[i] = SurfaceFormMatrix.Build(t, hnTokenizer, surfaceMaxLen);
            _pads[i] = t.PadTokenId ?? t.EosTokenId ?? throw new ZettException(
                $"{sources[i]}: the tokenizer has neither a pad nor an eos token to pad batches");
            _specials[i] = MainBatch.SpecialRows(t, baseTokenizer);
        }
        Description = string.Join(", ", sources.Select((s, i) =>
            $"{s} ({_tokenizers[i].VocabSize} tokens)"))
            + (subsample > 0 ? $"; at most {subsample} rows per batch" : "");
        _blockSize = blockSize;
        _subsample = subsample;
        _seed = seed;
    }

    /// <inheritdoc />
    public string Description { get; }

    /// <summary>The base model is a masked LM: batches are masked (MLM targets) instead of
    /// shifted.</summary>
    public bool MaskedLm { get; init; }

    /// <summary>The converted tokenizers.</summary>
    public IReadOnlyList<HfTokenizer> Tokenizers => _tokenizers;

    /// <inheritdoc />
    public MainBatch Batch(IReadOnlyList<string> texts, long step)
    {
        ArgumentNullException.ThrowIfNull(texts);
        var rng = new Random(SeedMix.Of(_seed, step, 0x7a));
        int k = _tokenizers.Length == 1 ? 0 : rng.Next(_tokenizers.Length);
        SurfaceFormMatrix sf = _surfaceForms[k];
        MainBatch encoded = MaskedLm
            ? MainBatch.MaskedFromTexts(texts, _tokenizers[k], _blockSize, sf.Ids, sf.Rows,
                _tokenizers[k].VocabSize, SeedMix.Of(_seed, step, MainBatch.MaskingStream))
            : MainBatch.FromTexts(texts, _tokenizers[k], _blockSize, _pads[k], sf.Ids, sf.Rows);
        MainBatch full = encoded with
        {
            SpecialIds = _specials[k].Ids,
            SpecialIdsInReference = _specials[k].InReference,
        };
        return _subsample <= 0 || sf.Rows <= _subsample ? full : Subsample(full, sf, rng);
    }

    /// <inheritdoc />
    public void Skip(IReadOnlyList<string> texts, long step)
    {
    }

    /// <summary>The rows the batch uses (in order of first use) and its special tokens' rows,
    /// then other rows drawn without replacement up to the subsample size; ids renumbered.
    /// </summary>
    private MainBatch Subsample(MainBatch full, SurfaceFormMatrix sf, Random rng)
    {
        var index = new Dictionary<int, int>();
        var rows = new List<int>(_subsample);
        void Use(int id)
        {
            if (id >= 0 && index.TryAdd(id, rows.Count))
            {
                rows.Add(id);
            }
        }
        foreach (int id in full.SpecialIds ?? [])
        {
            Use(id);
        }
        foreach (int id in full.Ids)
        {
            Use(id);
        }
        foreach (int id in full.Targets)
        {
            Use(id);
        }
        int v = sf.Rows;
        while (rows.Count < _subsample)
        {
            Use(rng.Next(v));
        }
        int l = sf.MaxLen;
        var forms = new int[rows.Count * l];
        for (int r = 0; r < rows.Count; r++)
        {
            sf.Row(rows[r]).CopyTo(forms.AsSpan(r * l, l));
        }
        int[] ids = Array.ConvertAll(full.Ids, id => index[id]);
        int[] targets = Array.ConvertAll(full.Targets, id => id < 0 ? -1 : index[id]);
        return new MainBatch(forms, rows.Count, ids, targets, full.Batch)
        {
            SpecialIds = full.SpecialIds is null ? null : Array.ConvertAll(full.SpecialIds,
                id => index[id]),
            SpecialIdsInReference = full.SpecialIdsInReference,
        };
    }
}

/// <summary>
/// A tokenizer sampled per batch (TRAINING.md §4, <see cref="TokenizerSampler"/>): the batch is
/// encoded under it, the hypernetwork predicts all of its padded rows, the padded rows' logits
/// are masked and the special tokens' rows are the base model's (§6.1).
/// </summary>
public sealed class SampledVocabulary : IMainVocabulary
{
    private readonly TokenizerSampler _sampler;
    private readonly HfTokenizer _base;
    private readonly int _blockSize, _seed;

    /// <summary>A sampler for <paramref name="baseTokenizer"/>'s model, surface forms under
    /// <paramref name="hnTokenizer"/>.</summary>
    public SampledVocabulary(TokenizerSamplerOptions options, HfTokenizer baseTokenizer,
        HfTokenizer hnTokenizer, int blockSize, int seed)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfLessThan(blockSize, 2);
        _sampler = new TokenizerSampler(options, baseTokenizer, hnTokenizer, seed);
        _base = baseTokenizer;
        _blockSize = blockSize;
        _seed = seed;
        Description = $"a tokenizer sampled per batch ({options.Pieces} pieces, "
            + $"{_sampler.PaddedRows} rows with the padding, a window of "
            + $"{options.WindowBatches} batches)";
    }

    /// <inheritdoc />
    public string Description { get; }

    /// <summary>The base model is a masked LM: batches are masked (MLM targets, random ids from
    /// the sampled tokenizer's real rows) instead of shifted.</summary>
    public bool MaskedLm { get; init; }

    /// <summary>§4.1's initialisation with the first training texts.</summary>
    public void Prime(IReadOnlyList<string> texts) => _sampler.Prime(texts);

    /// <inheritdoc />
    public MainBatch Batch(IReadOnlyList<string> texts, long step)
    {
        SampledTokenizer s = _sampler.Sample(texts);
        (int[] special, int[] inReference) = MainBatch.SpecialRows(s.Tokenizer, _base);
        MainBatch encoded;
        if (MaskedLm)
        {
            encoded = MainBatch.MaskedFromTexts(texts, s.Tokenizer, _blockSize, s.SurfaceForms,
                s.PaddedRows, s.Rows, SeedMix.Of(_seed, step, MainBatch.MaskingStream));
        }
        else
        {
            int pad = s.Tokenizer.PadTokenId ?? s.Tokenizer.EosTokenId ?? throw new ZettException(
                $"{_base.Source}: the base tokenizer has neither a pad nor an eos token");
            encoded = MainBatch.FromTexts(texts, s.Tokenizer, _blockSize, pad, s.SurfaceForms,
                s.PaddedRows);
        }
        return encoded with
        {
            Mask = s.Mask,
            SpecialIds = special,
            SpecialIdsInReference = inReference,
        };
    }

    /// <inheritdoc />
    public void Skip(IReadOnlyList<string> texts, long step) => _sampler.Sample(texts);
}
