namespace ZeTT.Kernels;

/// <summary>Element types of device buffers. The numeric values are what kernels receive in
/// their args structs (<c>ZETT_F32</c> = 0, <c>ZETT_BF16</c> = 1 in kernels/common.cuh).
/// </summary>
public enum KernelDType
{
    /// <summary>IEEE binary32.</summary>
    F32 = 0,

    /// <summary>bfloat16 (upper half of a binary32).</summary>
    BF16 = 1,

    /// <summary>Signed 32-bit integer.</summary>
    I32 = 2,

    /// <summary>Raw bytes.</summary>
    U8 = 3,
}

/// <summary>Sizes and names of <see cref="KernelDType"/>.</summary>
public static class KernelDTypes
{
    /// <summary>Bytes per element.</summary>
    public static int SizeOf(KernelDType type) => type switch
    {
        KernelDType.F32 or KernelDType.I32 => 4,
        KernelDType.BF16 => 2,
        KernelDType.U8 => 1,
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "unknown dtype"),
    };
}

/// <summary>
/// A typed window on device memory: address, element count and element type. It owns nothing;
/// launchers validate views (dtype, length, alignment) before building a kernel's args.
/// Views can be made from plain numbers, so launch planning is testable without a device.
/// </summary>
/// <param name="Address">Device address of element 0 (0 means "absent" where optional).</param>
/// <param name="Length">Number of elements.</param>
/// <param name="DType">Element type.</param>
public readonly record struct DeviceView(ulong Address, long Length, KernelDType DType)
{
    /// <summary>No memory (for optional arguments).</summary>
    public static DeviceView None => default;

    /// <summary>True when this view points somewhere.</summary>
    public bool IsPresent => Address != 0;

    /// <summary>Size in bytes.</summary>
    public long Bytes => Length * KernelDTypes.SizeOf(DType);

    /// <summary>The sub-range [offset, offset + length).</summary>
    public DeviceView Slice(long offset, long length)
    {
        if (offset < 0 || length < 0 || offset + length > Length)
        {
            throw new ArgumentOutOfRangeException(nameof(offset),
                $"slice [{offset}, {offset + length}) outside a view of {Length} elements");
        }
        return this with
        {
            Address = Address + (ulong)(offset * KernelDTypes.SizeOf(DType)),
            Length = length,
        };
    }
}
