using System.Numerics.Tensors;
using ZeTT.Ops;
using ZeTT.Runtime.Formats;
using ZeTT.Runtime.Tensors;

namespace ZeTT.Runtime.Transfer;

/// <summary>Reads a model's embedding matrices from the memory map, row block by row block,
/// straight into their destination (no intermediate copy of the whole matrix).</summary>
public static class SourceEmbeddings
{
    /// <summary>
    /// The hypernetwork's source matrix <c>E</c> [V, D_in]: the input embeddings, followed on
    /// each row by the output embeddings when <paramref name="withOutput"/> (untied models).
    /// </summary>
    public static HostTensor ReadStacked(HfModelDirectory model, bool withOutput)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (withOutput && model.OutputEmbeddingName is null)
        {
            throw new ZettException($"{model.Directory}: the hypernetwork needs output embeddings "
                + "(separate_out_embeddings) but the model has none (tied or a base model)");
        }
        int v = model.VocabSize, d = model.HiddenSize, width = withOutput ? 2 * d : d;
        var data = new float[checked((long)v * width)];
        ReadInto(model, model.InputEmbeddingName, data, width, 0);
        if (withOutput)
        {
            ReadInto(model, model.OutputEmbeddingName!, data, width, d);
        }
        return new HostTensor(withOutput ? "embeddings_in+embeddings_out" : model.InputEmbeddingName,
            [v, width], data);
    }

    /// <summary>Copies the rows of the [V, D] tensor <paramref name="name"/> (any float dtype)
    /// into <paramref name="destination"/> at row stride <paramref name="stride"/> and column
    /// <paramref name="column"/>.</summary>
    internal static void ReadInto(HfModelDirectory model, string name, float[] destination,
        int stride, int column)
    {
        SafetensorsTensorInfo info = model.Weights.GetInfo(name);
        int rows = (int)info.Shape[0], cols = (int)info.Shape[1];
        int size = DTypes.SizeOf(info.DType);
        long rowBytes = (long)cols * size;
        int block = (int)Math.Max(1, (1 << 24) / rowBytes);
        Parallel.For(0, (rows + block - 1) / block, b =>
        {
            int r0 = b * block, n = Math.Min(block, rows - r0);
            ReadOnlySpan<byte> bytes = model.Weights.GetSpan(name, r0 * rowBytes, (int)(n * rowBytes));
            if (stride == cols)
            {
                DTypeConverter.ToFloat32(info.DType, bytes,
                    destination.AsSpan((int)((long)r0 * stride), n * cols));
                return;
            }
            for (int r = 0; r < n; r++)
            {
                DTypeConverter.ToFloat32(info.DType, bytes.Slice((int)(r * rowBytes), (int)rowBytes),
                    destination.AsSpan((int)((long)(r0 + r) * stride + column), cols));
            }
        });
        // Non-finite values would be copied into every prediction made from them.
        string file = model.Weights.FileOf(name).Path;
        for (int r = 0; r < rows; r++)
        {
            ReadOnlySpan<float> row = destination.AsSpan((int)((long)r * stride + column), cols);
            if (!float.IsFinite(TensorPrimitives.Sum(row)) && !AllFinite(row))
            {
                throw new ZettException($"{file}: tensor '{name}': row {r} holds a NaN or "
                    + "infinite value (values must be finite)");
            }
        }
    }

    private static bool AllFinite(ReadOnlySpan<float> values)
    {
        foreach (float x in values)
        {
            if (!float.IsFinite(x))
            {
                return false;
            }
        }
        return true;
    }
}
