using System.Runtime.InteropServices;

namespace ZeTT.Bench;

/// <summary>
/// Debian's OpenBLAS (libopenblas0-pthread), loaded at run time as the benchmarks' anchor for
/// CPU GEMM throughput; never used by the product. <c>cblas_sbgemm</c> (bf16 × bf16 → fp32) is
/// optional: OpenBLAS builds before 0.3.10 lack it.
/// </summary>
internal static unsafe class OpenBlas
{
    private const int RowMajor = 101, NoTrans = 111, Trans = 112;

    private static readonly string[] Candidates =
    [
        "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
        "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
        "libopenblas.so.0",
    ];

    private static readonly nint Library = Load();

    private static readonly delegate* unmanaged<int, int, int, int, int, int, float, float*, int,
        float*, int, float, float*, int, void> Sgemm =
        (delegate* unmanaged<int, int, int, int, int, int, float, float*, int, float*, int, float,
            float*, int, void>)Export("cblas_sgemm");

    private static readonly delegate* unmanaged<int, int, int, int, int, int, float, ushort*, int,
        ushort*, int, float, float*, int, void> Sbgemm =
        (delegate* unmanaged<int, int, int, int, int, int, float, ushort*, int, ushort*, int, float,
            float*, int, void>)Export("cblas_sbgemm");

    private static readonly delegate* unmanaged<byte*> GetConfig =
        (delegate* unmanaged<byte*>)Export("openblas_get_config");

    /// <summary>True when the library loaded.</summary>
    public static bool IsAvailable => Sgemm != null;

    /// <summary>True when it has the bf16 GEMM.</summary>
    public static bool HasSbgemm => Sbgemm != null;

    /// <summary>Its build string (version, target core, threads), or null.</summary>
    public static string? Config => GetConfig == null ? null : Marshal.PtrToStringUTF8((nint)GetConfig());

    /// <summary>Row-major <c>C = op(A)·op(B)</c>, fp32.</summary>
    public static void Gemm(bool transA, bool transB, int m, int n, int k, float* a, int lda,
        float* b, int ldb, float* c, int ldc) =>
        Sgemm(RowMajor, transA ? Trans : NoTrans, transB ? Trans : NoTrans, m, n, k, 1f, a, lda, b,
            ldb, 0f, c, ldc);

    /// <summary>Row-major <c>C = op(A)·op(B)</c>, bf16 operands, fp32 C.</summary>
    public static void GemmBf16(bool transA, bool transB, int m, int n, int k, ushort* a, int lda,
        ushort* b, int ldb, float* c, int ldc) =>
        Sbgemm(RowMajor, transA ? Trans : NoTrans, transB ? Trans : NoTrans, m, n, k, 1f, a, lda, b,
            ldb, 0f, c, ldc);

    private static nint Load()
    {
        foreach (string path in Candidates)
        {
            if (NativeLibrary.TryLoad(path, out nint handle))
            {
                return handle;
            }
        }
        return 0;
    }

    private static nint Export(string name) =>
        Library != 0 && NativeLibrary.TryGetExport(Library, name, out nint f) ? f : 0;
}
