using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace ZeTT.Kernels;

/// <summary>
/// The compiled kernels embedded in this assembly: <c>kernels/&lt;name&gt;.ptx</c> for every
/// <c>kernels/&lt;name&gt;.cu</c> (built by CMakeLists.txt), and <c>kernels/&lt;name&gt;.cubin</c>
/// for sm_90 when the nvcc that built them could make one.
/// </summary>
public static partial class KernelImages
{
    private const string Prefix = "kernels/";

    /// <summary>Names (without extension) of every embedded PTX module, sorted.</summary>
    public static IReadOnlyList<string> Names { get; } =
    [
        .. typeof(KernelImages).Assembly.GetManifestResourceNames()
            .Where(n => n.StartsWith(Prefix, StringComparison.Ordinal)
                && n.EndsWith(".ptx", StringComparison.Ordinal))
            .Select(n => n[Prefix.Length..^4])
            .Order(StringComparer.Ordinal),
    ];

    /// <summary>The PTX text of module <paramref name="name"/>.</summary>
    public static string Ptx(string name) =>
        Encoding.ASCII.GetString(Read(name + ".ptx")
            ?? throw new InvalidOperationException($"no embedded PTX for kernel module '{name}' "
                + $"(embedded: {string.Join(", ", Names)}); was build/kernels/{name}.ptx built "
                + "before ZeTT.Kernels? run ./build.sh"));

    /// <summary>The sm_90 cubin of module <paramref name="name"/>, or null when none was built.
    /// </summary>
    public static byte[]? Cubin(string name) => Read(name + ".cubin");

    private static byte[]? Read(string file)
    {
        using Stream? s = typeof(KernelImages).Assembly.GetManifestResourceStream(Prefix + file);
        if (s is null)
        {
            return null;
        }
        var bytes = new byte[s.Length];
        s.ReadExactly(bytes);
        return bytes;
    }

    /// <summary>Names of the <c>.entry</c> (kernel) functions declared in PTX text.</summary>
    public static IReadOnlyList<string> EntryPoints(string ptx) =>
        [.. EntryRegex().Matches(ptx).Select(m => m.Groups[1].Value)];

    /// <summary>
    /// Reads an initialised <c>int</c> array a kernel file exports (e.g. its args-struct layout
    /// table <c>extern "C" __device__ int zett_&lt;op&gt;_layout[]</c>) from PTX text, where nvcc
    /// writes it as <c>.global .align 4 .b8 name[N] = {bytes...}</c> (little-endian).
    /// </summary>
    public static int[] ReadIntArray(string ptx, string symbol)
    {
        byte[] bytes = ReadBytes(ptx, symbol);
        if (bytes.Length % 4 != 0)
        {
            throw new InvalidOperationException($"symbol '{symbol}' is not an int array");
        }
        var values = new int[bytes.Length / 4];
        Buffer.BlockCopy(bytes, 0, values, 0, bytes.Length);
        return values;
    }

    /// <summary>Reads an initialised <c>char</c> array (NUL-terminated string) from PTX text.
    /// </summary>
    public static string ReadString(string ptx, string symbol) =>
        Encoding.ASCII.GetString(ReadBytes(ptx, symbol)).TrimEnd('\0');

    private static byte[] ReadBytes(string ptx, string symbol)
    {
        ArgumentNullException.ThrowIfNull(ptx);
        Match m = Regex.Match(ptx,
            @"\.b8\s+" + Regex.Escape(symbol) + @"\[(\d+)\]\s*=\s*\{([^}]*)\}");
        if (!m.Success)
        {
            throw new InvalidOperationException(
                $"symbol '{symbol}' is not an initialised .b8 array in this PTX");
        }
        byte[] bytes = [.. m.Groups[2].Value.Split(',').Select(
            v => byte.Parse(v.Trim(), CultureInfo.InvariantCulture))];
        return bytes.Length == int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture)
            ? bytes
            : throw new InvalidOperationException($"symbol '{symbol}': malformed initialiser");
    }

    [GeneratedRegex(@"\.entry\s+([A-Za-z_][A-Za-z0-9_]*)\s*\(")]
    private static partial Regex EntryRegex();
}
