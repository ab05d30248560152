using System.Globalization;

namespace ZeTT.Runtime.Formats;

/// <summary>GGUF metadata value types (the numbering of the format's v3 specification).</summary>
public enum GgufValueType : uint
{
    /// <summary>u8.</summary>
    UInt8 = 0,
    /// <summary>i8.</summary>
    Int8 = 1,
    /// <summary>u16.</summary>
    UInt16 = 2,
    /// <summary>i16.</summary>
    Int16 = 3,
    /// <summary>u32.</summary>
    UInt32 = 4,
    /// <summary>i32.</summary>
    Int32 = 5,
    /// <summary>f32.</summary>
    Float32 = 6,
    /// <summary>One byte, 0 or 1.</summary>
    Bool = 7,
    /// <summary>u64 length + UTF-8 bytes.</summary>
    String = 8,
    /// <summary>Element type + u64 count + elements.</summary>
    Array = 9,
    /// <summary>u64.</summary>
    UInt64 = 10,
    /// <summary>i64.</summary>
    Int64 = 11,
    /// <summary>f64.</summary>
    Float64 = 12,
}

/// <summary>ggml tensor types written and read by zett (numbering of ggml's <c>ggml_type</c>).</summary>
public enum GgmlType : uint
{
    /// <summary>IEEE binary32.</summary>
    F32 = 0,
    /// <summary>IEEE binary16.</summary>
    F16 = 1,
    /// <summary>Blocks of 32: one fp16 scale + 32 int8 (34 bytes).</summary>
    Q8_0 = 8,
    /// <summary>bfloat16.</summary>
    BF16 = 30,
}

/// <summary>Sizes and names of <see cref="GgmlType"/> values.</summary>
public static class GgmlTypes
{
    /// <summary>Elements per Q8_0 block.</summary>
    public const int Q8BlockSize = 32;

    /// <summary>Bytes per Q8_0 block (fp16 scale + 32 int8).</summary>
    public const int Q8BlockBytes = 34;

    /// <summary>Bytes of a row of <paramref name="elements"/> elements; Q8_0 rows must be a
    /// multiple of 32 elements.</summary>
    public static long RowBytes(GgmlType type, long elements) => type switch
    {
        GgmlType.F32 => elements * 4,
        GgmlType.F16 or GgmlType.BF16 => elements * 2,
        GgmlType.Q8_0 when elements % Q8BlockSize == 0 => elements / Q8BlockSize * Q8BlockBytes,
        GgmlType.Q8_0 => throw new ArgumentException(
            $"a Q8_0 row needs a multiple of {Q8BlockSize} elements, not {elements}"),
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "unsupported ggml type"),
    };

    /// <summary>True for the types this reader and writer handle.</summary>
    public static bool IsKnown(uint type) => type is 0 or 1 or 8 or 30;

    /// <summary>llama.cpp's <c>general.file_type</c> for a model whose matrices are
    /// <paramref name="type"/> (ALL_F32 0, MOSTLY_F16 1, MOSTLY_Q8_0 7, MOSTLY_BF16 32).</summary>
    public static uint FileType(GgmlType type) => type switch
    {
        GgmlType.F32 => 0,
        GgmlType.F16 => 1,
        GgmlType.Q8_0 => 7,
        GgmlType.BF16 => 32,
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "unsupported ggml type"),
    };

    /// <summary>Parses a <c>--gguf-type</c> value (f32, f16, bf16, q8_0; any case).</summary>
    public static bool TryParse(string name, out GgmlType type)
    {
        switch (name.ToLowerInvariant())
        {
            case "f32": type = GgmlType.F32; return true;
            case "f16": type = GgmlType.F16; return true;
            case "bf16": type = GgmlType.BF16; return true;
            case "q8_0": type = GgmlType.Q8_0; return true;
            default: type = GgmlType.F32; return false;
        }
    }
}

/// <summary>One GGUF metadata value: a scalar, a string or an array of either (arrays of arrays
/// are read but not written). Scalars are held as the matching .NET type (uint, int, float,
/// bool, ulong, long, double, byte, sbyte, ushort, short); arrays as a typed .NET array
/// (<c>string[]</c>, <c>int[]</c>, <c>float[]</c>, …).</summary>
public sealed class GgufValue
{
    private GgufValue(GgufValueType type, object value, GgufValueType elementType = GgufValueType.UInt8)
    {
        Type = type;
        Value = value;
        ElementType = elementType;
    }

    /// <summary>The value's type.</summary>
    public GgufValueType Type { get; }

    /// <summary>An array's element type (meaningless for scalars).</summary>
    public GgufValueType ElementType { get; }

    /// <summary>The value.</summary>
    public object Value { get; }

    /// <summary>A string.</summary>
    public static GgufValue String(string value) => new(GgufValueType.String, value);

    /// <summary>A u32.</summary>
    public static GgufValue UInt32(uint value) => new(GgufValueType.UInt32, value);

    /// <summary>An i32.</summary>
    public static GgufValue Int32(int value) => new(GgufValueType.Int32, value);

    /// <summary>An f32.</summary>
    public static GgufValue Float32(float value) => new(GgufValueType.Float32, value);

    /// <summary>A bool.</summary>
    public static GgufValue Bool(bool value) => new(GgufValueType.Bool, value);

    /// <summary>A u64.</summary>
    public static GgufValue UInt64(ulong value) => new(GgufValueType.UInt64, value);

    /// <summary>An array of strings.</summary>
    public static GgufValue Strings(string[] values) =>
        new(GgufValueType.Array, values, GgufValueType.String);

    /// <summary>An array of i32.</summary>
    public static GgufValue Int32s(int[] values) => new(GgufValueType.Array, values, GgufValueType.Int32);

    /// <summary>An array of f32.</summary>
    public static GgufValue Float32s(float[] values) =>
        new(GgufValueType.Array, values, GgufValueType.Float32);

    /// <summary>Wraps a value read from a file.</summary>
    internal static GgufValue Read(GgufValueType type, object value, GgufValueType elementType) =>
        new(type, value, elementType);

    /// <summary>The value as a string (throws if it is not one).</summary>
    public string AsString() => Value as string
        ?? throw new InvalidCastException($"GGUF value is {Type}, not a string");

    /// <summary>An integer scalar widened to long (throws for other types).</summary>
    public long AsInt64() => Value switch
    {
        uint u => u,
        int i => i,
        ulong u => checked((long)u),
        long l => l,
        byte b => b,
        sbyte s => s,
        ushort u => u,
        short s => s,
        _ => throw new InvalidCastException($"GGUF value is {Type}, not an integer"),
    };

    /// <summary>Elements of an array (throws for scalars).</summary>
    public int Count => Value is Array a ? a.Length
        : throw new InvalidCastException($"GGUF value is {Type}, not an array");

    /// <summary>Short human-readable form (arrays abbreviated), for <c>zett inspect</c>.</summary>
    public override string ToString()
    {
        if (Value is Array a)
        {
            IEnumerable<string> items = a.Cast<object>().Take(6).Select(Format);
            return $"[{ElementType} x {a.Length}] [{string.Join(", ", items)}"
                + (a.Length > 6 ? ", …]" : "]");
        }
        return Format(Value);
    }

    private static string Format(object o) => o switch
    {
        string s => s.Length > 120 ? Quote(s[..120]) + "…" : Quote(s),
        float f => f.ToString("R", CultureInfo.InvariantCulture),
        double d => d.ToString("R", CultureInfo.InvariantCulture),
        bool b => b ? "true" : "false",
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        _ => o.ToString() ?? "",
    };

    private static string Quote(string s) =>
        "\"" + s.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal)
            .Replace("\"", "\\\"", StringComparison.Ordinal) + "\"";
}
