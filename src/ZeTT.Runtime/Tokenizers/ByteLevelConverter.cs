using System.Text;
using System.Text.Json.Nodes;

namespace ZeTT.Runtime.Tokenizers;

/// <summary>
/// Converts a tokenizer to byte level exactly as the reference's <c>convert_to_byte_level</c>
/// does, so that every id it assigns is the reference's id (a hypernetwork's fallback
/// embeddings are indexed by <c>id − original_vocab_size</c>). Spec: ZETT.md §5.
/// </summary>
public static class ByteLevelConverter
{
    /// <summary>Score given to alphabet bytes a Unigram vocabulary lacks.</summary>
    public const double MissingByteScore = -100_000;

    private const string UnusedWhitespacePrefix = "<unused_whitespace__";

    private static readonly char[] ExtraWhitespace = ['Ġ', 'Ċ', 'ĉ'];

    /// <summary>
    /// Returns the byte-level version of <paramref name="tokenizer"/>:
    /// <list type="bullet">
    /// <item>every token becomes its byte string in GPT-2's alphabet (byte-level tokenizers keep
    /// theirs; the Metaspace character becomes a space; a continuing-subword prefix is removed and
    /// tokens without it get a leading space); special tokens stay as they are;</item>
    /// <item>byte-fallback tokens <c>&lt;0x00&gt;</c>…<c>&lt;0xFE&gt;</c> become their byte's
    /// symbol unless that symbol is already a token (the reference's range stops before 0xFF);
    /// </item>
    /// <item>alphabet symbols still missing are appended in byte order;</item>
    /// <item>with <paramref name="makeWhitespaceConsistent"/>: tokens with more than one of
    /// <c>Ġ Ċ ĉ</c>, or only whitespace, become <c>&lt;unused_whitespace__ID&gt;</c>, and the
    /// canonical runs (<c>c2 + c1×i</c>, i = 1…15) not yet present are appended;</item>
    /// <item>with <paramref name="matchSpecialTokensTo"/>: both tokenizers' special tokens are
    /// removed and the other tokenizer's are inserted at its ids (its post-processor comes along
    /// with ids fixed);</item>
    /// <item>BPE: merges rewritten in byte form (whitespace-run merges dropped when making
    /// whitespace consistent), plus extra merges and vocabulary that make tokens reachable that
    /// no merge chain builds (extra vocabulary appended in sorted order);</item>
    /// <item>Unigram: scores carried over, missing bytes at −100000, 0 for new tokens.</item>
    /// </list>
    /// The normalizer becomes "prepend a space", the pre-tokenizer the reference's regex split
    /// plus ByteLevel, the decoder ByteLevel.
    /// </summary>
    public static HfTokenizer Convert(HfTokenizer tokenizer, bool makeWhitespaceConsistent = false,
        HfTokenizer? matchSpecialTokensTo = null)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        string file = tokenizer.Source;
        int originalLength = tokenizer.VocabSize;
        bool alreadyByteLevel = tokenizer.IsByteLevel;
        ByteFunction toBytes = ByteFunction.For(tokenizer);
        var ownSpecial = new HashSet<string>(tokenizer.SpecialTokens.All(), StringComparer.Ordinal);

        var forms = new List<string>(originalLength + 1024);
        for (int id = 0; id < originalLength; id++)
        {
            string raw = tokenizer.TryIdToToken(id) ?? throw new ZettException(
                $"{file}: no token has id {id} although the tokenizer has {originalLength} " +
                "tokens (ids must be contiguous to convert it)");
            forms.Add(ownSpecial.Contains(raw) ? raw : toBytes.Apply(raw));
        }

        var byteFallbackNames = new Dictionary<string, string>(StringComparer.Ordinal);
        if (tokenizer.Model.ByteFallback)
        {
            // The reference maps range(255): <0xFF> is never replaced.
            for (int b = 0; b < 255; b++)
            {
                byteFallbackNames[$"<0x{b:X2}>"] = ByteLevelAlphabet.ToChar((byte)b).ToString();
            }
            var present = new HashSet<string>(forms, StringComparer.Ordinal);
            for (int i = 0; i < forms.Count; i++)
            {
                if (byteFallbackNames.TryGetValue(forms[i], out string? symbol)
                    && !present.Contains(symbol))
                {
                    forms[i] = symbol;
                }
            }
        }

        var formSet = new HashSet<string>(forms, StringComparer.Ordinal);
        foreach (char c in ByteLevelAlphabet.Chars)
        {
            if (!formSet.Contains(c.ToString()))
            {
                forms.Add(c.ToString());
            }
        }

        if (makeWhitespaceConsistent)
        {
            MakeWhitespaceConsistent(forms);
        }

        SpecialTokenMap resultSpecials = tokenizer.SpecialTokens;
        HashSet<string> specialForChecks = ownSpecial;
        JsonNode? postProcessor = tokenizer.Components["post_processor"]?.DeepClone();
        if (matchSpecialTokensTo is not null)
        {
            var otherSpecial = new HashSet<string>(matchSpecialTokensTo.SpecialTokens.All(),
                StringComparer.Ordinal);
            forms.RemoveAll(s => ownSpecial.Contains(s) || otherSpecial.Contains(s));
            var inserts = matchSpecialTokensTo.AllSpecialTokens.Where(t => t.Id >= 0)
                .OrderBy(t => t.Id).ToList();
            foreach ((string token, int id) in inserts)
            {
                forms.Insert(Math.Min(id, forms.Count), token);
            }
            specialForChecks = otherSpecial;
            SpecialTokenMap other = matchSpecialTokensTo.SpecialTokens;
            resultSpecials = tokenizer.SpecialTokens with
            {
                Bos = other.Bos,
                Eos = other.Eos,
                Unk = other.Unk,
                Sep = other.Sep,
                Pad = other.Pad,
                Cls = other.Cls,
                Mask = other.Mask,
            };
        }

        TokenizerModel model = tokenizer.Model switch
        {
            UnigramModel unigram => ConvertUnigram(unigram, forms, toBytes, makeWhitespaceConsistent,
                file),
            BpeModel bpe => ConvertBpe(bpe, forms, toBytes, makeWhitespaceConsistent,
                alreadyByteLevel ? originalLength : 0, specialForChecks, byteFallbackNames, file),
            WordPieceModel wordPiece => new WordPieceModel(Vocabulary(forms),
                WithPrefixCleared(wordPiece.Options, toBytes), file),
            _ => throw new ZettException($"{file}: cannot convert a {tokenizer.ModelKind} model"),
        };

        if (matchSpecialTokensTo?.Components["post_processor"] is JsonNode otherPost)
        {
            postProcessor = otherPost.DeepClone();
            FixPostProcessorIds(postProcessor, forms, file);
        }

        JsonObject components = ByteLevelComponents(tokenizer.Components["truncation"]?.DeepClone(),
            tokenizer.Components["padding"]?.DeepClone(), postProcessor);

        // Special tokens that are no longer in the vocabulary (the converted target's own
        // additional special tokens after matching) are dropped so that a saved tokenizer does
        // not grow new ids when transformers loads it.
        resultSpecials = resultSpecials with
        {
            Additional = [.. resultSpecials.Additional.Where(t => model.TokenToId(t) is not null)],
        };
        List<HfAddedToken> added = SpecialAddedTokens(model, resultSpecials,
            tokenizer.AddedTokens.Concat(matchSpecialTokensTo?.AddedTokens ?? []));

        return new HfTokenizer(tokenizer.Source, model, components, added, resultSpecials,
            tokenizer.TokenizerConfig, tokenizer.TokenizerClass)
        {
            OriginalVocabSize = matchSpecialTokensTo is null ? originalLength : null,
        };
    }

    /// <summary>tokenizer.json's components for a byte-level tokenizer: normalizer "prepend a
    /// space", <see cref="ByteLevelPreTokenizer"/>, decoder ByteLevel, and the given
    /// truncation, padding and post-processor.</summary>
    internal static JsonObject ByteLevelComponents(JsonNode? truncation, JsonNode? padding,
        JsonNode? postProcessor) => new()
        {
            ["version"] = "1.0",
            ["truncation"] = truncation,
            ["padding"] = padding,
            ["normalizer"] = new JsonObject { ["type"] = "Prepend", ["prepend"] = " " },
            ["pre_tokenizer"] = ByteLevelPreTokenizer(),
            ["post_processor"] = postProcessor,
            ["decoder"] = new JsonObject
            {
                ["type"] = "ByteLevel",
                ["add_prefix_space"] = true,
                ["trim_offsets"] = true,
                ["use_regex"] = true,
            },
        };

    /// <summary>The added tokens of a byte-level tokenizer: each special token of
    /// <paramref name="specials"/> that the model has, at its model id, special and not
    /// normalized, with the lstrip/rstrip/single_word of its first entry in
    /// <paramref name="originals"/>.</summary>
    internal static List<HfAddedToken> SpecialAddedTokens(TokenizerModel model,
        SpecialTokenMap specials, IEnumerable<HfAddedToken> originals)
    {
        var originalAdded = new Dictionary<string, HfAddedToken>(StringComparer.Ordinal);
        foreach (HfAddedToken t in originals)
        {
            originalAdded.TryAdd(t.Content, t);
        }
        var added = new List<HfAddedToken>();
        foreach (string token in specials.All())
        {
            if (model.TokenToId(token) is int id)
            {
                // normalized = false, as transformers re-adds special tokens (normalized = not
                // special) after the reference drops them: under the converted Prepend(" ")
                // normalizer a normalized special token would read " <s>" (roberta's are
                // normalized in the original). lstrip/rstrip/single_word carry over.
                added.Add(originalAdded.TryGetValue(token, out HfAddedToken? o)
                    ? o with { Id = id, Special = true, Normalized = false }
                    : new HfAddedToken(id, token, Special: true));
            }
        }
        return added;
    }

    /// <summary>The pre-tokenizer the converted tokenizers use: the reference's regex (matches
    /// kept, the rest removed) then ByteLevel without its own regex.</summary>
    internal static JsonObject ByteLevelPreTokenizer() => new()
    {
        ["type"] = "Sequence",
        ["pretokenizers"] = new JsonArray(
            new JsonObject
            {
                ["type"] = "Split",
                ["pattern"] = new JsonObject { ["Regex"] = TokenizerPipeline.SplitRegex },
                ["behavior"] = "Removed",
                ["invert"] = true,
            },
            new JsonObject
            {
                ["type"] = "ByteLevel",
                ["add_prefix_space"] = false,
                ["trim_offsets"] = true,
                ["use_regex"] = false,
            }),
    };

    internal static int WhitespaceCount(string s)
    {
        int n = 0;
        foreach (char c in s)
        {
            if (c is 'Ġ' or 'Ċ' or 'ĉ')
            {
                n++;
            }
        }
        return n;
    }

    /// <summary>Python's <c>len(s.strip()) == 0</c>.</summary>
    private static bool IsBlank(string s)
    {
        foreach (char c in s)
        {
            if (!(char.IsWhiteSpace(c) || (c >= '\x1c' && c <= '\x1f')))
            {
                return false;
            }
        }
        return true;
    }

    private static void MakeWhitespaceConsistent(List<string> forms)
    {
        var allowed = new List<string>();
        foreach (char c1 in ExtraWhitespace)
        {
            for (int i = 1; i < 16; i++)
            {
                foreach (char c2 in ExtraWhitespace)
                {
                    allowed.Add(c2 + new string(c1, i));
                }
            }
        }
        var allowedSet = new HashSet<string>(allowed, StringComparer.Ordinal);
        var found = new HashSet<string>(StringComparer.Ordinal);
        int count = forms.Count;
        for (int i = 0; i < count; i++)
        {
            string s = forms[i];
            if (allowedSet.Contains(s) && !found.Contains(s))
            {
                found.Add(s);
            }
            else if (WhitespaceCount(s) > 1 || IsBlank(s))
            {
                forms[i] = $"{UnusedWhitespacePrefix}{i}>";
            }
        }
        forms.AddRange(allowed.Where(a => !found.Contains(a)));
    }

    private static UnigramModel ConvertUnigram(UnigramModel model, List<string> forms,
        ByteFunction toBytes, bool makeWhitespaceConsistent, string file)
    {
        var scores = new Dictionary<string, double>(StringComparer.Ordinal);
        foreach ((string piece, double score) in model.Pieces)
        {
            scores[toBytes.Apply(piece)] = score;
        }
        foreach (char c in ByteLevelAlphabet.Chars)
        {
            scores.TryAdd(c.ToString(), MissingByteScore);
        }
        if (makeWhitespaceConsistent)
        {
            foreach (string key in scores.Keys.Where(k => WhitespaceCount(k) > 1).ToList())
            {
                scores.Remove(key);
            }
        }
        var pieces = forms.Select(f => (f, scores.GetValueOrDefault(f, 0.0))).ToList();
        var options = (JsonObject)model.Options.DeepClone();
        return new UnigramModel(pieces, model.UnkId, model.ByteFallback, options, file);
    }

    private static BpeModel ConvertBpe(BpeModel model, List<string> forms, ByteFunction toBytes,
        bool makeWhitespaceConsistent, int checkFrom, HashSet<string> specialTokens,
        Dictionary<string, string> byteFallbackNames, string file)
    {
        var formSet = new HashSet<string>(forms, StringComparer.Ordinal);
        var inverse = new Dictionary<string, List<(string, string)>>(StringComparer.Ordinal);
        var merges = new List<(string, string)>(model.Merges.Count);
        foreach ((string a, string b) in model.Merges)
        {
            string x = toBytes.Apply(a);
            string y = toBytes.Apply(b);
            string z = x + y;
            if (makeWhitespaceConsistent && WhitespaceCount(z) > 1)
            {
                continue;
            }
            if (!inverse.TryGetValue(z, out List<(string, string)>? list))
            {
                inverse[z] = list = [];
            }
            list.Add((x, y));
            merges.Add((x, y));
        }

        // Leaves of the merge tree that are longer than one symbol: tokens (or parts) no merge
        // chain builds.
        var leavesMemo = new Dictionary<string, HashSet<string>>(StringComparer.Ordinal);
        var problematic = new HashSet<string>(StringComparer.Ordinal);
        for (int i = checkFrom; i < forms.Count; i++)
        {
            string token = forms[i];
            if (specialTokens.Contains(token) || byteFallbackNames.ContainsKey(token)
                || token.StartsWith(UnusedWhitespacePrefix, StringComparison.Ordinal))
            {
                continue;
            }
            foreach (string leaf in Leaves(token, inverse, leavesMemo))
            {
                if (leaf.Length > 1)
                {
                    problematic.Add(leaf);
                }
            }
        }

        // The reference walks a Python set here, whose order depends on string hashing; sorting
        // makes ours deterministic. Only the order inside the extra-merge blocks can differ.
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var preMerges = new List<(string, string)>();
        var postMerges = new List<(string, string)>();
        var extraVocab = new SortedSet<string>(StringComparer.Ordinal);
        foreach (string token in problematic.Order(StringComparer.Ordinal))
        {
            foreach ((string, string) merge in MergesBuilding(token, formSet, extraVocab))
            {
                if (seen.Add(merge.Item1 + " " + merge.Item2))
                {
                    (makeWhitespaceConsistent && WhitespaceCount(token) > 1 ? postMerges : preMerges)
                        .Add(merge);
                }
            }
        }
        forms.AddRange(extraVocab);
        var allMerges = new List<(string, string)>(preMerges.Count + merges.Count + postMerges.Count);
        allMerges.AddRange(preMerges);
        allMerges.AddRange(merges);
        allMerges.AddRange(postMerges);

        // An extra merge can repeat an original one (Mistral's '<0xFF>', which the reference's
        // byte-fallback table misses, spells 'x F'). The tokenizers library keeps a repeated
        // pair at its last rank and writes it once, there; so do we.
        var lastIndex = new Dictionary<(string, string), int>(allMerges.Count);
        for (int i = 0; i < allMerges.Count; i++)
        {
            lastIndex[allMerges[i]] = i;
        }
        var kept = new List<(string, string)>(lastIndex.Count);
        int leading = 0, trailing = 0;
        for (int i = 0; i < allMerges.Count; i++)
        {
            if (lastIndex[allMerges[i]] == i)
            {
                kept.Add(allMerges[i]);
                leading += i < preMerges.Count ? 1 : 0;
                trailing += i >= preMerges.Count + merges.Count ? 1 : 0;
            }
        }

        return new BpeModel(Vocabulary(forms), kept, WithPrefixCleared(model.Options, toBytes),
            file)
        {
            LeadingExtraMerges = leading,
            TrailingExtraMerges = trailing,
        };
    }

    private static HashSet<string> Leaves(string token,
        Dictionary<string, List<(string, string)>> inverse,
        Dictionary<string, HashSet<string>> memo)
    {
        if (memo.TryGetValue(token, out HashSet<string>? cached))
        {
            return cached;
        }
        var leaves = new HashSet<string>(StringComparer.Ordinal);
        if (inverse.TryGetValue(token, out List<(string, string)>? parts))
        {
            foreach ((string x, string y) in parts)
            {
                leaves.UnionWith(Leaves(x, inverse, memo));
                leaves.UnionWith(Leaves(y, inverse, memo));
            }
        }
        else
        {
            leaves.Add(token);
        }
        memo[token] = leaves;
        return leaves;
    }

    /// <summary>The reference's <c>get_merges</c>: repeated passes over the adjacent pairs of
    /// the current symbols, each pair merged everywhere left to right, until one symbol is left.
    /// New intermediate strings go to <paramref name="extraVocab"/>.</summary>
    private static List<(string, string)> MergesBuilding(string token, HashSet<string> forms,
        SortedSet<string> extraVocab)
    {
        var merges = new List<(string, string)>();
        var atoms = token.Select(c => c.ToString()).ToList();
        while (atoms.Count > 1)
        {
            string[] frozen = [.. atoms];
            for (int p = 0; p + 1 < frozen.Length; p++)
            {
                string c1 = frozen[p];
                string c2 = frozen[p + 1];
                bool applied = false;
                for (int i = 0; i < atoms.Count - 1; i++)
                {
                    if (atoms[i] == c1 && atoms[i + 1] == c2)
                    {
                        atoms[i] = c1 + c2;
                        atoms.RemoveAt(i + 1);
                        applied = true;
                    }
                }
                if (applied)
                {
                    merges.Add((c1, c2));
                    if (!forms.Contains(c1 + c2))
                    {
                        extraVocab.Add(c1 + c2);
                    }
                }
            }
        }
        return merges;
    }

    /// <summary><c>{form: index}</c>: a form listed twice keeps its last index.</summary>
    private static Dictionary<string, int> Vocabulary(List<string> forms)
    {
        var vocab = new Dictionary<string, int>(forms.Count, StringComparer.Ordinal);
        for (int i = 0; i < forms.Count; i++)
        {
            vocab[forms[i]] = i;
        }
        return vocab;
    }

    private static JsonObject WithPrefixCleared(JsonObject options, ByteFunction toBytes)
    {
        var copy = (JsonObject)options.DeepClone();
        if (toBytes.ContinuingSubwordPrefix is not null)
        {
            copy["continuing_subword_prefix"] = "";
        }
        return copy;
    }

    /// <summary>Rewrites the token ids in a post-processor to each token's index in
    /// <paramref name="forms"/>.</summary>
    internal static void FixPostProcessorIds(JsonNode data, IList<string> forms, string file)
    {
        int IndexOf(string token)
        {
            int i = forms.IndexOf(token);
            return i >= 0 ? i : throw new ZettException(
                $"{file}: post-processor token '{token}' is not in the converted vocabulary");
        }
        switch (data["type"]?.GetValue<string>())
        {
            case "TemplateProcessing":
                if (data["special_tokens"] is JsonObject specials)
                {
                    foreach (KeyValuePair<string, JsonNode?> kv in specials)
                    {
                        JsonArray tokens = kv.Value!["tokens"]!.AsArray();
                        kv.Value["ids"] = new JsonArray(
                            [.. tokens.Select(t => (JsonNode)IndexOf(t!.GetValue<string>()))]);
                    }
                }
                break;
            case "RobertaProcessing":
                foreach (string key in new[] { "sep", "cls" })
                {
                    JsonArray pair = data[key]!.AsArray();
                    pair[1] = IndexOf(pair[0]!.GetValue<string>());
                }
                break;
            case "Sequence":
                foreach (JsonNode? p in data["processors"]?.AsArray() ?? [])
                {
                    FixPostProcessorIds(p!, forms, file);
                }
                break;
        }
    }

    /// <summary>The reference's <c>get_byte_fn</c>: how one token of this tokenizer becomes a
    /// byte-level string.</summary>
    private sealed class ByteFunction
    {
        private ByteFunction(bool identity, string? metaChar, string? prefix)
        {
            Identity = identity;
            MetaChar = metaChar;
            ContinuingSubwordPrefix = prefix;
        }

        public bool Identity { get; }

        public string? MetaChar { get; }

        public string? ContinuingSubwordPrefix { get; }

        public static ByteFunction For(HfTokenizer tokenizer)
        {
            string? prefix = tokenizer.Model switch
            {
                BpeModel b => b.ContinuingSubwordPrefix,
                WordPieceModel w => w.Options["continuing_subword_prefix"] is null ? null
                    : w.ContinuingSubwordPrefix,
                _ => null,
            };
            if (tokenizer.IsByteLevel)
            {
                if (!string.IsNullOrEmpty(prefix))
                {
                    throw new ZettException(
                        $"{tokenizer.Source}: a byte-level tokenizer with continuing_subword_prefix " +
                        $"'{prefix}' cannot be converted");
                }
                return new ByteFunction(true, null, null);
            }
            string probe = TokenizerPipeline.Normalize(tokenizer.Components["normalizer"], " test",
                tokenizer.Source);
            List<string> pieces = TokenizerPipeline.PreTokenize(
                tokenizer.Components["pre_tokenizer"], probe, tokenizer.Source);
            if (pieces.Count == 0 || pieces[0].Length == 0)
            {
                throw new ZettException(
                    $"{tokenizer.Source}: the normalizer and pre-tokenizer turn \" test\" into " +
                    "nothing; cannot find the word-boundary character");
            }
            string first = pieces[0];
            string? meta = first[0] != ' ' && first != "test"
                ? char.ConvertFromUtf32(char.ConvertToUtf32(first, 0)) : null;
            return new ByteFunction(false, meta, prefix);
        }

        public string Apply(string token)
        {
            if (Identity)
            {
                return token;
            }
            if (MetaChar is not null)
            {
                token = token.Replace(MetaChar, " ", StringComparison.Ordinal);
            }
            if (ContinuingSubwordPrefix is not null)
            {
                token = token.StartsWith(ContinuingSubwordPrefix, StringComparison.Ordinal)
                    ? token[ContinuingSubwordPrefix.Length..] : " " + token;
            }
            return ByteLevelAlphabet.Encode(Encoding.UTF8.GetBytes(token));
        }
    }
}
