using System.Globalization;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using ZeTT.Ops;
using ZeTT.Ops.Cpu;
using ZeTT.Runtime.Formats;
using ZeTT.Runtime.Models;
using ZeTT.Runtime.Transfer;
using RustTokenizer = Tokenizers.DotNet.Tokenizer;

namespace ZeTT.Runtime.Tests.Formats;

/// <summary>
/// The GGUF files run in llama.cpp itself (node-llama-cpp's prebuilt CPU binaries, pinned
/// version; build.sh installs them): the default model exported without transfer greedily
/// reproduces its 256 reference tokens; a model of every family loads and generates;
/// llama.cpp's tokenization of real multilingual and code text equals Hugging Face's (the
/// Rust <c>tokenizers</c> library) for the default model's tokenizer and for a transferred
/// model's byte-level tokenizer (given <c>" " + text</c>, the space the converted tokenizer
/// prepends). Skipped, with the reason, where node or the package is absent.
/// </summary>
public sealed partial class LlamaCppTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("zett-llama-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static void SkipUnlessLlamaCpp() =>
        Assert.SkipWhen(GgufTestData.LlamaCppUnavailableReason is not null,
            GgufTestData.LlamaCppUnavailableReason ?? "");

    private static int[] Ids(JsonNode? node) => [.. node!.AsArray().Select(n => n!.GetValue<int>())];

    [Theory]
    [InlineData(GgmlType.F32)]
    [InlineData(GgmlType.F16)]
    [InlineData(GgmlType.Q8_0)]
    public void The_default_model_greedily_reproduces_its_reference_tokens(GgmlType type)
    {
        SkipUnlessLlamaCpp();
        string path = Path.Combine(_dir, "stories260K.gguf");
        GgufExporter.Export(GgufTestModels.DefaultModelDir, path, type);
        int[] reference = Ids(JsonNode.Parse(File.ReadAllText(
            Path.Combine(GgufTestModels.DefaultModelDir, "reference_greedy_generation.json")))!["generated_ids"]);
        JsonObject result = GgufTestData.RunLlamaCpp(new JsonObject
        {
            ["model"] = path,
            ["generate"] = new JsonObject { ["prompt"] = new JsonArray(1), ["steps"] = reference.Length },
        });
        int[] generated = Ids(result["generate"]);
        int agree = generated.Zip(reference).TakeWhile(p => p.First == p.Second).Count();
        output.WriteLine($"{type}: llama.cpp's greedy generation agrees with the reference for the "
            + $"first {agree} of {reference.Length} tokens");
        if (type == GgmlType.F32)
        {
            // fp32 weights as the reference run had them: every token.
            Assert.Equal(reference, generated);
        }
        else
        {
            // Rounded weights can flip a near-tie late in a 256-token greedy run; the first
            // tokens must survive (measured: F16 256/256, Q8_0 see the test output).
            Assert.Equal(reference.Length, generated.Length);
            Assert.True(agree >= 16, $"{type}: only {agree} tokens agree");
        }
    }

    [Theory]
    [InlineData("llama", GgmlType.F16)]
    [InlineData("mistral", GgmlType.Q8_0)]
    [InlineData("qwen2", GgmlType.F16)]
    [InlineData("gemma", GgmlType.BF16)]
    [InlineData("gpt2", GgmlType.F16)]
    [InlineData("gpt_neox", GgmlType.F32)]
    public void Every_family_loads_and_generates_in_llama_cpp(string family, GgmlType type)
    {
        SkipUnlessLlamaCpp();
        string model = Path.Combine(_dir, family);
        GgufTestModels.Write(model, family);
        string path = Path.Combine(_dir, family + ".gguf");
        GgufExporter.Export(model, path, type);
        // llama.cpp checks every tensor's name, type and shape against the architecture when it
        // loads; a wrong layout fails here.
        JsonObject result = GgufTestData.RunLlamaCpp(new JsonObject
        {
            ["model"] = path,
            ["contextSize"] = 128,
            ["generate"] = new JsonObject { ["prompt"] = new JsonArray(1, 300, 301), ["steps"] = 8 },
        });
        int[] generated = Ids(result["generate"]);
        Assert.Equal(8, generated.Length);
        Assert.All(generated, id => Assert.InRange(id, 0, GgufTestModels.Vocab - 1));
    }

    /// <summary>zett's own log-softmax of the next-token logits after <paramref name="prompt"/>.
    /// </summary>
    private static double[] ZettLogProbs(string modelDir, int[] prompt)
    {
        using var model = LanguageModel.Open(modelDir, new CpuBackend());
        float[] logits;
        using (Tensor hidden = model.Forward(prompt, 1))
        using (Tensor head = model.HeadInput(hidden.Slice(0, hidden.Shape[0] - 1, 1)))
        using (Tensor l = model.Logits(head))
        using (Tensor host = Tensor.Host(DType.F32, l.Shape))
        {
            model.Ops.Download(l, host);
            logits = host.ToFloats();
        }
        double max = logits.Max(), sum = logits.Sum(x => Math.Exp(x - max));
        return [.. logits.Select(x => x - max - Math.Log(sum))];
    }

    [Theory]
    [InlineData("default")]
    [InlineData("llama")]
    [InlineData("mistral")]
    [InlineData("qwen2")]
    [InlineData("gemma")]
    [InlineData("gpt2")]
    [InlineData("gpt_neox")]
    public void Next_token_log_probabilities_equal_zetts_own_forward(string family)
    {
        SkipUnlessLlamaCpp();
        string model = GgufTestModels.DefaultModelDir;
        if (family != "default")
        {
            model = Path.Combine(_dir, family);
            GgufTestModels.Write(model, family);
        }
        string path = Path.Combine(_dir, family + ".gguf");
        GgufExporter.Export(model, path, GgmlType.F32);
        int[] prompt = [1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315];
        JsonObject result = GgufTestData.RunLlamaCpp(new JsonObject
        {
            ["model"] = path,
            ["contextSize"] = 128,
            ["kvF32"] = true,
            ["probabilities"] = new JsonObject { ["prompt"] = new JsonArray([.. prompt.Select(i => (JsonNode)i)]) },
        });
        double[] ours = ZettLogProbs(model, prompt);
        double spread = ours.Max() - ours.Min();
        double worst = 0;
        int compared = 0;
        int llamaTop = result["probabilities"]![0]![0]!.GetValue<int>();
        foreach (JsonNode? pair in result["probabilities"]!.AsArray())
        {
            int id = pair![0]!.GetValue<int>();
            double p = pair[1]!.GetValue<double>();
            // Tokens above 1e-6: below that llama.cpp's fp32 softmax loses relative precision.
            if (p > 1e-6)
            {
                worst = Math.Max(worst, Math.Abs(Math.Log(p) - ours[id]));
                compared++;
            }
        }
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{family}: max |log p(llama.cpp) - log p(zett)| = {worst:E2} over {compared} tokens "
            + $"= {worst / spread:E2} of the log-probability spread {spread:F2}"));
        Assert.True(compared > 0);
        Assert.Equal(Array.IndexOf(ours, ours.Max()), llamaTop);
        // Both fp32 with fp32 KV caches; they differ in summation order (ggml's blocked matmuls
        // vs zett's GEMM), in how RoPE angles and exp/rsqrt are computed: the bound is relative
        // to the spread of the log-probabilities, as logit errors scale with the logits.
        Assert.InRange(worst / spread, 0, 1e-3);
    }

    [GeneratedRegex(@"\p{M}")]
    private static partial Regex CombiningMark();

    /// <summary>Compares llama.cpp's tokens of every text with Hugging Face's (the Rust library)
    /// and zett's own encoder; returns the texts where either differs.</summary>
    private List<(string Source, string Text)> CompareTokenization(string gguf, string tokenizerJson,
        bool prependSpace, out int total)
    {
        List<(string Source, string Text)> texts = GgufTestData.Texts(perFile: 30);
        total = texts.Count;
        JsonObject result = GgufTestData.RunLlamaCpp(new JsonObject
        {
            ["model"] = gguf,
            ["vocabOnly"] = true,
            ["tokenize"] = new JsonArray([.. texts.Select(t => (JsonNode)(prependSpace ? " " + t.Text : t.Text))]),
        });
        JsonArray llama = result["tokenize"]!.AsArray();
        using var rust = new RustTokenizer(tokenizerJson);
        ZeTT.Runtime.Tokenizers.HfTokenizer zett =
            ZeTT.Runtime.Tokenizers.HfTokenizer.Load(Path.GetDirectoryName(tokenizerJson)!);
        var differ = new List<(string Source, string Text)>();
        int zettDiffers = 0;
        for (int i = 0; i < texts.Count; i++)
        {
            // zett's own encoder (zett tokenize), without special tokens, is held to llama.cpp too.
            bool zettDiffer = !zett.Encode(texts[i].Text, addSpecialTokens: false).Ids
                .SequenceEqual(Ids(llama[i]));
            zettDiffers += zettDiffer ? 1 : 0;
            // The Rust library adds the special tokens of its post-processor (BOS here);
            // llama.cpp was asked for none.
            uint[] hf = rust.Encode(texts[i].Text);
            uint[] content = hf.Length > 0 && hf[0] == 1 ? hf[1..] : hf;
            int[] ours = Ids(llama[i]);
            if (zettDiffer || !content.Select(x => (int)x).SequenceEqual(ours))
            {
                differ.Add(texts[i]);
            }
        }
        foreach (IGrouping<string, (string Source, string Text)> g in differ.GroupBy(d => d.Source))
        {
            output.WriteLine($"  differs: {g.Key}: {g.Count()} texts");
        }
        output.WriteLine($"zett's own encoder differs from llama.cpp on {zettDiffers} of {total} texts");
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{total - differ.Count} of {total} texts tokenize identically "
            + $"({100.0 * (total - differ.Count) / total:F1} %); "
            + $"{texts.Count(t => CombiningMark().IsMatch(t.Text))} contain combining marks"));
        return differ;
    }

    [Fact]
    public void The_default_tokenizer_tokenizes_real_text_as_hugging_face_does()
    {
        SkipUnlessLlamaCpp();
        Assert.SkipWhen(GgufTestData.TextDir is null, GgufTestData.TextSkipReason);
        string path = Path.Combine(_dir, "stories260K.gguf");
        GgufExporter.Export(GgufTestModels.DefaultModelDir, path, GgmlType.F16);
        List<(string Source, string Text)> differ = CompareTokenization(path,
            Path.Combine(GgufTestModels.DefaultModelDir, "tokenizer.json"), prependSpace: false, out _);
        Assert.Empty(differ);
    }

    [Fact]
    public void A_transferred_tokenizer_tokenizes_real_text_as_hugging_face_does_after_the_prepended_space()
    {
        SkipUnlessLlamaCpp();
        Assert.SkipWhen(GgufTestData.TextDir is null, GgufTestData.TextSkipReason);
        string hf = Path.Combine(_dir, "transferred");
        string gguf = Path.Combine(_dir, "transferred.gguf");
        TokenizerTransfer.Run(DefaultTransfer.Options() with { OutputDirectory = hf, Format = TransferFormat.Both });
        File.Move(Path.Combine(hf, TokenizerTransfer.GgufFileName), gguf);
        List<(string Source, string Text)> differ = CompareTokenization(gguf,
            Path.Combine(hf, "tokenizer.json"), prependSpace: true, out int total);
        // The one known difference (GgufTokenizer's note): llama.cpp's gpt-2 pre-tokenizer splits
        // combining marks from letters, the converted regex keeps them together. Every text
        // without a combining mark must match.
        Assert.All(differ, d => Assert.True(CombiningMark().IsMatch(d.Text),
            $"{d.Source}: differs without a combining mark: {d.Text[..Math.Min(80, d.Text.Length)]}"));
        Assert.True(differ.Count < total / 4, $"{differ.Count} of {total} differ");
    }
}
