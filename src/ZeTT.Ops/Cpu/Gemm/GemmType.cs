namespace ZeTT.Ops.Cpu;

/// <summary>Storage type of a GEMM operand (the bits in memory; arithmetic is always fp32).</summary>
public enum GemmType
{
    /// <summary>IEEE binary32.</summary>
    F32,

    /// <summary>bfloat16: the upper 16 bits of an fp32 (widened exactly by a 16-bit shift).</summary>
    BF16,

    /// <summary>IEEE binary16.</summary>
    F16,
}
