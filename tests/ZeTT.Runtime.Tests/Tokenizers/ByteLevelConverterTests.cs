using System.Text;
using System.Text.Json.Nodes;
using ZeTT.Runtime.Tokenizers;

namespace ZeTT.Runtime.Tests.Tokenizers;

public sealed class ByteLevelConverterTests
{
    public static TheoryData<string> Names => [.. TokenizerTestData.Names];

    // hn_n_extra_tokens of the released hypernetworks (ZETT.md §3): the symbols conversion
    // appends to these tokenizers, whose fallback embeddings the checkpoints hold.
    [Theory]
    [InlineData("mistral-7b-v0.1", 522)]
    [InlineData("llama2-tinyllama", 362)]
    public void Conversion_appends_as_many_symbols_as_the_released_hypernetworks_have(string name,
        int extra)
    {
        HfTokenizer converted = TokenizerTestData.Convert(name);
        Assert.Equal(32000, converted.OriginalVocabSize);
        Assert.Equal(32000 + extra, converted.VocabSize);
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void Original_ids_keep_their_bytes_and_the_alphabet_is_complete(string name)
    {
        HfTokenizer original = TokenizerTestData.Load(name);
        HfTokenizer converted = TokenizerTestData.Convert(name);
        Assert.Equal(original.VocabSize, converted.OriginalVocabSize);
        Assert.True(converted.IsByteLevel);
        var special = original.AllSpecialTokens.Select(s => s.Token).ToHashSet();
        for (int id = 0; id < original.VocabSize; id++)
        {
            string before = original.IdToToken(id);
            string after = converted.IdToToken(id);
            if (special.Contains(before))
            {
                Assert.Equal(before, after);
                continue;
            }
            if (original.Model.ByteFallback && after == before
                && System.Text.RegularExpressions.Regex.IsMatch(before, "^<0x[0-9A-F]{2}>$"))
            {
                // Kept literally: its byte's symbol was already another token (or it is 0xFF).
                byte b = System.Convert.ToByte(before[3..5], 16);
                Assert.True(b == 0xFF
                    || converted.TokenToId(ByteLevelAlphabet.ToChar(b).ToString()) < 32000);
                continue;
            }
            byte[]? bytes = ByteLevelAlphabet.TryDecode(after);
            if (bytes is null)
            {
                // Only literal byte-fallback names and added whitespace runs stay non-byte-level.
                Assert.Matches(@"^<0x[0-9A-F]{2}>$|^ +$", after);
                continue;
            }
            Assert.Equal(ExpectedBytes(original, before), bytes);
        }
        foreach (char c in ByteLevelAlphabet.Chars)
        {
            Assert.NotNull(converted.TokenToId(c.ToString()));
        }
    }

    /// <summary>The bytes a token of <paramref name="original"/> stands for.</summary>
    private static byte[] ExpectedBytes(HfTokenizer original, string token)
    {
        if (original.IsByteLevel)
        {
            return ByteLevelAlphabet.TryDecode(token)!;
        }
        if (System.Text.RegularExpressions.Regex.IsMatch(token, "^<0x[0-9A-F]{2}>$")
            && original.Model.ByteFallback)
        {
            return [System.Convert.ToByte(token[3..5], 16)];
        }
        if (original.ModelKind == TokenizerModelKind.WordPiece)
        {
            token = token.StartsWith("##", StringComparison.Ordinal) ? token[2..] : " " + token;
        }
        return Encoding.UTF8.GetBytes(token.Replace('▁', ' '));
    }

    [Fact]
    public void Byte_fallback_tokens_become_bytes_except_existing_symbols_and_0xFF()
    {
        HfTokenizer converted = TokenizerTestData.Convert("mistral-7b-v0.1");
        Assert.Equal("Ċ", converted.IdToToken(3 + 0x0A));
        Assert.Equal("<0x20>", converted.IdToToken(3 + 0x20));  // "▁" already became "Ġ"
        Assert.Equal("<0xFF>", converted.IdToToken(3 + 0xFF));  // the reference maps range(255)
        Assert.Equal(32000, converted.TokenToId("ÿ"));           // so 0xFF is appended first
    }

    [Fact]
    public void Converted_pipeline_is_prepend_space_regex_split_byte_level()
    {
        HfTokenizer converted = TokenizerTestData.Convert("t5-small");
        Assert.Equal("Prepend", (string)converted.Components["normalizer"]!["type"]!);
        Assert.Equal(" ", (string)converted.Components["normalizer"]!["prepend"]!);
        JsonArray pre = converted.Components["pre_tokenizer"]!["pretokenizers"]!.AsArray();
        Assert.Equal(TokenizerPipeline.SplitRegex, (string)pre[0]!["pattern"]!["Regex"]!);
        Assert.Equal("ByteLevel", (string)pre[1]!["type"]!);
        Assert.Equal("ByteLevel", (string)converted.Components["decoder"]!["type"]!);
    }

    [Fact]
    public void Unigram_scores_carry_over_and_missing_bytes_get_minus_100000()
    {
        var original = (UnigramModel)TokenizerTestData.Load("t5-small").Model;
        var converted = (UnigramModel)TokenizerTestData.Convert("t5-small").Model;
        Assert.Equal(original.Pieces[3].Score, converted.Pieces[3].Score);  // "▁" → "Ġ"
        Assert.Equal("Ġ", converted.Pieces[3].Piece);
        Assert.Equal(original.Pieces[8774].Score, converted.Pieces[8774].Score);
        Assert.Equal("ĠHello", converted.Pieces[8774].Piece);
        var appended = converted.Pieces.Skip(original.Pieces.Count).ToList();
        Assert.NotEmpty(appended);
        Assert.All(appended, p => Assert.Equal(ByteLevelConverter.MissingByteScore, p.Score));
    }

    [Fact]
    public void WordPiece_prefix_is_removed_and_other_tokens_get_a_space()
    {
        HfTokenizer converted = TokenizerTestData.Convert("bert-base-uncased");
        Assert.Equal("able", converted.IdToToken(3085));   // "##able"
        Assert.Equal("Ġhello", converted.IdToToken(7592)); // "hello"
        Assert.Equal("[CLS]", converted.IdToToken(101));
        Assert.Equal("", ((WordPieceModel)converted.Model).ContinuingSubwordPrefix);
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void Whitespace_consistency_leaves_only_the_canonical_runs(string name)
    {
        HfTokenizer converted = TokenizerTestData.Convert(name, whitespaceConsistent: true);
        var runs = new List<string>();
        foreach (char c1 in "Ġ\u010A\u0109")
        {
            for (int i = 1; i < 16; i++)
            {
                foreach (char c2 in "Ġ\u010A\u0109")
                {
                    runs.Add(c2 + new string(c1, i));
                }
            }
        }
        var runSet = runs.ToHashSet();
        var seen = new HashSet<string>();
        for (int id = 0; id < converted.VocabSize; id++)
        {
            string token = converted.IdToToken(id);
            if (runSet.Contains(token))
            {
                Assert.True(seen.Add(token), $"'{token}' appears twice");
            }
            else if (token.StartsWith("<unused_whitespace__", StringComparison.Ordinal))
            {
                Assert.Equal($"<unused_whitespace__{id}>", token);
            }
            else
            {
                Assert.True(ByteLevelConverter.WhitespaceCount(token) <= 1
                    && token.Trim().Length > 0, $"id {id} '{token}'");
            }
        }
        Assert.Equal(runs.Count, seen.Count);
    }

    [Fact]
    public void Matching_moves_special_tokens_to_the_other_tokenizers_ids()
    {
        HfTokenizer gpt2 = TokenizerTestData.Load("gpt2");
        HfTokenizer converted = TokenizerTestData.Convert("gpt2", true, "mistral-7b-v0.1");
        Assert.Equal(["<unk>", "<s>", "</s>"], Enumerable.Range(0, 3).Select(converted.IdToToken));
        Assert.Null(converted.TokenToId("<|endoftext|>"));
        Assert.Equal(gpt2.IdToToken(0), converted.IdToToken(3));   // shifted by the 3 inserted
        Assert.Equal([("<s>", 1), ("</s>", 2), ("<unk>", 0)], converted.AllSpecialTokens);
        Assert.Equal(2, converted.EosTokenId);
        Assert.Null(converted.OriginalVocabSize);
        JsonNode post = converted.Components["post_processor"]!;
        Assert.Equal("TemplateProcessing", (string)post["type"]!);
        Assert.Equal(1, (int)post["special_tokens"]!["<s>"]!["ids"]![0]!);
        Assert.All(converted.AddedTokens, a => Assert.True(a.Special));
        Assert.Equal([0, 1, 2], converted.AddedTokens.Select(a => a.Id).Order());
    }

    [Fact]
    public void Matching_to_roberta_fixes_the_roberta_post_processor()
    {
        HfTokenizer converted = TokenizerTestData.Convert("bert-base-uncased", true, "roberta-base");
        JsonNode post = converted.Components["post_processor"]!;
        Assert.Equal("RobertaProcessing", (string)post["type"]!);
        Assert.Equal(converted.TokenToId("</s>"), (int)post["sep"]![1]!);
        Assert.Equal(0, (int)post["cls"]![1]!);
        // Python's list.insert past the end appends: <mask> (roberta id 50264) lands last.
        Assert.Equal(converted.VocabSize - 1, converted.TokenToId("<mask>"));
        Assert.Null(converted.TokenToId("[CLS]"));
    }

    [Fact]
    public void Matched_target_drops_its_own_additional_special_tokens()
    {
        HfTokenizer converted = TokenizerTestData.Convert("t5-small", true, "mistral-7b-v0.1");
        Assert.Null(converted.TokenToId("<extra_id_0>"));
        Assert.Empty(converted.SpecialTokens.Additional);
        Assert.Equal([("<s>", 1), ("</s>", 2), ("<unk>", 0)], converted.AllSpecialTokens);
    }

    [Fact]
    public void Extra_merges_come_first_and_every_merge_makes_a_vocabulary_token()
    {
        var original = (BpeModel)TokenizerTestData.Load("mistral-7b-v0.1").Model;
        var converted = (BpeModel)TokenizerTestData.Convert("mistral-7b-v0.1").Model;
        int extra = converted.Merges.Count - original.Merges.Count;
        Assert.True(extra > 0);
        Assert.Equal(("Ġ", "t"), converted.Merges[extra]);  // the original first merge "▁ t"
        foreach ((string a, string b) in converted.Merges)
        {
            Assert.NotNull(converted.TokenToId(a + b));
        }
    }

    [Fact]
    public void A_merge_repeated_by_the_extra_merges_is_kept_once_at_its_last_rank()
    {
        // Mistral's '<0xFF>' is outside the reference's byte-fallback table (range(255)), so
        // spelling it needs 'x F', which is also an original merge: the tokenizers library
        // keeps that pair once, at the original merge's (later) rank.
        var original = (BpeModel)TokenizerTestData.Load("mistral-7b-v0.1").Model;
        var converted = (BpeModel)TokenizerTestData.Convert("mistral-7b-v0.1").Model;
        var pairs = converted.Merges.Select(m => m.Left + " " + m.Right).ToList();
        Assert.Equal(pairs.Count, pairs.Distinct(StringComparer.Ordinal).Count());
        int originalRank = original.Merges.IndexOf(("x", "F"));
        Assert.True(originalRank >= 0);
        Assert.Equal(converted.LeadingExtraMerges + originalRank, pairs.IndexOf("x F"));
        Assert.Contains("< 0", pairs.Take(converted.LeadingExtraMerges));
    }

    [Fact]
    public void Special_tokens_of_a_conversion_are_not_normalized_and_keep_their_strip_flags()
    {
        // roberta-base's special tokens are "normalized" in its tokenizer.json; under the
        // converted Prepend(" ") normalizer transformers would then report id 0 as " <s>".
        Assert.Contains(TokenizerTestData.Load("roberta-base").AddedTokens, t => t.Normalized);
        HfTokenizer converted = TokenizerTestData.Convert("gpt2", true, "roberta-base");
        Assert.Equal(5, converted.AddedTokens.Count);
        Assert.All(converted.AddedTokens, t => Assert.False(t.Normalized, t.Content));
        Assert.True(converted.AddedTokens.Single(t => t.Content == "<mask>").LStrip);
    }
}
