using System.Globalization;
using System.Reflection;
using System.Text;

namespace ZeTT.Runtime.Transfer;

/// <summary>
/// The README.md model card of a transferred model: what it was made from and how (base model,
/// target tokenizer, method, hypernetwork and language, vocabulary sizes, where a predicted bias
/// went, the zett version), with the YAML header the Hub reads (<c>base_model</c>, tags).
/// </summary>
public static class ModelCard
{
    /// <summary>The version of zett that wrote the card (release and commit).</summary>
    public static string ZettVersion { get; } = typeof(ModelCard).Assembly
        .GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "unknown";

    /// <summary>The card's Markdown.</summary>
    /// <param name="options">The transfer's options (labels are how the user named things).</param>
    /// <param name="result">What the transfer did.</param>
    public static string Render(TransferOptions options, TransferResult result)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(result);
        CultureInfo c = CultureInfo.InvariantCulture;
        string model = options.ModelLabel ?? Path.GetFileName(Path.TrimEndingDirectorySeparator(
            Path.GetFullPath(options.ModelDirectory)));
        string tokenizer = options.TokenizerLabel ?? options.Tokenizer;
        var card = new StringBuilder();
        card.Append("---\n");
        if (options.ModelLabel is not null)
        {
            card.Append(c, $"base_model: {options.ModelLabel}\n");
        }
        card.Append("tags:\n- zett\n- tokenizer-transfer\n---\n\n");
        card.Append(c, $"# {model} with the {tokenizer} tokenizer\n\n");
        card.Append($"`{model}` transferred to the tokenizer `{tokenizer}` by zero-shot tokenizer "
            + "transfer: its embeddings were replaced by new ones for the new vocabulary and every "
            + "other weight was kept as it was. `AutoModelForCausalLM` / `AutoModelForMaskedLM` / "
            + "`AutoModel` and `AutoTokenizer` load this directory as it is.\n\n");
        card.Append("| | |\n| --- | --- |\n");
        card.Append(c, $"| base model | `{model}` |\n");
        card.Append(c, $"| target tokenizer | `{tokenizer}` |\n");
        if (result.Method == TransferMethod.Hypernet)
        {
            string hn = options.HypernetLabel ?? options.HypernetDirectory ?? "";
            card.Append($"| method | embeddings predicted by the ZeTT hypernetwork `{hn}`"
                + (options.Language is { } lang ? $", language `{lang}`" : "") + " |\n");
            card.Append(c, $"| ran on | {result.Backend}, {result.Precision} |\n");
        }
        else
        {
            card.Append("| method | FVT: each new token the mean of the base model's embeddings of its pieces |\n");
        }
        card.Append(c, $"| vocabulary | {result.SourceVocabSize} → {result.VocabSize} tokens (hidden size {result.HiddenSize}) |\n");
        card.Append(c, $"| special tokens | {result.SpecialTokenRows} rows copied from the base model |\n");
        if (result.BiasDestination is { } bias)
        {
            card.Append(c, $"| predicted output bias | {bias} |\n");
        }
        card.Append(c, $"| made with | zett {ZettVersion} |\n");
        return card.ToString();
    }
}
