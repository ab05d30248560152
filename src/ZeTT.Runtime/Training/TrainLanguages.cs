using System.Text;
using ZeTT.Runtime.Models;

namespace ZeTT.Runtime.Training;

/// <summary>
/// The languages of the training text and their probabilities (TRAINING.md §2.3, §3.5;
/// train.py's <c>langs</c> / <c>language_sampling_alpha</c>). The languages are the sources'
/// codes in order of first appearance. When any source has a weight, a language's probability
/// is its sources' summed weights (a missing one counts 1), normalised — the reference's
/// <c>lang,weight</c> file. When none has, p ∝ (n_l / N)^α with n_l the UTF-8 bytes of the
/// language's text and N their sum (the reference uses MADLAD's page counts, which we do not
/// have), normalised as <c>jax.random.choice</c> normalises; one language has p = 1.
/// </summary>
public sealed class TrainLanguages
{
    /// <summary>The <see cref="SeedMix"/> stream of the per-micro-batch language draw.</summary>
    public const int DrawStream = 0x4c;

    private readonly double[] _cumulative;

    /// <summary>Groups <paramref name="sources"/> by language and sets the probabilities;
    /// counts the text bytes only when they are needed (no weights, several languages).
    /// </summary>
    /// <param name="sources">The training corpora.</param>
    /// <param name="alpha">The exponent of the size rule (0.3 in the reference).</param>
    /// <param name="byteCounts">The text bytes per language when known (tests); null: counted
    /// from the files.</param>
    public TrainLanguages(IReadOnlyList<TextSource> sources, double alpha = 0.3,
        IReadOnlyDictionary<string, long>? byteCounts = null)
    {
        ArgumentNullException.ThrowIfNull(sources);
        if (sources.Count == 0)
        {
            throw new ZettException("no training data (give --data FILE[:WEIGHT][:lang=CODE])");
        }
        if (!(alpha > 0) || !double.IsFinite(alpha))
        {
            throw new ZettException($"--language-sampling-alpha {alpha}: must be a positive "
                + "number");
        }
        Codes = [.. sources.Select(s => s.Lang).Distinct(StringComparer.Ordinal)];
        Sources = [.. Codes.Select(l => (IReadOnlyList<TextSource>)[.. sources.Where(s => s.Lang == l)])];
        Alpha = alpha;
        var p = new double[Codes.Count];
        if (Codes.Count == 1)
        {
            p[0] = 1;
        }
        else if (sources.Any(s => s.Weight is not null))
        {
            for (int l = 0; l < p.Length; l++)
            {
                p[l] = Sources[l].Sum(s => s.Weight ?? 1);
            }
        }
        else
        {
            var n = new long[Codes.Count];
            for (int l = 0; l < n.Length; l++)
            {
                n[l] = byteCounts is not null ? byteCounts[Codes[l]]
                    : Sources[l].Sum(s => TextBytes(s.File));
                Bytes[Codes[l]] = n[l];
            }
            double total = n.Sum();
            for (int l = 0; l < p.Length; l++)
            {
                p[l] = Math.Pow(n[l] / total, alpha);
            }
        }
        double sum = p.Sum();
        Probabilities = Array.ConvertAll(p, x => x / sum);
        _cumulative = new double[p.Length];
        double run = 0;
        for (int l = 0; l < p.Length; l++)
        {
            run += Probabilities[l];
            _cumulative[l] = run;
        }
    }

    /// <summary>The language codes, in order of first appearance in the sources.</summary>
    public IReadOnlyList<string> Codes { get; }

    /// <summary>Each language's sources (indexed like <see cref="Codes"/>).</summary>
    public IReadOnlyList<IReadOnlyList<TextSource>> Sources { get; }

    /// <summary>The normalised probabilities (indexed like <see cref="Codes"/>).</summary>
    public IReadOnlyList<double> Probabilities { get; }

    /// <summary>The size rule's exponent.</summary>
    public double Alpha { get; }

    /// <summary>Text bytes per language where the size rule counted them (else empty).</summary>
    public Dictionary<string, long> Bytes { get; } = new(StringComparer.Ordinal);

    /// <summary>The language of micro-batch <paramref name="index"/>: a draw by the
    /// probabilities from (seed, index) alone, so a resumed run draws the same languages.
    /// </summary>
    public int Draw(int seed, long index) => Codes.Count == 1 ? 0
        : Pick(new Random(SeedMix.Of(seed, index, DrawStream)).NextDouble());

    /// <summary>The language that a uniform <paramref name="u"/> in [0, 1) falls on.</summary>
    public int Pick(double u)
    {
        int l = Array.FindIndex(_cumulative, c => u < c);
        return l < 0 ? _cumulative.Length - 1 : l;
    }

    /// <summary>The index of <paramref name="code"/>, or an error naming
    /// <paramref name="what"/> and the valid codes.</summary>
    public int IndexOf(string code, string what)
    {
        int i = Codes.ToList().IndexOf(code);
        return i >= 0 ? i : throw new ZettException($"{what}: unknown language '{code}'; the "
            + $"training languages are {string.Join(", ", Codes)}");
    }

    /// <summary>UTF-8 bytes of a file's documents, read as <c>zett eval</c> reads them.</summary>
    public static long TextBytes(string file)
    {
        long n = 0;
        foreach (EvalDocument doc in EvalText.Stream(file))
        {
            n += Encoding.UTF8.GetByteCount(doc.Text);
        }
        return n;
    }
}

/// <summary>
/// The training text of several languages (TRAINING.md §3.4–3.5): one <see cref="TrainText"/>
/// stream per language (its files mixed by their weights). Micro-batch k draws its language
/// from (seed, k) (<see cref="TrainLanguages.Draw"/>) and takes that language's next batch, so
/// every batch is monolingual (mix_languages false). Mixed (<c>--mix-languages</c>): each text
/// of a batch draws its own language from (seed, k), as the reference's mixed TrainDataset
/// draws per text. Language 0's stream is seeded with the seed itself, so a one-language run
/// reads the text it read before languages existed.
/// </summary>
public sealed class MultilingualText : IDisposable
{
    private readonly TrainText[] _streams;
    private readonly int _seed, _batchSize;

    /// <summary>Opens every language's stream (every file is checked here).</summary>
    public MultilingualText(TrainLanguages languages, int batchSize, int spanChars, string eos,
        int seed, bool mix)
    {
        ArgumentNullException.ThrowIfNull(languages);
        Languages = languages;
        Mix = mix;
        _seed = seed;
        _batchSize = batchSize;
        _streams = new TrainText[languages.Codes.Count];
        try
        {
            for (int l = 0; l < _streams.Length; l++)
            {
                _streams[l] = new TrainText(languages.Sources[l], batchSize, spanChars, eos,
                    l == 0 ? seed : SeedMix.Of(seed, l, 0x4c5));
            }
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>The languages.</summary>
    public TrainLanguages Languages { get; }

    /// <summary>Whether batches mix languages.</summary>
    public bool Mix { get; }

    /// <summary>Micro-batch <paramref name="index"/>'s texts and language (−1: mixed). Call in
    /// order of the index: the streams advance.</summary>
    public (string[] Texts, int Lang) Next(long index)
    {
        if (!Mix)
        {
            int l = Languages.Draw(_seed, index);
            return (_streams[l].Next().Texts, l);
        }
        var rng = new Random(SeedMix.Of(_seed, index, TrainLanguages.DrawStream));
        var texts = new string[_batchSize];
        for (int i = 0; i < texts.Length; i++)
        {
            texts[i] = _streams[Languages.Pick(rng.NextDouble())].NextText();
        }
        return (texts, -1);
    }

    /// <summary>Closes the files.</summary>
    public void Dispose()
    {
        foreach (TrainText? t in _streams)
        {
            t?.Dispose();
        }
    }
}
