using System.Text.Json;
using ZeTT.Ops;
using ZeTT.Runtime.IO;
using ZeTT.Runtime.Tensors;

namespace ZeTT.Runtime.Formats;

/// <summary>
/// The weights of a checkpoint: one <c>.safetensors</c> file, or the shards listed by a
/// <c>model.safetensors.index.json</c>, seen as one set of tensors. Every shard is opened and
/// validated up front (memory-mapped, so this is cheap). The index is checked too: its
/// <c>weight_map</c> must map every tensor to a plain file name beside it, each shard must exist
/// and hold exactly the tensors the index gives it, and no tensor may live in two shards.
/// </summary>
public sealed class SafetensorsCollection : IDisposable
{
    private readonly Dictionary<string, SafetensorsFile> _fileOf;

    private SafetensorsCollection(string path, string? indexPath, IReadOnlyList<SafetensorsFile> files,
        Dictionary<string, SafetensorsFile> fileOf, IReadOnlyDictionary<string, string> indexMetadata)
    {
        Path = path;
        IndexPath = indexPath;
        Files = files;
        _fileOf = fileOf;
        IndexMetadata = indexMetadata;
        Tensors = files.SelectMany(f => f.Tensors).ToList();
    }

    /// <summary>What was opened: the single file or the index file.</summary>
    public string Path { get; }

    /// <summary>The index file, or null for a single-file checkpoint.</summary>
    public string? IndexPath { get; }

    /// <summary>True when the checkpoint is sharded through an index.</summary>
    public bool IsSharded => IndexPath is not null;

    /// <summary>The shard files in index order (first appearance), or the one file.</summary>
    public IReadOnlyList<SafetensorsFile> Files { get; }

    /// <summary>Every tensor, shard by shard, in data-offset order within each shard.</summary>
    public IReadOnlyList<SafetensorsTensorInfo> Tensors { get; }

    /// <summary>The index's <c>metadata</c> entries rendered as text (empty for one file).</summary>
    public IReadOnlyDictionary<string, string> IndexMetadata { get; }

    /// <summary>
    /// Opens a checkpoint: a <c>.safetensors</c> file, an <c>*.index.json</c> file, or a
    /// directory holding <c>model.safetensors.index.json</c> or <c>model.safetensors</c>.
    /// </summary>
    /// <exception cref="SafetensorsException">Missing or malformed files, or an index that does
    /// not match its shards.</exception>
    public static SafetensorsCollection Open(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (Directory.Exists(path))
        {
            string index = System.IO.Path.Combine(path, SafetensorsWriter.IndexFileName);
            string single = System.IO.Path.Combine(path, "model.safetensors");
            if (File.Exists(index))
            {
                return OpenIndex(index);
            }
            if (File.Exists(single))
            {
                return OpenSingle(single);
            }
            throw new SafetensorsException(path, null,
                $"no {SafetensorsWriter.IndexFileName} or model.safetensors in the directory");
        }
        return path.EndsWith(".index.json", StringComparison.Ordinal) ? OpenIndex(path) : OpenSingle(path);
    }

    private static SafetensorsCollection OpenSingle(string path)
    {
        SafetensorsFile file = SafetensorsFile.Open(path);
        return new SafetensorsCollection(path, null, [file],
            file.Tensors.ToDictionary(t => t.Name, _ => file, StringComparer.Ordinal),
            new Dictionary<string, string>());
    }

    /// <summary>Index files larger than this are refused (real ones are a few hundred KB).</summary>
    private const long MaxIndexBytes = 64L * 1024 * 1024;

    private static SafetensorsCollection OpenIndex(string indexPath)
    {
        if (!File.Exists(indexPath))
        {
            throw new SafetensorsException(indexPath, null, "file not found");
        }
        if (new FileInfo(indexPath).Length > MaxIndexBytes)
        {
            throw new SafetensorsException(indexPath, null, $"index is larger than {MaxIndexBytes} bytes");
        }
        string directory = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(indexPath))!;
        var weightMap = new List<(string Tensor, string File)>();
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        try
        {
            byte[] indexBytes = InputFile.ReadAllBytes(indexPath, InputFile.ConfigJsonLimit,
                "shard index");
            try
            {
                JsonInput.Validate(indexBytes, indexPath, maxDepth: 16);
            }
            catch (ZettException e) when (e is not SafetensorsException
                && e.Message.StartsWith(indexPath + ": ", StringComparison.Ordinal))
            {
                throw new SafetensorsException(indexPath, null, e.Message[(indexPath.Length + 2)..]);
            }
            using JsonDocument doc = JsonDocument.Parse(indexBytes,
                new JsonDocumentOptions { MaxDepth = 16 });
            if (doc.RootElement.ValueKind != JsonValueKind.Object
                || !doc.RootElement.TryGetProperty("weight_map", out JsonElement map)
                || map.ValueKind != JsonValueKind.Object)
            {
                throw new SafetensorsException(indexPath, null, "index has no \"weight_map\" object");
            }
            if (doc.RootElement.TryGetProperty("metadata", out JsonElement meta)
                && meta.ValueKind == JsonValueKind.Object)
            {
                foreach (JsonProperty p in meta.EnumerateObject())
                {
                    metadata[p.Name] = p.Value.ValueKind == JsonValueKind.String
                        ? p.Value.GetString()!
                        : p.Value.GetRawText();
                }
            }
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (JsonProperty p in map.EnumerateObject())
            {
                if (!seen.Add(p.Name))
                {
                    throw new SafetensorsException(indexPath, p.Name, "listed twice in weight_map");
                }
                if (p.Value.ValueKind != JsonValueKind.String)
                {
                    throw new SafetensorsException(indexPath, p.Name, "weight_map value is not a file name");
                }
                string file = p.Value.GetString()!;
                if (file.Length == 0 || file != System.IO.Path.GetFileName(file) || file is "." or ".."
                    || file.Contains('\\', StringComparison.Ordinal))
                {
                    throw new SafetensorsException(indexPath, p.Name,
                        $"shard '{file}' is not a plain file name beside the index");
                }
                weightMap.Add((p.Name, file));
            }
        }
        catch (JsonException e)
        {
            throw new SafetensorsException(indexPath, null, $"index is not valid JSON: {e.Message}");
        }
        if (weightMap.Count == 0)
        {
            throw new SafetensorsException(indexPath, null, "weight_map is empty");
        }

        var files = new List<SafetensorsFile>();
        var byName = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
        var fileOf = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
        try
        {
            foreach ((string tensor, string fileName) in weightMap)
            {
                if (!byName.TryGetValue(fileName, out SafetensorsFile? shard))
                {
                    string shardPath = System.IO.Path.Combine(directory, fileName);
                    if (!File.Exists(shardPath))
                    {
                        throw new SafetensorsException(indexPath, tensor,
                            $"shard '{fileName}' listed in the index does not exist");
                    }
                    shard = SafetensorsFile.Open(shardPath);
                    files.Add(shard);
                    byName[fileName] = shard;
                }
                if (!shard.Contains(tensor))
                {
                    throw new SafetensorsException(shard.Path, tensor,
                        "the index places it in this shard, which does not hold it");
                }
                fileOf[tensor] = shard;
            }
            foreach (SafetensorsFile shard in files)
            {
                foreach (SafetensorsTensorInfo t in shard.Tensors)
                {
                    if (fileOf.TryGetValue(t.Name, out SafetensorsFile? owner) && owner != shard)
                    {
                        throw new SafetensorsException(shard.Path, t.Name,
                            $"also stored in '{owner.Path}', where the index places it");
                    }
                }
            }
            foreach (SafetensorsFile shard in files)
            {
                SafetensorsTensorInfo? extra = shard.Tensors.FirstOrDefault(t => !fileOf.ContainsKey(t.Name));
                if (extra is not null)
                {
                    throw new SafetensorsException(shard.Path, extra.Name, "not listed in the index");
                }
            }
        }
        catch
        {
            foreach (SafetensorsFile f in files)
            {
                f.Dispose();
            }
            throw;
        }
        return new SafetensorsCollection(indexPath, indexPath, files, fileOf, metadata);
    }

    /// <summary>True when a tensor of that name exists in some shard.</summary>
    public bool Contains(string name) => _fileOf.ContainsKey(name);

    /// <summary>The file that holds <paramref name="name"/>.</summary>
    public SafetensorsFile FileOf(string name) =>
        _fileOf.TryGetValue(name, out SafetensorsFile? f)
            ? f
            : throw new SafetensorsException(Path, name, "no such tensor in the checkpoint");

    /// <summary>The header entry of <paramref name="name"/>.</summary>
    public SafetensorsTensorInfo GetInfo(string name) => FileOf(name).GetInfo(name);

    /// <summary>A tensor memory-mapped in its stored dtype (see
    /// <see cref="SafetensorsFile.GetTensor"/>).</summary>
    public Tensor GetTensor(string name) => FileOf(name).GetTensor(name);

    /// <summary>Reads a float tensor as fp32 from whichever shard holds it.</summary>
    public HostTensor ReadFloat32(string name) => FileOf(name).ReadFloat32(name);

    /// <summary>Zero-copy view of part of a tensor (see
    /// <see cref="SafetensorsFile.GetSpan(string, long, int)"/>).</summary>
    public ReadOnlySpan<byte> GetSpan(string name, long byteOffset, int length) =>
        FileOf(name).GetSpan(name, byteOffset, length);

    /// <summary>Total bytes of tensor data.</summary>
    public long TotalBytes => Tensors.Sum(t => t.ByteLength);

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (SafetensorsFile f in Files)
        {
            f.Dispose();
        }
    }
}
