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

    /// <summary>The evaluation section: what <c>zett eval</c> measured on the same text for
    /// the base model and the transferred one, and how to reproduce it.</summary>
    private static void AppendEvaluation(StringBuilder card, TransferOptions options,
        IReadOnlyList<Models.LmEvalResult> evaluation)
    {
        CultureInfo c = CultureInfo.InvariantCulture;
        Models.LmEvalResult first = evaluation[0];
        string files = string.Join(", ", options.EvalData.Select(f => $"`{Path.GetFileName(f)}`"));
        card.Append(c, $"\n## Evaluation\n\n`zett eval` on {files} ({first.Bytes} UTF-8 bytes");
        card.Append(options.EvalMaxBytes is { } cap ? string.Create(c, $", the first {cap}") : "");
        card.Append("): each model reads the text with its own tokenizer, in windows of "
            + "`context` tokens; bits per byte are comparable across tokenizers "
            + "(lower is better).\n\n");
        card.Append("| model | bits/byte | tokens/byte | perplexity | tokens | context |\n");
        card.Append("| --- | --- | --- | --- | --- | --- |\n");
        foreach (Models.LmEvalResult e in evaluation)
        {
            string accuracy = e.Accuracy is { } a ? string.Create(c, $" (masked accuracy {a:F4})") : "";
            card.Append(c, $"| {e.Model}{accuracy} | {e.BitsPerByte:F4} | {e.TokensPerByte:F4} | "
                + $"{e.Perplexity:F3} | {e.Tokens} | {e.Context} |\n");
        }
    }

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
        if (result.Evaluation.Count > 0)
        {
            AppendEvaluation(card, options, result.Evaluation);
        }
        return card.ToString();
    }
}
