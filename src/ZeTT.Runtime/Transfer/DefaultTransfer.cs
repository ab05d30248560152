namespace ZeTT.Runtime.Transfer;

/// <summary>
/// The built-in default of <c>zett transfer</c> with no arguments: the repository's
/// <c>assets/stories260K</c> (a real Llama-architecture model, converted once to a Hugging Face
/// directory) transferred to GPT-2's tokenizer (built in) with FVT, written to
/// <c>./out/default</c> (an existing one is replaced atomically).
/// </summary>
public static class DefaultTransfer
{
    /// <summary>The default model, relative to the repository root.</summary>
    public const string AssetPath = "assets/stories260K";

    /// <summary>The default target tokenizer.</summary>
    public const string TargetTokenizer = "gpt2";

    /// <summary>The default output directory, relative to the current directory.</summary>
    public const string OutputPath = "out/default";

    /// <summary>The options of the default run.</summary>
    public static TransferOptions Options() => new()
    {
        ModelDirectory = FindAsset(),
        Tokenizer = TargetTokenizer,
        OutputDirectory = Path.Combine(Environment.CurrentDirectory, OutputPath),
        Method = TransferMethod.Fvt,
        ModelClass = ZeTT.Runtime.Transfer.ModelClass.Causal,
        Overwrite = true,
    };

    /// <summary>Finds <see cref="AssetPath"/> by walking up from the executable's folder, then
    /// from the current directory.</summary>
    public static string FindAsset() =>
        FindAbove(AppContext.BaseDirectory) ?? FindAbove(Environment.CurrentDirectory)
        ?? throw new ZettException($"the default model {AssetPath} was not found above "
            + $"{AppContext.BaseDirectory} or {Environment.CurrentDirectory}: run zett from a "
            + "checkout of the repository, or give --model DIR --tokenizer NAME --out DIR");

    private static string? FindAbove(string start)
    {
        for (DirectoryInfo? d = new(start); d is not null; d = d.Parent)
        {
            string candidate = Path.Combine(d.FullName, AssetPath);
            if (File.Exists(Path.Combine(candidate, "config.json")))
            {
                return candidate;
            }
        }
        return null;
    }
}
