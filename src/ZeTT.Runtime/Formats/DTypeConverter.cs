using System.Buffers.Binary;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using ZeTT.Ops;

namespace ZeTT.Runtime.Formats;

/// <summary>
/// Vectorised conversions between the little-endian bytes of a stored float dtype (F64, F32,
/// F16, BF16, F8_E4M3, F8_E5M2) and fp32 or bf16. Rounding to a narrower type is
/// round-to-nearest-even (what PyTorch's <c>.to()</c> does); NaN stays NaN.
/// </summary>
public static class DTypeConverter
{
    private static readonly float[] E4M3Table = BuildE4M3Table();

    /// <summary>True for dtypes <see cref="ToFloat32"/> accepts (every float dtype, fp8
    /// included).</summary>
    public static bool IsConvertibleFloat(DType dtype) =>
        DTypes.IsFloat(dtype) || dtype is DType.F8E4M3 or DType.F8E5M2;

    /// <summary>True for dtypes <see cref="FromFloat32"/> can store (F64, F32, F16, BF16).</summary>
    public static bool IsStorableFloat(DType dtype) => DTypes.IsFloat(dtype);

    /// <summary>Widens (or narrows, for F64) <paramref name="destination"/>.Length elements of
    /// <paramref name="dtype"/> read from <paramref name="source"/> to fp32.</summary>
    public static void ToFloat32(DType dtype, ReadOnlySpan<byte> source, Span<float> destination)
    {
        int n = destination.Length;
        CheckLength(dtype, source.Length, n);
        if (!BitConverter.IsLittleEndian)
        {
            ToFloat32Scalar(dtype, source, destination);
            return;
        }
        switch (dtype)
        {
            case DType.F32:
                MemoryMarshal.Cast<byte, float>(source[..(4 * n)]).CopyTo(destination);
                break;
            case DType.BF16:
                WidenBFloat16(MemoryMarshal.Cast<byte, ushort>(source[..(2 * n)]), destination);
                break;
            case DType.F16:
                TensorPrimitives.ConvertToSingle(MemoryMarshal.Cast<byte, Half>(source[..(2 * n)]),
                    destination);
                break;
            case DType.F64:
                ReadOnlySpan<double> d = MemoryMarshal.Cast<byte, double>(source[..(8 * n)]);
                for (int i = 0; i < n; i++)
                {
                    destination[i] = (float)d[i];
                }
                break;
            default:
                ToFloat32Scalar(dtype, source, destination);
                break;
        }
    }

    /// <summary>Converts <paramref name="destination"/>.Length elements of a float dtype to
    /// bf16 bit patterns (round-to-nearest-even from wider types; BF16 is copied).</summary>
    public static void ToBFloat16(DType dtype, ReadOnlySpan<byte> source, Span<ushort> destination)
    {
        int n = destination.Length;
        CheckLength(dtype, source.Length, n);
        if (dtype == DType.BF16)
        {
            for (int i = 0; i < n; i++)
            {
                destination[i] = BinaryPrimitives.ReadUInt16LittleEndian(source[(2 * i)..]);
            }
            return;
        }
        if (dtype == DType.F32 && BitConverter.IsLittleEndian)
        {
            NarrowToBFloat16(MemoryMarshal.Cast<byte, float>(source[..(4 * n)]), destination);
            return;
        }
        const int Chunk = 4096;
        Span<float> buffer = new float[Math.Min(Chunk, Math.Max(n, 1))];
        int size = DTypes.SizeOf(dtype);
        for (int start = 0; start < n; start += Chunk)
        {
            int m = Math.Min(Chunk, n - start);
            ToFloat32(dtype, source.Slice(start * size, m * size), buffer[..m]);
            NarrowToBFloat16(buffer[..m], destination.Slice(start, m));
        }
    }

    /// <summary>Stores fp32 values as <paramref name="dtype"/> (F64, F32, F16 or BF16) into
    /// <paramref name="destination"/>, which must hold exactly their bytes.</summary>
    public static void FromFloat32(ReadOnlySpan<float> source, DType dtype, Span<byte> destination)
    {
        if (!IsStorableFloat(dtype))
        {
            throw new ArgumentException($"cannot store fp32 values as {DTypes.ToSafetensorsName(dtype)}",
                nameof(dtype));
        }
        int n = source.Length;
        CheckLength(dtype, destination.Length, n);
        if (!BitConverter.IsLittleEndian)
        {
            for (int i = 0; i < n; i++)
            {
                Span<byte> dst = destination[(i * DTypes.SizeOf(dtype))..];
                switch (dtype)
                {
                    case DType.F32: BinaryPrimitives.WriteSingleLittleEndian(dst, source[i]); break;
                    case DType.F64: BinaryPrimitives.WriteDoubleLittleEndian(dst, source[i]); break;
                    case DType.F16: BinaryPrimitives.WriteHalfLittleEndian(dst, (Half)source[i]); break;
                    default:
                        BinaryPrimitives.WriteUInt16LittleEndian(dst, BFloat16.FromFloat(source[i]));
                        break;
                }
            }
            return;
        }
        switch (dtype)
        {
            case DType.F32:
                source.CopyTo(MemoryMarshal.Cast<byte, float>(destination[..(4 * n)]));
                break;
            case DType.BF16:
                NarrowToBFloat16(source, MemoryMarshal.Cast<byte, ushort>(destination[..(2 * n)]));
                break;
            case DType.F16:
                TensorPrimitives.ConvertToHalf(source, MemoryMarshal.Cast<byte, Half>(destination[..(2 * n)]));
                break;
            default:
                Span<double> d = MemoryMarshal.Cast<byte, double>(destination[..(8 * n)]);
                for (int i = 0; i < n; i++)
                {
                    d[i] = source[i];
                }
                break;
        }
    }

    /// <summary>bf16 → fp32, exact: 16 elements per step with AVX2 (a shift of the widened
    /// bits), scalar tail.</summary>
    public static void WidenBFloat16(ReadOnlySpan<ushort> source, Span<float> destination)
    {
        int n = Math.Min(source.Length, destination.Length);
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            ref ushort s = ref MemoryMarshal.GetReference(source);
            ref uint d = ref Unsafe.As<float, uint>(ref MemoryMarshal.GetReference(destination));
            for (; i <= n - 16; i += 16)
            {
                (Vector256<uint> lo, Vector256<uint> hi) = Vector256.Widen(Vector256.LoadUnsafe(ref s, (nuint)i));
                Vector256.ShiftLeft(lo, 16).StoreUnsafe(ref d, (nuint)i);
                Vector256.ShiftLeft(hi, 16).StoreUnsafe(ref d, (nuint)(i + 8));
            }
        }
        for (; i < n; i++)
        {
            destination[i] = BFloat16.ToFloat(source[i]);
        }
    }

    /// <summary>fp32 → bf16 with round-to-nearest-even, NaN kept quiet: 16 elements per step
    /// with AVX2, scalar tail; identical to <see cref="BFloat16.FromFloat"/>.</summary>
    public static void NarrowToBFloat16(ReadOnlySpan<float> source, Span<ushort> destination)
    {
        int n = Math.Min(source.Length, destination.Length);
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            ref uint s = ref Unsafe.As<float, uint>(ref MemoryMarshal.GetReference(source));
            ref ushort d = ref MemoryMarshal.GetReference(destination);
            for (; i <= n - 16; i += 16)
            {
                Vector256<uint> a = RoundToBFloat16(Vector256.LoadUnsafe(ref s, (nuint)i));
                Vector256<uint> b = RoundToBFloat16(Vector256.LoadUnsafe(ref s, (nuint)(i + 8)));
                Vector256.Narrow(a, b).StoreUnsafe(ref d, (nuint)i);
            }
        }
        for (; i < n; i++)
        {
            destination[i] = BFloat16.FromFloat(source[i]);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<uint> RoundToBFloat16(Vector256<uint> bits)
    {
        Vector256<uint> isNan = Vector256.GreaterThan(bits & Vector256.Create(0x7FFF_FFFFu),
            Vector256.Create(0x7F80_0000u));
        Vector256<uint> rounding = Vector256.Create(0x7FFFu)
            + (Vector256.ShiftRightLogical(bits, 16) & Vector256<uint>.One);
        Vector256<uint> rounded = Vector256.ShiftRightLogical(bits + rounding, 16);
        Vector256<uint> nan = Vector256.ShiftRightLogical(bits, 16) | Vector256.Create(0x40u);
        return Vector256.ConditionalSelect(isNan, nan, rounded);
    }

    /// <summary>Decodes one FP8 E4M3 (the "fn" variant: no infinities, 0x7F/0xFF are NaN)
    /// byte.</summary>
    public static float E4M3ToFloat(byte bits) => E4M3Table[bits];

    /// <summary>Decodes one FP8 E5M2 byte: the upper half of an IEEE binary16.</summary>
    public static float E5M2ToFloat(byte bits) => (float)BitConverter.UInt16BitsToHalf((ushort)(bits << 8));

    private static float[] BuildE4M3Table()
    {
        float[] table = new float[256];
        for (int b = 0; b < 256; b++)
        {
            int sign = b >> 7, exponent = (b >> 3) & 0xF, mantissa = b & 7;
            float magnitude = exponent == 0xF && mantissa == 7
                ? float.NaN
                : exponent == 0
                    ? mantissa / 8f * MathF.Pow(2, -6)
                    : (1 + (mantissa / 8f)) * MathF.Pow(2, exponent - 7);
            table[b] = sign == 1 ? -magnitude : magnitude;
        }
        return table;
    }

    private static void ToFloat32Scalar(DType dtype, ReadOnlySpan<byte> source, Span<float> destination)
    {
        for (int i = 0; i < destination.Length; i++)
        {
            destination[i] = dtype switch
            {
                DType.F32 => BinaryPrimitives.ReadSingleLittleEndian(source[(4 * i)..]),
                DType.BF16 => BFloat16.ToFloat(BinaryPrimitives.ReadUInt16LittleEndian(source[(2 * i)..])),
                DType.F16 => (float)BinaryPrimitives.ReadHalfLittleEndian(source[(2 * i)..]),
                DType.F64 => (float)BinaryPrimitives.ReadDoubleLittleEndian(source[(8 * i)..]),
                DType.F8E4M3 => E4M3Table[source[i]],
                DType.F8E5M2 => E5M2ToFloat(source[i]),
                _ => throw new ArgumentException(
                    $"{DTypes.ToSafetensorsName(dtype)} is not a float dtype", nameof(dtype)),
            };
        }
    }

    private static void CheckLength(DType dtype, int bytes, int elements)
    {
        if (!IsConvertibleFloat(dtype))
        {
            throw new ArgumentException($"{DTypes.ToSafetensorsName(dtype)} is not a float dtype",
                nameof(dtype));
        }
        if (bytes < (long)elements * DTypes.SizeOf(dtype))
        {
            throw new ArgumentException($"{bytes} bytes hold fewer than {elements} "
                + $"{DTypes.ToSafetensorsName(dtype)} elements");
        }
    }
}
