using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Unicode;

namespace ZeTT.Runtime.IO;

/// <summary>
/// The one validating reader of every JSON file zett reads (config.json, hypernetwork configs,
/// tokenizer.json, tokenizer_config.json, special_tokens_map.json, shard indices). Before a
/// tree is built, one pass of <see cref="Utf8JsonReader"/> checks what System.Text.Json would
/// otherwise accept or turn into an exception deep inside a consumer: invalid UTF-8, lone
/// surrogates in <c>\u</c> escapes, duplicate keys, nesting deeper than the limit. The typed
/// getters then say which value is wrong. Every error is one <see cref="ZettException"/>:
/// <c>&lt;file&gt;: &lt;JSON path&gt;: &lt;what&gt;</c>.
/// </summary>
public static class JsonInput
{
    /// <summary>Nesting limit of config files.</summary>
    public const int ConfigDepth = 64;

    /// <summary>Nesting limit of tokenizer.json (its pipelines nest Sequences).</summary>
    public const int TokenizerDepth = 256;

    /// <summary>Reads a JSON object file, bounded by <paramref name="maxBytes"/>.</summary>
    public static JsonObject ReadObject(string path, long maxBytes = InputFile.ConfigJsonLimit,
        int maxDepth = ConfigDepth)
    {
        byte[] bytes = InputFile.ReadAllBytes(path, maxBytes, Path.GetFileName(path));
        return Parse(bytes, path, maxDepth) as JsonObject
            ?? throw new ZettException($"{path}: expected a JSON object");
    }

    /// <summary>Reads a JSON object file if it exists; null when there is none.</summary>
    public static JsonObject? ReadOptionalObject(string path, long maxBytes = InputFile.ConfigJsonLimit)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (InputFile.KindOf(path) == PathKind.Missing)
        {
            return new FileInfo(path).LinkTarget is null ? null
                : throw new ZettException($"{path}: dangling symbolic link");
        }
        return ReadObject(path, maxBytes);
    }

    /// <summary>Validates and parses UTF-8 JSON; <paramref name="file"/> names it in errors.
    /// </summary>
    public static JsonNode? Parse(ReadOnlySpan<byte> utf8, string file, int maxDepth = ConfigDepth)
    {
        ArgumentNullException.ThrowIfNull(file);
        if (utf8.StartsWith("\uFEFF"u8))
        {
            utf8 = utf8[3..];
        }
        Validate(utf8, file, maxDepth);
        try
        {
            return JsonNode.Parse(utf8, documentOptions: new JsonDocumentOptions
            {
                MaxDepth = maxDepth,
                AllowDuplicateProperties = false,
            });
        }
        catch (JsonException e)
        {
            throw new ZettException($"{file}: not valid JSON: {e.Message}", e);
        }
    }

    /// <summary>Validates and parses JSON text.</summary>
    public static JsonNode? Parse(string json, string file, int maxDepth = ConfigDepth)
    {
        ArgumentNullException.ThrowIfNull(json);
        byte[] bytes;
        try
        {
            bytes = InputFile.StrictUtf8.GetBytes(json);
        }
        catch (EncoderFallbackException e)
        {
            throw new ZettException($"{file}: text holds a lone surrogate at character {e.Index}", e);
        }
        return Parse(bytes, file, maxDepth);
    }

    private sealed class Frame(bool isArray)
    {
        public bool IsArray { get; } = isArray;
        public int Index { get; set; } = -1;
        public string? Key { get; set; }
        public HashSet<string>? Keys { get; set; }
    }

    /// <summary>The validating pass alone, for readers that go on with a
    /// <see cref="JsonDocument"/> or <see cref="Utf8JsonReader"/> of their own.</summary>
    public static void Validate(ReadOnlySpan<byte> utf8, string file, int maxDepth = ConfigDepth)
    {
        ArgumentNullException.ThrowIfNull(file);
        var reader = new Utf8JsonReader(utf8, new JsonReaderOptions { MaxDepth = maxDepth });
        var stack = new List<Frame>();
        try
        {
            while (reader.Read())
            {
                JsonTokenType token = reader.TokenType;
                if (token is JsonTokenType.EndObject or JsonTokenType.EndArray)
                {
                    stack.RemoveAt(stack.Count - 1);
                    continue;
                }
                if (token == JsonTokenType.PropertyName)
                {
                    string key = CheckedString(ref reader, file, stack);
                    Frame obj = stack[^1];
                    obj.Keys ??= new HashSet<string>(StringComparer.Ordinal);
                    if (!obj.Keys.Add(key))
                    {
                        obj.Key = key;
                        throw new ZettException($"{file}: {PathOf(stack)}: duplicate key");
                    }
                    obj.Key = key;
                    continue;
                }
                if (stack.Count > 0 && stack[^1].IsArray)
                {
                    stack[^1].Index++;
                }
                if (token == JsonTokenType.String)
                {
                    CheckedString(ref reader, file, stack);
                }
                else if (token is JsonTokenType.StartObject or JsonTokenType.StartArray)
                {
                    stack.Add(new Frame(token == JsonTokenType.StartArray));
                }
            }
        }
        catch (JsonException e)
        {
            string at = e.LineNumber is long line
                ? string.Create(CultureInfo.InvariantCulture,
                    $" at line {line + 1}, byte {e.BytePositionInLine + 1}")
                : "";
            string path = stack.Count > 0 ? $" (in {PathOf(stack)})" : "";
            string reason = e.Message;
            int cut = reason.IndexOf(" LineNumber:", StringComparison.Ordinal);
            if (cut > 0)
            {
                reason = reason[..cut];
            }
            throw new ZettException($"{file}: not valid JSON{at}{path}: {reason.TrimEnd('.', ' ')}", e);
        }
    }

    private static string CheckedString(ref Utf8JsonReader reader, string file, List<Frame> stack)
    {
        if (!reader.ValueIsEscaped && !reader.HasValueSequence && !Utf8.IsValid(reader.ValueSpan))
        {
            throw new ZettException($"{file}: {PathOf(stack)}: string is not valid UTF-8");
        }
        try
        {
            return reader.GetString()!;
        }
        catch (InvalidOperationException)
        {
            throw new ZettException($"{file}: {PathOf(stack)}: string holds invalid UTF-8 or a "
                + "lone surrogate escape");
        }
    }

    private static string PathOf(List<Frame> stack)
    {
        var sb = new StringBuilder("$");
        foreach (Frame f in stack)
        {
            if (f.IsArray)
            {
                if (f.Index >= 0)
                {
                    sb.Append('[').Append(f.Index.ToString(CultureInfo.InvariantCulture)).Append(']');
                }
            }
            else if (f.Key is not null)
            {
                AppendKey(sb, f.Key);
            }
        }
        return sb.ToString();
    }

    private static void AppendKey(StringBuilder sb, string key)
    {
        bool plain = key.Length > 0 && key.Length <= 64
            && key.All(c => char.IsAsciiLetterOrDigit(c) || c == '_');
        if (plain)
        {
            sb.Append('.').Append(key);
        }
        else
        {
            string shown = key.Length > 40 ? key[..40] + "…" : key;
            sb.Append("['").Append(shown.Replace("'", "\\'", StringComparison.Ordinal)).Append("']");
        }
    }

    /// <summary>The JSON path of <paramref name="node"/>, or of key <paramref name="key"/>
    /// under it.</summary>
    public static string PathOf(JsonNode? node, string? key = null)
    {
        var sb = new StringBuilder(node?.GetPath() ?? "$");
        if (key is not null)
        {
            AppendKey(sb, key);
        }
        return sb.ToString();
    }

    /// <summary>An error about the value at <paramref name="node"/>.</summary>
    public static ZettException Error(string file, JsonNode? node, string what) =>
        new($"{file}: {PathOf(node)}: {what}");

    /// <summary>An error about key <paramref name="key"/> of <paramref name="parent"/>.</summary>
    public static ZettException Error(string file, JsonNode? parent, string key, string what) =>
        new($"{file}: {PathOf(parent, key)}: {what}");

    private static string Shown(JsonNode? node)
    {
        string text = node?.ToJsonString() ?? "null";
        return text.Length > 60 ? text[..60] + "…" : text;
    }

    /// <summary>An integer in [<paramref name="min"/>, <paramref name="max"/>] (null when absent
    /// or JSON null).</summary>
    public static long? Int64(JsonObject obj, string key, string file, long min = long.MinValue,
        long max = long.MaxValue)
    {
        ArgumentNullException.ThrowIfNull(obj);
        if (!obj.TryGetPropertyValue(key, out JsonNode? node) || node is null)
        {
            return null;
        }
        return AsInt64(node, file, min, max);
    }

    /// <summary>An integer in [<paramref name="min"/>, <paramref name="max"/>].</summary>
    public static long AsInt64(JsonNode? node, string file, long min = long.MinValue,
        long max = long.MaxValue)
    {
        if (node is not JsonValue v || v.GetValueKind() != JsonValueKind.Number
            || !v.TryGetValue(out long value))
        {
            // 3.0 is an integer to Python's json (and to transformers' configs).
            if (node is JsonValue d && d.GetValueKind() == JsonValueKind.Number
                && d.TryGetValue(out double x) && x == Math.Floor(x) && x >= min && x <= max
                && Math.Abs(x) < 9e15)
            {
                return (long)x;
            }
            throw Error(file, node, $"expected an integer, got {Shown(node)}");
        }
        if (value < min || value > max)
        {
            throw Error(file, node, RangeText(value, min, max));
        }
        return value;
    }

    private static string RangeText(long value, long min, long max) =>
        max == long.MaxValue || max == int.MaxValue
            ? string.Create(CultureInfo.InvariantCulture, $"{value} is out of range (at least {min})")
            : string.Create(CultureInfo.InvariantCulture, $"{value} is out of range ({min}..{max})");

    /// <summary>A 32-bit integer in [<paramref name="min"/>, <paramref name="max"/>].</summary>
    public static int? Int32(JsonObject obj, string key, string file, int min = int.MinValue,
        int max = int.MaxValue) => (int?)Int64(obj, key, file, min, max);

    /// <summary>A 32-bit integer in [<paramref name="min"/>, <paramref name="max"/>].</summary>
    public static int AsInt32(JsonNode? node, string file, int min = int.MinValue,
        int max = int.MaxValue) => (int)AsInt64(node, file, min, max);

    /// <summary>A finite number (null when absent or JSON null).</summary>
    public static double? Number(JsonObject obj, string key, string file)
    {
        ArgumentNullException.ThrowIfNull(obj);
        if (!obj.TryGetPropertyValue(key, out JsonNode? node) || node is null)
        {
            return null;
        }
        return AsNumber(node, file);
    }

    /// <summary>A finite number.</summary>
    public static double AsNumber(JsonNode? node, string file)
    {
        if (node is JsonValue v && v.GetValueKind() == JsonValueKind.Number
            && v.TryGetValue(out double d) && double.IsFinite(d))
        {
            return d;
        }
        throw Error(file, node, $"expected a number, got {Shown(node)}");
    }

    /// <summary>A boolean (null when absent or JSON null).</summary>
    public static bool? Bool(JsonObject obj, string key, string file)
    {
        ArgumentNullException.ThrowIfNull(obj);
        if (!obj.TryGetPropertyValue(key, out JsonNode? node) || node is null)
        {
            return null;
        }
        return node is JsonValue v && v.GetValueKind() is JsonValueKind.True or JsonValueKind.False
            ? v.GetValue<bool>()
            : throw Error(file, node, $"expected true or false, got {Shown(node)}");
    }

    /// <summary>A string (null when absent or JSON null).</summary>
    public static string? String(JsonObject obj, string key, string file)
    {
        ArgumentNullException.ThrowIfNull(obj);
        if (!obj.TryGetPropertyValue(key, out JsonNode? node) || node is null)
        {
            return null;
        }
        return AsString(node, file);
    }

    /// <summary>A string.</summary>
    public static string AsString(JsonNode? node, string file) =>
        node is JsonValue v && v.GetValueKind() == JsonValueKind.String
            ? v.GetValue<string>()
            : throw Error(file, node, $"expected a string, got {Shown(node)}");

    /// <summary>An array (null when absent or JSON null).</summary>
    public static JsonArray? Array(JsonObject obj, string key, string file)
    {
        ArgumentNullException.ThrowIfNull(obj);
        if (!obj.TryGetPropertyValue(key, out JsonNode? node) || node is null)
        {
            return null;
        }
        return node as JsonArray ?? throw Error(file, node, $"expected an array, got {Shown(node)}");
    }

    /// <summary>An object (null when absent or JSON null).</summary>
    public static JsonObject? Object(JsonObject obj, string key, string file)
    {
        ArgumentNullException.ThrowIfNull(obj);
        if (!obj.TryGetPropertyValue(key, out JsonNode? node) || node is null)
        {
            return null;
        }
        return node as JsonObject ?? throw Error(file, node, $"expected an object, got {Shown(node)}");
    }
}
