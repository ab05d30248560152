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

    /// <summary>File of a trained backbone's fp32 weights (by checkpoint name).</summary>
    public const string BackboneFile = "backbone.safetensors";

    /// <summary>File of a trained backbone's AdamW moments.</summary>
    public const string BackboneOptimizerFile = "backbone_optimizer.safetensors";

    /// <summary>File of the lexical loss's initial predictions (--lexical-loss-to-init).
    /// </summary>
    public const string LexicalTargetsFile = "lexical_targets.safetensors";

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
        SaveBackbone(target.TempPath, trainer);
        target.Commit();
    }

    /// <summary>A trained backbone's weights and moments and the lexical targets, when the
    /// run has them.</summary>
    private static void SaveBackbone(string directory, HypernetTrainer trainer)
    {
        if (trainer.Backbone is { } b)
        {
            SafetensorsWriter.Write(Path.Combine(directory, BackboneFile),
                [.. b.Names.Select(n => Entry(n, b))]);
            var moments = new List<SafetensorsEntry>();
            foreach (string name in b.Names)
            {
                moments.Add(Entry(name, trainer.BackboneM!, "m."));
                moments.Add(Entry(name, trainer.BackboneV!, "v."));
            }
            SafetensorsWriter.Write(Path.Combine(directory, BackboneOptimizerFile), moments);
        }
        if (trainer.LexicalTargets is { } t)
        {
            int[] sf = trainer.LexicalSurfaceForms!;
            var entries = t.Names.Select(n => Entry(n, t)).ToList();
            entries.Add(SafetensorsEntry.FromInt32("surface_forms",
                [sf.Length / trainer.Config.SurfaceMaxLen, trainer.Config.SurfaceMaxLen], sf));
            SafetensorsWriter.Write(Path.Combine(directory, LexicalTargetsFile), entries);
        }
    }

    /// <summary>Restores a checkpoint's backbone (weights and moments) into the backbone
    /// attached to <paramref name="trainer"/>, and its lexical targets; a checkpoint with a
    /// backbone or lexical targets that the run has not (or the other way round) is an error.
    /// </summary>
    public static void RestoreBackbone(string directory, HypernetTrainer trainer)
    {
        ArgumentNullException.ThrowIfNull(trainer);
        string path = Path.Combine(directory, BackboneFile);
        bool has = File.Exists(path);
        if (has != (trainer.Backbone is not null))
        {
            throw new ZettException(has
                ? $"{path}: the checkpoint holds a trained backbone: resume with --backbone-training full"
                : $"{path}: file not found (the checkpoint was made without --backbone-training full)");
        }
        if (trainer.Backbone is { } b)
        {
            using (SafetensorsFile file = SafetensorsFile.Open(path))
            {
                foreach (string name in b.Names)
                {
                    Load(file, name, b[name], b.Backend, path);
                }
            }
            string opt = Path.Combine(directory, BackboneOptimizerFile);
            if (!File.Exists(opt))
            {
                throw new ZettException($"{opt}: file not found (the checkpoint has no optimizer "
                    + "state for its backbone)");
            }
            using SafetensorsFile moments = SafetensorsFile.Open(opt);
            foreach (string name in b.Names)
            {
                Load(moments, "m." + name, trainer.BackboneM![name], b.Backend, opt);
                Load(moments, "v." + name, trainer.BackboneV![name], b.Backend, opt);
            }
        }
        string lexPath = Path.Combine(directory, LexicalTargetsFile);
        if (File.Exists(lexPath) != trainer.LexicalLossToInit)
        {
            throw new ZettException(trainer.LexicalLossToInit
                ? $"{lexPath}: file not found (the checkpoint was made without --lexical-loss-to-init)"
                : $"{lexPath}: the checkpoint's lexical loss is towards its initial predictions: "
                    + "resume with --lexical-loss-to-init");
        }
        if (trainer.LexicalLossToInit)
        {
            using SafetensorsFile file = SafetensorsFile.Open(lexPath);
            foreach (string name in (string[])["in", "surface_forms"])
            {
                if (!file.Contains(name))
                {
                    throw new ZettException($"{lexPath}: tensor '{name}' is missing");
                }
            }
            HostTensor input = file.ReadFloat32("in").RequireFinite(lexPath);
            HostTensor? output = file.Contains("out") ? file.ReadFloat32("out").RequireFinite(lexPath) : null;
            int[] sf = file.ReadInt32("surface_forms", out _);
            using Tensor inT = Tensor.FromFloats(input.Data, input.Shape[0], input.Shape[^1]);
            using Tensor? outT = output is null ? null
                : Tensor.FromFloats(output.Data, output.Shape[0], output.Shape[^1]);
            try
            {
                trainer.SetLexicalTargets(inT, outT, sf, lexPath);
            }
            catch (ArgumentException e)
            {
                throw new ZettException($"{lexPath}: {e.Message}");
            }
        }
    }

    /// <summary>Writes the base model with <paramref name="trainer"/>'s trained backbone to
    /// <paramref name="directory"/>: an ordinary Hugging Face model directory (the base
    /// model's tokenizer, config and embeddings; the backbone's tensors in fp32, as the
    /// reference keeps them), which <c>zett transfer</c>, <c>zett eval</c> and
    /// <c>transformers</c> load.</summary>
    public static void WriteBackboneModel(HfModelDirectory model, string directory,
        HypernetTrainer trainer, bool overwrite = false)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(trainer);
        HypernetParameters b = trainer.Backbone
            ?? throw new InvalidOperationException("the trainer has no backbone");
        HfModelWriter.Write(model, directory, new HfModelEdit
        {
            TransformTensor = (_, info) => b.Find(info.Name) is null ? null : Entry(info.Name, b),
        }, overwrite);
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
