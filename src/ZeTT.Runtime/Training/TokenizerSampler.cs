using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;

using ZeTT.Runtime.Tokenizers;

namespace ZeTT.Runtime.Training;

/// <summary>How <see cref="TokenizerSampler"/> samples (TRAINING.md §4; the defaults are the
/// reference's).</summary>
/// <param name="Pieces">Pieces per sampled tokenizer before the special tokens: the 256 byte
/// characters, the whitespace runs and the best-scoring substrings (<c>tokenizer_sample_max</c>).
/// A multiple of <paramref name="PadToMultipleOf"/>.</param>
/// <param name="MaxPieceLength">The reference's <c>max_length</c> (exclusive): counted
/// substrings have 1 to MaxPieceLength − 1 bytes, whitespace runs 2 to MaxPieceLength
/// characters. 2 to 16.</param>
/// <param name="Stride">Every stride-th character of a pretoken starts substrings.</param>
/// <param name="WindowBatches">Count maps in the sliding window, the current batch included.
/// </param>
/// <param name="PadToMultipleOf">Rows beyond <paramref name="Pieces"/> kept for the special
/// tokens: every sampled vocabulary is padded to <c>Pieces + PadToMultipleOf</c> rows.</param>
/// <param name="SurfaceMaxLen">Surface-form length under the hn tokenizer.</param>
/// <param name="NoiseLogMean">Mean of ln σ, the per-batch standard deviation of the noise on
/// the substring probabilities (<c>ln tokenizer_noise_mean</c>); −∞ turns the noise off.</param>
/// <param name="NoiseLogStd">Standard deviation of ln σ (<c>tokenizer_noise_std</c>).</param>
public sealed record TokenizerSamplerOptions(int Pieces = 32768, int MaxPieceLength = 16,
    int Stride = 4, int WindowBatches = 16, int PadToMultipleOf = 128, int SurfaceMaxLen = 7,
    double NoiseLogMean = -11.512925464970229 /* ln 1e-5 */, double NoiseLogStd = 4);

/// <summary>One batch's sampled tokenizer with what the main stage needs from it
/// (TRAINING.md §4.4).</summary>
/// <param name="Tokenizer">Unigram over the pieces in the byte-level pipeline (Prepend(" "),
/// the regex split + ByteLevel, ByteLevel decoder), the base tokenizer's special tokens at its
/// ids (added tokens, so a literal <c>&lt;/s&gt;</c> in the text is the eos id) and its
/// post-processor. <c>Tokenizer.Save(dir)</c> writes it as tokenizer.json.</param>
/// <param name="Rows">Vocabulary size: pieces plus special tokens.</param>
/// <param name="PaddedRows">Rows after padding, the same for every batch of a run
/// (<c>Pieces + PadToMultipleOf</c>).</param>
/// <param name="SurfaceForms">Row-major <c>[PaddedRows, SurfaceMaxLen]</c> hn-tokenizer ids;
/// padded rows are all 0.</param>
/// <param name="Mask">True for the first <paramref name="Rows"/> rows.</param>
/// <param name="ByteLengths">Each token's length in bytes (its byte-level string's length; a
/// special token's string length, 3 for <c>&lt;s&gt;</c>).</param>
public sealed record SampledTokenizer(HfTokenizer Tokenizer, int Rows, int PaddedRows,
    int[] SurfaceForms, bool[] Mask, int[] ByteLengths);

/// <summary>Seconds one <see cref="TokenizerSampler.Sample"/> spent in each part.</summary>
/// <param name="Count">Counting the batch's substrings.</param>
/// <param name="Score">Sliding the window, noise, selection of the pieces.</param>
/// <param name="Build">The Unigram model and the tokenizer's pipeline.</param>
/// <param name="SurfaceForms">Surface forms, mask and byte lengths.</param>
internal sealed record SamplerTimings(double Count, double Score, double Build, double SurfaceForms);

/// <summary>
/// The reference's per-batch tokenizer sampler (TRAINING.md §4): substring counts of the
/// current batch and the previous <c>WindowBatches − 1</c> batches, scored as noisy unigram
/// log-probabilities, the top <c>Pieces</c> (with every byte and the whitespace runs) made into
/// a byte-level Unigram tokenizer. Unlike the reference (unseeded <c>thread_rng</c>, hash-map
/// order), the result is a function of the seed and the batches alone: the noise of a
/// substring is drawn from a hash of (seed, batch number, substring), and equal scores are
/// ordered by their bytes. Validation batches draw from their own stream, so running them
/// does not change the training tokenizers. Not thread-safe: one caller at a time.
/// </summary>
public sealed class TokenizerSampler
{
    private const double NegativeScore = -100_000;
    private const ulong TrainStream = 0x7472_6169_6E00_0000UL;
    private const ulong ValidationStream = 0x7661_6C69_6400_0000UL;

    private static readonly char[] WhitespaceChars = ['Ġ', 'Ċ', 'ĉ'];

    private readonly TokenizerSamplerOptions options;
    private readonly HfTokenizer hnTokenizer;
    private readonly ulong seed;
    private readonly SubstringCounter counter;
    private readonly SubstringWindow window;
    private readonly (string Token, int Id)[] specials;
    private readonly HashSet<string> specialSet;
    private readonly SpecialTokenMap specialMap;
    private readonly JsonNode? postProcessor;
    private readonly IReadOnlyList<HfAddedToken> baseAddedTokens;
    private long trainSamples;
    private long validationSamples;

    /// <summary>Where the last <see cref="Sample"/> spent its time (for benchmarks and logs).
    /// </summary>
    internal SamplerTimings LastTimings { get; private set; } = new(0, 0, 0, 0);

    /// <summary>A sampler for the base model whose tokenizer is <paramref name="baseTokenizer"/>
    /// (its special tokens and post-processor are copied into every sampled tokenizer) and the
    /// hypernetwork whose byte-level tokenizer is <paramref name="hnTokenizer"/> (surface
    /// forms).</summary>
    /// <exception cref="ZettException">An option is out of range, the hn tokenizer is not byte
    /// level, or the base tokenizer has more special tokens than the padding leaves room for.
    /// </exception>
    public TokenizerSampler(TokenizerSamplerOptions options, HfTokenizer baseTokenizer,
        HfTokenizer hnTokenizer, int seed)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(baseTokenizer);
        ArgumentNullException.ThrowIfNull(hnTokenizer);
        Validate(options);
        if (!hnTokenizer.IsByteLevel)
        {
            throw new ZettException($"{hnTokenizer.Source}: the hn tokenizer must be byte level " +
                "(convert it with ByteLevelConverter first)");
        }
        this.options = options;
        this.hnTokenizer = hnTokenizer;
        this.seed = (ulong)(uint)seed;
        counter = new SubstringCounter(options.MaxPieceLength, options.Stride);
        window = new SubstringWindow(options.WindowBatches);
        specials = [.. baseTokenizer.AllSpecialTokens.Where(t => t.Id >= 0).OrderBy(t => t.Id)];
        if (specials.Length > options.PadToMultipleOf)
        {
            throw new ZettException($"{baseTokenizer.Source}: {specials.Length} special tokens " +
                $"do not fit in the {options.PadToMultipleOf} padding rows (PadToMultipleOf)");
        }
        specialSet = new HashSet<string>(specials.Select(t => t.Token), StringComparer.Ordinal);
        // The reference sets pad to eos for a base tokenizer without one (Llama).
        specialMap = baseTokenizer.SpecialTokens.Pad is null
            ? baseTokenizer.SpecialTokens with { Pad = baseTokenizer.SpecialTokens.Eos }
            : baseTokenizer.SpecialTokens;
        postProcessor = baseTokenizer.Components["post_processor"];
        baseAddedTokens = baseTokenizer.AddedTokens;
    }

    /// <summary>The options.</summary>
    public TokenizerSamplerOptions Options => options;

    /// <summary>Rows of every sampled vocabulary after padding.</summary>
    public int PaddedRows => options.Pieces + options.PadToMultipleOf;

    /// <summary>Count maps in the window now.</summary>
    public int WindowCount => window.Count;

    /// <summary>Training tokenizers sampled so far (validation ones not included).</summary>
    public long SamplesDrawn => trainSamples;

    /// <summary>
    /// §4.1's initialisation: <paramref name="texts"/> (the reference: the first 2048 training
    /// texts, each cropped to its span) in <c>WindowBatches</c> equal chunks, each pushed as one
    /// count map, so the first sampled tokenizer already sees a full window.
    /// </summary>
    public void Prime(IReadOnlyList<string> texts)
    {
        ArgumentNullException.ThrowIfNull(texts);
        if (texts.Count == 0)
        {
            return;
        }
        int chunk = (texts.Count + options.WindowBatches - 1) / options.WindowBatches;
        for (int start = 0; start < texts.Count; start += chunk)
        {
            int end = Math.Min(texts.Count, start + chunk);
            window.Push(counter.CountBatch(Range(texts, start, end)));
        }
    }

    /// <summary>
    /// Samples the tokenizer of one batch (§4.1–4.4): counts <paramref name="batchTexts"/>,
    /// slides the window (drops the oldest map when full, adds this batch's), scores and selects
    /// the pieces, builds the tokenizer, its surface forms, mask and byte lengths. With
    /// <paramref name="validation"/> the window is left as it was.
    /// </summary>
    /// <exception cref="ArgumentException">There is no text, neither in the batch nor in the
    /// window.</exception>
    public SampledTokenizer Sample(IReadOnlyList<string> batchTexts, bool validation = false)
    {
        ArgumentNullException.ThrowIfNull(batchTexts);
        long t0 = Stopwatch.GetTimestamp();
        Dictionary<SubstringKey, uint> current = counter.CountBatch(batchTexts);
        long t1 = Stopwatch.GetTimestamp();
        if (current.Count == 0 && window.Count == 0)
        {
            throw new ArgumentException("no text to sample a tokenizer from", nameof(batchTexts));
        }
        ulong stream = validation
            ? Mix(Mix(seed ^ ValidationStream) + (ulong)validationSamples++)
            : Mix(Mix(seed ^ TrainStream) + (ulong)trainSamples++);
        List<(string Piece, double Score)> pieces;
        if (validation)
        {
            pieces = window.Peek(current, total => ScorePieces(total, stream));
        }
        else
        {
            window.Push(current);
            pieces = ScorePieces(window.Total, stream);
        }
        string source = string.Create(CultureInfo.InvariantCulture,
            $"sampled tokenizer ({(validation ? "validation" : "training")} batch " +
            $"{(validation ? validationSamples : trainSamples) - 1}, seed {seed})");
        long t2 = Stopwatch.GetTimestamp();
        (SampledTokenizer result, long t3) = Build(pieces, source);
        LastTimings = new SamplerTimings(Stopwatch.GetElapsedTime(t0, t1).TotalSeconds,
            Stopwatch.GetElapsedTime(t1, t2).TotalSeconds, Stopwatch.GetElapsedTime(t2, t3).TotalSeconds,
            Stopwatch.GetElapsedTime(t3).TotalSeconds);
        return result;
    }

    /// <summary>§4.3: the 256 byte characters at the lowest log-probability, the whitespace
    /// runs at 0, then the substrings by noisy log-probability (single characters and strings
    /// with two or more whitespace characters skipped) up to <c>Pieces</c>.</summary>
    private List<(string Piece, double Score)> ScorePieces(Dictionary<SubstringKey, uint> total,
        ulong stream)
    {
        long sum = 0;
        uint min = uint.MaxValue;
        foreach (uint v in total.Values)
        {
            sum += v;
            min = Math.Min(min, v);
        }
        double minLogProb = Math.Log(min / (double)sum);
        double sigma = Math.Exp(options.NoiseLogMean
            + (options.NoiseLogStd * StandardNormal(Mix(stream ^ 0x5167_6D61UL))));

        int whitespacePieces = WhitespaceChars.Length * WhitespaceChars.Length
            * (options.MaxPieceLength - 1);
        int wanted = options.Pieces - 256 - whitespacePieces;
        var best = new TopCandidates(wanted);
        double invSum = 1.0 / sum;
        foreach (KeyValuePair<SubstringKey, uint> kv in total)
        {
            SubstringKey key = kv.Key;
            if (key.Length == 1 || key.WhitespaceCount() >= 2)
            {
                continue;
            }
            double p = (kv.Value * invSum)
                + (sigma == 0 ? 0 : sigma * StandardNormal(Mix(stream ^ Mix(key.Lo ^ Mix(key.Hi)))));
            best.Offer(p > 0 ? Math.Log(p) : NegativeScore, key);
        }

        var pieces = new List<(string, double)>(options.Pieces + specials.Length);
        for (int b = 0; b < 256; b++)
        {
            pieces.Add((ByteLevelAlphabet.ToChar((byte)b).ToString(), minLogProb));
        }
        foreach (char c1 in WhitespaceChars)
        {
            for (int i = 1; i < options.MaxPieceLength; i++)
            {
                foreach (char c2 in WhitespaceChars)
                {
                    pieces.Add((c2 + new string(c1, i), 0.0));
                }
            }
        }
        foreach ((double score, SubstringKey key) in best.Sorted())
        {
            pieces.Add((key.ToByteLevel(), score));
        }
        return pieces;
    }

    /// <summary>§4.4: special tokens moved to the base ids, the tokenizer, byte lengths,
    /// surface forms and mask.</summary>
    private (SampledTokenizer Result, long SurfaceFormsStart) Build(
        List<(string Piece, double Score)> pieces, string source)
    {
        // Step 1 of §4.4 (add missing byte characters) never applies: all 256 are pieces.
        pieces.RemoveAll(p => specialSet.Contains(p.Piece));
        foreach ((string token, int id) in specials)
        {
            pieces.Insert(Math.Min(id, pieces.Count), (token, 0.0));
        }
        string[] tokens = [.. pieces.Select(p => p.Piece)];
        JsonNode? post = postProcessor?.DeepClone();
        if (post is not null)
        {
            ByteLevelConverter.FixPostProcessorIds(post, tokens, source);
        }
        var model = new UnigramModel(pieces, unkId: null, byteFallback: false, new JsonObject(), source);
        var tokenizer = new HfTokenizer(source, model,
            ByteLevelConverter.ByteLevelComponents(null, null, post),
            ByteLevelConverter.SpecialAddedTokens(model, specialMap, baseAddedTokens), specialMap,
            tokenizerConfig: null, tokenizerClass: null);

        int rows = tokens.Length;
        int paddedRows = PaddedRows;
        if (rows > paddedRows)
        {
            throw new InvalidOperationException($"{rows} sampled rows exceed {paddedRows}");
        }
        var byteLengths = new int[rows];
        for (int i = 0; i < rows; i++)
        {
            byteLengths[i] = tokens[i].Length;
        }
        _ = tokenizer.Pipeline;
        long surfaceFormsStart = Stopwatch.GetTimestamp();
        int l = options.SurfaceMaxLen;
        SurfaceFormMatrix forms = SurfaceFormMatrix.BuildForTokens(tokens, hnTokenizer, l);
        var surfaceForms = new int[checked(paddedRows * l)];
        forms.Ids.AsSpan().CopyTo(surfaceForms);
        var mask = new bool[paddedRows];
        mask.AsSpan(0, rows).Fill(true);
        return (new SampledTokenizer(tokenizer, rows, paddedRows, surfaceForms, mask, byteLengths),
            surfaceFormsStart);
    }

    private static IEnumerable<string> Range(IReadOnlyList<string> texts, int start, int end)
    {
        for (int i = start; i < end; i++)
        {
            yield return texts[i];
        }
    }

    private static void Validate(TokenizerSamplerOptions o)
    {
        int fixedPieces = 256 + (9 * (o.MaxPieceLength - 1));
        string? problem =
            o.MaxPieceLength is < 2 or > SubstringKey.MaxLength + 1
                ? $"MaxPieceLength must be 2 to {SubstringKey.MaxLength + 1}, got {o.MaxPieceLength}"
            : o.Stride < 1 ? $"Stride must be at least 1, got {o.Stride}"
            : o.WindowBatches < 1 ? $"WindowBatches must be at least 1, got {o.WindowBatches}"
            : o.PadToMultipleOf < 1 ? $"PadToMultipleOf must be at least 1, got {o.PadToMultipleOf}"
            : o.SurfaceMaxLen < 1 ? $"SurfaceMaxLen must be at least 1, got {o.SurfaceMaxLen}"
            : o.Pieces <= fixedPieces
                ? $"Pieces must exceed the {fixedPieces} byte and whitespace pieces, got {o.Pieces}"
            : o.Pieces % o.PadToMultipleOf != 0
                ? $"Pieces ({o.Pieces}) must be a multiple of PadToMultipleOf ({o.PadToMultipleOf})"
            : (long)(o.Pieces + o.PadToMultipleOf) * o.SurfaceMaxLen > int.MaxValue
                ? "Pieces × SurfaceMaxLen is too large"
            : double.IsNaN(o.NoiseLogMean) || double.IsPositiveInfinity(o.NoiseLogMean)
                ? $"NoiseLogMean must be finite or −∞, got {o.NoiseLogMean}"
            : !(o.NoiseLogStd >= 0) || double.IsInfinity(o.NoiseLogStd)
                ? $"NoiseLogStd must be finite and non-negative, got {o.NoiseLogStd}"
            : null;
        if (problem is not null)
        {
            throw new ZettException("tokenizer sampler: " + problem);
        }
    }

    /// <summary>SplitMix64's finaliser: a bijective 64-bit mix.</summary>
    internal static ulong Mix(ulong z)
    {
        z += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>A standard normal from 64 random bits (Box–Muller on two 53-bit uniforms, the
    /// second drawn from a further mix).</summary>
    internal static double StandardNormal(ulong bits)
    {
        const double Scale = 1.0 / (1UL << 53);
        double u1 = ((bits >> 11) + 1) * Scale;
        double u2 = (Mix(bits) >> 11) * Scale;
        return Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
    }

    /// <summary>The best <c>capacity</c> (score, key) pairs, higher score first, equal scores
    /// by key: a bounded min-heap whose root is the worst kept pair.</summary>
    private sealed class TopCandidates(int capacity)
    {
        private readonly PriorityQueue<SubstringKey, (double Score, SubstringKey Key)> heap =
            new(capacity + 1, WorstFirst.Instance);

        public void Offer(double score, SubstringKey key)
        {
            if (heap.Count < capacity)
            {
                heap.Enqueue(key, (score, key));
            }
            else if (heap.TryPeek(out _, out (double Score, SubstringKey Key) worst)
                && WorstFirst.Instance.Compare((score, key), worst) > 0)
            {
                heap.EnqueueDequeue(key, (score, key));
            }
        }

        public List<(double Score, SubstringKey Key)> Sorted()
        {
            var all = new List<(double Score, SubstringKey Key)>(heap.Count);
            foreach ((SubstringKey _, (double Score, SubstringKey Key) p) in heap.UnorderedItems)
            {
                all.Add(p);
            }
            all.Sort((a, b) => WorstFirst.Instance.Compare(b, a));
            return all;
        }

        /// <summary>Lower score first; at equal score the larger key first (it ranks lower).
        /// </summary>
        private sealed class WorstFirst : IComparer<(double Score, SubstringKey Key)>
        {
            public static readonly WorstFirst Instance = new();

            public int Compare((double Score, SubstringKey Key) a, (double Score, SubstringKey Key) b)
            {
                int c = a.Score.CompareTo(b.Score);
                return c != 0 ? c : b.Key.CompareTo(a.Key);
            }
        }
    }
}
