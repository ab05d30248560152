using ZeTT.Runtime.Formats;
using ZeTT.Runtime.Hypernetwork;

namespace ZeTT.Runtime.Transfer;

/// <summary>How the new embeddings are made.</summary>
public enum TransferMethod
{
    /// <summary>Predicted by a ZeTT hypernetwork (ZETT.md §4).</summary>
    Hypernet,

    /// <summary>Fast vocabulary transfer: the mean of the source embeddings of the token's
    /// decomposition by the model's own tokenizer (no hypernetwork).</summary>
    Fvt,
}

/// <summary>What <c>zett transfer</c> writes.</summary>
public enum TransferFormat
{
    /// <summary>A Hugging Face model directory.</summary>
    Hf,

    /// <summary>One GGUF file for llama.cpp (the output path names the file).</summary>
    Gguf,

    /// <summary>A Hugging Face directory with the GGUF file inside it
    /// (<see cref="TokenizerTransfer.GgufFileName"/>).</summary>
    Both,
}

/// <summary>What kind of checkpoint the model directory holds (the reference's
/// <c>--model_class</c>); decides where a predicted bias goes.</summary>
public enum ModelClass
{
    /// <summary>A causal LM (LM head, no output bias): the bias is saved beside the model.</summary>
    Causal,

    /// <summary>A masked LM with an output bias (RoBERTa, XLM-R): the bias replaces
    /// <c>lm_head.bias</c>.</summary>
    Masked,

    /// <summary>A base model without a head (AutoModel): input embeddings only.</summary>
    Base,
}

/// <summary>Everything <see cref="TokenizerTransfer.Run"/> needs.</summary>
public sealed record TransferOptions
{
    /// <summary>The Hugging Face model directory (config.json + safetensors + tokenizer).</summary>
    public required string ModelDirectory { get; init; }

    /// <summary>The target tokenizer: a tokenizer.json, a directory holding one, or a built-in
    /// name (gpt2, r50k_base, cl100k_base, o200k_base).</summary>
    public required string Tokenizer { get; init; }

    /// <summary>Where the transferred model is written (atomically): a directory, or the .gguf
    /// file for <see cref="TransferFormat.Gguf"/>.</summary>
    public required string OutputDirectory { get; init; }

    /// <summary>The hypernetwork directory (required for <see cref="TransferMethod.Hypernet"/>).
    /// </summary>
    public string? HypernetDirectory { get; init; }

    /// <summary>How embeddings are made.</summary>
    public TransferMethod Method { get; init; } = TransferMethod.Hypernet;

    /// <summary>Language code of a multilingual hypernetwork.</summary>
    public string? Language { get; init; }

    /// <summary>auto, cpu or cuda.</summary>
    public string Device { get; init; } = "auto";

    /// <summary>CUDA device ordinal (after CUDA_VISIBLE_DEVICES).</summary>
    public int Gpu { get; init; }

    /// <summary>Hypernetwork precision (the reference casts to bf16 by default).</summary>
    public HypernetPrecision Precision { get; init; } = HypernetPrecision.BFloat16;

    /// <summary>Rows per hypernetwork batch; 0 lets the backend choose.</summary>
    public int BatchSize { get; init; }

    /// <summary>The model class, or null to take it from the directory.</summary>
    public ModelClass? ModelClass { get; init; }

    /// <summary>Replace an existing output directory (atomically, once the new one is
    /// complete).</summary>
    public bool Overwrite { get; init; }

    /// <summary>Hugging Face directory, GGUF file or both.</summary>
    public TransferFormat Format { get; init; } = TransferFormat.Hf;

    /// <summary>Type of the GGUF file's matrices.</summary>
    public GgmlType GgufType { get; init; } = GgmlType.F16;

    /// <summary>How the user named the model (a Hugging Face name), for the model card; null:
    /// the directory's name.</summary>
    public string? ModelLabel { get; init; }

    /// <summary>How the user named the target tokenizer, for the model card; null:
    /// <see cref="Tokenizer"/>.</summary>
    public string? TokenizerLabel { get; init; }

    /// <summary>How the user named the hypernetwork, for the model card; null:
    /// <see cref="HypernetDirectory"/>.</summary>
    public string? HypernetLabel { get; init; }

    /// <summary>Text files (.txt, .jsonl, .parquet, as <c>zett eval --data</c>) on which the base
    /// model and the transferred model are evaluated with <c>zett eval</c>'s protocol; the
    /// numbers go into the summary and the model card. Empty: no evaluation.</summary>
    public IReadOnlyList<string> EvalData { get; init; } = [];

    /// <summary>Evaluate at most this many UTF-8 bytes of <see cref="EvalData"/>; null: all.
    /// </summary>
    public long? EvalMaxBytes { get; init; }

    /// <summary>Evaluation window in tokens; null: <c>zett eval</c>'s default for each model.
    /// </summary>
    public int? EvalContext { get; init; }

    /// <summary>Test hook: called for every non-embedding tensor while the output is written
    /// (an exception aborts the run midway).</summary>
    internal Action<string>? OnTensorWritten { get; init; }
}
