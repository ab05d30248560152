namespace ZeTT.Kernels.Launch;

/// <summary>Argument checks shared by the launchers. Each throws an
/// <see cref="ArgumentException"/> naming the kernel, the argument and what was expected.
/// </summary>
internal static class LaunchChecks
{
    public static void Positive(string kernel, int value, string name)
    {
        if (value <= 0)
        {
            throw new ArgumentException($"{kernel}: {name} must be positive, got {value}", name);
        }
    }

    public static void View(string kernel, DeviceView view, string name, long minLength,
        params KernelDType[] dtypes)
    {
        if (!view.IsPresent)
        {
            throw new ArgumentException($"{kernel}: {name} is required", name);
        }
        if (Array.IndexOf(dtypes, view.DType) < 0)
        {
            throw new ArgumentException($"{kernel}: {name} must be "
                + string.Join(" or ", dtypes) + $", got {view.DType}", name);
        }
        int size = KernelDTypes.SizeOf(view.DType);
        if (view.Address % (ulong)size != 0)
        {
            throw new ArgumentException($"{kernel}: {name} at 0x{view.Address:x} is not aligned "
                + $"to its {size}-byte elements", name);
        }
        if (view.Length < minLength)
        {
            throw new ArgumentException($"{kernel}: {name} has {view.Length} elements, needs "
                + $"at least {minLength}", name);
        }
    }

    /// <summary>Checks an optional view when present; returns its address or 0.</summary>
    public static ulong Optional(string kernel, DeviceView view, string name, long minLength,
        params KernelDType[] dtypes)
    {
        if (!view.IsPresent)
        {
            return 0;
        }
        View(kernel, view, name, minLength, dtypes);
        return view.Address;
    }

    public static void Both(string kernel, DeviceView a, string aName, DeviceView b, string bName)
    {
        if (a.IsPresent != b.IsPresent)
        {
            throw new ArgumentException(
                $"{kernel}: {aName} and {bName} must be given together", aName);
        }
    }

    /// <summary>Threads per block for a row-wise kernel over <paramref name="cols"/> values:
    /// about four values per thread, a multiple of 32, between 32 and 512.</summary>
    public static uint RowBlock(int cols) => (uint)Math.Clamp((cols / 4 + 31) / 32 * 32, 32, 512);

    /// <summary>Blocks of 256 for a grid-stride loop over <paramref name="count"/> elements,
    /// capped at 65536 blocks.</summary>
    public static uint GridStride(long count) => (uint)Math.Clamp((count + 255) / 256, 1, 65536);
}
