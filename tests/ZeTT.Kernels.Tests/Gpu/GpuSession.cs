using ZeTT.Kernels.Blas;
using ZeTT.Kernels.Reference;

[assembly: AssemblyFixture(typeof(ZeTT.Kernels.Tests.Gpu.GpuSession))]

namespace ZeTT.Kernels.Tests.Gpu;

/// <summary>All GPU tests run in this collection, one at a time, on one shared stream.</summary>
[CollectionDefinition("gpu", DisableParallelization = true)]
public sealed class GpuCollection;

/// <summary>
/// One context, stream, kernel set and BLAS handle for the whole test run, created on first use
/// by a GPU test (tests call <see cref="Require"/>, which skips when there is no device), and
/// disposed when the run ends.
/// </summary>
public sealed class GpuSession : IDisposable
{
    private readonly Lazy<Parts> _parts = new(() => new Parts());

    /// <summary>Skips the calling test unless CUDA is available; returns the session's parts.
    /// </summary>
    public Parts Require()
    {
        Assert.SkipUnless(Cuda.IsAvailable, Cuda.UnavailableReason);
        Parts p = _parts.Value;
        p.Context.MakeCurrent();
        return p;
    }

    public void Dispose()
    {
        if (_parts.IsValueCreated)
        {
            _parts.Value.Dispose();
        }
    }

    public sealed class Parts : IDisposable
    {
        private readonly List<DeviceBuffer> _buffers = [];

        public Parts()
        {
            Context = CudaContext.Create(0);
            Stream = new CudaStream(Context);
            Kernels = new KernelSet(Context);
            Blas = new BlasHandle(Stream);
        }

        public CudaContext Context { get; }

        public CudaStream Stream { get; }

        public KernelSet Kernels { get; }

        public BlasHandle Blas { get; }

        /// <summary>Uploads fp32 values as <paramref name="type"/> (bf16: rounded to nearest
        /// even); the buffer lives until the run ends.</summary>
        public DeviceView Upload(float[] data, KernelDType type = KernelDType.F32)
        {
            DeviceBuffer buffer = type == KernelDType.BF16
                ? DeviceBuffer.FromHost<ushort>(Context, type, [.. data.Select(ToBf16Bits)])
                : DeviceBuffer.FromHost<float>(Context, type, data);
            _buffers.Add(buffer);
            return buffer.View;
        }

        public DeviceView Upload(int[] data)
        {
            DeviceBuffer buffer = DeviceBuffer.FromHost<int>(Context, KernelDType.I32, data);
            _buffers.Add(buffer);
            return buffer.View;
        }

        public DeviceView Allocate(long length, KernelDType type = KernelDType.F32)
        {
            DeviceBuffer buffer = DeviceBuffer.Allocate(Context, type, length);
            buffer.ZeroAsync(Stream);
            _buffers.Add(buffer);
            return buffer.View;
        }

        /// <summary>Waits for the stream, then reads a view back as fp32.</summary>
        public float[] Download(DeviceView view)
        {
            Stream.Synchronize();
            DeviceBuffer owner = _buffers.First(b => b.Address <= view.Address
                && view.Address < b.Address + (ulong)Math.Max(1, b.Bytes));
            long offset = (long)(view.Address - owner.Address) / KernelDTypes.SizeOf(view.DType);
            if (view.DType == KernelDType.BF16)
            {
                var bits = new ushort[view.Length];
                owner.CopyToHost<ushort>(bits, offset);
                return [.. bits.Select(b => BitConverter.UInt32BitsToSingle((uint)b << 16))];
            }
            var values = new float[view.Length];
            owner.CopyToHost<float>(values, offset);
            return values;
        }

        private static ushort ToBf16Bits(float v) =>
            (ushort)(BitConverter.SingleToUInt32Bits(CpuKernels.RoundBFloat16(v)) >> 16);

        public void Dispose()
        {
            Stream.Synchronize();
            foreach (DeviceBuffer b in _buffers)
            {
                b.Dispose();
            }
            Blas.Dispose();
            Kernels.Dispose();
            Stream.Dispose();
            Context.Dispose();
        }
    }
}

/// <summary>Random data and tolerance checks for parity tests.</summary>
public static class Parity
{
    public static float[] Random(int seed, long n, float scale = 1f)
    {
        var rng = new Random(seed);
        var data = new float[n];
        for (long i = 0; i < n; i++)
        {
            data[i] = (float)(rng.NextDouble() * 2 - 1) * scale;
        }
        return data;
    }

    /// <summary>Rounds every value to bf16 (what a bf16 upload holds).</summary>
    public static float[] Bf16(float[] data) => [.. data.Select(CpuKernels.RoundBFloat16)];

    /// <summary>Asserts <c>|actual − expected| ≤ atol + rtol·|expected|</c> everywhere and
    /// reports the worst element.</summary>
    public static void Close(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual,
        double atol, double rtol, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        int worst = -1;
        double worstExcess = 0, maxErr = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            double err = Math.Abs((double)actual[i] - expected[i]);
            maxErr = Math.Max(maxErr, err);
            double excess = err - (atol + rtol * Math.Abs(expected[i]));
            if (excess > worstExcess || double.IsNaN(err))
            {
                worstExcess = double.IsNaN(err) ? double.PositiveInfinity : excess;
                worst = i;
            }
        }
        Assert.True(worst < 0, worst < 0 ? "" : $"{what}: element {worst} is {actual[worst]}, "
            + $"expected {expected[worst]} (atol {atol}, rtol {rtol}; max abs error {maxErr:E2} "
            + $"over {expected.Length} elements)");
    }
}
