using System.Text.Json.Nodes;

namespace ZeTT.Runtime.Tokenizers;

/// <summary>
/// The special-token attributes of a tokenizer as Hugging Face <c>transformers</c> (4.x) sets
/// them: the class defaults of the tokenizer's class, overridden by tokenizer_config.json, then
/// by special_tokens_map.json when tokenizer_config.json has no <c>added_tokens_decoder</c>.
/// </summary>
public sealed record SpecialTokenMap
{
    /// <summary>The attribute names in the order <c>all_special_tokens</c> lists them.</summary>
    public static readonly IReadOnlyList<string> Attributes =
        ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"];

    /// <summary>Beginning-of-sequence token.</summary>
    public string? Bos { get; init; }

    /// <summary>End-of-sequence token.</summary>
    public string? Eos { get; init; }

    /// <summary>Unknown token.</summary>
    public string? Unk { get; init; }

    /// <summary>Separator token.</summary>
    public string? Sep { get; init; }

    /// <summary>Padding token.</summary>
    public string? Pad { get; init; }

    /// <summary>Classification token.</summary>
    public string? Cls { get; init; }

    /// <summary>Mask token.</summary>
    public string? Mask { get; init; }

    /// <summary><c>additional_special_tokens</c>.</summary>
    public IReadOnlyList<string> Additional { get; init; } = [];

    /// <summary>The value of one attribute by its transformers name.</summary>
    public string? Get(string attribute) => attribute switch
    {
        "bos_token" => Bos,
        "eos_token" => Eos,
        "unk_token" => Unk,
        "sep_token" => Sep,
        "pad_token" => Pad,
        "cls_token" => Cls,
        "mask_token" => Mask,
        _ => throw new ArgumentException($"unknown special-token attribute '{attribute}'",
            nameof(attribute)),
    };

    /// <summary>A copy with one attribute set.</summary>
    public SpecialTokenMap With(string attribute, string? value) => attribute switch
    {
        "bos_token" => this with { Bos = value },
        "eos_token" => this with { Eos = value },
        "unk_token" => this with { Unk = value },
        "sep_token" => this with { Sep = value },
        "pad_token" => this with { Pad = value },
        "cls_token" => this with { Cls = value },
        "mask_token" => this with { Mask = value },
        _ => throw new ArgumentException($"unknown special-token attribute '{attribute}'",
            nameof(attribute)),
    };

    /// <summary><c>all_special_tokens</c>: the set attributes then the additional tokens, in
    /// attribute order, without repeats.</summary>
    public IReadOnlyList<string> All()
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var all = new List<string>();
        foreach (string attribute in Attributes)
        {
            if (Get(attribute) is { Length: > 0 } token && seen.Add(token))
            {
                all.Add(token);
            }
        }
        foreach (string token in Additional)
        {
            if (seen.Add(token))
            {
                all.Add(token);
            }
        }
        return all;
    }

    /// <summary>The defaults of a transformers tokenizer class (name with or without
    /// <c>Fast</c>); an unknown class has none.</summary>
    public static SpecialTokenMap ClassDefaults(string? tokenizerClass)
    {
        string name = tokenizerClass ?? "";
        if (name.EndsWith("Fast", StringComparison.Ordinal))
        {
            name = name[..^4];
        }
        return name switch
        {
            "GPT2Tokenizer" or "GPTNeoXTokenizer" or "CodeGenTokenizer" or "GPTJTokenizer" =>
                new() { Bos = "<|endoftext|>", Eos = "<|endoftext|>", Unk = "<|endoftext|>" },
            "RobertaTokenizer" or "XLMRobertaTokenizer" or "CamembertTokenizer"
                or "BartTokenizer" => new()
                {
                    Bos = "<s>",
                    Eos = "</s>",
                    Sep = "</s>",
                    Cls = "<s>",
                    Unk = "<unk>",
                    Pad = "<pad>",
                    Mask = "<mask>",
                },
            "BertTokenizer" or "DistilBertTokenizer" or "ElectraTokenizer" => new()
            {
                Unk = "[UNK]",
                Sep = "[SEP]",
                Pad = "[PAD]",
                Cls = "[CLS]",
                Mask = "[MASK]",
            },
            "T5Tokenizer" => new()
            {
                Eos = "</s>",
                Unk = "<unk>",
                Pad = "<pad>",
                Additional = [.. Enumerable.Range(0, 100).Select(i => $"<extra_id_{i}>")],
            },
            "LlamaTokenizer" or "CodeLlamaTokenizer" =>
                new() { Bos = "<s>", Eos = "</s>", Unk = "<unk>" },
            "GemmaTokenizer" =>
                new() { Bos = "<bos>", Eos = "<eos>", Unk = "<unk>", Pad = "<pad>" },
            _ => new(),
        };
    }

    /// <summary>Applies the special-token keys of a tokenizer_config.json or
    /// special_tokens_map.json object (strings, <c>{"content": …}</c> objects or null).</summary>
    public SpecialTokenMap Override(JsonObject? config)
    {
        if (config is null)
        {
            return this;
        }
        SpecialTokenMap result = this;
        foreach (string attribute in Attributes)
        {
            if (config.TryGetPropertyValue(attribute, out JsonNode? value))
            {
                result = result.With(attribute, TokenText(value));
            }
        }
        if (config.TryGetPropertyValue("additional_special_tokens", out JsonNode? extra))
        {
            result = result with
            {
                Additional = extra is JsonArray list
                    ? [.. list.Select(TokenText).OfType<string>()] : [],
            };
        }
        else if (config.TryGetPropertyValue("extra_special_tokens", out JsonNode? named))
        {
            // transformers 5 writes the additional special tokens under this name: a list, or
            // an object of named tokens (e.g. "image_token") listed in their written order.
            result = result with
            {
                Additional = named switch
                {
                    JsonArray list => [.. list.Select(TokenText).OfType<string>()],
                    JsonObject map => [.. map.Select(kv => TokenText(kv.Value)).OfType<string>()],
                    _ => [],
                },
            };
        }
        return result;
    }

    private static string? TokenText(JsonNode? value) => value switch
    {
        JsonValue v when v.TryGetValue(out string? s) => s,
        JsonObject o => o["content"]?.GetValue<string>(),
        _ => null,
    };
}
