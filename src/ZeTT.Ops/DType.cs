namespace ZeTT.Ops;

/// <summary>Element types as named by the safetensors format.</summary>
public enum DType
{
    /// <summary>IEEE binary64.</summary>
    F64,
    /// <summary>IEEE binary32.</summary>
    F32,
    /// <summary>IEEE binary16.</summary>
    F16,
    /// <summary>bfloat16: the upper 16 bits of a binary32.</summary>
    BF16,
    /// <summary>Signed 64-bit integer.</summary>
    I64,
    /// <summary>Signed 32-bit integer.</summary>
    I32,
    /// <summary>Signed 16-bit integer.</summary>
    I16,
    /// <summary>Signed 8-bit integer.</summary>
    I8,
    /// <summary>Unsigned 8-bit integer.</summary>
    U8,
    /// <summary>One byte per boolean.</summary>
    Bool,
    /// <summary>FP8 E4M3 (read as data).</summary>
    F8E4M3,
    /// <summary>FP8 E5M2 (read as data).</summary>
    F8E5M2,
}

/// <summary>Names and sizes of <see cref="DType"/> values.</summary>
public static class DTypes
{
    /// <summary>Bytes per element.</summary>
    public static int SizeOf(DType dtype) => dtype switch
    {
        DType.F64 or DType.I64 => 8,
        DType.F32 or DType.I32 => 4,
        DType.F16 or DType.BF16 or DType.I16 => 2,
        DType.I8 or DType.U8 or DType.Bool or DType.F8E4M3 or DType.F8E5M2 => 1,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "unknown dtype"),
    };

    /// <summary>The dtype's name in a safetensors header ("F32", "BF16", "F8_E4M3", ...).</summary>
    public static string ToSafetensorsName(DType dtype) => dtype switch
    {
        DType.F8E4M3 => "F8_E4M3",
        DType.F8E5M2 => "F8_E5M2",
        DType.Bool => "BOOL",
        _ => dtype.ToString(),
    };

    /// <summary>Parses a safetensors dtype name; returns false for names the format does not
    /// define (the caller reports the file and tensor).</summary>
    public static bool TryParseSafetensorsName(string name, out DType dtype)
    {
        switch (name)
        {
            case "F64": dtype = DType.F64; return true;
            case "F32": dtype = DType.F32; return true;
            case "F16": dtype = DType.F16; return true;
            case "BF16": dtype = DType.BF16; return true;
            case "I64": dtype = DType.I64; return true;
            case "I32": dtype = DType.I32; return true;
            case "I16": dtype = DType.I16; return true;
            case "I8": dtype = DType.I8; return true;
            case "U8": dtype = DType.U8; return true;
            case "BOOL": dtype = DType.Bool; return true;
            case "F8_E4M3": dtype = DType.F8E4M3; return true;
            case "F8_E5M2": dtype = DType.F8E5M2; return true;
            default: dtype = default; return false;
        }
    }

    /// <summary>True for the floating-point dtypes that convert to fp32.</summary>
    public static bool IsFloat(DType dtype) =>
        dtype is DType.F64 or DType.F32 or DType.F16 or DType.BF16;
}
