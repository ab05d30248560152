using System.Text.Json.Nodes;
using ZeTT.Ops;
using ZeTT.Runtime.IO;
using ZeTT.Runtime.Tensors;

namespace ZeTT.Runtime.Formats;

/// <summary>Names of a model's embedding tensors, given explicitly for families ZeTT does not
/// know (or to override the table).</summary>
/// <param name="Input">The input embedding matrix [vocab, hidden].</param>
/// <param name="Output">The output embedding (LM head) [vocab, hidden]; null when tied or
/// absent.</param>
/// <param name="Bias">The output bias [vocab]; null when absent.</param>
public sealed record EmbeddingTensorNames(string Input, string? Output = null, string? Bias = null);

/// <summary>Where one model family keeps its embeddings (ZETT.md §4).</summary>
/// <param name="ModelTypes">config.json <c>model_type</c> values of the family.</param>
/// <param name="Input">Input embedding names: the task-head checkpoint's first, then the
/// base-model (AutoModel) variant without the prefix.</param>
/// <param name="Output">Output embedding names (untied models, or stored copies of tied
/// ones).</param>
/// <param name="Bias">Output bias names; the first present is the bias, others are copies.</param>
/// <param name="TiedByDefault">Hugging Face's default for <c>tie_word_embeddings</c>.</param>
public sealed record ModelFamily(string[] ModelTypes, string[] Input, string[] Output, string[] Bias,
    bool TiedByDefault)
{
    /// <summary>The families ZeTT knows.</summary>
    public static IReadOnlyList<ModelFamily> Known { get; } =
    [
        new(["llama", "mistral", "qwen2"], ["model.embed_tokens.weight", "embed_tokens.weight"],
            ["lm_head.weight"], [], TiedByDefault: false),
        new(["gemma", "gemma2"], ["model.embed_tokens.weight", "embed_tokens.weight"],
            ["lm_head.weight"], [], TiedByDefault: true),
        new(["gpt2"], ["transformer.wte.weight", "wte.weight"], ["lm_head.weight"], [],
            TiedByDefault: true),
        new(["gpt_neox"], ["gpt_neox.embed_in.weight", "embed_in.weight"], ["embed_out.weight"], [],
            TiedByDefault: false),
        new(["roberta", "xlm-roberta"],
            ["roberta.embeddings.word_embeddings.weight", "embeddings.word_embeddings.weight"],
            ["lm_head.decoder.weight"], ["lm_head.bias", "lm_head.decoder.bias"], TiedByDefault: true),
    ];

    /// <summary>The family of a config.json <c>model_type</c>, or null.</summary>
    public static ModelFamily? ForModelType(string? modelType) =>
        Known.FirstOrDefault(f => f.ModelTypes.Contains(modelType, StringComparer.Ordinal));

    /// <summary>Every known model_type, for messages.</summary>
    public static string KnownModelTypes => string.Join(", ", Known.SelectMany(f => f.ModelTypes));
}

/// <summary>
/// A Hugging Face model directory (config.json + safetensors, single file or sharded): its
/// config and where its embeddings are. Weights are memory-mapped; only the tensors asked for
/// are read. Errors (missing tensors, a config that disagrees with the tensors, corrupt shards)
/// are one <see cref="ZettException"/> naming the file and tensor.
/// </summary>
public sealed class HfModelDirectory : IDisposable
{
    private HfModelDirectory(string directory, JsonObject config, SafetensorsCollection weights)
    {
        Directory = directory;
        ConfigJson = config;
        Weights = weights;
        ConfigPath = Path.Combine(directory, "config.json");
    }

    /// <summary>The model directory.</summary>
    public string Directory { get; }

    /// <summary>Path of its config.json.</summary>
    public string ConfigPath { get; }

    /// <summary>config.json as parsed (a private copy: edit a <see cref="CloneConfig"/>).</summary>
    private JsonObject ConfigJson { get; }

    /// <summary>The weights (single file or shards).</summary>
    public SafetensorsCollection Weights { get; }

    /// <summary>config.json's <c>model_type</c> (empty when absent).</summary>
    public string ModelType { get; private set; } = "";

    /// <summary>The family's table entry, or null when the names were given explicitly for an
    /// unknown family.</summary>
    public ModelFamily? Family { get; private set; }

    /// <summary>Rows of the embedding matrices (config <c>vocab_size</c>, checked against the
    /// tensor).</summary>
    public int VocabSize { get; private set; }

    /// <summary>Embedding width (config <c>hidden_size</c>, or <c>n_embd</c> for gpt2).</summary>
    public int HiddenSize { get; private set; }

    /// <summary>Whether input and output embeddings are one matrix.</summary>
    public bool TieWordEmbeddings { get; private set; }

    /// <summary>True when the checkpoint is a base model (saved by AutoModel, no LM head).</summary>
    public bool IsBaseModel { get; private set; }

    /// <summary>config.json <c>bos_token_id</c>.</summary>
    public int? BosTokenId { get; private set; }

    /// <summary>config.json <c>eos_token_id</c> (the first, when it is a list).</summary>
    public int? EosTokenId { get; private set; }

    /// <summary>config.json <c>pad_token_id</c>.</summary>
    public int? PadTokenId { get; private set; }

    /// <summary>Name of the input embedding tensor.</summary>
    public string InputEmbeddingName { get; private set; } = "";

    /// <summary>Name of the separate output embedding, or null (tied, or a base model).</summary>
    public string? OutputEmbeddingName { get; private set; }

    /// <summary>Name of the output bias (masked LMs), or null.</summary>
    public string? OutputBiasName { get; private set; }

    /// <summary>Stored tensors that are copies of the input embedding (a tied LM head saved
    /// anyway): a writer must replace them together with it.</summary>
    public IReadOnlyList<string> InputEmbeddingCopies { get; private set; } = [];

    /// <summary>Stored tensors that are copies of the output bias.</summary>
    public IReadOnlyList<string> OutputBiasCopies { get; private set; } = [];

    /// <summary>Stored dtype of the input embedding.</summary>
    public DType EmbeddingDType => Weights.GetInfo(InputEmbeddingName).DType;

    /// <summary>Stored dtype of the output embedding, or null.</summary>
    public DType? OutputEmbeddingDType =>
        OutputEmbeddingName is null ? null : Weights.GetInfo(OutputEmbeddingName).DType;

    /// <summary>Names of every embedding-related tensor (input, output, bias and their
    /// copies).</summary>
    public IReadOnlySet<string> EmbeddingTensorNames
    {
        get
        {
            var set = new HashSet<string>(StringComparer.Ordinal) { InputEmbeddingName };
            set.UnionWith(InputEmbeddingCopies);
            set.UnionWith(OutputBiasCopies);
            if (OutputEmbeddingName is not null)
            {
                set.Add(OutputEmbeddingName);
            }
            if (OutputBiasName is not null)
            {
                set.Add(OutputBiasName);
            }
            return set;
        }
    }

    /// <summary>A mutable copy of config.json.</summary>
    public JsonObject CloneConfig() => (JsonObject)ConfigJson.DeepClone();

    /// <summary>Reads a value of config.json (null when absent).</summary>
    public JsonNode? GetConfigValue(string key) => ConfigJson[key]?.DeepClone();

    /// <summary>
    /// Opens <paramref name="directory"/>: parses config.json, opens the weights and locates the
    /// embeddings by the family table, or by <paramref name="names"/> when given.
    /// </summary>
    public static HfModelDirectory Open(string directory, EmbeddingTensorNames? names = null)
    {
        ArgumentNullException.ThrowIfNull(directory);
        switch (InputFile.KindOf(directory))
        {
            case PathKind.Missing:
                throw new ZettException($"{directory}: model directory not found");
            case PathKind.Directory:
                break;
            case PathKind.SymlinkLoop:
                throw new ZettException($"{directory}: symbolic link loop");
            default:
                throw new ZettException($"{directory}: not a directory (expected a model directory)");
        }
        JsonObject config = ReadJsonObject(Path.Combine(directory, "config.json"));
        SafetensorsCollection weights;
        try
        {
            weights = SafetensorsCollection.Open(directory);
        }
        catch (SafetensorsException e) when (e.File == directory)
        {
            bool otherFormat = System.IO.Directory.EnumerateFiles(directory, "pytorch_model*.bin").Any();
            throw new ZettException($"{directory}: no model.safetensors or "
                + $"{SafetensorsWriter.IndexFileName}"
                + (otherFormat ? " (only pytorch_model*.bin: convert it to safetensors first)" : ""));
        }
        var model = new HfModelDirectory(directory, config, weights);
        try
        {
            model.Resolve(names);
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>Parses a JSON object file through <see cref="JsonInput"/>; errors name the
    /// file and the JSON path.</summary>
    public static JsonObject ReadJsonObject(string path) => JsonInput.ReadObject(path);

    private void Resolve(EmbeddingTensorNames? names)
    {
        ModelType = ConfigString("model_type") ?? "";
        Family = ModelFamily.ForModelType(ModelType);
        BosTokenId = ConfigId("bos_token_id");
        EosTokenId = ConfigId("eos_token_id");
        PadTokenId = ConfigId("pad_token_id");
        bool? tieSetting = ConfigBool("tie_word_embeddings");

        if (names is not null)
        {
            InputEmbeddingName = Require(names.Input, "input embedding");
            OutputEmbeddingName = names.Output is null ? null : Require(names.Output, "output embedding");
            OutputBiasName = names.Bias is null ? null : Require(names.Bias, "output bias");
            TieWordEmbeddings = OutputEmbeddingName is null;
        }
        else if (Family is null)
        {
            throw new ZettException($"{ConfigPath}: model_type '{ModelType}' is not a family ZeTT "
                + $"knows ({ModelFamily.KnownModelTypes}); looked for the embeddings "
                + string.Join(", ", ModelFamily.Known.SelectMany(f => f.Input.Concat(f.Output))
                    .Distinct())
                + "; name the tensors explicitly (--input-embedding, --output-embedding, "
                + "--output-bias)");
        }
        else
        {
            ResolveFromFamily(Family, tieSetting ?? Family.TiedByDefault);
        }

        SafetensorsTensorInfo input = Weights.GetInfo(InputEmbeddingName);
        if (input.Shape.Length != 2 || input.Shape[0] > int.MaxValue || input.Shape[1] > int.MaxValue)
        {
            throw Error(InputEmbeddingName, $"input embedding has shape "
                + $"{HostTensor.ShapeToString(input.Shape)}, expected [vocab, hidden]");
        }
        if (!DTypeConverter.IsConvertibleFloat(input.DType))
        {
            throw Error(InputEmbeddingName, $"input embedding is {DTypes.ToSafetensorsName(input.DType)},"
                + " not a float dtype");
        }
        int rows = (int)input.Shape[0], cols = (int)input.Shape[1];
        VocabSize = ConfigInt("vocab_size") ?? rows;
        if (VocabSize != rows)
        {
            throw Error(InputEmbeddingName, $"has {rows} rows but config.json vocab_size is {VocabSize}");
        }
        HiddenSize = ConfigInt("hidden_size") ?? ConfigInt("n_embd") ?? ConfigInt("d_model") ?? cols;
        if (HiddenSize != cols)
        {
            throw Error(InputEmbeddingName, $"has width {cols} but config.json gives hidden size "
                + HiddenSize);
        }
        foreach ((string key, int? id) in new[] { ("bos_token_id", BosTokenId),
            ("eos_token_id", EosTokenId), ("pad_token_id", PadTokenId) })
        {
            if (id >= VocabSize)
            {
                throw new ZettException($"{ConfigPath}: $.{key}: {id} is outside the vocabulary "
                    + $"(vocab_size {VocabSize})");
            }
        }
        foreach (string copy in InputEmbeddingCopies)
        {
            CheckShape(copy, [rows, cols], "a stored copy of the tied input embedding");
        }
        if (OutputEmbeddingName is not null)
        {
            CheckShape(OutputEmbeddingName, [rows, cols], "the output embedding");
        }
        if (OutputBiasName is not null)
        {
            CheckShape(OutputBiasName, [rows], "the output bias");
            foreach (string copy in OutputBiasCopies)
            {
                CheckShape(copy, [rows], "a stored copy of the output bias");
            }
        }
    }

    private void ResolveFromFamily(ModelFamily family, bool tied)
    {
        string? prefixed = family.Input[0];
        if (Weights.Contains(prefixed))
        {
            InputEmbeddingName = prefixed;
        }
        else
        {
            InputEmbeddingName = family.Input.Skip(1).FirstOrDefault(Weights.Contains)
                ?? throw new ZettException($"{Weights.Path}: no input embedding for model_type "
                    + $"'{ModelType}': looked for {string.Join(", ", family.Input)}");
            IsBaseModel = true;
        }
        string? output = family.Output.FirstOrDefault(Weights.Contains);
        TieWordEmbeddings = tied;
        if (tied)
        {
            InputEmbeddingCopies = output is null ? [] : [output];
        }
        else if (output is not null)
        {
            OutputEmbeddingName = output;
        }
        else if (!IsBaseModel)
        {
            throw new ZettException($"{Weights.Path}: model_type '{ModelType}' with untied "
                + $"embeddings needs an output embedding: looked for {string.Join(", ", family.Output)}"
                + " (or set tie_word_embeddings in config.json)");
        }
        string[] biases = family.Bias.Where(Weights.Contains).ToArray();
        if (biases.Length > 0)
        {
            OutputBiasName = biases[0];
            OutputBiasCopies = biases[1..];
        }
    }

    private string Require(string name, string what) =>
        Weights.Contains(name)
            ? name
            : throw new ZettException($"{Weights.Path}: {what} '{name}' is not in the checkpoint");

    private void CheckShape(string name, long[] expected, string what)
    {
        long[] shape = Weights.GetInfo(name).Shape;
        if (!shape.SequenceEqual(expected))
        {
            throw Error(name, $"{what} has shape {HostTensor.ShapeToString(shape)}, expected "
                + HostTensor.ShapeToString(expected));
        }
    }

    private ZettException Error(string tensor, string what) =>
        new($"{Weights.FileOf(tensor).Path}: tensor '{tensor}': {what}");

    private string? ConfigString(string key) => JsonInput.String(ConfigJson, key, ConfigPath);

    private bool? ConfigBool(string key) => JsonInput.Bool(ConfigJson, key, ConfigPath);

    private int? ConfigInt(string key) => JsonInput.Int32(ConfigJson, key, ConfigPath, min: 1);

    /// <summary>A special-token id: an integer in [-1, int.MaxValue) or a list whose first
    /// element is one (eos_token_id may be a list); ids past the vocabulary are checked once
    /// the vocabulary is known.</summary>
    private int? ConfigId(string key)
    {
        JsonNode? node = ConfigJson[key];
        if (node is JsonArray a)
        {
            node = a.Count > 0 ? a[0] : null;
        }
        // -1 is how some configs say "none".
        int? id = node is null ? null : JsonInput.AsInt32(node, ConfigPath, -1, int.MaxValue - 1);
        return id == -1 ? null : id;
    }

    /// <summary>Reads the input embedding [vocab, hidden] as fp32.</summary>
    public HostTensor ReadInputEmbeddings() => ReadFinite(InputEmbeddingName);

    /// <summary>Reads the separate output embedding as fp32, or null when tied or absent.</summary>
    public HostTensor? ReadOutputEmbeddings() =>
        OutputEmbeddingName is null ? null : ReadFinite(OutputEmbeddingName);

    /// <summary>Reads the output bias [vocab] as fp32, or null when there is none.</summary>
    public HostTensor? ReadOutputBias() =>
        OutputBiasName is null ? null : ReadFinite(OutputBiasName);

    private HostTensor ReadFinite(string name) =>
        Weights.ReadFloat32(name).RequireFinite(Weights.FileOf(name).Path);

    /// <inheritdoc />
    public void Dispose() => Weights.Dispose();
}
