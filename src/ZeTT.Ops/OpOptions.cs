namespace ZeTT.Ops;

/// <summary>Elementwise activation functions of the models.</summary>
public enum ActivationFunction
{
    /// <summary>x · sigmoid(x) (Llama, Mistral, Qwen2 gates).</summary>
    Silu,
    /// <summary>GELU with erf (GPT-NeoX, RoBERTa).</summary>
    GeluErf,
    /// <summary>GELU, tanh approximation (GPT-2's gelu_new, Gemma's gelu_pytorch_tanh, the
    /// hypernetwork's projector).</summary>
    GeluTanh,
    /// <summary>max(x, 0).</summary>
    Relu,
}

/// <summary>How rotary embeddings pair the dimensions of a head.</summary>
public enum RotaryStyle
{
    /// <summary>Dimension i pairs with i + r/2 within the first r dimensions ("rotate_half"):
    /// the layout of Hugging Face Llama/Mistral/Qwen2/Gemma checkpoints and of GPT-NeoX, whose
    /// partial rotary uses r = rotary_pct · head_dim.</summary>
    HalfSplit,
    /// <summary>Dimension 2i pairs with 2i + 1 (GPT-J, Meta's original Llama layout).</summary>
    Interleaved,
}

/// <summary>Rotary position embedding of the first <see cref="Dims"/> dimensions of each head:
/// pair j (of r/2) turns by position · θ^(−2j/r).</summary>
/// <param name="Style">How dimensions pair.</param>
/// <param name="Dims">Rotated dimensions r per head (even, at most the head size); the rest
/// pass through unchanged (partial rotary).</param>
/// <param name="Theta">The frequency base (rope_theta, 10000 by default).</param>
public readonly record struct RotaryOptions(RotaryStyle Style, int Dims, double Theta);

/// <summary>Which keys a query of scaled dot-product attention sees.</summary>
/// <param name="Scale">Logit scale (1/√head_dim usually).</param>
/// <param name="Causal">Query i (at absolute position Tk − Tq + i) sees keys at positions ≤ its
/// own: with a KV cache the queries are the last Tq of the Tk positions.</param>
/// <param name="Window">When positive, a query also sees only the last <c>Window</c> positions
/// up to and including its own (Mistral's sliding window: key j visible iff i − j &lt; Window).
/// </param>
/// <param name="KeyLengths">When set, an I32 [B] tensor on the backend's device: sequence b has
/// valid keys 0 … KeyLengths[b]−1, the rest are padding (the hypernetwork's short masked
/// attention, padded encoder batches). A query with no visible key outputs zeros.</param>
public readonly record struct AttentionOptions(float Scale, bool Causal, int Window = 0,
    Tensor? KeyLengths = null);
