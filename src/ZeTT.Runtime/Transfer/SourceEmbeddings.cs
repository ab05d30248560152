using System.Numerics.Tensors;
using ZeTT.Ops;
using ZeTT.Runtime.Formats;
using ZeTT.Runtime.Tensors;
using Tensor = ZeTT.Ops.Tensor;

namespace ZeTT.Runtime.Transfer;

/// <summary>Reads a model's embedding matrices from the memory map, row block by row block,
/// straight into their destination (no intermediate copy of the whole matrix).</summary>
public static unsafe class SourceEmbeddings
{
    /// <summary>
    /// The hypernetwork's source matrix <c>E</c> [V, D_in]: the input embeddings, followed on
    /// each row by the output embeddings when <paramref name="withOutput"/> (untied models).
    /// </summary>
    public static HostTensor ReadStacked(HfModelDirectory model, bool withOutput)
    {
        (int v, int width) = Check(model, withOutput);
        var data = new float[checked((long)v * width)];
        Fill(model, withOutput, width, (r, column, cols) =>
            data.AsSpan((int)(r * width + column), cols));
        return new HostTensor(withOutput ? "embeddings_in+embeddings_out" : model.InputEmbeddingName,
            [v, width], data);
    }

    /// <summary>As <see cref="ReadStacked"/>, as an fp32 host tensor of the op layer (64-bit
    /// sizes: E past 2^31 elements, e.g. a 256k vocabulary at hidden size 8192); the caller
    /// disposes it.</summary>
    public static Tensor ReadStackedTensor(HfModelDirectory model, bool withOutput)
    {
        (int v, int width) = Check(model, withOutput);
        Tensor t = Tensor.Host(DType.F32, [v, width],
            withOutput ? "embeddings_in+embeddings_out" : model.InputEmbeddingName);
        try
        {
            float* start = (float*)t.Address;
            Fill(model, withOutput, width, (r, column, cols) =>
                new Span<float>(start + (r * width) + column, cols));
            return t;
        }
        catch
        {
            t.Dispose();
            throw;
        }
    }

    private static (int Rows, int Width) Check(HfModelDirectory model, bool withOutput)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (withOutput && model.OutputEmbeddingName is null)
        {
            throw new ZettException($"{model.Directory}: the hypernetwork needs output embeddings "
                + "(separate_out_embeddings) but the model has none (tied or a base model)");
        }
        return (model.VocabSize, withOutput ? 2 * model.HiddenSize : model.HiddenSize);
    }

    private static void Fill(HfModelDirectory model, bool withOutput, int width, RowAt row)
    {
        ReadInto(model, model.InputEmbeddingName, row, width, 0);
        if (withOutput)
        {
            ReadInto(model, model.OutputEmbeddingName!, row, width, model.HiddenSize);
        }
    }

    /// <summary>The destination of <paramref name="cols"/> elements of row
    /// <paramref name="row"/> from column <paramref name="column"/>.</summary>
    internal delegate Span<float> RowAt(long row, int column, int cols);

    /// <summary>Copies the rows of the [V, D] tensor <paramref name="name"/> (any float dtype)
    /// into <paramref name="destination"/>'s rows from column <paramref name="column"/>
    /// (<paramref name="stride"/> is the destination's row width), then checks them finite.</summary>
    private static void ReadInto(HfModelDirectory model, string name, RowAt destination,
        int stride, int column)
    {
        SafetensorsTensorInfo info = model.Weights.GetInfo(name);
        int rows = (int)info.Shape[0], cols = (int)info.Shape[1];
        int size = DTypes.SizeOf(info.DType);
        long rowBytes = (long)cols * size;
        int block = (int)Math.Max(1, (1 << 24) / rowBytes);
        Parallel.For(0, (rows + block - 1) / block, b =>
        {
            long r0 = (long)b * block;
            int n = (int)Math.Min(block, rows - r0);
            ReadOnlySpan<byte> bytes = model.Weights.GetSpan(name, r0 * rowBytes, (int)(n * rowBytes));
            if (stride == cols)
            {
                DTypeConverter.ToFloat32(info.DType, bytes, destination(r0, column, n * cols));
                return;
            }
            for (int r = 0; r < n; r++)
            {
                DTypeConverter.ToFloat32(info.DType, bytes.Slice((int)(r * rowBytes), (int)rowBytes),
                    destination(r0 + r, column, cols));
            }
        });
        // Non-finite values would be copied into every prediction made from them.
        string file = model.Weights.FileOf(name).Path;
        for (long r = 0; r < rows; r++)
        {
            ReadOnlySpan<float> row = destination(r, column, cols);
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
