using ZeTT.Runtime.Formats;
using ZeTT.Runtime.Hypernetwork;
using ZeTT.Runtime.Tensors;

namespace ZeTT.Runtime.Tests.Hypernetwork;

/// <summary>One fixture case folder (format: scripts/hypernet_cases.py).</summary>
internal sealed class HypernetFixture
{
    private HypernetFixture(string dir)
    {
        Directory = dir;
        Config = HypernetConfig.Load(dir);
        string modelPath = Path.Combine(dir, "model.safetensors");
        using (SafetensorsFile model = SafetensorsFile.Open(modelPath))
        {
            var tensors = model.Tensors.ToDictionary(t => t.Name, t => model.ReadFloat32(t.Name));
            Weights = HypernetWeights.FromTensors(Config, tensors, modelPath);
        }
        using (SafetensorsFile inputs = SafetensorsFile.Open(Path.Combine(dir, "inputs.safetensors")))
        {
            SurfaceForms = inputs.ReadInt32("surface_forms", out int[] shape);
            Rows = shape[0];
            SourceEmbeddings = inputs.ReadFloat32("source_embeddings");
            LangIndex = inputs.ReadInt32("lang_index", out _)[0];
        }
        using SafetensorsFile outputs = SafetensorsFile.Open(Path.Combine(dir, "outputs.safetensors"));
        EmbeddingsIn = outputs.ReadFloat32("embeddings_in").Data;
        EmbeddingsOut = outputs.Contains("embeddings_out")
            ? outputs.ReadFloat32("embeddings_out").Data
            : null;
        Bias = outputs.Contains("bias") ? outputs.ReadFloat32("bias").Data : null;
    }

    public string Directory { get; }

    public HypernetConfig Config { get; }

    public HypernetWeights Weights { get; }

    public int[] SurfaceForms { get; }

    public int Rows { get; }

    public HostTensor SourceEmbeddings { get; }

    public int LangIndex { get; }

    public float[] EmbeddingsIn { get; }

    public float[]? EmbeddingsOut { get; }

    public float[]? Bias { get; }

    /// <summary>The repository root: found by walking up from the test binary to the folder
    /// holding ZeTT.Native.sln (or ZETT_REPO_ROOT when set, e.g. on the device machine).</summary>
    public static string RepoRoot
    {
        get
        {
            string? env = Environment.GetEnvironmentVariable("ZETT_REPO_ROOT");
            if (!string.IsNullOrEmpty(env))
            {
                return env;
            }
            for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            {
                if (File.Exists(Path.Combine(d.FullName, "ZeTT.Native.sln")))
                {
                    return d.FullName;
                }
            }
            return Environment.CurrentDirectory;
        }
    }

    public static string FixtureRoot(string set) => Path.Combine(RepoRoot, "tests", "fixtures", set);

    /// <summary>Loads case <paramref name="name"/> of fixture set <paramref name="set"/>, or
    /// skips the test (with the reason) while that set has not been generated.</summary>
    public static HypernetFixture LoadOrSkip(string set, string name)
    {
        string dir = Path.Combine(FixtureRoot(set), name);
        if (set == GoldenSet && !File.Exists(Path.Combine(dir, "outputs.safetensors")))
        {
            Assert.Skip($"fixture {dir} is absent: generate it on the GPU machine with "
                + "scripts/golden_hypernet.py --ref .ref/zett --out tests/fixtures/hypernet");
        }
        return new HypernetFixture(dir);
    }

    /// <summary>Fixtures from the reference's own model (made on the GPU machine).</summary>
    public const string GoldenSet = "hypernet";

    /// <summary>Fixtures from our CPU torch reconstruction (committed; never skipped).</summary>
    public const string ReconstructionSet = "hypernet-reconstruction";

    /// <summary>The case names of scripts/hypernet_cases.py.</summary>
    public static readonly string[] CaseNames =
    [
        "concat_last_hidden_L1",
        "lang_heads6_extra",
        "lang_tied_rescale_bias",
        "single_head_tied_plain",
        "single_head_untied_lang",
        "untied_separate_heads_L16",
    ];
}
