using System.Text.Json.Nodes;

namespace ZeTT.Runtime.Tokenizers;

/// <summary>
/// A tokenizer.json post-processor for single sequences: adds the special tokens of its
/// template when special tokens are asked for (the library's
/// <c>process(encoding, None, add_special_tokens)</c>). ByteLevel only trims offsets, which
/// zett does not track.
/// </summary>
internal abstract class PostProcessor
{
    /// <summary>Adds the special tokens around one sequence's ids and tokens.</summary>
    public abstract void Process(List<int> ids, List<string> tokens);

    /// <summary>How many tokens <see cref="Process"/> adds to a single sequence.</summary>
    public abstract int AddedTokens { get; }

    public static PostProcessor? FromJson(JsonNode? node, string file)
    {
        if (node is null)
        {
            return null;
        }
        string type = Json.Type(node, "post-processor", file);
        return type switch
        {
            "ByteLevel" => new SequenceProcessor([]),
            "Sequence" => new SequenceProcessor([.. Json.Array(node, "processors", file)
                .Select(p => FromJson(p, file)).OfType<PostProcessor>()]),
            "RobertaProcessing" or "BertProcessing" => new TemplateProcessor(
                [SpecialPair(node, "cls", file)], [SpecialPair(node, "sep", file)]),
            "TemplateProcessing" => TemplateProcessor.Parse(node, file),
            _ => throw Json.Unknown("post-processor", type, file),
        };
    }

    private static (int[] Ids, string[] Tokens) SpecialPair(JsonNode node, string key, string file)
    {
        if (node[key] is JsonArray { Count: 2 } pair && pair[0] is JsonValue t
            && t.TryGetValue(out string? token) && pair[1] is JsonValue i && i.TryGetValue(out int id))
        {
            return ([id], [token]);
        }
        throw new ZettException($"{file}: post-processor's '{key}' is not a [token, id] pair");
    }
}

internal sealed class SequenceProcessor(PostProcessor[] processors) : PostProcessor
{
    public override int AddedTokens => processors.Sum(p => p.AddedTokens);

    public override void Process(List<int> ids, List<string> tokens)
    {
        foreach (PostProcessor p in processors)
        {
            p.Process(ids, tokens);
        }
    }
}

/// <summary>Special tokens before and after the sequence (TemplateProcessing's
/// <c>single</c> template; Roberta and Bert processing are <c>cls $A sep</c>).</summary>
internal sealed class TemplateProcessor((int[] Ids, string[] Tokens)[] before,
    (int[] Ids, string[] Tokens)[] after) : PostProcessor
{
    public override int AddedTokens =>
        before.Sum(b => b.Ids.Length) + after.Sum(a => a.Ids.Length);

    public static TemplateProcessor Parse(JsonNode node, string file)
    {
        var specials = new Dictionary<string, (int[], string[])>(StringComparer.Ordinal);
        if (node["special_tokens"] is JsonObject map)
        {
            foreach (KeyValuePair<string, JsonNode?> kv in map)
            {
                int[] ids = kv.Value?["ids"] is JsonArray idArray
                    ? [.. idArray.Select(v => v!.GetValue<int>())] : [];
                string[] tokens = kv.Value?["tokens"] is JsonArray tokArray
                    ? [.. tokArray.Select(v => v!.GetValue<string>())] : [];
                if (ids.Length != tokens.Length)
                {
                    throw new ZettException($"{file}: TemplateProcessing special token '{kv.Key}' " +
                        $"has {ids.Length} ids and {tokens.Length} tokens");
                }
                specials[kv.Key] = (ids, tokens);
            }
        }
        JsonNode? single = node["single"];
        if (single is not JsonArray pieces)
        {
            throw new ZettException($"{file}: TemplateProcessing 'single' is not a list of pieces " +
                "(a template string is not supported)");
        }
        var beforeList = new List<(int[], string[])>();
        var afterList = new List<(int[], string[])>();
        bool seenSequence = false;
        foreach (JsonNode? piece in pieces)
        {
            if (piece?["Sequence"] is not null)
            {
                if (seenSequence)
                {
                    throw new ZettException($"{file}: TemplateProcessing single template has two sequences");
                }
                seenSequence = true;
                continue;
            }
            string? id = piece?["SpecialToken"]?["id"]?.GetValue<string>();
            if (id is null || !specials.TryGetValue(id, out (int[], string[]) special))
            {
                throw new ZettException($"{file}: TemplateProcessing piece {piece?.ToJsonString()} " +
                    "names no special token of special_tokens");
            }
            (seenSequence ? afterList : beforeList).Add(special);
        }
        return new TemplateProcessor([.. beforeList], [.. afterList]);
    }

    public override void Process(List<int> ids, List<string> tokens)
    {
        int at = 0;
        foreach ((int[] i, string[] t) in before)
        {
            ids.InsertRange(at, i);
            tokens.InsertRange(at, t);
            at += i.Length;
        }
        foreach ((int[] i, string[] t) in after)
        {
            ids.AddRange(i);
            tokens.AddRange(t);
        }
    }
}
