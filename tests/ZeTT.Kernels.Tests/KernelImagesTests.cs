using System.Reflection;
using System.Text.RegularExpressions;

namespace ZeTT.Kernels.Tests;

public sealed partial class KernelImagesTests
{
    private static IEnumerable<(string Name, string Source)> CudaSources()
    {
        Assembly asm = typeof(KernelImagesTests).Assembly;
        foreach (string res in asm.GetManifestResourceNames().Where(n => n.StartsWith("cu/",
            StringComparison.Ordinal)))
        {
            using var reader = new StreamReader(asm.GetManifestResourceStream(res)!);
            yield return (res[3..^3], reader.ReadToEnd());
        }
    }

    [Fact]
    public void Every_kernel_source_has_an_embedded_ptx_with_each_of_its_entry_points()
    {
        var sources = CudaSources().ToList();
        Assert.True(sources.Count >= 4, $"only {sources.Count} kernel sources embedded");
        foreach ((string name, string source) in sources)
        {
            Assert.Contains(name, KernelImages.Names);
            string ptx = KernelImages.Ptx(name);
            var entries = KernelImages.EntryPoints(ptx);
            var declared = GlobalRegex().Matches(source).Select(m => m.Groups[1].Value).ToList();
            Assert.NotEmpty(declared);
            foreach (string entry in declared)
            {
                Assert.True(entries.Contains(entry),
                    $"{name}.ptx lacks entry '{entry}' declared in {name}.cu");
            }
        }
    }

    [Fact]
    public void Every_embedded_ptx_comes_from_a_kernel_source()
    {
        var names = CudaSources().Select(s => s.Name).ToHashSet();
        Assert.All(KernelImages.Names, n => Assert.Contains(n, names));
    }

    [Fact]
    public void Missing_module_names_what_is_embedded()
    {
        var e = Assert.Throws<InvalidOperationException>(() => KernelImages.Ptx("no_such"));
        Assert.Contains("flash_attention", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Reads_int_arrays_and_strings_from_ptx_text()
    {
        const string ptx = ".global .align 4 .b8 t[8] = {24, 0, 0, 0, 0, 1, 0, 0};\n"
            + ".global .align 1 .b8 s[4] = {97, 44, 98, 0};";
        Assert.Equal([24, 256], KernelImages.ReadIntArray(ptx, "t"));
        Assert.Equal("a,b", KernelImages.ReadString(ptx, "s"));
        Assert.Throws<InvalidOperationException>(() => KernelImages.ReadIntArray(ptx, "u"));
    }

    [GeneratedRegex(@"extern\s+""C""\s+__global__\s+void\s+(?:__launch_bounds__\([^)]*\)\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*\(")]
    private static partial Regex GlobalRegex();
}
