using System.Text.Json;
using System.Text.Json.Nodes;
using ZeTT.Ops;
using ZeTT.Runtime.Formats;
using ZeTT.Runtime.Hypernetwork;
using ZeTT.Runtime.IO;
using ZeTT.Runtime.Tensors;
using ZeTT.Runtime.Tokenizers;

namespace ZeTT.Runtime.Training;

/// <summary>
/// A training checkpoint: a hypernetwork directory in the released format (config.json,
/// model.safetensors by the PyTorch port's names, the hn tokenizer's files), which
/// <c>zett transfer</c> loads, plus the optimizer state for resuming (optimizer.safetensors:
/// the AdamW moments; trainer_state.json: the update count and seed). The directory is
/// written under a temporary name and renamed into place, so a crash leaves the previous
/// checkpoint whole.
/// </summary>
public static class TrainingCheckpoint
{
    /// <summary>File of the AdamW moments.</summary>
    public const string OptimizerFile = "optimizer.safetensors";

    /// <summary>File of the update count and seed.</summary>
    public const string StateFile = "trainer_state.json";

    /// <summary>Writes the trainer's state to <paramref name="directory"/> (replacing it).
    /// </summary>
    public static void Save(string directory, HypernetTrainer trainer, HfTokenizer? hnTokenizer)
    {
        ArgumentNullException.ThrowIfNull(directory);
        ArgumentNullException.ThrowIfNull(trainer);
        // The output policy's temporary and swap: a signal or failure leaves the previous
        // checkpoint, never half of a new one.
        using OutputTarget target = OutputTarget.Begin(directory, OutputKind.Directory);
        SaveFiles(target.TempPath, trainer, hnTokenizer);
        target.Commit();
    }

    /// <summary>Writes the checkpoint's files into <paramref name="directory"/> (created if
    /// needed), each under a temporary name renamed into place: for the final hypernetwork in
    /// the output directory, beside the checkpoints and the log.</summary>
    public static void SaveFiles(string directory, HypernetTrainer trainer, HfTokenizer? hnTokenizer)
    {
        ArgumentNullException.ThrowIfNull(directory);
        ArgumentNullException.ThrowIfNull(trainer);
        Directory.CreateDirectory(directory);
        WriteAtomic(Path.Combine(directory, "config.json"), ConfigJson(trainer.Config));
        var entries = new List<SafetensorsEntry>();
        foreach (string name in trainer.Parameters.Names)
        {
            entries.Add(Entry(name, trainer.Parameters));
        }
        // The PyTorch port's RoBERTa allocates word embeddings it never reads (vocab_size 2
        // in the released configs); written as zeros so that its strict loading finds them.
        int h = trainer.Config.HiddenSize;
        entries.Add(SafetensorsEntry.FromFloat32("model.embeddings.word_embeddings.weight",
            [2, h], new float[2 * h], DType.F32));
        SafetensorsWriter.Write(Path.Combine(directory, "model.safetensors"), entries);
        var moments = new List<SafetensorsEntry>();
        foreach (string name in trainer.M.Names)
        {
            moments.Add(Entry(name, trainer.M, "m."));
            moments.Add(Entry(name, trainer.V, "v."));
        }
        SafetensorsWriter.Write(Path.Combine(directory, OptimizerFile), moments);
        var state = new JsonObject
        {
            ["step"] = trainer.Step,
            ["seed"] = trainer.Settings.Seed,
        };
        WriteAtomic(Path.Combine(directory, StateFile),
            state.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        hnTokenizer?.Save(directory);
    }

    private static void WriteAtomic(string path, string text)
    {
        string tmp = path + $".tmp-{Environment.ProcessId}";
        File.WriteAllText(tmp, text);
        File.Move(tmp, path, overwrite: true);
    }

    /// <summary>Reads a checkpoint's parameters by name (F32).</summary>
    public static Dictionary<string, HostTensor> ReadParameters(string directory)
    {
        string path = Path.Combine(directory, "model.safetensors");
        using SafetensorsFile file = SafetensorsFile.Open(path);
        return file.Tensors.Where(t => t.Name != "model.embeddings.word_embeddings.weight")
            .ToDictionary(t => t.Name, t => file.ReadFloat32(t.Name).RequireFinite(path),
                StringComparer.Ordinal);
    }

    /// <summary>Restores the moments and the update count of a checkpoint into a trainer
    /// built from its parameters (<see cref="ReadParameters"/>).</summary>
    public static void RestoreOptimizer(string directory, HypernetTrainer trainer)
    {
        ArgumentNullException.ThrowIfNull(trainer);
        string path = Path.Combine(directory, OptimizerFile);
        if (!File.Exists(path))
        {
            throw new ZettException($"{path}: file not found (the checkpoint has no optimizer "
                + "state to resume from)");
        }
        using (SafetensorsFile file = SafetensorsFile.Open(path))
        {
            foreach (string name in trainer.M.Names)
            {
                Load(file, "m." + name, trainer.M[name], trainer.M.Backend, path);
                Load(file, "v." + name, trainer.V[name], trainer.V.Backend, path);
            }
        }
        string statePath = Path.Combine(directory, StateFile);
        JsonObject state = HfModelDirectory.ReadJsonObject(statePath);
        trainer.Step = JsonInput.Int64(state, "step", statePath, min: 1, max: int.MaxValue)
            ?? throw new ZettException($"{statePath}: missing 'step'");
    }

    private static void Load(SafetensorsFile file, string name, Tensor destination,
        IOpBackend backend, string path)
    {
        if (!file.Contains(name))
        {
            throw new ZettException($"{path}: tensor '{name}' is missing");
        }
        // Non-finite moments would turn every later update into NaN.
        HostTensor t = file.ReadFloat32(name).RequireFinite(path);
        if (t.Data.LongLength != destination.Count)
        {
            throw new ZettException($"{path}: tensor '{name}' has {t.Data.LongLength} elements, "
                + $"expected {destination.Count}");
        }
        using Tensor host = Tensor.FromFloats(t.Data, destination.Shape);
        Tensor up = backend.Upload(host);
        backend.Copy(up, destination);
        if (!ReferenceEquals(up, host))
        {
            up.Dispose();
        }
    }

    private static SafetensorsEntry Entry(string name, HypernetParameters set, string prefix = "")
    {
        Tensor t = set[name];
        using Tensor host = Tensor.Host(DType.F32, t.Shape, name);
        set.Backend.Download(t, host);
        float[] data = host.AsSpan<float>().ToArray();
        return SafetensorsEntry.FromFloat32(prefix + name, Array.ConvertAll(t.Shape, d => (int)d),
            data, DType.F32);
    }

    /// <summary>config.json of a hypernetwork, with the keys <see cref="HypernetConfig.Parse(string, string)"/>
    /// and the reference's PyTorch port read.</summary>
    public static string ConfigJson(HypernetConfig c)
    {
        ArgumentNullException.ThrowIfNull(c);
        var o = new JsonObject
        {
            ["model_type"] = "zett_hypernetwork",
            ["n_embd"] = c.NEmbd,
            ["hn_hidden_size"] = c.HiddenSize,
            ["hn_intermediate_size"] = c.IntermediateSize,
            ["hn_n_layers"] = c.NumLayers,
            ["hn_num_attention_heads"] = c.NumAttentionHeads,
            ["hn_surface_maxlen"] = c.SurfaceMaxLen,
            ["hn_rescale_embeddings"] = c.RescaleEmbeddings,
            ["hn_predict_bias"] = c.PredictBias,
            ["hn_single_head"] = c.SingleHead,
            ["hn_embed_lang_id"] = c.EmbedLangId,
            ["n_langs"] = c.NumLangs,
            ["langs"] = new JsonArray([.. c.Langs.Select(l => (JsonNode?)l)]),
            ["hn_n_extra_tokens"] = c.NumExtraTokens,
            ["original_vocab_size"] = c.OriginalVocabSize,
            ["pad_token_id"] = c.PadTokenId,
            ["separate_out_embeddings"] = c.SeparateOutEmbeddings,
            ["hn_concat_last_hidden_state"] = c.ConcatLastHiddenState,
            ["hn_model_name_or_path"] = "roberta-base",
            ["hn_model_type"] = "roberta",
            ["hn_embed_using_source_embeddings"] = true,
            ["hn_embed_target_priors"] = false,
            ["hn_add_inter_token_attention"] = false,
        };
        return o.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }
}
