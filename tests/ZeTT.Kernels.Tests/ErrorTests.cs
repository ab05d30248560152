using ZeTT.Kernels.Native;

namespace ZeTT.Kernels.Tests;

public sealed class ErrorTests
{
    [Fact]
    public void Cublas_check_throws_a_typed_exception_with_code_name_and_expression()
    {
        var e = Assert.Throws<CublasException>(() => Cublas.Check(CublasStatus.InvalidValue));
        Assert.Equal(7, e.Code);
        Assert.Equal("CUBLAS_STATUS_INVALID_VALUE", e.CodeName);
        Assert.Equal("CublasStatus.InvalidValue", e.Expression);
        Assert.Contains("CUBLAS_STATUS_INVALID_VALUE (7) in CublasStatus.InvalidValue", e.Message,
            StringComparison.Ordinal);
        Cublas.Check(CublasStatus.Success);
    }

    [Fact]
    public void Cublas_allocation_failure_is_out_of_memory()
    {
        var e = Assert.Throws<CudaOutOfMemoryException>(
            () => Cublas.Check(CublasStatus.AllocFailed));
        Assert.Equal("CUBLAS_STATUS_ALLOC_FAILED", e.CodeName);
    }

    [Fact]
    public void Context_creation_without_cuda_gives_the_reason()
    {
        Assert.SkipWhen(Cuda.IsAvailable, "CUDA is available here");
        var e = Assert.Throws<CudaException>(() => CudaContext.Create());
        Assert.Contains(Cuda.UnavailableReason, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Device_views_slice_by_element()
    {
        var v = new DeviceView(0x1000, 10, KernelDType.BF16);
        Assert.Equal(new DeviceView(0x1006, 4, KernelDType.BF16), v.Slice(3, 4));
        Assert.Equal(20, v.Bytes);
        Assert.Throws<ArgumentOutOfRangeException>(() => v.Slice(8, 3));
        Assert.False(DeviceView.None.IsPresent);
    }
}
