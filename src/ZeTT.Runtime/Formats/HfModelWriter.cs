using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using ZeTT.Ops;
using ZeTT.Runtime.IO;
using ZeTT.Runtime.Tensors;
using ZeTT.Runtime.Tokenizers;

namespace ZeTT.Runtime.Formats;

/// <summary>What to change when writing a model directory with <see cref="HfModelWriter"/>.
/// Everything not named here is copied unchanged.</summary>
public sealed record HfModelEdit
{
    /// <summary>New input embeddings [vocab', hidden] (null keeps the model's). Stored in the
    /// model's embedding dtype; tied copies get the same matrix; config.json's vocab_size
    /// becomes vocab'.</summary>
    public IFloatRows? InputEmbeddings { get; init; }

    /// <summary>New output embeddings [vocab', hidden] of an untied model; required when an
    /// untied model's vocabulary changes.</summary>
    public IFloatRows? OutputEmbeddings { get; init; }

    /// <summary>New output bias [vocab'] of a model that has one (masked LMs); required when
    /// such a model's vocabulary changes.</summary>
    public HostTensor? OutputBias { get; init; }

    /// <summary>config.json keys to set (a null value removes the key), applied after
    /// vocab_size.</summary>
    public IReadOnlyDictionary<string, JsonNode?> ConfigUpdates { get; init; } =
        new Dictionary<string, JsonNode?>();

    /// <summary>Files of the output directory to replace: plain file name → path of the file
    /// to copy there, or null to leave the model's file out.</summary>
    public IReadOnlyDictionary<string, string?> Files { get; init; } = new Dictionary<string, string?>();

    /// <summary>Optional replacement of non-embedding tensors: called once per tensor with its
    /// file; returns the entry to write (same name) or null to copy it bit for bit.</summary>
    public Func<SafetensorsFile, SafetensorsTensorInfo, SafetensorsEntry?>? TransformTensor { get; init; }

    /// <summary>Called with the complete, not yet published output directory (to add files
    /// that must appear together with it); an exception aborts the write.</summary>
    public Action<string>? BeforePublish { get; init; }
}

/// <summary>
/// Writes a modified copy of a <see cref="HfModelDirectory"/>: new embeddings (and bias) in the
/// original dtype, config.json updated, every other tensor copied bit for bit and streamed (a
/// shard without changes is copied as a file, one with changes is rewritten tensor by tensor
/// from the memory map), the shard index rewritten, and of the other files only those that
/// describe the new model too (generation settings, chat template, licence) carried over. Host memory stays at the new embedding matrices plus
/// I/O buffers. The whole directory is written to <c>&lt;out&gt;.tmp-&lt;pid&gt;</c> and
/// renamed at the end: a failure leaves no output directory.
/// </summary>
public static class HfModelWriter
{
    /// <summary>Files of the source directory that can describe the written model as well and
    /// are carried over unless <see cref="HfModelEdit.Files"/> replaces or drops them (a
    /// transfer replaces the tokenizer's): the tokenizer, the generation settings, the chat
    /// template and the licence. Everything else stays behind — weights in other formats (they
    /// hold the old embeddings) and notes about the source model (its README.md model card,
    /// provenance, reference outputs made with its vocabulary).</summary>
    private static readonly HashSet<string> CarriedFiles = new(StringComparer.Ordinal)
    {
        "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
        "tokenizer.model", "vocab.json", "merges.txt", "vocab.txt", "sentencepiece.bpe.model",
        "spiece.model", "generation_config.json", "chat_template.jinja", "chat_template.json",
        "LICENSE", "LICENSE.txt", "LICENSE.md", "NOTICE", "NOTICE.txt", "USE_POLICY.md",
    };

    /// <summary>JSON output settings used for config files (2-space indent, non-ASCII kept).</summary>
    public static JsonWriterOptions JsonOptions { get; } = new()
    {
        Indented = true,
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    /// <summary>Writes <paramref name="model"/> with <paramref name="edit"/> applied to
    /// <paramref name="outputDirectory"/>, which must not exist (or be empty) unless
    /// <paramref name="overwrite"/>.</summary>
    public static void Write(HfModelDirectory model, string outputDirectory, HfModelEdit edit,
        bool overwrite = false)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(outputDirectory);
        ArgumentNullException.ThrowIfNull(edit);
        string output = OutputTarget.Check(outputDirectory, OutputKind.Directory, overwrite,
            [model.Directory, .. edit.Files.Values]);
        Dictionary<string, Func<SafetensorsEntry>> replacements = PlanReplacements(model, edit, out int? newVocab);
        foreach (KeyValuePair<string, string?> f in edit.Files)
        {
            if (f.Key.Length == 0 || f.Key != Path.GetFileName(f.Key))
            {
                throw new ArgumentException($"'{f.Key}' is not a plain file name", nameof(edit));
            }
            if (f.Value is not null && !File.Exists(f.Value))
            {
                throw new ZettException($"{f.Value}: file not found (to be written as {f.Key})");
            }
        }

        using OutputTarget target = OutputTarget.Begin(output, OutputKind.Directory);
        WriteWeights(model, target.TempPath, replacements, edit.TransformTensor);
        WriteConfig(model, target.TempPath, newVocab, edit.ConfigUpdates);
        CopyOtherFiles(model.Directory, target.TempPath, edit.Files);
        edit.BeforePublish?.Invoke(target.TempPath);
        target.Commit();
    }

    private static Dictionary<string, Func<SafetensorsEntry>> PlanReplacements(HfModelDirectory model,
        HfModelEdit edit, out int? newVocab)
    {
        var plan = new Dictionary<string, Func<SafetensorsEntry>>(StringComparer.Ordinal);
        newVocab = null;
        int vocab = model.VocabSize;
        if (edit.InputEmbeddings is { } input)
        {
            CheckMatrix(input, model.HiddenSize, "input embeddings");
            vocab = (int)input.Rows;
            newVocab = vocab;
            DType dtype = StorableDType(model, model.InputEmbeddingName);
            foreach (string name in model.InputEmbeddingCopies.Prepend(model.InputEmbeddingName))
            {
                string n = name;
                plan[n] = () => SafetensorsEntry.FromRows(n, input, dtype);
            }
        }
        bool vocabChanged = vocab != model.VocabSize;
        if (edit.OutputEmbeddings is { } output)
        {
            if (model.OutputEmbeddingName is null)
            {
                throw new ZettException($"{model.Directory}: output embeddings were given but the "
                    + "model has no separate output embedding (tied or base model)");
            }
            CheckMatrix(output, model.HiddenSize, "output embeddings");
            if (output.Rows != vocab)
            {
                throw new ZettException($"output embeddings have {output.Rows} rows but the input "
                    + $"embeddings have {vocab}");
            }
            DType dtype = StorableDType(model, model.OutputEmbeddingName);
            string n = model.OutputEmbeddingName;
            plan[n] = () => SafetensorsEntry.FromRows(n, output, dtype);
        }
        else if (vocabChanged && model.OutputEmbeddingName is not null)
        {
            throw new ZettException($"{model.Directory}: the vocabulary changes to {vocab} but no new "
                + $"output embeddings were given for '{model.OutputEmbeddingName}' (untied model)");
        }
        if (edit.OutputBias is { } bias)
        {
            if (model.OutputBiasName is null)
            {
                throw new ZettException($"{model.Directory}: an output bias was given but the model "
                    + "has none (save it beside the model instead)");
            }
            if (bias.Rank != 1 || bias.Shape[0] != vocab)
            {
                throw new ZettException($"output bias has shape {HostTensor.ShapeToString(bias.Shape)}, "
                    + $"expected [{vocab}]");
            }
            DType dtype = StorableDType(model, model.OutputBiasName);
            foreach (string name in model.OutputBiasCopies.Prepend(model.OutputBiasName))
            {
                string n = name;
                plan[n] = () => SafetensorsEntry.FromTensor(n, bias, dtype);
            }
        }
        else if (vocabChanged && model.OutputBiasName is not null)
        {
            throw new ZettException($"{model.Directory}: the vocabulary changes to {vocab} but no new "
                + $"output bias was given for '{model.OutputBiasName}'");
        }
        return plan;
    }

    private static void CheckMatrix(IFloatRows t, int hidden, string what)
    {
        if ((t is HostTensor h && h.Rank != 2) || t.Cols != hidden || t.Rows > TokenizerLimits.MaxId)
        {
            string shape = t is HostTensor ht ? HostTensor.ShapeToString(ht.Shape) : $"[{t.Rows}, {t.Cols}]";
            throw new ZettException($"{what} have shape {shape}, expected [vocab, {hidden}]");
        }
    }

    private static DType StorableDType(HfModelDirectory model, string tensor)
    {
        DType d = model.Weights.GetInfo(tensor).DType;
        return DTypeConverter.IsStorableFloat(d)
            ? d
            : throw new ZettException($"{model.Weights.FileOf(tensor).Path}: tensor '{tensor}' is "
                + $"{DTypes.ToSafetensorsName(d)}; new embeddings can only be stored as F64, F32, F16 "
                + "or BF16");
    }

    private static void WriteWeights(HfModelDirectory model, string temp,
        Dictionary<string, Func<SafetensorsEntry>> replacements,
        Func<SafetensorsFile, SafetensorsTensorInfo, SafetensorsEntry?>? transform)
    {
        SafetensorsCollection weights = model.Weights;
        IReadOnlySet<string> embeddings = model.EmbeddingTensorNames;
        var weightMap = new List<KeyValuePair<string, string>>();
        long total = 0;
        foreach (SafetensorsFile file in weights.Files)
        {
            string fileName = Path.GetFileName(file.Path);
            var entries = new List<SafetensorsEntry>(file.Tensors.Count);
            bool changed = false;
            foreach (SafetensorsTensorInfo t in file.Tensors)
            {
                SafetensorsEntry? entry = replacements.TryGetValue(t.Name, out Func<SafetensorsEntry>? make)
                    ? make()
                    : embeddings.Contains(t.Name) ? null : transform?.Invoke(file, t);
                if (entry is not null && entry.Name != t.Name)
                {
                    throw new InvalidOperationException(
                        $"tensor transform renamed '{t.Name}' to '{entry.Name}'");
                }
                changed |= entry is not null;
                entries.Add(entry ?? SafetensorsEntry.CopyOf(file, t.Name));
                weightMap.Add(new(t.Name, fileName));
                total += entries[^1].ByteLength;
            }
            string destination = Path.Combine(temp, fileName);
            if (changed)
            {
                SafetensorsWriter.Write(destination, entries, file.Metadata);
            }
            else
            {
                // A kernel-side copy (copy_file_range / reflink where the file system has it);
                // not a hard link, so that editing the output in place cannot alter the input.
                File.Copy(file.Path, destination);
            }
        }
        if (weights.IsSharded)
        {
            SafetensorsWriter.WriteIndex(Path.Combine(temp, Path.GetFileName(weights.IndexPath!)),
                weightMap, total);
        }
    }

    private static void WriteConfig(HfModelDirectory model, string temp, int? newVocab,
        IReadOnlyDictionary<string, JsonNode?> updates)
    {
        JsonObject config = model.CloneConfig();
        if (newVocab is int v)
        {
            config["vocab_size"] = v;
        }
        foreach (KeyValuePair<string, JsonNode?> kv in updates)
        {
            if (kv.Value is null)
            {
                config.Remove(kv.Key);
            }
            else
            {
                config[kv.Key] = kv.Value.DeepClone();
            }
        }
        WriteJson(Path.Combine(temp, "config.json"), config);
    }

    /// <summary>Writes a JSON node as Hugging Face does (2-space indent, UTF-8, trailing
    /// newline).</summary>
    public static void WriteJson(string path, JsonNode node)
    {
        ArgumentNullException.ThrowIfNull(node);
        using var stream = new FileStream(path, FileMode.Create, FileAccess.Write);
        using (var writer = new Utf8JsonWriter(stream, JsonOptions))
        {
            node.WriteTo(writer);
        }
        stream.WriteByte((byte)'\n');
    }

    private static void CopyOtherFiles(string source, string temp, IReadOnlyDictionary<string, string?> files)
    {
        foreach (string path in Directory.EnumerateFiles(source))
        {
            string name = Path.GetFileName(path);
            if (!CarriedFiles.Contains(name) || files.ContainsKey(name))
            {
                continue;
            }
            File.Copy(path, Path.Combine(temp, name));
        }
        foreach (KeyValuePair<string, string?> f in files)
        {
            if (f.Value is not null)
            {
                File.Copy(f.Value, Path.Combine(temp, f.Key), overwrite: true);
            }
        }
    }
}
