using ZeTT.Kernels;
using ZeTT.Runtime.Hypernetwork;

namespace ZeTT.Runtime.Tests.Hypernetwork;

/// <summary>
/// The packed layout the CUDA backend computes on (<see cref="HypernetPacking"/>): the rule and
/// the layout (here), the twin forward packed against unpacked (here), and the CUDA backend
/// packed against unpacked and against the CPU backend (skipped without a device).
/// </summary>
public sealed class CudaPaddingSkipTests
{
    private static HypernetConfig Config(bool lang, int maxLen = 4) =>
        TinyHypernet.Create(new TinyOptions(Lang: lang, MaxLen: maxLen, Layers: 1), 1).Weights
            .Config;

    [Fact]
    public void Positions_follow_the_last_real_id()
    {
        HypernetConfig withLang = Config(lang: true), mono = Config(lang: false);
        Assert.Equal(1, withLang.PadTokenId);
        Assert.Equal(2, HypernetPacking.Positions([5, 6, 1, 1], withLang, skipPadding: true));
        Assert.Equal(4, HypernetPacking.Positions([5, 1, 1, 6], withLang, skipPadding: true));
        Assert.Equal(3, HypernetPacking.Positions([1, 1, 7, 1], mono, skipPadding: true));
        // Padding only: one position next to the language position, all of them without it.
        Assert.Equal(1, HypernetPacking.Positions([1, 1, 1, 1], withLang, skipPadding: true));
        Assert.Equal(4, HypernetPacking.Positions([1, 1, 1, 1], mono, skipPadding: true));
        Assert.Equal(4, HypernetPacking.Positions([5, 1, 1, 1], withLang, skipPadding: false));
    }

    [Fact]
    public void Pack_lays_out_ids_sources_positions_and_row_starts()
    {
        HypernetConfig c = Config(lang: true);
        int[] ids = [5, 6, 1, 1, /* */ 1, 1, 1, 1, /* */ 7, 1, 8, 1];
        var dest = new int[HypernetPacking.Capacity(c, 3)];
        PackedSizes s = HypernetPacking.Pack(ids, 3, c, skipPadding: true, dest);
        Assert.Equal(new PackedSizes(6, 9, 3), s);
        Assert.Equal(4 * 3 + 3 * 3 * 5 + 4, dest.Length);
        Assert.Equal([5, 6, 1, 7, 1, 8], dest[..6]);
        Assert.Equal([0, 1, -1, 2, -1, 3, 4, 5, -1], dest[s.SourceOffset..s.PositionOffset]);
        Assert.Equal([0, 1, 4, 0, 4, 0, 1, 2, 4], dest[s.PositionOffset..s.IdsOffset]);
        Assert.Equal([5, 6, 1, 1, 1, 7, 1, 8, 1], dest[s.IdsOffset..s.RowStartOffset]);
        Assert.Equal([0, 3, 5, 9], dest[s.RowStartOffset..s.Total]);

        HypernetConfig mono = Config(lang: false);
        PackedSizes m = HypernetPacking.Pack(ids, 3, mono, skipPadding: true, dest);
        Assert.Equal(new PackedSizes(9, 9, 3), m);
        Assert.Equal([5, 6, 1, 1, 1, 1, 7, 1, 8], dest[..9]);
        Assert.Equal([0, 2, 6, 9], dest[m.RowStartOffset..m.Total]);

        PackedSizes full = HypernetPacking.Pack(ids, 3, c, skipPadding: false, dest);
        Assert.Equal(new PackedSizes(12, 15, 3), full);
        Assert.Equal(ids, dest[..12]);
        Assert.Equal([0, 5, 10, 15], dest[full.RowStartOffset..full.Total]);
        Assert.Equal(HypernetPacking.Capacity(c, 3), full.Total);
    }

    public static TheoryData<bool, int> Shapes() => new()
    {
        { true, 7 }, { false, 7 }, { true, 1 }, { false, 16 },
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Twin_forward_packed_equals_unpacked(bool lang, int maxLen)
    {
        var o = new TinyOptions(Lang: lang, MaxLen: maxLen, Separate: !lang, Layers: 2);
        var (weights, source) = TinyHypernet.Create(o, 31 + maxLen);
        const int rows = 15;
        int[] ids = CpuPaddingSkipTests.MixedRows(o, rows, seed: 4);
        int langIndex = lang ? 1 : -1;
        HypernetOutput unpacked = TwinHypernetForward.Run(weights, source, ids, rows, langIndex,
            skipPadding: false);
        HypernetOutput packed = TwinHypernetForward.Run(weights, source, ids, rows, langIndex);
        CpuPaddingSkipTests.AssertClose(unpacked, packed, $"twin lang {lang} L {maxLen}");
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Cuda_packed_equals_unpacked_and_the_cpu_backend(bool lang, int maxLen)
    {
        Assert.SkipUnless(Cuda.IsAvailable, Cuda.UnavailableReason);
        var o = new TinyOptions(Lang: lang, MaxLen: maxLen, Separate: !lang, Layers: 3);
        var (weights, source) = TinyHypernet.Create(o, 41 + maxLen);
        const int rows = 45;
        int[] ids = CpuPaddingSkipTests.MixedRows(o, rows, seed: 6);
        int langIndex = lang ? 2 : -1;
        using var cpu = new CpuHypernetBackend(weights, source, HypernetPrecision.Float32);
        HypernetOutput reference = cpu.Predict(ids, rows, langIndex);
        foreach (HypernetPrecision precision in new[] { HypernetPrecision.Float32,
            HypernetPrecision.BFloat16 })
        {
            // A batch of 16 makes three chunks of different packed lengths.
            using var gpu = new CudaHypernetBackend(weights, source, precision, maxBatchSize: 16);
            Assert.True(gpu.SkipPadding);
            HypernetOutput packed = HypernetBatching.PredictAll(gpu, ids, rows, langIndex,
                weights.Config);
            gpu.SkipPadding = false;
            HypernetOutput unpacked = HypernetBatching.PredictAll(gpu, ids, rows, langIndex,
                weights.Config);
            if (precision == HypernetPrecision.Float32)
            {
                // cuBLAS may pick different algorithms for the two row counts, so the layouts
                // are held to the backend's fp32 tolerance rather than to the bit.
                BackendParityTests.CompareOutputs(unpacked, packed);
                BackendParityTests.CompareOutputs(reference, packed);
            }
            else
            {
                // bf16: both layouts round the same values; packed vs unpacked GEMMs may tile
                // differently, so compare within bf16's tolerance.
                CudaHypernetBackendTests.RelativeError(unpacked.EmbeddingsIn,
                    packed.EmbeddingsIn, "bf16 e_in packed vs unpacked");
                CudaHypernetBackendTests.RelativeError(reference.EmbeddingsIn,
                    packed.EmbeddingsIn, "bf16 e_in vs cpu fp32");
            }
        }
    }
}
