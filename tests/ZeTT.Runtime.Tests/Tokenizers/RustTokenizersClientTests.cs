using ZeTT.Runtime.Tokenizers;
using RustTokenizer = Tokenizers.DotNet.Tokenizer;

namespace ZeTT.Runtime.Tests.Tokenizers;

/// <summary>
/// The real client: every converted tokenizer.json loads in the Rust Hugging Face
/// <c>tokenizers</c> library (0.22, through Tokenizers.DotNet), encodes a hard text to exactly the
/// ids our model code gives, and decodes it back losslessly (plus the prepended space).
/// </summary>
public sealed class RustTokenizersClientTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("zett-rust-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    public static TheoryData<string, bool> Cases()
    {
        var data = new TheoryData<string, bool>();
        foreach (string name in TokenizerTestData.Names.Append("cl100k_base"))
        {
            data.Add(name, false);
            data.Add(name, true);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Converted_tokenizer_loads_in_rust_and_round_trips(string name, bool forTransfer)
    {
        HfTokenizer converted = forTransfer
            ? TokenizerTestData.Convert(name, true, "mistral-7b-v0.1")
            : TokenizerTestData.Convert(name);
        converted.Save(_dir);
        using var rust = new RustTokenizer(Path.Combine(_dir, "tokenizer.json"));

        string text = TokenizerTestData.HardText;
        uint[] encoded = rust.Encode(text);
        var specials = converted.AllSpecialTokens.Select(s => (uint)s.Id).ToHashSet();
        uint[] content = [.. encoded.Where(id => !specials.Contains(id))];
        Assert.Equal(TokenizerTestData.EncodeConverted(converted, text).Select(i => (uint)i),
            content);
        Assert.Equal(" " + text, rust.Decode(content));
    }
}
