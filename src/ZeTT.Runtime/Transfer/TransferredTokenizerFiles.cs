using System.Text.Json.Nodes;
using ZeTT.Runtime.Formats;
using ZeTT.Runtime.Tokenizers;

namespace ZeTT.Runtime.Transfer;

/// <summary>
/// The tokenizer and id-bearing config files of a transferred model: the new tokenizer.json
/// (the converted target, unchanged), the model's tokenizer_config.json adapted so that
/// <c>AutoTokenizer.from_pretrained</c> loads that tokenizer.json as it is
/// (<c>PreTrainedTokenizerFast</c>, <c>added_tokens_decoder</c> at the new ids, the model's
/// special-token strings, chat template, model_max_length and padding/truncation sides kept),
/// special_tokens_map.json, and generation_config.json with its token ids moved to the new ids.
/// </summary>
internal static class TransferredTokenizerFiles
{
    /// <summary>tokenizer_config.json keys of the model's tokenizer that are carried over (the
    /// others configure the model's own tokenizer class, which is not used any more).</summary>
    private static readonly string[] KeptConfigKeys =
    [
        "chat_template", "model_max_length", "padding_side", "truncation_side",
        "model_input_names", "clean_up_tokenization_spaces", "split_special_tokens",
    ];

    /// <summary>Tokenizer files of the model's own tokenizer that are left out of the output
    /// (they describe the old vocabulary).</summary>
    private static readonly string[] StaleFiles =
    [
        "tokenizer.model", "vocab.json", "merges.txt", "vocab.txt", "sentencepiece.bpe.model",
        "spiece.model", "added_tokens.json", "tokenizer.json",
    ];

    /// <summary>Config keys holding token ids.</summary>
    internal static readonly string[] IdKeys =
    [
        "bos_token_id", "eos_token_id", "pad_token_id", "sep_token_id", "cls_token_id",
        "mask_token_id", "unk_token_id", "decoder_start_token_id",
    ];

    /// <summary>Writes the files into <paramref name="staging"/> and returns the file map for
    /// <see cref="HfModelEdit.Files"/> (stale tokenizer files map to null).</summary>
    public static Dictionary<string, string?> Write(HfTokenizer target, string modelDirectory, string staging, Func<int, int?> mapId)
    {
        target.Save(staging);
        string configPath = Path.Combine(staging, "tokenizer_config.json");
        JsonObject saved = HfModelDirectory.ReadJsonObject(configPath);
        JsonObject adapted = new();
        string modelConfigPath = Path.Combine(modelDirectory, "tokenizer_config.json");
        JsonObject? modelConfig = File.Exists(modelConfigPath)
            ? HfModelDirectory.ReadJsonObject(modelConfigPath) : null;
        foreach (KeyValuePair<string, JsonNode?> kv in saved)
        {
            if (kv.Key is "added_tokens_decoder" or "tokenizer_class" or "additional_special_tokens"
                or "clean_up_tokenization_spaces" || SpecialTokenMap.Attributes.Contains(kv.Key))
            {
                adapted[kv.Key] = kv.Value?.DeepClone();
            }
        }
        foreach (string key in KeptConfigKeys)
        {
            if (modelConfig?[key] is { } value)
            {
                adapted[key] = value.DeepClone();
            }
        }
        adapted["tokenizer_class"] = "PreTrainedTokenizerFast";
        HfModelWriter.WriteJson(configPath, adapted);

        var files = new Dictionary<string, string?>(StringComparer.Ordinal);
        foreach (string stale in StaleFiles)
        {
            files[stale] = null;
        }
        foreach (string name in new[] { "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json" })
        {
            files[name] = Path.Combine(staging, name);
        }
        string generation = Path.Combine(modelDirectory, "generation_config.json");
        if (File.Exists(generation))
        {
            JsonObject g = HfModelDirectory.ReadJsonObject(generation);
            foreach ((string key, JsonNode? value) in MapIds(g, mapId))
            {
                if (value is null)
                {
                    g.Remove(key);
                }
                else
                {
                    g[key] = value;
                }
            }
            string path = Path.Combine(staging, "generation_config.json");
            HfModelWriter.WriteJson(path, g);
            files["generation_config.json"] = path;
        }
        return files;
    }

    /// <summary>New values for the id keys of a config object (ids that have no new id are
    /// removed: null).</summary>
    public static Dictionary<string, JsonNode?> MapIds(JsonObject config, Func<int, int?> mapId)
    {
        var updates = new Dictionary<string, JsonNode?>(StringComparer.Ordinal);
        foreach (string key in IdKeys)
        {
            switch (config[key])
            {
                case JsonValue v when v.TryGetValue(out int id):
                    updates[key] = mapId(id) is int n ? JsonValue.Create(n) : null;
                    break;
                case JsonArray a:
                    var ids = new JsonArray();
                    foreach (JsonNode? item in a)
                    {
                        if (item is JsonValue iv && iv.TryGetValue(out int i) && mapId(i) is int m)
                        {
                            ids.Add((JsonNode)JsonValue.Create(m));
                        }
                    }
                    updates[key] = ids.Count > 0 ? ids : null;
                    break;
            }
        }
        return updates;
    }
}
