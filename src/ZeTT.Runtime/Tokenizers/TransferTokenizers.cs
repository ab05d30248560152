namespace ZeTT.Runtime.Tokenizers;

/// <summary>
/// The tokenizers a transfer works with, prepared as the reference's transfer script prepares
/// them before prediction (ZETT.md §4 steps 1–3).
/// </summary>
/// <param name="HnTokenizer">The hypernetwork's tokenizer converted to byte level (pad := eos
/// when it has no pad token).</param>
/// <param name="TargetTokenizer">The target tokenizer converted to byte level with whitespace
/// consistency and its special tokens at the base model tokenizer's ids.</param>
/// <param name="SurfaceForms">Surface forms of every target token.</param>
public sealed record TransferTokenizers(HfTokenizer HnTokenizer, HfTokenizer TargetTokenizer,
    SurfaceFormMatrix SurfaceForms)
{
    /// <summary>How matching the special tokens moved the target's ids.</summary>
    public SpecialTokenMatch? TargetMatch { get; init; }

    /// <summary>
    /// Loads and converts the tokenizers: <paramref name="hnTokenizerSource"/> (the
    /// hypernetwork checkpoint's tokenizer) converted plainly; <paramref name="targetSource"/>
    /// converted with <c>makeWhitespaceConsistent</c> and its special tokens matched to
    /// <paramref name="modelTokenizerSource"/> (the base model's own tokenizer; the hn tokenizer
    /// when null); then the surface-form matrix of length <paramref name="maxLen"/>. Sources are
    /// anything <see cref="HfTokenizer.Load"/> accepts.
    /// </summary>
    public static TransferTokenizers Prepare(string hnTokenizerSource, string targetSource,
        string? modelTokenizerSource, int maxLen)
    {
        HfTokenizer hnOriginal = HfTokenizer.Load(hnTokenizerSource);
        HfTokenizer hn = ByteLevelConverter.Convert(hnOriginal);
        if (hn.SpecialTokens.Pad is null)
        {
            hn = hn.WithPadToken(hn.SpecialTokens.Eos);
        }
        HfTokenizer model = modelTokenizerSource is null
            ? hnOriginal : HfTokenizer.Load(modelTokenizerSource);
        HfTokenizer target = ByteLevelConverter.Convert(HfTokenizer.Load(targetSource),
            makeWhitespaceConsistent: true, matchSpecialTokensTo: model, out SpecialTokenMatch? match);
        return new TransferTokenizers(hn, target, SurfaceFormMatrix.Build(target, hn, maxLen))
        {
            TargetMatch = match,
        };
    }
}
