using System.Runtime.InteropServices;
using static ZeTT.Kernels.Launch.LaunchChecks;

namespace ZeTT.Kernels.Launch;

/// <summary>Args of <c>zett_rotary</c> (kernels/rotary.cu, same layout).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct RotaryArgs
{
    public ulong X;
    public ulong Out;
    public ulong Positions;
    public ulong InvFreq;
    public int Tokens;
    public int Heads;
    public int HeadDim;
    public int RotaryDim;
    public int XRowStride;
    public int OutRowStride;
    public int Style;
    public float Sign;
    public int XDtype;
    public int OutDtype;
}

/// <summary>Launcher of kernels/rotary.cu: rotary position embeddings, forward (rotate by
/// +θ) and backward (by −θ), partial rotary supported.</summary>
public static class RotaryKernels
{
    /// <summary>
    /// Queues the rotation of the first <paramref name="rotaryDim"/> columns of every head of
    /// <paramref name="x"/> (the rest copied) into <paramref name="output"/> (which may be x).
    /// </summary>
    /// <param name="kernels">Loaded kernels.</param>
    /// <param name="stream">Stream to queue on.</param>
    /// <param name="x">[tokens, xRowStride] F32 or BF16; head h at columns h·headDim.</param>
    /// <param name="xRowStride">Elements between tokens of x.</param>
    /// <param name="positions">[tokens] I32 absolute positions.</param>
    /// <param name="invFreq">[rotaryDim/2] F32 inverse frequencies.</param>
    /// <param name="tokens">Tokens.</param>
    /// <param name="heads">Heads.</param>
    /// <param name="headDim">Head dimension.</param>
    /// <param name="rotaryDim">Rotated columns per head (even, ≤ headDim).</param>
    /// <param name="interleaved">Pairs (2i, 2i + 1) (GPT-J, the original Meta layout) instead
    /// of (i, i + rotaryDim/2) (Hugging Face's rotate_half: Llama, Mistral, Qwen2, Gemma,
    /// GPT-NeoX).</param>
    /// <param name="backward">Rotate by −θ (the gradient of the forward).</param>
    /// <param name="output">[tokens, outRowStride] F32 or BF16.</param>
    /// <param name="outRowStride">Elements between tokens of output.</param>
    public static void Run(KernelSet kernels, CudaStream stream, DeviceView x, int xRowStride,
        DeviceView positions, DeviceView invFreq, int tokens, int heads, int headDim,
        int rotaryDim, bool interleaved, bool backward, DeviceView output, int outRowStride)
    {
        ArgumentNullException.ThrowIfNull(kernels);
        var (config, args) = Plan(x, xRowStride, positions, invFreq, tokens, heads, headDim,
            rotaryDim, interleaved, backward, output, outRowStride);
        kernels.Rotary.Launch(config, stream, args);
    }

    internal static (LaunchConfig, RotaryArgs) Plan(DeviceView x, int xRowStride,
        DeviceView positions, DeviceView invFreq, int tokens, int heads, int headDim,
        int rotaryDim, bool interleaved, bool backward, DeviceView output, int outRowStride)
    {
        const string k = "zett_rotary";
        Positive(k, tokens, nameof(tokens));
        Positive(k, heads, nameof(heads));
        Positive(k, headDim, nameof(headDim));
        Positive(k, rotaryDim, nameof(rotaryDim));
        if (rotaryDim % 2 != 0 || rotaryDim > headDim)
        {
            throw new ArgumentException($"{k}: rotary dimension {rotaryDim} must be even and at "
                + $"most the head dimension {headDim}", nameof(rotaryDim));
        }
        int width = heads * headDim;
        if (xRowStride < width || outRowStride < width)
        {
            throw new ArgumentException($"{k}: row strides ({xRowStride}, {outRowStride}) must "
                + $"be at least heads·headDim = {width}", nameof(xRowStride));
        }
        View(k, x, nameof(x), (long)(tokens - 1) * xRowStride + width, KernelDType.F32,
            KernelDType.BF16);
        View(k, positions, nameof(positions), tokens, KernelDType.I32);
        View(k, invFreq, nameof(invFreq), rotaryDim / 2, KernelDType.F32);
        View(k, output, nameof(output), (long)(tokens - 1) * outRowStride + width,
            KernelDType.F32, KernelDType.BF16);
        var args = new RotaryArgs
        {
            X = x.Address,
            Out = output.Address,
            Positions = positions.Address,
            InvFreq = invFreq.Address,
            Tokens = tokens,
            Heads = heads,
            HeadDim = headDim,
            RotaryDim = rotaryDim,
            XRowStride = xRowStride,
            OutRowStride = outRowStride,
            Style = interleaved ? 1 : 0,
            Sign = backward ? -1f : 1f,
            XDtype = (int)x.DType,
            OutDtype = (int)output.DType,
        };
        long work = (long)tokens * heads * (headDim - rotaryDim / 2);
        return (new LaunchConfig(GridStride(work), 1, 256, 0), args);
    }

    /// <summary>Inverse frequencies <c>base^(−2i/rotaryDim)</c>, i &lt; rotaryDim/2, computed as
    /// PyTorch does for Hugging Face's default RoPE (fp32 powers of an fp32 exponent).</summary>
    /// <param name="rotaryDim">Rotated columns per head.</param>
    /// <param name="theta">rope_theta.</param>
    public static float[] InverseFrequencies(int rotaryDim, float theta)
    {
        var f = new float[rotaryDim / 2];
        for (int i = 0; i < f.Length; i++)
        {
            f[i] = 1f / MathF.Pow(theta, 2 * i / (float)rotaryDim);
        }
        return f;
    }
}
