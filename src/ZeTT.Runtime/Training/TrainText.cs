using System.Globalization;
using System.Text;
using ZeTT.Runtime.Models;

namespace ZeTT.Runtime.Training;

/// <summary>One training corpus, its share of the batches and its language.</summary>
/// <param name="File">A <c>.txt</c>, <c>.jsonl</c> or <c>.parquet</c> file (read by
/// <see cref="EvalText.Stream"/>, the reader <c>zett eval</c> uses).</param>
/// <param name="Weight">Its mixture weight (positive; the weights need not sum to 1); null when
/// none was given (1 within its language; languages then by
/// <see cref="TrainLanguages"/>' size rule).</param>
/// <param name="Lang">Its language code (<c>en</c> unless given).</param>
public sealed record TextSource(string File, double? Weight = null, string Lang = "en")
{
    /// <summary>The language of a source without <c>lang=</c>.</summary>
    public const string DefaultLang = "en";

    /// <summary>The reserved code of mixed-language batches (the reference's <c>all</c>).
    /// </summary>
    public const string MixedLang = "all";

    /// <summary>Parses <c>FILE[:WEIGHT][:lang=CODE]</c>: a last segment <c>lang=CODE</c> is the
    /// language; then a suffix after the last colon that reads as a number is the weight (none
    /// when there is none).</summary>
    /// <exception cref="ZettException">A weight that is not positive and finite, an empty or
    /// malformed language code, or the reserved code <c>all</c>.</exception>
    public static TextSource Parse(string spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        string lang = DefaultLang;
        int langAt = spec.LastIndexOf(":lang=", StringComparison.Ordinal);
        if (langAt > 0)
        {
            lang = spec[(langAt + 6)..];
            spec = spec[..langAt];
            CheckLang(lang, spec);
        }
        else if (spec.StartsWith("lang=", StringComparison.Ordinal))
        {
            throw new ZettException($"{spec}: no file before lang= (FILE[:WEIGHT][:lang=CODE])");
        }
        int colon = spec.LastIndexOf(':');
        if (colon > 0 && double.TryParse(spec.AsSpan(colon + 1), NumberStyles.Float,
            CultureInfo.InvariantCulture, out double weight))
        {
            if (!(weight > 0) || double.IsInfinity(weight))
            {
                throw new ZettException($"{spec[..colon]}: mixture weight must be a positive "
                    + $"number, not '{spec[(colon + 1)..]}'");
            }
            return new TextSource(spec[..colon], weight, lang);
        }
        return new TextSource(spec, null, lang);
    }

    /// <summary>Checks a language code: letters, digits, '-' and '_', not <c>all</c>.</summary>
    /// <param name="lang">The code.</param>
    /// <param name="file">The file it belongs to, for the message.</param>
    public static void CheckLang(string lang, string file)
    {
        ArgumentNullException.ThrowIfNull(lang);
        if (lang.Length == 0 || lang.Length > 64
            || !lang.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_'))
        {
            throw new ZettException($"{file}: lang='{lang}' is not a language code (letters, "
                + "digits, '-' and '_'; FILE[:WEIGHT][:lang=CODE])");
        }
        if (lang == MixedLang)
        {
            throw new ZettException($"{file}: lang={MixedLang} is reserved for the mixed batches "
                + "of --mix-languages");
        }
    }
}

/// <summary>
/// The training text stream of TRAINING.md §3.4–3.5. Each batch comes from one source, drawn by
/// the normalised mixture weights. Each of its texts is packed: stripped documents joined by the
/// end-of-sequence string until the text reaches <c>spanChars</c> characters (the trailing
/// separator dropped, empty documents skipped), then cropped to a window of <c>spanChars</c>
/// characters starting uniformly in <c>0 … max(length − spanChars, 0)</c>; a window edge that
/// would split a surrogate pair moves inside it (the reference counts code points). Documents
/// are streamed (a file is read again from the start when it runs out) through a seeded shuffle
/// buffer, so at most that many documents per source are held; the reference instead permutes
/// whole in-memory datasets. Everything follows from the seed.
/// </summary>
public sealed class TrainText : IDisposable
{
    /// <summary>The reference's characters per token for packing and cropping (16).</summary>
    public const int MaxCharsPerToken = 16;

    private readonly Source[] _sources;
    private readonly double[] _cumulative;
    private readonly Random _rng;
    private readonly string _eos;
    private readonly int _spanChars;
    private readonly int _batchSize;

    /// <summary>Opens every source and reads its first document, so a missing file, an
    /// unreadable one, a Parquet file without its text column or one with no text is an error
    /// here, before any training.</summary>
    /// <param name="sources">The corpora and their weights.</param>
    /// <param name="batchSize">Texts per batch.</param>
    /// <param name="spanChars">Characters per text (block size × 16 in the reference).</param>
    /// <param name="eos">The separator string between packed documents.</param>
    /// <param name="seed">Seed of the mixture, the shuffle and the crops.</param>
    /// <param name="shuffleBuffer">Documents held per source for shuffling (1: file order).
    /// </param>
    public TrainText(IReadOnlyList<TextSource> sources, int batchSize, int spanChars, string eos,
        int seed, int shuffleBuffer = 1024)
    {
        ArgumentNullException.ThrowIfNull(sources);
        ArgumentNullException.ThrowIfNull(eos);
        if (sources.Count == 0)
        {
            throw new ZettException("no training data (give --data FILE[:WEIGHT])");
        }
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(spanChars, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(shuffleBuffer, 1);
        _rng = new Random(seed);
        _eos = eos;
        _spanChars = spanChars;
        _batchSize = batchSize;
        _sources = new Source[sources.Count];
        try
        {
            for (int i = 0; i < sources.Count; i++)
            {
                _sources[i] = new Source(sources[i].File, shuffleBuffer, _rng);
            }
        }
        catch
        {
            Dispose();
            throw;
        }
        double total = sources.Sum(s => s.Weight ?? 1);
        _cumulative = new double[sources.Count];
        double run = 0;
        for (int i = 0; i < sources.Count; i++)
        {
            run += (sources[i].Weight ?? 1) / total;
            _cumulative[i] = run;
        }
    }

    /// <summary>Batches made so far.</summary>
    public long Batches { get; private set; }

    /// <summary>The next batch: its texts and the index of the source they came from.</summary>
    public (string[] Texts, int Source) Next()
    {
        int s = DrawSource();
        var texts = new string[_batchSize];
        for (int i = 0; i < texts.Length; i++)
        {
            texts[i] = Crop(Pack(_sources[s]));
        }
        Batches++;
        return (texts, s);
    }

    /// <summary>One packed and cropped text from a source drawn by the weights (a text of a
    /// mixed-language batch).</summary>
    public string NextText() => Crop(Pack(_sources[DrawSource()]));

    private int DrawSource()
    {
        double u = _rng.NextDouble();
        int s = Array.FindIndex(_cumulative, c => u < c);
        return s < 0 ? _sources.Length - 1 : s;
    }

    private string Pack(Source source)
    {
        var text = new StringBuilder();
        while (text.Length < _spanChars)
        {
            string doc = source.Next().Trim();
            if (doc.Length > 0)
            {
                text.Append(doc).Append(_eos);
            }
        }
        text.Length -= _eos.Length;
        return text.ToString();
    }

    private string Crop(string text)
    {
        int start = _rng.Next(0, Math.Max(text.Length - _spanChars, 0) + 1);
        int end = Math.Min(start + _spanChars, text.Length);
        if (start > 0 && char.IsLowSurrogate(text[start]) && char.IsHighSurrogate(text[start - 1]))
        {
            start++;
        }
        if (end < text.Length && char.IsLowSurrogate(text[end]) && char.IsHighSurrogate(text[end - 1]))
        {
            end--;
        }
        return text[start..end];
    }

    /// <summary>Closes the files.</summary>
    public void Dispose()
    {
        foreach (Source? s in _sources)
        {
            s?.Dispose();
        }
    }

    /// <summary>One file's documents, endlessly, through a shuffle buffer.</summary>
    private sealed class Source : IDisposable
    {
        private readonly string _file;
        private readonly Random _rng;
        private readonly List<string> _buffer;
        private readonly int _capacity;
        private IEnumerator<EvalDocument> _docs;

        public Source(string file, int capacity, Random rng)
        {
            _file = file;
            _rng = rng;
            _capacity = capacity;
            _buffer = new List<string>(Math.Min(capacity, 4096));
            _docs = EvalText.Stream(file).GetEnumerator();
            bool any = false;
            while (_buffer.Count < _capacity && _docs.MoveNext())
            {
                _buffer.Add(_docs.Current.Text);
                any |= !string.IsNullOrWhiteSpace(_docs.Current.Text);
            }
            // Past the first buffer only a non-empty document ends the search, so a file
            // whose text starts late still opens, and an empty one fails now.
            while (!any && _docs.MoveNext())
            {
                any = !string.IsNullOrWhiteSpace(_docs.Current.Text);
                if (any)
                {
                    _buffer.Add(_docs.Current.Text);
                }
            }
            if (!any)
            {
                _docs.Dispose();
                throw new ZettException($"{file}: no text (the file is empty or every "
                    + "document is blank)");
            }
        }

        /// <summary>A random document of the buffer, replaced by the file's next one (the
        /// file restarts when it ends).</summary>
        public string Next()
        {
            int i = _rng.Next(_buffer.Count);
            string doc = _buffer[i];
            if (!_docs.MoveNext())
            {
                _docs.Dispose();
                _docs = EvalText.Stream(_file).GetEnumerator();
                _docs.MoveNext();
            }
            _buffer[i] = _docs.Current.Text;
            return doc;
        }

        public void Dispose() => _docs.Dispose();
    }
}
