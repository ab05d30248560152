namespace ZeTT.Kernels.Tests.Gpu;

/// <summary>The driver wrappers themselves: errors, memory, pinned async copies, events.</summary>
[Collection("gpu")]
public sealed class DeviceApiTests(GpuSession session)
{
    [Fact]
    public void Context_reports_the_device()
    {
        var g = session.Require();
        Assert.True(g.Context.ComputeCapability.Major >= 7, g.Context.ToString());
        Assert.True(g.Context.MultiprocessorCount > 0);
        var (free, total) = g.Context.GetMemoryInfo();
        Assert.InRange(free, 1, total);
        Assert.Equal(total, g.Context.TotalMemory);
    }

    [Fact]
    public void Allocation_beyond_the_device_is_a_typed_out_of_memory()
    {
        var g = session.Require();
        var e = Assert.Throws<CudaOutOfMemoryException>(() =>
            DeviceBuffer.Allocate(g.Context, KernelDType.U8, g.Context.TotalMemory * 4));
        Assert.Equal("CUDA_ERROR_OUT_OF_MEMORY", e.CodeName);
        Assert.Contains("cuMemAlloc", e.Expression, StringComparison.Ordinal);
    }

    [Fact]
    public void Unknown_function_names_the_code_and_the_call()
    {
        var g = session.Require();
        using CudaModule m = CudaModule.Load(g.Context, "heads");
        var e = Assert.Throws<CudaException>(() => m.GetFunction("zett_no_such_kernel"));
        Assert.Equal("CUDA_ERROR_NOT_FOUND", e.CodeName);
        Assert.Contains("cuModuleGetFunction", e.Expression, StringComparison.Ordinal);
    }

    [Fact]
    public void Pinned_async_round_trip_and_event_timing()
    {
        var g = session.Require();
        int n = 1 << 20;
        using var host = new PinnedBuffer<float>(g.Context, n);
        using var back = new PinnedBuffer<float>(g.Context, n);
        for (int i = 0; i < n; i++)
        {
            host.Span[i] = i * 0.5f;
        }
        using DeviceBuffer d = DeviceBuffer.Allocate(g.Context, KernelDType.F32, n);
        using var start = new CudaEvent(g.Context);
        using var end = new CudaEvent(g.Context);
        start.Record(g.Stream);
        d.CopyFromHostAsync(host, n, g.Stream);
        d.CopyToHostAsync(back, n, g.Stream);
        end.Record(g.Stream);
        end.Synchronize();
        Assert.Equal(host.Span.ToArray(), back.Span.ToArray());
        Assert.True(CudaEvent.ElapsedMilliseconds(start, end) >= 0);
    }

    [Fact]
    public void Kernel_images_load_and_name_their_source()
    {
        var g = session.Require();
        Assert.Contains("embedding:", g.Kernels.Images, StringComparison.Ordinal);
        // sm_90 loads a cubin when one is embedded (nvcc ≥ 12 at build time) or ZETT_KERNELS_DIR
        // names a folder of them (the GPU check's second pass); everything else JIT-loads PTX.
        bool cubin = g.Context.ComputeCapability == (9, 0)
            && (KernelImages.Cubin("embedding") is not null
                || !string.IsNullOrEmpty(Environment.GetEnvironmentVariable(CudaModule.KernelsDirVariable)));
        Assert.Contains(cubin ? "cubin" : "ptx", g.Kernels.Images, StringComparison.Ordinal);
    }
}
