namespace ZeTT.Runtime.Formats;

/// <summary>A safetensors file that is malformed, truncated, hostile or lacks a tensor. The
/// message always names the file and, where one is involved, the tensor.</summary>
public sealed class SafetensorsException : ZettException
{
    /// <summary>Creates the error for <paramref name="file"/> (and <paramref name="tensor"/> if
    /// the problem is one tensor's).</summary>
    public SafetensorsException(string file, string? tensor, string what)
        : base(tensor is null ? $"{file}: {what}" : $"{file}: tensor '{tensor}': {what}")
    {
        File = file;
        Tensor = tensor;
        What = what;
    }

    /// <summary>The file that was being read or written.</summary>
    public string File { get; }

    /// <summary>The tensor concerned, or null when the problem is the file's.</summary>
    public string? Tensor { get; }

    /// <summary>What was wrong, without the file and tensor.</summary>
    public string What { get; }
}
