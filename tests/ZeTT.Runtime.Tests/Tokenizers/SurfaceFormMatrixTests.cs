using ZeTT.Runtime.Tokenizers;

namespace ZeTT.Runtime.Tests.Tokenizers;

public sealed class SurfaceFormMatrixTests
{
    public static TheoryData<string, string> Pairs()
    {
        var data = new TheoryData<string, string>();
        foreach (string hn in new[] { "mistral-7b-v0.1", "llama2-tinyllama", "roberta-base" })
        {
            foreach (string target in TokenizerTestData.Names)
            {
                data.Add(hn, target);
            }
        }
        data.Add("mistral-7b-v0.1", "gpt2-builtin");
        return data;
    }

    [Theory]
    [MemberData(nameof(Pairs))]
    public void Surface_forms_spell_the_target_token_unless_truncated(string hnName,
        string targetName)
    {
        HfTokenizer hn = TokenizerTestData.Convert(hnName);
        hn = hn.PadTokenId is null ? hn.WithPadToken(hn.SpecialTokens.Eos) : hn;
        HfTokenizer target = TokenizerTestData.Convert(
            targetName == "gpt2-builtin" ? "gpt2" : targetName, true, hnName);
        const int maxLen = 7;
        SurfaceFormMatrix m = SurfaceFormMatrix.Build(target, hn, maxLen);
        Assert.Equal(target.VocabSize, m.Rows);
        Assert.Equal(maxLen, m.MaxLen);
        var special = hn.AllSpecialTokens.ToDictionary(s => s.Token, s => s.Id);
        int pad = hn.PadTokenId!.Value;
        int truncated = 0;
        for (int row = 0; row < m.Rows; row++)
        {
            string token = target.IdToToken(row);
            ReadOnlySpan<int> ids = m.Row(row);
            if (special.TryGetValue(token, out int id))
            {
                Assert.Equal(id, ids[0]);
                Assert.All(ids[1..].ToArray(), x => Assert.Equal(pad, x));
                continue;
            }
            int[] full = hn.TokenizeRawModel(token);
            int n = Math.Min(full.Length, maxLen);
            truncated += full.Length > maxLen ? 1 : 0;
            Assert.Equal(full.AsSpan(0, n).ToArray(), ids[..n].ToArray());
            Assert.All(ids[n..].ToArray(), x => Assert.Equal(pad, x));
            string spelled = string.Concat(full.Select(hn.IdToToken));
            Assert.True(spelled == token, $"row {row}: '{token}' spelled '{spelled}'");
        }
        Assert.Equal(truncated, m.TruncatedCount);
    }

    [Fact]
    public void Special_tokens_of_the_hn_tokenizer_are_single_ids_padded_with_eos()
    {
        HfTokenizer hn = TokenizerTestData.Convert("mistral-7b-v0.1");
        hn = hn.WithPadToken(hn.SpecialTokens.Eos);
        SurfaceFormMatrix m = SurfaceFormMatrix.BuildForTokens(
            ["<s>", "ĠHello", "<unk>", "Ġthe", ""], hn, 4);
        Assert.Equal(2, m.PadId);
        Assert.Equal([1, 2, 2, 2], m.Row(0).ToArray());
        Assert.Equal([hn.TokenToId("ĠHello")!.Value, 2, 2, 2], m.Row(1).ToArray());
        Assert.Equal([0, 2, 2, 2], m.Row(2).ToArray());
        Assert.Equal([2, 2, 2, 2], m.Row(4).ToArray());
        Assert.Equal(0, m.TruncatedCount);
    }

    [Fact]
    public void Long_tokens_are_truncated_and_counted()
    {
        HfTokenizer hn = TokenizerTestData.Convert("roberta-base");
        string longToken = ByteLevelAlphabet.EncodeUtf8("\u00e9\u00e8\u00ea\u00eb\u00e0\u00e2\u00e4\u00e7");
        SurfaceFormMatrix m = SurfaceFormMatrix.BuildForTokens([longToken, "Ġthe"], hn, 2);
        Assert.Equal(1, m.TruncatedCount);
        Assert.Equal(hn.TokenizeRawModel(longToken)[..2], m.Row(0).ToArray());
        Assert.Equal(1, m.PadId);
    }

    [Fact]
    public void A_token_outside_the_byte_alphabet_is_an_error_naming_it()
    {
        HfTokenizer hn = TokenizerTestData.Convert("roberta-base");
        var e = Assert.Throws<ZettException>(() =>
            SurfaceFormMatrix.BuildForTokens(["Ġok", "▁bad"], hn, 4));
        Assert.Contains("'▁bad'", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Hn_tokenizer_without_pad_or_eos_is_an_error()
    {
        HfTokenizer hn = TokenizerTestData.Convert("bert-base-uncased").WithPadToken(null);
        Assert.Throws<ZettException>(() => SurfaceFormMatrix.BuildForTokens(["Ġa"], hn, 4));
    }

    [Fact]
    public void Transfer_preparation_converts_both_and_pads_with_eos()
    {
        TransferTokenizers t = TransferTokenizers.Prepare(
            TokenizerTestData.Dir("mistral-7b-v0.1"), TokenizerTestData.Dir("t5-small"), null, 7);
        Assert.Equal(2, t.HnTokenizer.PadTokenId);
        Assert.Equal(32522, t.HnTokenizer.VocabSize);
        Assert.Equal(t.TargetTokenizer.VocabSize, t.SurfaceForms.Rows);
        Assert.Equal([("<s>", 1), ("</s>", 2), ("<unk>", 0)], t.TargetTokenizer.AllSpecialTokens);
        Assert.Equal([1, 2, 2, 2, 2, 2, 2], t.SurfaceForms.Row(1).ToArray());
    }
}
