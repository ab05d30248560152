using ZeTT.Kernels.Launch;
using ZeTT.Kernels.Reference;

namespace ZeTT.Kernels.Tests;

/// <summary>The CPU twins implement ZETT.md §3 semantics; these pin the semantics down.</summary>
public sealed class CpuTwinTests
{
    [Theory]
    [InlineData(0.0, 0.0)]
    [InlineData(0.5, 0.5204998778130465)]
    [InlineData(1.0, 0.8427007929497149)]
    [InlineData(-2.0, -0.9953222650189527)]
    [InlineData(2.9, 0.9999589021219005)]
    [InlineData(3.5, 0.9999992569016276)]
    [InlineData(-4.5, -0.9999999998033839)]
    public void Erf_matches_known_values(double x, double expected) =>
        Assert.Equal(expected, CpuMath.Erf(x), 1e-13);

    [Fact]
    public void Gelu_variants_match_pytorch_values()
    {
        // torch.nn.functional.gelu(torch.tensor(1.0, dtype=float64)) and approximate="tanh".
        Assert.Equal(0.8413447460685429f, CpuKernels.GeluErf(1f), 1e-7f);
        Assert.Equal(0.8411919906082768f, CpuKernels.GeluTanh(1f), 1e-7f);
        Assert.Equal(-0.04550026389635842f, CpuKernels.GeluErf(-2f), 1e-7f);
        Assert.Equal(0f, CpuKernels.GeluErf(-20f), 1e-7f);
    }

    [Fact]
    public void Bf16_rounding_is_to_nearest_even()
    {
        Assert.Equal(1f, CpuKernels.RoundBFloat16(1f + 1f / 512));          // tie → even
        Assert.Equal(1f + 1f / 64, CpuKernels.RoundBFloat16(1f + 3f / 256)); // tie → even (up)
        Assert.Equal(1f + 1f / 128, CpuKernels.RoundBFloat16(1f + 1f / 128 + 1f / 1024));
    }

    [Fact]
    public void Surface_embed_rescales_source_rows_and_not_fallback_rows()
    {
        // V0 = 3, width 2; source rows r → (10r, 10r+1); fallback rows f → (-f-1, -f-1).
        float[] source = [0, 1, 10, 11, 20, 21];
        float[] fallback = [-1, -1, -2, -2];
        float[] w = [2, 3], b = [0.5f, -0.5f];
        int[] ids = [0, 2, 3, 4];
        var output = new float[8];
        CpuKernels.SurfaceEmbed(ids, source, 2, 3, fallback, w, b, output);
        Assert.Equal([0.5f, 2.5f, 40.5f, 62.5f, -1, -1, -2, -2], output);
        CpuKernels.SurfaceEmbed(ids, source, 2, 3, fallback, default, default, output);
        Assert.Equal([0, 1, 20, 21, -1, -1, -2, -2], output);
    }

    [Fact]
    public void Roberta_embed_adds_type_and_position_but_not_to_the_language_position()
    {
        int hidden = 4;
        float[] x = [1, 2, 3, 4, 5, 6, 7, 9];   // rows 1, len 2
        float[] pos = [0, 0, 0, 0, 1, 1, 1, 1, 100, 100, 100, 100];
        float[] type0 = [0, 1, 0, 1];
        float[] lang = [0, 0, 0, 8];
        float[] w = [1, 1, 1, 1], bias = [0, 0, 0, 0];
        var output = new float[3 * hidden];
        var (_, src, posIndex, _) = CpuKernels.FullLayout([0, 0], 1, 3, 2, 0);
        CpuKernels.RobertaEmbedLayerNorm(x, src, posIndex, hidden, pos, type0, lang, w, bias,
            1e-5f, output);
        var expected = new float[3 * hidden];
        CpuKernels.LayerNorm([1, 3, 3, 5], w, bias, 1e-5f, expected.AsSpan(0, 4));
        CpuKernels.LayerNorm([6, 8, 8, 11], w, bias, 1e-5f, expected.AsSpan(4, 4));
        CpuKernels.LayerNorm(lang, w, bias, 1e-5f, expected.AsSpan(8, 4));
        Assert.Equal(expected, output);
        Assert.Equal(0f, output[0..4].Sum(), 1e-5f);
    }

    private static float[] Qkv(int rows, int seq, int hidden, int seed)
    {
        var rng = new Random(seed);
        return [.. Enumerable.Range(0, rows * seq * 3 * hidden)
            .Select(_ => (float)(rng.NextDouble() * 4 - 2))];
    }

    private static float V(float[] qkv, int seq, int hidden, int r, int s, int c) =>
        qkv[(r * seq + s) * 3 * hidden + 2 * hidden + c];

    [Fact]
    public void All_padding_row_attends_uniformly()
    {
        int seq = 5, heads = 2, hd = 3, hidden = heads * hd;
        float[] qkv = Qkv(1, seq, hidden, 1);
        int[] ids = [9, 9, 9, 9, 9];
        var output = new float[seq * hidden];
        var (tokIds, src, _, starts) = CpuKernels.FullLayout(ids, 1, seq, seq, 9);
        CpuKernels.Attention(qkv, default, tokIds, src, starts, heads, hd, 9, output);
        for (int c = 0; c < hidden; c++)
        {
            float mean = Enumerable.Range(0, seq).Average(s => V(qkv, seq, hidden, 0, s, c));
            for (int i = 0; i < seq; i++)
            {
                Assert.Equal(mean, output[i * hidden + c], 1e-5f);
            }
        }
    }

    [Fact]
    public void Only_unpadded_keys_and_the_language_position_are_attended()
    {
        int len = 4, seq = 5, heads = 1, hd = 4, hidden = 4;
        float[] qkv = Qkv(1, seq, hidden, 2);
        // Keys 1..3 padded; key 0 and the language key 4 remain. Make key 4 irrelevant by
        // giving it the same value as key 0: then every output equals V[0].
        for (int c = 0; c < hidden; c++)
        {
            qkv[(4 * 3 * hidden) + 2 * hidden + c] = V(qkv, seq, hidden, 0, 0, c);
        }
        int[] ids = [5, 1, 1, 1];
        var output = new float[seq * hidden];
        var (tokIds, src, _, starts) = CpuKernels.FullLayout(ids, 1, seq, len, 1);
        CpuKernels.Attention(qkv, default, tokIds, src, starts, heads, hd, 1, output);
        for (int i = 0; i < seq; i++)
        {
            for (int c = 0; c < hidden; c++)
            {
                Assert.Equal(V(qkv, seq, hidden, 0, 0, c), output[i * hidden + c], 1e-5f);
            }
        }
    }

    [Fact]
    public void Packed_roberta_embed_reads_each_token_from_its_source_and_position()
    {
        int hidden = 4;
        float[] x = [1, 2, 3, 4, 5, 6, 7, 9];   // two surface tokens
        float[] pos = [0, 0, 0, 0, 1, 1, 1, 1, 100, 100, 100, 100];
        float[] type0 = [0, 1, 0, 1], lang = [0, 0, 0, 8];
        float[] w = [1, 1, 1, 1], bias = [0, 0, 0, 0];
        var output = new float[3 * hidden];
        // Token 0: language position; token 1: surface row 1 at position 2; token 2: row 0, p 0.
        CpuKernels.RobertaEmbedLayerNorm(x, [-1, 1, 0], [7, 2, 0], hidden, pos, type0, lang, w,
            bias, 1e-5f, output);
        var expected = new float[3 * hidden];
        CpuKernels.LayerNorm(lang, w, bias, 1e-5f, expected.AsSpan(0, 4));
        CpuKernels.LayerNorm([105, 107, 107, 110], w, bias, 1e-5f, expected.AsSpan(4, 4));
        CpuKernels.LayerNorm([1, 3, 3, 5], w, bias, 1e-5f, expected.AsSpan(8, 4));
        Assert.Equal(expected, output);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Packed_attention_equals_the_unpacked_attention_on_the_kept_positions(bool lang)
    {
        // Rows of L = 6: trailing padding, middle padding, full, padding only. Packed rows keep
        // positions up to the last non-pad id (a padding-only row keeps one with a language
        // position, all six without); the unpacked kernel computes every position.
        int len = 6, seq = len + (lang ? 1 : 0), heads = 2, hd = 4, hidden = heads * hd;
        const int pad = 1;
        int[] ids = [5, 7, 1, 1, 1, 1, 4, 1, 1, 8, 1, 1, 2, 3, 4, 5, 6, 7, 1, 1, 1, 1, 1, 1];
        int rows = ids.Length / len;
        float[] full = Qkv(rows, seq, hidden, 3);
        var (fIds, fSrc, _, fStarts) = CpuKernels.FullLayout(ids, rows, seq, len, pad);
        var expected = new float[rows * seq * hidden];
        CpuKernels.Attention(full, default, fIds, fSrc, fStarts, heads, hd, pad, expected);

        int[] kept = [2, 4, 6, lang ? 1 : 6];
        var pIds = new List<int>();
        var pSrc = new List<int>();
        var pQkv = new List<float>();
        var fullToken = new List<int>();
        int[] starts = new int[rows + 1];
        for (int r = 0; r < rows; r++)
        {
            starts[r] = pIds.Count;
            for (int p = 0; p < seq; p++)
            {
                if (p >= kept[r] && p < len)
                {
                    continue;
                }
                int t = r * seq + p;
                fullToken.Add(t);
                pIds.Add(fIds[t]);
                pSrc.Add(fSrc[t]);
                pQkv.AddRange(full.AsSpan(t * 3 * hidden, 3 * hidden).ToArray());
            }
        }
        starts[rows] = pIds.Count;
        var packed = new float[pIds.Count * hidden];
        CpuKernels.Attention([.. pQkv], default, [.. pIds], [.. pSrc], starts, heads, hd, pad,
            packed);
        Assert.True(pIds.Count < rows * seq);
        for (int t = 0; t < fullToken.Count; t++)
        {
            for (int c = 0; c < hidden; c++)
            {
                Assert.Equal(expected[fullToken[t] * hidden + c], packed[t * hidden + c], 1e-6f);
            }
        }
    }

    [Fact]
    public void Pool_first_takes_each_rows_first_packed_token()
    {
        float[] h = [1, 1, 2, 2, 3, 3, 4, 4, 5, 5];
        var output = new float[6];
        CpuKernels.PoolFirst(h, [0, 3, 4, 5], 2, output);
        Assert.Equal([1, 1, 4, 4, 5, 5], output);
    }

    [Fact]
    public void Residual_layer_norm_applies_the_activation_before_the_residual()
    {
        float[] x = [1, -1, 2], bias = [0.5f, 0, -1], res = [3, 1, 0], w = [1, 2, 1], b = [0, 0, 1];
        var output = new float[3];
        CpuKernels.BiasActivationResidualLayerNorm(x, bias, res, w, b, 1e-6f,
            Activation.GeluTanh, 1, 3, output);
        float[] t = [CpuKernels.GeluTanh(1.5f) + 3, CpuKernels.GeluTanh(-1) + 1,
            CpuKernels.GeluTanh(1) + 0];
        var expected = new float[3];
        CpuKernels.LayerNorm(t, w, b, 1e-6f, expected);
        Assert.Equal(expected, output);
    }

    [Fact]
    public void Bias_rescale_takes_a_column_window()
    {
        float[] x = [1, 2, 3, 4, 5, 6];      // rows 2, xCols 3
        float[] bias = [10, 20, 30];
        var output = new float[4];
        CpuKernels.BiasRescale(x, 3, 1, bias, [2, 3], [1, 1], 2, 2, output);
        Assert.Equal([2 * 22 + 1, 3 * 33 + 1, 2 * 25 + 1, 3 * 36 + 1], output);
    }
}
