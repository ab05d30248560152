using System.Runtime.CompilerServices;

namespace ZeTT.Ops;

/// <summary>bfloat16 ⇄ fp32 conversion with round-to-nearest-even, as PyTorch and CUDA do.</summary>
public static class BFloat16
{
    /// <summary>Rounds an fp32 value to the nearest bf16 bit pattern (ties to even; NaN stays
    /// NaN).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort FromFloat(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if ((bits & 0x7FFF_FFFFu) > 0x7F80_0000u)
        {
            return (ushort)((bits >> 16) | 0x0040u);
        }
        uint rounding = 0x7FFFu + ((bits >> 16) & 1u);
        return (ushort)((bits + rounding) >> 16);
    }

    /// <summary>Widens a bf16 bit pattern to fp32 exactly.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float ToFloat(ushort bits) => BitConverter.UInt32BitsToSingle((uint)bits << 16);

    /// <summary>Rounds a value to bf16 precision and back, for emulating bf16 storage.</summary>
    public static float Round(float value) => ToFloat(FromFloat(value));
}
