namespace ZeTT.Ops;

/// <summary>
/// Every op of the models, forward and backward, on one device. Model graphs (the language
/// models, the hypernetwork) are written once over this interface and never see a grid size,
/// a thread count or where the bytes live.
/// <para>Conventions, the same for every backend:</para>
/// <list type="bullet">
/// <item>Ops never allocate their outputs: the caller passes them (from <see cref="Empty"/>
/// or <see cref="Zeros"/>), so a graph decides what it keeps for its backward pass. No op
/// writes into an input behind the caller's back; an output may alias an input only where
/// the op says so.</item>
/// <item>"Rows": an activation tensor of any rank whose last dimension is contiguous is read as
/// [rows, last dim] when its leading dimensions flatten with one row stride.</item>
/// <item>Activations are F32 (or BF16 on CUDA); F64 is the CPU backend's test path, used for
/// finite-difference gradient checks. Weights may be F32, BF16 or F16 as stored (memory-mapped
/// on the CPU); accumulation is at least fp32.</item>
/// <item>Gradients of inputs (dx, dq, dHidden) are overwritten; gradients of parameters
/// (dWeight, dBias, dTable) are accumulated (+=), so chunks and micro-batches sum.</item>
/// <item>Integer inputs (token ids, positions, targets, key lengths) are I32 tensors on the
/// backend's device.</item>
/// <item>Work is queued in order; a host read (<see cref="Download"/>) waits for it.</item>
/// </list>
/// Shape, dtype and device errors throw <see cref="ArgumentException"/> naming the tensor.
/// </summary>
public interface IOpBackend : IDisposable
{
    /// <summary>A short name for reports ("cpu", "cuda").</summary>
    string Name { get; }

    /// <summary>The device whose tensors this backend computes on.</summary>
    TensorDevice Device { get; }

    // ---- memory -------------------------------------------------------------------------

    /// <summary>A contiguous tensor on this backend's device with unspecified contents.</summary>
    Tensor Empty(DType dtype, long[] shape, string? name = null);

    /// <summary>A contiguous, zero-filled tensor on this backend's device.</summary>
    Tensor Zeros(DType dtype, long[] shape, string? name = null);

    /// <summary>A read-only weight or input as this backend uses it: a host tensor (also a
    /// memory-mapped one) is returned unchanged by the CPU backend and copied once, in its
    /// dtype, by a device backend. The caller owns the result when it differs from
    /// <paramref name="host"/>.</summary>
    Tensor Upload(Tensor host);

    /// <summary>Copies <paramref name="source"/> (this device) into the contiguous host tensor
    /// <paramref name="hostDestination"/> of the same shape, converting between float dtypes.
    /// </summary>
    void Download(Tensor source, Tensor hostDestination);

    /// <summary><paramref name="destination"/> = <paramref name="source"/>, any strides,
    /// converting between float dtypes (e.g. writing new keys into a KV cache view).</summary>
    void Copy(Tensor source, Tensor destination);

    /// <summary>Sets every element to <paramref name="value"/>.</summary>
    void Fill(Tensor tensor, double value);

    /// <summary>Copies the contiguous host tensor <paramref name="host"/> into the contiguous
    /// tensor <paramref name="destination"/> of this backend (same dtype and shape) in queue
    /// order: ops queued before read the old values, ops queued after the new ones, and
    /// <paramref name="host"/> may be changed as soon as this returns (a device backend copies
    /// through its own staging memory without waiting for the device).</summary>
    void CopyFromHost(Tensor host, Tensor destination) =>
        HostFallback.CopyFromHost(this, host, destination);

    /// <summary>Starts copying <paramref name="source"/> (a float tensor of this backend) to
    /// host memory in queue order, after the ops queued so far, without waiting for them;
    /// <see cref="PendingDownload.Wait"/> blocks until the values are there. Ops queued later
    /// must not write <paramref name="source"/> until then (a device backend copies on a
    /// stream of its own while the next work runs).</summary>
    PendingDownload BeginDownload(Tensor source) => new DeferredDownload(this, source);

    /// <summary>Waits until queued work is done.</summary>
    void Synchronize();

    // ---- embedding ----------------------------------------------------------------------

    /// <summary>output[i, :] = scale · table[ids[i], :]. table [V, D] (any float dtype),
    /// ids I32 [N], output [N, D]. An id outside [0, V) is an error.</summary>
    void EmbeddingForward(Tensor table, Tensor ids, Tensor output, float scale = 1f);

    /// <summary>dTable[ids[i], :] += scale · dOutput[i, :] (scatter-add; repeated ids sum in
    /// a deterministic order).</summary>
    void EmbeddingBackward(Tensor dOutput, Tensor ids, Tensor dTable, float scale = 1f);

    // ---- matrix products ----------------------------------------------------------------

    /// <summary>c = alpha · op(a) · op(b) + beta · c with op(x) = x or xᵀ: a is [m, k] (stored
    /// [k, m] when <paramref name="transA"/>), b is [k, n] (stored [n, k] when
    /// <paramref name="transB"/>), c is [m, n] fp32/fp64. Rows of each operand may be strided
    /// (views of a larger tensor); the last dimension is contiguous.</summary>
    void MatMul(Tensor a, bool transA, Tensor b, bool transB, Tensor c, float alpha = 1f,
        float beta = 0f);

    /// <summary>y = x · Wᵀ + bias for W stored [out, in] (PyTorch nn.Linear), or y = x · W +
    /// bias when <paramref name="weightInOut"/> (W stored [in, out]: GPT-2's Conv1D). x is rows
    /// of [*, in], y rows of [*, out]; bias [out] or null. With <paramref name="activation"/>,
    /// y = f(x · Wᵀ + bias), fused where the backend can (inference: the pre-activation is not
    /// kept, so a backward pass needs the unfused form).</summary>
    void Linear(Tensor x, Tensor weight, Tensor? bias, Tensor y, bool weightInOut = false,
        ActivationFunction? activation = null);

    /// <summary>Backward of <see cref="Linear"/>: dx = dy · W (overwritten, when not null);
    /// dWeight += dyᵀ · x (or xᵀ · dy for [in, out]); dBias += Σ_rows dy. Any of the three
    /// may be null when not wanted. Written once, over <see cref="MatMul"/> and
    /// <see cref="SumRows"/>, for every backend.</summary>
    void LinearBackward(Tensor dy, Tensor x, Tensor weight, bool weightInOut, Tensor? dx,
        Tensor? dWeight, Tensor? dBias)
    {
        ArgumentNullException.ThrowIfNull(dy);
        if (dx is not null)
        {
            MatMul(dy, false, weight, weightInOut, dx);
        }
        if (dWeight is not null)
        {
            if (weightInOut)
            {
                MatMul(x, true, dy, false, dWeight, 1f, 1f);
            }
            else
            {
                MatMul(dy, true, x, false, dWeight, 1f, 1f);
            }
        }
        if (dBias is not null)
        {
            SumRows(dy, dBias);
        }
    }

    /// <summary>sums[c] += Σ_rows x[r, c] over rows of x [*, D] (bias gradients); sums is a
    /// contiguous [D], rows are added in a fixed order.</summary>
    void SumRows(Tensor x, Tensor sums);

    // ---- normalisation ------------------------------------------------------------------

    /// <summary>y = (x − mean) · rstd · weight + bias over the last dimension; saves mean and
    /// rstd (F32/F64 [rows]) for the backward. bias may be null.With <paramref name="residual"/>, y = LN(x + residual)
    /// (a residual connection fused in; the sum is not kept, so a backward pass needs the
    /// unfused form).</summary>
    void LayerNormForward(Tensor x, Tensor weight, Tensor? bias, float eps, Tensor y,
        Tensor mean, Tensor rstd, Tensor? residual = null);

    /// <summary>Backward of <see cref="LayerNormForward"/> from the saved mean and rstd.
    /// </summary>
    void LayerNormBackward(Tensor dy, Tensor x, Tensor weight, Tensor mean, Tensor rstd,
        Tensor dx, Tensor? dWeight, Tensor? dBias);

    /// <summary>y = x · rstd · w with rstd = 1/√(mean(x²) + eps), w = weight, or 1 + weight when
    /// <paramref name="unitOffset"/> (Gemma); saves rstd [rows].</summary>
    void RmsNormForward(Tensor x, Tensor weight, float eps, bool unitOffset, Tensor y,
        Tensor rstd);

    /// <summary>Backward of <see cref="RmsNormForward"/> from the saved rstd.</summary>
    void RmsNormBackward(Tensor dy, Tensor x, Tensor weight, bool unitOffset, Tensor rstd,
        Tensor dx, Tensor? dWeight);

    // ---- activations --------------------------------------------------------------------

    /// <summary>y = f(x) elementwise (y may be x).</summary>
    void Activation(ActivationFunction function, Tensor x, Tensor y);

    /// <summary>dx = dy · f′(x) (dx may be dy).</summary>
    void ActivationBackward(ActivationFunction function, Tensor dy, Tensor x, Tensor dx);

    /// <summary>y = f(gate) · up: SwiGLU with <see cref="ActivationFunction.Silu"/>, GeGLU
    /// (Gemma) with <see cref="ActivationFunction.GeluTanh"/>. gate and up may be column views
    /// of one fused projection.</summary>
    void GatedActivation(ActivationFunction function, Tensor gate, Tensor up, Tensor y);

    /// <summary>Backward of <see cref="GatedActivation"/>: dGate = dy · up · f′(gate),
    /// dUp = dy · f(gate).</summary>
    void GatedActivationBackward(ActivationFunction function, Tensor dy, Tensor gate, Tensor up,
        Tensor dGate, Tensor dUp);

    // ---- positions ----------------------------------------------------------------------

    /// <summary>Rotary embedding: x and y are [N, H, Dh] (strided in N and H, y may be x),
    /// positions I32 [N]. With <paramref name="inverse"/> it turns the other way, which is
    /// the backward (the rotation is orthogonal): dx = Rotary(dy, inverse: true).</summary>
    void Rotary(Tensor x, Tensor positions, RotaryOptions options, Tensor y,
        bool inverse = false);

    // ---- attention ----------------------------------------------------------------------

    /// <summary>Scaled dot-product attention, tiled (flash-attention manner: no [Tq, Tk]
    /// matrix per head): q [B, Tq, Hq, Dh], k and v [B, Tk, Hkv, Dh] (strided views allowed:
    /// fused QKV projections, KV caches), Hq a multiple of Hkv (grouped-query attention:
    /// query head h reads key head h / (Hq / Hkv)). Writes output [B, Tq, Hq, Dh] and saves
    /// logSumExp (F32/F64 [B, Hq, Tq], natural log of the softmax denominators, scaled logits)
    /// for the backward. Short sequences (the hypernetwork's) take the same op.</summary>
    void AttentionForward(Tensor q, Tensor k, Tensor v, AttentionOptions options, Tensor output,
        Tensor logSumExp);

    /// <summary>Backward of <see cref="AttentionForward"/> from its output and logSumExp
    /// (recomputing the probabilities tile by tile): dq, dk, dv overwritten.</summary>
    void AttentionBackward(Tensor dOutput, Tensor q, Tensor k, Tensor v, Tensor output,
        Tensor logSumExp, AttentionOptions options, Tensor dq, Tensor dk, Tensor dv);

    // ---- losses -------------------------------------------------------------------------

    /// <summary>Softmax cross-entropy fused with the LM head: logits = hidden · Wᵀ (+ bias)
    /// for W [V, D], computed over chunks of the vocabulary so that [N, V] logits never exist
    /// at once. losses[i] = logSumExp[i] − logits[i, targets[i]] (natural log) for targets in
    /// [0, V); a negative target is ignored (loss 0). logSumExp [N] is saved for the backward.
    /// hidden [N, D], targets I32 [N], losses and logSumExp F32/F64 [N].</summary>
    void LmHeadCrossEntropy(Tensor hidden, Tensor weight, Tensor? bias, Tensor targets,
        Tensor losses, Tensor logSumExp);

    /// <summary>Backward of <see cref="LmHeadCrossEntropy"/> for upstream dLosses [N]:
    /// dHidden = Σ_v dLosses[i] (softmax[i, v] − [v = target]) W[v, :] (overwritten),
    /// dWeight and dBias accumulated (either may be null). Ignored targets contribute 0.
    /// </summary>
    void LmHeadCrossEntropyBackward(Tensor hidden, Tensor weight, Tensor? bias, Tensor targets,
        Tensor logSumExp, Tensor dLosses, Tensor dHidden, Tensor? dWeight, Tensor? dBias);

    // ---- elementwise --------------------------------------------------------------------

    /// <summary>y = a + b (same shapes; y may be a or b): residual connections.</summary>
    void Add(Tensor a, Tensor b, Tensor y);

    /// <summary>y += alpha · x (residual gradients, scaled residuals).</summary>
    void AddScaled(Tensor x, float alpha, Tensor y);

    /// <summary>y = alpha · x (y may be x).</summary>
    void Scale(Tensor x, float alpha, Tensor y);

    // ---- training -----------------------------------------------------------------------
    // These have host round-trip defaults (download, compute on the CPU backend, copy back), so
    // that every backend runs them correctly from the start; a device backend overrides them
    // with kernels when they matter for speed.

    /// <summary>y = x ⊙ scale + shift per column: scale and shift [D] (any float dtype) over
    /// rows of [*, D] (the hypernetwork's rescalers). shift may be null; y may be x.</summary>
    void ScaleShift(Tensor x, Tensor scale, Tensor? shift, Tensor y) =>
        HostFallback.ScaleShift(this, x, scale, shift, y);

    /// <summary>Backward of <see cref="ScaleShift"/>: dx = dy ⊙ scale (overwritten);
    /// dScale += Σ_rows dy ⊙ x; dShift += Σ_rows dy. Any of the three may be null.</summary>
    void ScaleShiftBackward(Tensor dy, Tensor x, Tensor scale, Tensor? dx, Tensor? dScale,
        Tensor? dShift) => HostFallback.ScaleShiftBackward(this, dy, x, scale, dx, dScale, dShift);

    /// <summary>One decoupled AdamW update (optax's adamw) of a contiguous parameter in place:
    /// g = gradient · GradientScale; m, v (the parameter's dtype) updated; bias-corrected with
    /// <see cref="AdamWStep.Step"/>; parameter −= lr · (m̂ / (√v̂ + eps) + wd · parameter).
    /// </summary>
    void AdamW(Tensor parameter, Tensor gradient, Tensor m, Tensor v, AdamWStep step) =>
        HostFallback.AdamW(this, parameter, gradient, m, v, step);
}
