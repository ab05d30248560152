using System.Reflection;
using System.Runtime.InteropServices;
using ZeTT.Kernels.Launch;

namespace ZeTT.Kernels.Tests;

/// <summary>Each kernel file exports <c>zett_&lt;op&gt;_layout</c> (sizeof, then offsetof of each
/// field in order) and <c>zett_&lt;op&gt;_fields</c> (their names); the C# mirror must agree on
/// size, field count, names and offsets.</summary>
public sealed class ArgsLayoutTests
{
    public static TheoryData<string, string, Type> Structs => new()
    {
        { "gather", "zett_embedding", typeof(EmbeddingArgs) },
        { "norm", "zett_norm", typeof(NormArgs) },
        { "norm", "zett_norm_bwd", typeof(NormBwdArgs) },
        { "activation", "zett_act", typeof(ActArgs) },
        { "activation", "zett_glu", typeof(GluArgs) },
        { "rotary", "zett_rotary", typeof(RotaryArgs) },
        { "residual", "zett_axpby", typeof(AxpbyArgs) },
        { "residual", "zett_sum_rows", typeof(SumRowsArgs) },
        { "residual", "zett_copy", typeof(CopyArgs) },
        { "flash_attention", "zett_flash_fwd", typeof(FlashFwdArgs) },
        { "flash_attention", "zett_flash_bwd", typeof(FlashBwdArgs) },
        { "cross_entropy", "zett_cross_entropy", typeof(CrossEntropyArgs) },
        { "training", "zett_scale_shift", typeof(ScaleShiftArgs) },
        { "training", "zett_scale_shift_bwd", typeof(ScaleShiftBwdArgs) },
        { "training", "zett_adamw", typeof(AdamWArgs) },
    };

    [Theory]
    [MemberData(nameof(Structs))]
    public void Csharp_args_struct_matches_the_kernel_struct(string module, string prefix,
        Type type)
    {
        string ptx = KernelImages.Ptx(module);
        int[] layout = KernelImages.ReadIntArray(ptx, prefix + "_layout");
        string[] names = KernelImages.ReadString(ptx, prefix + "_fields").Split(',');
        FieldInfo[] fields = [.. type.GetFields(BindingFlags.Instance | BindingFlags.Public
            | BindingFlags.NonPublic).OrderBy(f => f.MetadataToken)];
        Assert.Equal(layout[0], Marshal.SizeOf(type));
        Assert.Equal(layout.Length - 1, fields.Length);
        Assert.Equal(names.Length, fields.Length);
        for (int i = 0; i < fields.Length; i++)
        {
            Assert.Equal(Normalize(names[i]), Normalize(fields[i].Name));
            Assert.Equal(layout[i + 1], (int)Marshal.OffsetOf(type, fields[i].Name));
        }
    }

    private static string Normalize(string name) =>
        name.Replace("_", "", StringComparison.Ordinal).ToLowerInvariant();
}
