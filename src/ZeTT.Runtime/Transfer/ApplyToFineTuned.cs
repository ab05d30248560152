using System.Globalization;
using System.Numerics.Tensors;
using System.Text.Json.Nodes;
using ZeTT.Ops;
using ZeTT.Runtime.Formats;
using ZeTT.Runtime.IO;
using ZeTT.Runtime.Tensors;

namespace ZeTT.Runtime.Transfer;

/// <summary>
/// Carries a tokenizer transfer over to a fine-tuned model (ZETT.md §6, the reference's
/// <c>scripts/apply_to_ft.py</c>): given a base model B, a fine-tune F of it (same tokenizer)
/// and B′ (B transferred to a new tokenizer), writes for each λ the model
/// <c>F + λ·(B′ − B)</c> for every non-embedding tensor, with B′'s input/output embeddings (and
/// output bias) and tokenizer, F's chat template, and config.json from F with B′'s vocab_size.
/// <para>Tensors are streamed one at a time (chunks of the memory maps of F, B and B′): host
/// memory is B′'s embedding matrices plus a few MB. The blend is computed in fp32 and stored in
/// F's dtype (the reference computes in the fp32 it loads with and saves fp32; keeping F's
/// dtype keeps a bf16 fine-tune bf16). Integer tensors (buffers) are copied from F.</para>
/// </summary>
public static class ApplyToFineTuned
{
    /// <summary>Tokenizer files replaced by B′'s (F's are left out when B′ lacks them).</summary>
    public static IReadOnlyList<string> TokenizerFiles { get; } =
    [
        "tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json",
        "added_tokens.json", "vocab.json", "merges.txt", "vocab.txt", "sentencepiece.bpe.model",
        "spiece.model",
    ];

    /// <summary>The output directory of one λ: <paramref name="output"/> itself when there is
    /// one λ, else <c>&lt;output&gt;/lambda_&lt;λ&gt;</c> (e.g. <c>lambda_0.5</c>).</summary>
    public static string OutputDirectoryFor(string output, double lambda, int lambdaCount)
    {
        ArgumentNullException.ThrowIfNull(output);
        return lambdaCount == 1
            ? output
            : Path.Combine(output, "lambda_" + lambda.ToString("0.######", CultureInfo.InvariantCulture));
    }

    /// <summary>Writes one model per λ; returns their directories. <paramref name="log"/>
    /// receives one line per finished model.</summary>
    public static IReadOnlyList<string> Run(string baseDir, string fineTunedDir, string transferredBaseDir,
        string outputDir, IReadOnlyList<double> lambdas, bool overwrite = false, Action<string>? log = null)
    {
        ArgumentNullException.ThrowIfNull(lambdas);
        if (lambdas.Count == 0)
        {
            throw new ZettException("no lambdas given");
        }
        if (lambdas.Distinct().Count() != lambdas.Count || lambdas.Any(l => !double.IsFinite(l)))
        {
            throw new ZettException($"lambdas must be distinct finite numbers; got {string.Join(", ", lambdas)}");
        }
        ArgumentNullException.ThrowIfNull(outputDir);
        OutputTarget.Check(outputDir, OutputKind.Directory, overwrite || lambdas.Count > 1,
            [baseDir, fineTunedDir, transferredBaseDir]);
        foreach (double lambda in lambdas)
        {
            OutputTarget.Check(OutputDirectoryFor(outputDir, lambda, lambdas.Count),
                OutputKind.Directory, overwrite, [baseDir, fineTunedDir, transferredBaseDir]);
        }
        using HfModelDirectory b = HfModelDirectory.Open(baseDir);
        using HfModelDirectory f = HfModelDirectory.Open(fineTunedDir);
        using HfModelDirectory bt = HfModelDirectory.Open(transferredBaseDir);
        Check(b, f, bt);

        HostTensor input = bt.ReadInputEmbeddings();
        HostTensor? output = f.OutputEmbeddingName is null ? null : bt.ReadOutputEmbeddings();
        HostTensor? bias = f.OutputBiasName is null ? null : bt.ReadOutputBias();
        string mergedTokenizerConfig = Path.Combine(Path.GetTempPath(),
            $"zett-tokenizer_config-{Environment.ProcessId}-{Guid.NewGuid():N}.json");
        try
        {
            Dictionary<string, string?> files = TokenizerFilesFor(f, bt, mergedTokenizerConfig);
            var written = new List<string>();
            foreach (double lambda in lambdas)
            {
                string dir = OutputDirectoryFor(outputDir, lambda, lambdas.Count);
                HfModelWriter.Write(f, dir, new HfModelEdit
                {
                    InputEmbeddings = input,
                    OutputEmbeddings = output,
                    OutputBias = bias,
                    Files = files,
                    TransformTensor = (file, info) => Blend(file, info, b, bt, (float)lambda),
                }, overwrite);
                written.Add(dir);
                log?.Invoke($"lambda {lambda.ToString(CultureInfo.InvariantCulture)}: {dir}");
            }
            return written;
        }
        finally
        {
            File.Delete(mergedTokenizerConfig);
        }
    }

    private static void Check(HfModelDirectory b, HfModelDirectory f, HfModelDirectory bt)
    {
        foreach (HfModelDirectory m in new[] { f, bt })
        {
            if (m.ModelType != b.ModelType)
            {
                throw new ZettException($"{m.Directory}: model_type '{m.ModelType}' differs from the base "
                    + $"model's '{b.ModelType}'");
            }
        }
        SafetensorsTensorInfo bIn = b.Weights.GetInfo(b.InputEmbeddingName);
        SafetensorsTensorInfo fIn = f.Weights.GetInfo(f.InputEmbeddingName);
        if (!bIn.Shape.SequenceEqual(fIn.Shape))
        {
            throw new ZettException($"{f.Directory}: input embedding {HostTensor.ShapeToString(fIn.Shape)} "
                + $"differs from the base model's {HostTensor.ShapeToString(bIn.Shape)}; the fine-tuned "
                + "model must use the base model's tokenizer");
        }
        if ((f.OutputEmbeddingName is null) != (bt.OutputEmbeddingName is null)
            || (f.OutputBiasName is null) != (bt.OutputBiasName is null))
        {
            throw new ZettException($"{bt.Directory}: its output embedding/bias layout (tied: "
                + $"{bt.OutputEmbeddingName is null}, bias: {bt.OutputBiasName is not null}) differs from "
                + $"the fine-tuned model's (tied: {f.OutputEmbeddingName is null}, bias: "
                + $"{f.OutputBiasName is not null})");
        }
        CompareBodies(b, f);
        CompareBodies(b, bt);
    }

    private static void CompareBodies(HfModelDirectory b, HfModelDirectory other)
    {
        IReadOnlySet<string> bEmb = b.EmbeddingTensorNames, oEmb = other.EmbeddingTensorNames;
        var bBody = b.Weights.Tensors.Where(t => !bEmb.Contains(t.Name)).ToDictionary(t => t.Name);
        var oBody = other.Weights.Tensors.Where(t => !oEmb.Contains(t.Name)).ToDictionary(t => t.Name);
        foreach ((string name, SafetensorsTensorInfo o) in oBody)
        {
            if (!bBody.TryGetValue(name, out SafetensorsTensorInfo? bi))
            {
                throw new ZettException($"{other.Weights.FileOf(name).Path}: tensor '{name}' is not in the "
                    + $"base model {b.Directory}");
            }
            if (!bi.Shape.SequenceEqual(o.Shape))
            {
                throw new ZettException($"{other.Weights.FileOf(name).Path}: tensor '{name}' has shape "
                    + $"{HostTensor.ShapeToString(o.Shape)} but the base model's is "
                    + HostTensor.ShapeToString(bi.Shape));
            }
        }
        string? missing = bBody.Keys.FirstOrDefault(n => !oBody.ContainsKey(n));
        if (missing is not null)
        {
            throw new ZettException($"{other.Directory}: tensor '{missing}' of the base model is missing");
        }
    }

    private static SafetensorsEntry? Blend(SafetensorsFile file, SafetensorsTensorInfo info,
        HfModelDirectory b, HfModelDirectory bt, float lambda)
    {
        if (!DTypeConverter.IsConvertibleFloat(info.DType))
        {
            return null;
        }
        if (!DTypeConverter.IsStorableFloat(info.DType))
        {
            throw new ZettException($"{file.Path}: tensor '{info.Name}' is "
                + $"{DTypes.ToSafetensorsName(info.DType)}; blending needs F64, F32, F16 or BF16");
        }
        SafetensorsFile bFile = b.Weights.FileOf(info.Name), btFile = bt.Weights.FileOf(info.Name);
        return new SafetensorsEntry(info.Name, info.DType, (long[])info.Shape.Clone(), stream =>
        {
            const int Chunk = 1 << 20;
            long count = info.ElementCount;
            int n0 = (int)Math.Min(Chunk, Math.Max(count, 1));
            float[] fv = new float[n0], bv = new float[n0], btv = new float[n0];
            byte[] bytes = new byte[n0 * DTypes.SizeOf(info.DType)];
            for (long start = 0; start < count; start += Chunk)
            {
                int n = (int)Math.Min(Chunk, count - start);
                Span<float> fs = fv.AsSpan(0, n), bs = bv.AsSpan(0, n), bts = btv.AsSpan(0, n);
                file.ReadFloat32(info.Name, start, fs);
                bFile.ReadFloat32(info.Name, start, bs);
                btFile.ReadFloat32(info.Name, start, bts);
                RequireFinite(file, info.Name, fs);
                RequireFinite(bFile, info.Name, bs);
                RequireFinite(btFile, info.Name, bts);
                TensorPrimitives.Subtract(bts, bs, bts);
                TensorPrimitives.MultiplyAdd(bts, lambda, fs, fs);
                Span<byte> outBytes = bytes.AsSpan(0, n * DTypes.SizeOf(info.DType));
                DTypeConverter.FromFloat32(fs, info.DType, outBytes);
                stream.Write(outBytes);
            }
        });
    }

    private static void RequireFinite(SafetensorsFile file, string tensor, ReadOnlySpan<float> values)
    {
        // A finite sum means every value is finite; NaN or infinity would be blended into the
        // output.
        if (!float.IsFinite(TensorPrimitives.Sum(values)))
        {
            foreach (float x in values)
            {
                if (!float.IsFinite(x))
                {
                    throw new ZettException($"{file.Path}: tensor '{tensor}' holds {x} "
                        + "(values must be finite)");
                }
            }
        }
    }

    private static Dictionary<string, string?> TokenizerFilesFor(HfModelDirectory f, HfModelDirectory bt,
        string mergedTokenizerConfig)
    {
        var files = new Dictionary<string, string?>(StringComparer.Ordinal);
        foreach (string name in TokenizerFiles)
        {
            string fromBt = Path.Combine(bt.Directory, name);
            files[name] = File.Exists(fromBt) ? fromBt : null;
        }
        string btConfig = Path.Combine(bt.Directory, "tokenizer_config.json");
        string fConfig = Path.Combine(f.Directory, "tokenizer_config.json");
        if (File.Exists(btConfig))
        {
            JsonObject merged = HfModelDirectory.ReadJsonObject(btConfig);
            JsonNode? template = File.Exists(fConfig)
                ? HfModelDirectory.ReadJsonObject(fConfig)["chat_template"]?.DeepClone()
                : null;
            if (template is null)
            {
                merged.Remove("chat_template");
            }
            else
            {
                merged["chat_template"] = template;
            }
            HfModelWriter.WriteJson(mergedTokenizerConfig, merged);
            files["tokenizer_config.json"] = mergedTokenizerConfig;
        }
        return files;
    }
}
