using ZeTT.Runtime.Tokenizers;

namespace ZeTT.Runtime.Tests.Tokenizers;

public sealed class HfTokenizerTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("zett-tok-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    // len(tokenizer) and all_special_tokens/all_special_ids as transformers 4.x reports them for
    // the Hugging Face originals of these files.
    [Theory]
    [InlineData("gpt2", 50257, "<|endoftext|>=50256")]
    [InlineData("roberta-base", 50265, "<s>=0 </s>=2 <unk>=3 <pad>=1 <mask>=50264")]
    [InlineData("bert-base-uncased", 30522, "[UNK]=100 [SEP]=102 [PAD]=0 [CLS]=101 [MASK]=103")]
    [InlineData("llama2-tinyllama", 32000, "<s>=1 </s>=2 <unk>=0")]
    [InlineData("mistral-7b-v0.1", 32000, "<s>=1 </s>=2 <unk>=0")]
    [InlineData("gpt-neox-20b", 50277, "<|endoftext|>=0")]
    public void Real_tokenizers_have_transformers_length_and_special_tokens(string name,
        int length, string specials)
    {
        HfTokenizer t = TokenizerTestData.Load(name);
        Assert.Equal(length, t.VocabSize);
        Assert.Equal(specials, string.Join(" ", t.AllSpecialTokens.Select(s => $"{s.Token}={s.Id}")));
    }

    [Fact]
    public void T5_special_tokens_are_eos_unk_pad_then_the_100_extra_ids()
    {
        HfTokenizer t = TokenizerTestData.Load("t5-small");
        Assert.Equal(32100, t.VocabSize);
        Assert.Equal(103, t.AllSpecialTokens.Count);
        Assert.Equal([("</s>", 1), ("<unk>", 2), ("<pad>", 0), ("<extra_id_0>", 32099)],
            t.AllSpecialTokens.Take(4));
        Assert.Equal(("<extra_id_99>", 32000), t.AllSpecialTokens[^1]);
        Assert.Equal(0, t.PadTokenId);
        Assert.Equal(1, t.EosTokenId);
        Assert.Equal(2, t.UnkTokenId);
        Assert.Null(t.BosTokenId);
    }

    [Theory]
    [InlineData("[\"<extra_id_0>\", {\"content\": \"<extra_id_1>\"}]")]
    [InlineData("{\"first\": \"<extra_id_0>\", \"second\": \"<extra_id_1>\"}")]
    public void Transformers5_extra_special_tokens_are_the_additional_special_tokens(string extra)
    {
        // transformers 5 saves additional_special_tokens as extra_special_tokens (a list, or
        // an object of named tokens); the tokenizer.json is t5-small's, the class generic.
        File.Copy(Path.Combine(TokenizerTestData.Dir("t5-small"), "tokenizer.json"),
            Path.Combine(_dir, "tokenizer.json"));
        File.WriteAllText(Path.Combine(_dir, "tokenizer_config.json"),
            "{\"tokenizer_class\": \"TokenizersBackend\", \"eos_token\": \"</s>\", " +
            "\"extra_special_tokens\": " + extra + "}");
        HfTokenizer t = HfTokenizer.Load(_dir);
        Assert.Equal([("</s>", 1), ("<extra_id_0>", 32099), ("<extra_id_1>", 32098)],
            t.AllSpecialTokens);
    }

    [Fact]
    public void Pad_token_comes_from_the_config_files()
    {
        Assert.Equal(2, TokenizerTestData.Load("llama2-tinyllama").PadTokenId);
        Assert.Null(TokenizerTestData.Load("mistral-7b-v0.1").PadTokenId);
        Assert.Equal(1, TokenizerTestData.Load("roberta-base").PadTokenId);
    }

    [Theory]
    [InlineData("llama2-tinyllama", "▁Hello", new[] { 15043 })]
    [InlineData("llama2-tinyllama", "▁world", new[] { 3186 })]
    [InlineData("t5-small", "▁Hello", new[] { 8774 })]
    [InlineData("t5-small", "▁world", new[] { 296 })]
    [InlineData("gpt2", "Ġworld", new[] { 995 })]
    [InlineData("gpt2", "Hello", new[] { 15496 })]
    [InlineData("bert-base-uncased", "hello", new[] { 7592 })]
    [InlineData("bert-base-uncased", "unaffable", new[] { 14477, 20961, 3468 })]
    public void Raw_model_tokenization_gives_known_ids(string name, string text, int[] expected)
    {
        Assert.Equal(expected, TokenizerTestData.Load(name).TokenizeRawModel(text));
    }

    [Fact]
    public void Byte_fallback_covers_characters_the_vocabulary_lacks()
    {
        // U+1F600 is not a Llama-2 piece: its four UTF-8 bytes become <0xF0> <0x9F> <0x98> <0x80>.
        HfTokenizer t = TokenizerTestData.Load("llama2-tinyllama");
        Assert.Equal([0xF0 + 3, 0x9F + 3, 0x98 + 3, 0x80 + 3], t.TokenizeRawModel("😀"));
    }

    [Fact]
    public void Unigram_without_a_piece_for_a_character_uses_unk()
    {
        HfTokenizer t = TokenizerTestData.Load("t5-small");
        int[] ids = t.TokenizeRawModel("▁a😀😀b");
        Assert.Contains(2, ids);
        Assert.Single(ids, 2);
    }

    [Fact]
    public void Builtin_gpt2_has_the_hugging_face_vocabulary_and_tokenizes_the_same()
    {
        HfTokenizer hf = TokenizerTestData.Load("gpt2");
        HfTokenizer builtin = TokenizerTestData.LoadBuiltin("gpt2");
        Assert.Equal(hf.VocabSize, builtin.VocabSize);
        for (int id = 0; id < hf.VocabSize; id++)
        {
            Assert.Equal(hf.IdToToken(id), builtin.IdToToken(id));
        }
        int checkedTokens = 0;
        for (int id = 0; id < 50256; id += 7)
        {
            string token = hf.IdToToken(id);
            Assert.Equal(hf.TokenizeRawModel(token), builtin.TokenizeRawModel(token));
            checkedTokens++;
        }
        Assert.True(checkedTokens > 7000);
        Assert.Equal(ByteLevelConverter.Convert(hf).TokenizeRawModel("ĠGrÃ¼ÃŁe"),
            ByteLevelConverter.Convert(builtin).TokenizeRawModel("ĠGrÃ¼ÃŁe"));
    }

    [Theory]
    [InlineData("cl100k_base", 100277)]
    [InlineData("o200k_base", 200019)]
    public void Builtin_tiktoken_encodings_agree_with_tiktoken(string name, int length)
    {
        HfTokenizer builtin = TokenizerTestData.LoadBuiltin(name);
        Assert.Equal(length, builtin.VocabSize);
        Assert.Equal("<|endoftext|>", builtin.SpecialTokens.Eos);
        var tiktoken = Microsoft.ML.Tokenizers.TiktokenTokenizer.CreateForEncoding(name);
        string regex = (string)builtin.Components["pre_tokenizer"]!["pretokenizers"]![0]!["pattern"]!
            ["Regex"]!;
        var ours = new List<int>();
        foreach (System.Text.RegularExpressions.Match m in
            System.Text.RegularExpressions.Regex.Matches(TokenizerTestData.HardText, regex))
        {
            ours.AddRange(builtin.TokenizeRawModel(ByteLevelAlphabet.EncodeUtf8(m.Value)));
        }
        Assert.Equal(tiktoken.EncodeToIds(TokenizerTestData.HardText), ours);
    }

    [Fact]
    public void Unknown_model_type_is_an_error_naming_file_and_type()
    {
        string file = Path.Combine(_dir, "tokenizer.json");
        File.WriteAllText(file,
            """{"model":{"type":"WordChunks","vocab":{"a":0},"unk_token":"a"},"added_tokens":[]}""");
        var e = Assert.Throws<ZettException>(() => HfTokenizer.Load(_dir));
        Assert.Contains(file, e.Message, StringComparison.Ordinal);
        Assert.Contains("'WordChunks'", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Unknown_normalizer_type_is_an_error_naming_file_and_type()
    {
        string file = Path.Combine(_dir, "tokenizer.json");
        File.WriteAllText(file, """
            {"normalizer":{"type":"Sequence","normalizers":[{"type":"Shout"}]},
             "model":{"type":"BPE","vocab":{"a":0},"merges":[]}}
            """);
        var e = Assert.Throws<ZettException>(() => HfTokenizer.Load(file));
        Assert.Contains(file, e.Message, StringComparison.Ordinal);
        Assert.Contains("normalizer type 'Shout'", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Merge_outside_the_vocabulary_is_an_error()
    {
        string file = Path.Combine(_dir, "tokenizer.json");
        File.WriteAllText(file, """{"model":{"type":"BPE","vocab":{"a":0,"b":1},"merges":["a b"]}}""");
        var e = Assert.Throws<ZettException>(() => HfTokenizer.Load(file));
        Assert.Contains("'ab'", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Missing_tokenizer_is_an_error_listing_the_builtin_names()
    {
        var e = Assert.Throws<ZettException>(() => HfTokenizer.Load(Path.Combine(_dir, "nope")));
        Assert.Contains("cl100k_base", e.Message, StringComparison.Ordinal);
        Assert.Throws<ZettException>(() => HfTokenizer.Load(_dir));
    }

    [Theory]
    [InlineData("mistral-7b-v0.1")]
    [InlineData("t5-small")]
    [InlineData("bert-base-uncased")]
    public void Saved_conversion_loads_back_identically(string name)
    {
        HfTokenizer converted = TokenizerTestData.Convert(name);
        converted.Save(_dir);
        HfTokenizer back = HfTokenizer.Load(_dir);
        Assert.Equal(converted.VocabSize, back.VocabSize);
        for (int id = 0; id < converted.VocabSize; id++)
        {
            Assert.Equal(converted.IdToToken(id), back.IdToToken(id));
        }
        Assert.Equal(converted.AllSpecialTokens, back.AllSpecialTokens);
        Assert.Equal(converted.PadTokenId, back.PadTokenId);
        Assert.True(back.IsByteLevel);
        if (converted.Model is BpeModel bpe)
        {
            Assert.Equal(bpe.Merges, ((BpeModel)back.Model).Merges);
        }
        if (converted.Model is UnigramModel unigram)
        {
            Assert.Equal(unigram.Pieces, ((UnigramModel)back.Model).Pieces);
        }
        Assert.Equal(TokenizerTestData.EncodeConverted(converted, TokenizerTestData.HardText),
            TokenizerTestData.EncodeConverted(back, TokenizerTestData.HardText));
    }
}
