using ZeTT.Ops;
using ZeTT.Runtime.Formats;

namespace ZeTT.Runtime.Models;

/// <summary>One transformer block's parameters, named the family's way, memory-mapped in
/// their stored dtype. Either <see cref="Qkv"/> (fused) or <see cref="Q"/>/<see cref="K"/>/
/// <see cref="V"/> is set.</summary>
internal sealed record LayerWeights(
    Tensor Norm1, Tensor? Norm1Bias, Tensor Norm2, Tensor? Norm2Bias,
    Tensor? Q, Tensor? QBias, Tensor? K, Tensor? KBias, Tensor? V, Tensor? VBias,
    Tensor? Qkv, Tensor? QkvBias, Tensor O, Tensor? OBias,
    Tensor? Gate, Tensor? GateBias, Tensor Up, Tensor? UpBias, Tensor Down, Tensor? DownBias);

/// <summary>The parameters of a language model: views of the memory-mapped safetensors (or
/// one upload each on a device backend), never a whole-model fp32 copy.</summary>
internal sealed class LmWeights : IDisposable
{
    public required Tensor Embed { get; init; }
    public Tensor? Positions { get; init; }
    public Tensor? TokenTypes { get; init; }
    public Tensor? EmbedNorm { get; init; }
    public Tensor? EmbedNormBias { get; init; }
    public required LayerWeights[] Layers { get; init; }
    public Tensor? FinalNorm { get; init; }
    public Tensor? FinalNormBias { get; init; }
    public required Tensor Head { get; init; }
    public Tensor? HeadBias { get; init; }
    public Tensor? MlmDense { get; init; }
    public Tensor? MlmDenseBias { get; init; }
    public Tensor? MlmNorm { get; init; }
    public Tensor? MlmNormBias { get; init; }

    /// <summary>Resolves every tensor of <paramref name="a"/>'s family in
    /// <paramref name="model"/>; a missing tensor or a wrong shape is a ZettException naming
    /// the checkpoint and the tensor.</summary>
    /// <param name="model">The checkpoint.</param>
    /// <param name="a">Its family's settings.</param>
    /// <param name="backend">Where the weights go.</param>
    /// <param name="activations">The activation dtype.</param>
    /// <param name="trainable">Copy every weight but the embeddings (the backbone) into a
    /// writable tensor of <paramref name="activations"/>' dtype, listed in
    /// <see cref="Trainable"/> (backbone training keeps its masters in fp32).</param>
    public static LmWeights Load(HfModelDirectory model, LmArchitecture a, IOpBackend backend,
        DType activations, bool trainable = false)
    {
        var r = new Resolver(model, backend, activations == DType.F64, trainable ? activations : null);
        try
        {
            LmWeights w = a.ModelType switch
            {
                "gpt2" => Gpt2(r, a),
                "gpt_neox" => NeoX(r, a),
                "roberta" or "xlm-roberta" => Roberta(r, a),
                _ => Llama(r, a),
            };
            w._copies.AddRange(r.Copies);
            w.Trainable = r.Trainable;
            return w;
        }
        catch
        {
            r.Copies.ForEach(t => t.Dispose());
            throw;
        }
    }

    private readonly List<Tensor> _copies = [];

    /// <summary>With <c>trainable</c>: the backbone's weights by checkpoint name, in load
    /// order, each with whether AdamW decays it (not biases, not normalisation weights:
    /// decay_mask_fn); empty otherwise.</summary>
    public IReadOnlyList<TrainableWeight> Trainable { get; private set; } = [];

    /// <summary>Frees the copies made of the mapped tensors (device uploads, the float64 test
    /// path's widened weights); the mapped views themselves belong to the directory.</summary>
    public void Dispose()
    {
        foreach (Tensor t in _copies)
        {
            t.Dispose();
        }
        _copies.Clear();
    }

    private static LmWeights Llama(Resolver r, LmArchitecture a)
    {
        string p = r.Prefix("model.", "embed_tokens.weight");
        int qd = a.Heads * a.HeadDim, kd = a.KvHeads * a.HeadDim, d = a.Hidden;
        var layers = new LayerWeights[a.Layers];
        for (int i = 0; i < a.Layers; i++)
        {
            string l = $"{p}layers.{i}.";
            layers[i] = new LayerWeights(
                r.Get(l + "input_layernorm.weight", d), null,
                r.Get(l + "post_attention_layernorm.weight", d), null,
                r.Get(l + "self_attn.q_proj.weight", qd, d), r.Maybe(l + "self_attn.q_proj.bias", qd),
                r.Get(l + "self_attn.k_proj.weight", kd, d), r.Maybe(l + "self_attn.k_proj.bias", kd),
                r.Get(l + "self_attn.v_proj.weight", kd, d), r.Maybe(l + "self_attn.v_proj.bias", kd),
                null, null,
                r.Get(l + "self_attn.o_proj.weight", d, qd), r.Maybe(l + "self_attn.o_proj.bias", d),
                r.Get(l + "mlp.gate_proj.weight", a.Intermediate, d),
                r.Maybe(l + "mlp.gate_proj.bias", a.Intermediate),
                r.Get(l + "mlp.up_proj.weight", a.Intermediate, d),
                r.Maybe(l + "mlp.up_proj.bias", a.Intermediate),
                r.Get(l + "mlp.down_proj.weight", d, a.Intermediate), r.Maybe(l + "mlp.down_proj.bias", d));
        }
        Tensor embed = r.Frozen(p + "embed_tokens.weight", a.Vocab, d);
        return new LmWeights
        {
            Embed = embed,
            Layers = layers,
            FinalNorm = r.Get(p + "norm.weight", d),
            Head = a.Tied ? embed : r.Frozen("lm_head.weight", a.Vocab, d),
        };
    }

    private static LmWeights Gpt2(Resolver r, LmArchitecture a)
    {
        string p = r.Prefix("transformer.", "wte.weight");
        int d = a.Hidden, f = a.Intermediate;
        var layers = new LayerWeights[a.Layers];
        for (int i = 0; i < a.Layers; i++)
        {
            string l = $"{p}h.{i}.";
            layers[i] = new LayerWeights(
                r.Get(l + "ln_1.weight", d), r.Get(l + "ln_1.bias", d),
                r.Get(l + "ln_2.weight", d), r.Get(l + "ln_2.bias", d),
                null, null, null, null, null, null,
                r.Get(l + "attn.c_attn.weight", d, 3 * d), r.Get(l + "attn.c_attn.bias", 3 * d),
                r.Get(l + "attn.c_proj.weight", d, d), r.Get(l + "attn.c_proj.bias", d),
                null, null,
                r.Get(l + "mlp.c_fc.weight", d, f), r.Get(l + "mlp.c_fc.bias", f),
                r.Get(l + "mlp.c_proj.weight", f, d), r.Get(l + "mlp.c_proj.bias", d));
        }
        Tensor embed = r.Frozen(p + "wte.weight", a.Vocab, d);
        return new LmWeights
        {
            Embed = embed,
            Positions = r.Get(p + "wpe.weight", a.MaxPositions, d),
            Layers = layers,
            FinalNorm = r.Get(p + "ln_f.weight", d),
            FinalNormBias = r.Get(p + "ln_f.bias", d),
            Head = a.Tied ? embed : r.Frozen("lm_head.weight", a.Vocab, d),
        };
    }

    private static LmWeights NeoX(Resolver r, LmArchitecture a)
    {
        string p = r.Prefix("gpt_neox.", "embed_in.weight");
        int d = a.Hidden, f = a.Intermediate;
        var layers = new LayerWeights[a.Layers];
        for (int i = 0; i < a.Layers; i++)
        {
            string l = $"{p}layers.{i}.";
            layers[i] = new LayerWeights(
                r.Get(l + "input_layernorm.weight", d), r.Get(l + "input_layernorm.bias", d),
                r.Get(l + "post_attention_layernorm.weight", d),
                r.Get(l + "post_attention_layernorm.bias", d),
                null, null, null, null, null, null,
                r.Get(l + "attention.query_key_value.weight", 3 * d, d),
                r.Maybe(l + "attention.query_key_value.bias", 3 * d),
                r.Get(l + "attention.dense.weight", d, d), r.Maybe(l + "attention.dense.bias", d),
                null, null,
                r.Get(l + "mlp.dense_h_to_4h.weight", f, d), r.Maybe(l + "mlp.dense_h_to_4h.bias", f),
                r.Get(l + "mlp.dense_4h_to_h.weight", d, f), r.Maybe(l + "mlp.dense_4h_to_h.bias", d));
        }
        Tensor embed = r.Frozen(p + "embed_in.weight", a.Vocab, d);
        return new LmWeights
        {
            Embed = embed,
            Layers = layers,
            FinalNorm = r.Get(p + "final_layer_norm.weight", d),
            FinalNormBias = r.Get(p + "final_layer_norm.bias", d),
            Head = a.Tied ? embed : r.Frozen("embed_out.weight", a.Vocab, d),
        };
    }

    private static LmWeights Roberta(Resolver r, LmArchitecture a)
    {
        string p = r.Prefix("roberta.", "embeddings.word_embeddings.weight");
        int d = a.Hidden, f = a.Intermediate;
        var layers = new LayerWeights[a.Layers];
        for (int i = 0; i < a.Layers; i++)
        {
            string l = $"{p}encoder.layer.{i}.";
            layers[i] = new LayerWeights(
                r.Get(l + "attention.output.LayerNorm.weight", d),
                r.Get(l + "attention.output.LayerNorm.bias", d),
                r.Get(l + "output.LayerNorm.weight", d), r.Get(l + "output.LayerNorm.bias", d),
                r.Get(l + "attention.self.query.weight", d, d), r.Get(l + "attention.self.query.bias", d),
                r.Get(l + "attention.self.key.weight", d, d), r.Get(l + "attention.self.key.bias", d),
                r.Get(l + "attention.self.value.weight", d, d), r.Get(l + "attention.self.value.bias", d),
                null, null,
                r.Get(l + "attention.output.dense.weight", d, d),
                r.Get(l + "attention.output.dense.bias", d),
                null, null,
                r.Get(l + "intermediate.dense.weight", f, d), r.Get(l + "intermediate.dense.bias", f),
                r.Get(l + "output.dense.weight", d, f), r.Get(l + "output.dense.bias", d));
        }
        Tensor embed = r.Frozen(p + "embeddings.word_embeddings.weight", a.Vocab, d);
        Tensor positions = r.Get(p + "embeddings.position_embeddings.weight");
        Tensor types = r.Get(p + "embeddings.token_type_embeddings.weight");
        return new LmWeights
        {
            Embed = embed,
            Positions = positions,
            TokenTypes = types,
            EmbedNorm = r.Get(p + "embeddings.LayerNorm.weight", d),
            EmbedNormBias = r.Get(p + "embeddings.LayerNorm.bias", d),
            Layers = layers,
            Head = a.Tied || !r.Has("lm_head.decoder.weight")
                ? embed : r.Frozen("lm_head.decoder.weight", a.Vocab, d),
            HeadBias = r.MaybeFrozen("lm_head.bias", a.Vocab) ?? r.Frozen("lm_head.decoder.bias", a.Vocab),
            MlmDense = r.Get("lm_head.dense.weight", d, d),
            MlmDenseBias = r.Get("lm_head.dense.bias", d),
            MlmNorm = r.Get("lm_head.layer_norm.weight", d),
            MlmNormBias = r.Get("lm_head.layer_norm.bias", d),
        };
    }

    /// <summary>Resolves names; <paramref name="widen"/> (the F64 test path) makes a float64
    /// host copy of each tensor instead of mapping it; <paramref name="trainable"/> (a dtype)
    /// makes a writable copy of that dtype of each tensor but the frozen ones (embeddings).
    /// </summary>
    private sealed class Resolver(HfModelDirectory model, IOpBackend backend, bool widen,
        DType? trainable)
    {
        /// <summary>Tensors made here (uploads, widened copies), each once.</summary>
        public List<Tensor> Copies { get; } = [];

        /// <summary>The writable copies by name (with <c>trainable</c>).</summary>
        public List<TrainableWeight> Trainable { get; } = [];

        public bool Has(string name) => model.Weights.Contains(name);

        /// <summary>"model." when the checkpoint stores names under it (a *ForCausalLM
        /// checkpoint), "" for a bare base model.</summary>
        public string Prefix(string prefix, string probe) =>
            Has(prefix + probe) ? prefix : "";

        public Tensor Get(string name, params long[] shape) => Resolve(name, false, shape);

        /// <summary>A tensor that is never trained (the embeddings and the output bias the
        /// hypernetwork replaces).</summary>
        public Tensor Frozen(string name, params long[] shape) => Resolve(name, true, shape);

        public Tensor? Maybe(string name, params long[] shape) =>
            Has(name) ? Get(name, shape) : null;

        public Tensor? MaybeFrozen(string name, params long[] shape) =>
            Has(name) ? Frozen(name, shape) : null;

        private Tensor Resolve(string name, bool frozen, long[] shape)
        {
            if (!Has(name))
            {
                throw new ZettException($"{model.Weights.Path}: tensor '{name}' is missing (needed "
                    + $"by the {model.ModelType} architecture)");
            }
            Tensor t = model.Weights.GetTensor(name);
            if (!DTypes.IsFloat(t.DType))
            {
                throw new ZettException($"{model.Weights.FileOf(name).Path}: tensor '{name}' is "
                    + $"{t.DType}, expected a float dtype");
            }
            if (shape.Length > 0 && !t.Shape.AsSpan().SequenceEqual(shape))
            {
                throw new ZettException($"{model.Weights.FileOf(name).Path}: tensor '{name}' has "
                    + $"shape {Tensor.ShapeText(t.Shape)}, expected {Tensor.ShapeText(shape)} from "
                    + "config.json");
            }
            if (trainable is { } dtype && !frozen)
            {
                if (Trainable.Find(w => w.Name == name) is { } seen)
                {
                    return seen.Weight;
                }
                Tensor copy = backend.Empty(dtype, t.Shape, name);
                Copies.Add(copy);
                Tensor up = widen ? backend.Upload(Tensor.FromDoubles(t.ToDoubles(), t.Shape))
                    : backend.Upload(t);
                backend.Copy(up, copy);
                if (!ReferenceEquals(up, t))
                {
                    up.Dispose();
                }
                bool norm = t.Rank == 1 && !name.EndsWith(".bias", StringComparison.Ordinal)
                    && IsNorm(name);
                Trainable.Add(new TrainableWeight(name, copy,
                    Decayed: !name.EndsWith(".bias", StringComparison.Ordinal) && !norm));
                return copy;
            }
            Tensor result = widen ? backend.Upload(Tensor.FromDoubles(t.ToDoubles(), t.Shape))
                : backend.Upload(t);
            if (!ReferenceEquals(result, t) && !Copies.Contains(result))
            {
                Copies.Add(result);
            }
            return result;
        }

        /// <summary>Normalisation weights of every family by their checkpoint names
        /// (input_layernorm, post_attention_layernorm, norm, ln_1/ln_2/ln_f, LayerNorm,
        /// final_layer_norm, layer_norm).</summary>
        private static bool IsNorm(string name)
        {
            string module = name[..name.LastIndexOf('.')];
            string last = module[(module.LastIndexOf('.') + 1)..];
            return last.Contains("norm", StringComparison.OrdinalIgnoreCase)
                || last.StartsWith("ln_", StringComparison.Ordinal);
        }
    }
}

/// <summary>A backbone weight that training updates: its checkpoint name, the writable tensor
/// the model computes with, and whether AdamW decays it.</summary>
/// <param name="Name">The checkpoint's tensor name.</param>
/// <param name="Weight">The writable copy.</param>
/// <param name="Decayed">Whether weight decay applies (not biases, not normalisation weights).
/// </param>
public sealed record TrainableWeight(string Name, Tensor Weight, bool Decayed);
