using System.Text;
using System.Text.Json.Nodes;

namespace ZeTT.Runtime.Tokenizers;

/// <summary>
/// A SentencePiece <c>.model</c> file (the protobuf <c>ModelProto</c> that Llama 2, Mistral and
/// T5 ship as tokenizer.model) read by hand, and turned into the tokenizer.json that
/// transformers' <c>convert_slow_tokenizer</c> makes of it, so that it runs through the same
/// pipeline as any tokenizer.json:
/// <list type="bullet">
/// <item>BPE models as the Llama converter: the vocabulary in piece order (the first three named
/// by the unknown, BOS and EOS pieces), merges from every split of a piece into two pieces,
/// ordered by the score of the piece they make (stable, so ties keep piece order and then the
/// ids of the parts — the order of the tokenizer.json files Llama 2 and Mistral ship, checked
/// merge for merge), unknown token fused, byte fallback; normalizer Prepend ▁ + Replace " " → ▁
/// (<c>legacy</c>, the default) or, when tokenizer_config.json says <c>"legacy": false</c>,
/// no normalizer and Metaspace (prepend first, no split); decoder Replace ▁ → " ", ByteFallback,
/// Fuse, Strip one leading space; BOS before every text (<c>add_bos_token</c>, and EOS after it
/// with <c>add_eos_token</c>).</item>
/// <item>Unigram models as the generic SentencePiece converter: pieces with their scores,
/// <c>unk_id</c> and <c>byte_fallback</c> from the trainer spec; normalizer Precompiled (the
/// normalizer spec's charsmap, if any), Strip right, Replace " {2,}" → ▁; pre-tokenizer and
/// decoder Metaspace (prepend always when <c>add_dummy_prefix</c>, first when not legacy, else
/// never).</item>
/// </list>
/// Control pieces become special added tokens, user-defined pieces added tokens, the unknown
/// piece a special one. <c>add_prefix_space</c> in tokenizer_config.json overrides
/// <c>add_dummy_prefix</c>, as it does in transformers. Other model types (word, char) are
/// refused.
/// </summary>
internal static class SentencePieceModelFile
{
    private const string Space = "\u2581";

    /// <summary>One piece of the model: text, score and type (1 normal, 2 unknown, 3 control,
    /// 4 user-defined, 5 unused, 6 byte).</summary>
    internal readonly record struct SpPiece(string Piece, float Score, int Type);

    /// <summary>What the converter needs from a <c>ModelProto</c>.</summary>
    internal sealed class SpModel
    {
        public List<SpPiece> Pieces { get; } = [];

        public int ModelType { get; set; } = 1;

        public bool ByteFallback { get; set; }

        public int UnkId { get; set; }

        public string UnkPiece { get; set; } = "<unk>";

        public byte[] PrecompiledCharsmap { get; set; } = [];

        public bool AddDummyPrefix { get; set; } = true;
    }

    /// <summary>True if <paramref name="bytes"/> starts as a <c>ModelProto</c> does (field 1,
    /// a length-delimited piece).</summary>
    public static bool LooksLikeModel(byte[] bytes) => bytes.Length > 2 && bytes[0] == 0x0A;

    /// <summary>The tokenizer for the model file <paramref name="file"/>;
    /// <paramref name="config"/> is the tokenizer_config.json beside it, if any.</summary>
    public static JsonObject ToTokenizerJson(string file, byte[] bytes, JsonObject? config)
    {
        SpModel model = Parse(file, bytes);
        bool legacy = config?["legacy"] is not JsonValue l || !l.TryGetValue(out bool lv) || lv;
        bool addPrefixSpace = config?["add_prefix_space"] is JsonValue a
            && a.TryGetValue(out bool av) ? av : model.AddDummyPrefix;
        string scheme = !addPrefixSpace ? "never" : legacy ? "always" : "first";
        var root = new JsonObject
        {
            ["version"] = "1.0",
            ["truncation"] = null,
            ["padding"] = null,
        };
        if (model.ModelType == 2)
        {
            BuildBpe(file, model, config, legacy, addPrefixSpace, scheme, root);
        }
        else if (model.ModelType == 1)
        {
            BuildUnigram(model, scheme, root);
        }
        else
        {
            throw new ZettException($"{file}: unsupported format: SentencePiece model type " +
                $"{model.ModelType} (only Unigram, 1, and BPE, 2, have a Hugging Face form)");
        }
        return root;
    }

    private static void BuildBpe(string file, SpModel model, JsonObject? config, bool legacy,
        bool addPrefixSpace, string scheme, JsonObject root)
    {
        if (model.Pieces.Count < 3)
        {
            throw new ZettException($"{file}: a SentencePiece BPE model needs at least 3 pieces");
        }
        var vocab = new JsonObject();
        var ids = new Dictionary<string, int>(model.Pieces.Count, StringComparer.Ordinal);
        for (int i = 0; i < model.Pieces.Count; i++)
        {
            string piece = model.Pieces[i].Piece;
            if (!ids.TryAdd(piece, i))
            {
                throw new ZettException($"{file}: SentencePiece piece '{piece}' is listed twice");
            }
            vocab[piece] = i;
        }
        var merges = new JsonArray();
        foreach ((string left, string right) in Merges(model.Pieces, ids))
        {
            merges.Add(left.Contains(' ', StringComparison.Ordinal)
                || right.Contains(' ', StringComparison.Ordinal)
                ? new JsonArray(left, right) : (JsonNode)(left + " " + right));
        }
        root["added_tokens"] = AddedTokens(model);
        root["normalizer"] = legacy
            ? new JsonObject
            {
                ["type"] = "Sequence",
                ["normalizers"] = addPrefixSpace
                    ? new JsonArray(Prepend(), ReplaceSpace())
                    : new JsonArray(ReplaceSpace()),
            }
            : null;
        root["pre_tokenizer"] = legacy ? null : new JsonObject
        {
            ["type"] = "Metaspace",
            ["replacement"] = Space,
            ["prepend_scheme"] = scheme,
            ["split"] = false,
        };
        root["post_processor"] = BosEosTemplate(model, config);
        var decoders = new JsonArray(
            new JsonObject
            {
                ["type"] = "Replace",
                ["pattern"] = new JsonObject { ["String"] = Space },
                ["content"] = " ",
            },
            new JsonObject { ["type"] = "ByteFallback" },
            new JsonObject { ["type"] = "Fuse" });
        if (addPrefixSpace)
        {
            decoders.Add((JsonNode)new JsonObject
            {
                ["type"] = "Strip",
                ["content"] = " ",
                ["start"] = 1,
                ["stop"] = 0,
            });
        }
        root["decoder"] = new JsonObject { ["type"] = "Sequence", ["decoders"] = decoders };
        root["model"] = new JsonObject
        {
            ["type"] = "BPE",
            ["dropout"] = null,
            ["unk_token"] = model.UnkPiece,
            ["continuing_subword_prefix"] = null,
            ["end_of_word_suffix"] = null,
            ["fuse_unk"] = true,
            ["byte_fallback"] = true,
            ["ignore_merges"] = false,
            ["vocab"] = vocab,
            ["merges"] = merges,
        };
    }

    private static void BuildUnigram(SpModel model, string scheme, JsonObject root)
    {
        var vocab = new JsonArray();
        foreach (SpPiece p in model.Pieces)
        {
            vocab.Add((JsonNode)new JsonArray(p.Piece, (double)p.Score));
        }
        var normalizers = new JsonArray();
        if (model.PrecompiledCharsmap.Length > 0)
        {
            normalizers.Add((JsonNode)new JsonObject
            {
                ["type"] = "Precompiled",
                ["precompiled_charsmap"] = Convert.ToBase64String(model.PrecompiledCharsmap),
            });
        }
        normalizers.Add((JsonNode)new JsonObject
        {
            ["type"] = "Strip",
            ["strip_left"] = false,
            ["strip_right"] = true,
        });
        normalizers.Add((JsonNode)new JsonObject
        {
            ["type"] = "Replace",
            ["pattern"] = new JsonObject { ["Regex"] = " {2,}" },
            ["content"] = Space,
        });
        root["added_tokens"] = AddedTokens(model);
        root["normalizer"] = new JsonObject { ["type"] = "Sequence", ["normalizers"] = normalizers };
        root["pre_tokenizer"] = Metaspace(scheme, split: true);
        root["post_processor"] = null;
        root["decoder"] = Metaspace(scheme, split: true);
        root["model"] = new JsonObject
        {
            ["type"] = "Unigram",
            ["unk_id"] = model.UnkId,
            ["vocab"] = vocab,
            ["byte_fallback"] = model.ByteFallback,
        };
    }

    /// <summary>Every split of a piece into two pieces, the splits of one piece ordered by the
    /// ids of their parts, all ordered by the score of the piece they make, highest first
    /// (stable).</summary>
    internal static List<(string Left, string Right)> Merges(List<SpPiece> pieces,
        Dictionary<string, int> ids)
    {
        Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> lookup =
            ids.GetAlternateLookup<ReadOnlySpan<char>>();
        var all = new List<(float Score, int Order, int Left, int Right)>();
        var local = new List<(int Left, int Right)>();
        for (int p = 0; p < pieces.Count; p++)
        {
            string piece = pieces[p].Piece;
            local.Clear();
            for (int k = 1; k < piece.Length; k++)
            {
                // Python slices by code point: never between the halves of a surrogate pair.
                if (char.IsLowSurrogate(piece[k]) && char.IsHighSurrogate(piece[k - 1]))
                {
                    continue;
                }
                if (lookup.TryGetValue(piece.AsSpan(0, k), out int left)
                    && lookup.TryGetValue(piece.AsSpan(k), out int right))
                {
                    local.Add((left, right));
                }
            }
            local.Sort();
            foreach ((int left, int right) in local)
            {
                all.Add((pieces[p].Score, all.Count, left, right));
            }
        }
        all.Sort((x, y) => x.Score != y.Score ? y.Score.CompareTo(x.Score)
            : x.Order.CompareTo(y.Order));
        return [.. all.Select(m => (pieces[m.Left].Piece, pieces[m.Right].Piece))];
    }

    private static JsonArray AddedTokens(SpModel model)
    {
        var added = new JsonArray();
        for (int i = 0; i < model.Pieces.Count; i++)
        {
            SpPiece p = model.Pieces[i];
            bool unknown = i == model.UnkId;
            if (!unknown && p.Type is not (3 or 4))
            {
                continue;
            }
            added.Add((JsonNode)new JsonObject
            {
                ["id"] = i,
                ["content"] = p.Piece,
                ["single_word"] = false,
                ["lstrip"] = false,
                ["rstrip"] = false,
                ["normalized"] = false,
                ["special"] = unknown || p.Type == 3,
            });
        }
        return added;
    }

    /// <summary>LlamaTokenizerFast's post-processor: BOS (piece 1) before the text unless
    /// <c>add_bos_token</c> is false, EOS (piece 2) after it if <c>add_eos_token</c>.</summary>
    private static JsonObject? BosEosTemplate(SpModel model, JsonObject? config)
    {
        bool bos = config?["add_bos_token"] is not JsonValue b || !b.TryGetValue(out bool bv) || bv;
        bool eos = config?["add_eos_token"] is JsonValue e && e.TryGetValue(out bool ev) && ev;
        if (!bos && !eos)
        {
            return null;
        }
        string bosPiece = model.Pieces[1].Piece, eosPiece = model.Pieces[2].Piece;
        JsonArray Single(string sequence, int typeId)
        {
            var items = new JsonArray();
            if (bos)
            {
                items.Add((JsonNode)Item("SpecialToken", bosPiece, typeId));
            }
            items.Add((JsonNode)Item("Sequence", sequence, typeId));
            if (eos)
            {
                items.Add((JsonNode)Item("SpecialToken", eosPiece, typeId));
            }
            return items;
        }
        JsonArray pair = Single("A", 0);
        foreach (JsonNode? n in Single("B", 1))
        {
            pair.Add(n!.DeepClone());
        }
        var specials = new JsonObject();
        if (bos)
        {
            specials[bosPiece] = SpecialEntry(bosPiece, 1);
        }
        if (eos)
        {
            specials[eosPiece] = SpecialEntry(eosPiece, 2);
        }
        return new JsonObject
        {
            ["type"] = "TemplateProcessing",
            ["single"] = Single("A", 0),
            ["pair"] = pair,
            ["special_tokens"] = specials,
        };
    }

    private static JsonObject Item(string kind, string id, int typeId) => new()
    {
        [kind] = new JsonObject { ["id"] = id, ["type_id"] = typeId },
    };

    private static JsonObject SpecialEntry(string piece, int id) => new()
    {
        ["id"] = piece,
        ["ids"] = new JsonArray(id),
        ["tokens"] = new JsonArray(piece),
    };

    private static JsonObject Prepend() => new() { ["type"] = "Prepend", ["prepend"] = Space };

    private static JsonObject ReplaceSpace() => new()
    {
        ["type"] = "Replace",
        ["pattern"] = new JsonObject { ["String"] = " " },
        ["content"] = Space,
    };

    private static JsonObject Metaspace(string scheme, bool split) => new()
    {
        ["type"] = "Metaspace",
        ["replacement"] = Space,
        ["prepend_scheme"] = scheme,
        ["split"] = split,
    };

    /// <summary>Reads the fields of <c>ModelProto</c> the converter uses: pieces (1), the
    /// trainer spec (2: model_type 3, byte_fallback 35, unk_id 40, unk_piece 45) and the
    /// normalizer spec (3: precompiled_charsmap 2, add_dummy_prefix 3); every other field is
    /// skipped by its wire type. A truncated or malformed message names the file and the offset.
    /// </summary>
    internal static SpModel Parse(string file, byte[] bytes)
    {
        var model = new SpModel();
        var reader = new ProtoReader(file, bytes, 0, bytes.Length);
        while (reader.Next(out int field, out int wire))
        {
            switch (field)
            {
                case 1 when wire == 2:
                    model.Pieces.Add(ParsePiece(reader.Message()));
                    break;
                case 2 when wire == 2:
                    ParseTrainer(reader.Message(), model);
                    break;
                case 3 when wire == 2:
                    ParseNormalizer(reader.Message(), model);
                    break;
                default:
                    reader.Skip(wire);
                    break;
            }
        }
        if (model.Pieces.Count == 0)
        {
            throw new ZettException($"{file}: SentencePiece model has no pieces");
        }
        if (model.UnkId < 0 || model.UnkId >= model.Pieces.Count)
        {
            throw new ZettException($"{file}: SentencePiece unk_id {model.UnkId} is outside the " +
                $"{model.Pieces.Count} pieces");
        }
        return model;
    }

    private static SpPiece ParsePiece(ProtoReader r)
    {
        string piece = "";
        float score = 0;
        int type = 1;
        while (r.Next(out int field, out int wire))
        {
            if (field == 1 && wire == 2)
            {
                piece = r.String();
            }
            else if (field == 2 && wire == 5)
            {
                score = r.Fixed32Float();
            }
            else if (field == 3 && wire == 0)
            {
                type = (int)r.Varint();
            }
            else
            {
                r.Skip(wire);
            }
        }
        if (piece.Length == 0 || piece.Length > TokenizerLimits.MaxTokenLength)
        {
            throw r.Error($"a piece of {piece.Length} characters (1 to " +
                $"{TokenizerLimits.MaxTokenLength} allowed)");
        }
        return new SpPiece(piece, score, type);
    }

    private static void ParseTrainer(ProtoReader r, SpModel model)
    {
        while (r.Next(out int field, out int wire))
        {
            switch (field)
            {
                case 3 when wire == 0:
                    model.ModelType = (int)r.Varint();
                    break;
                case 35 when wire == 0:
                    model.ByteFallback = r.Varint() != 0;
                    break;
                case 40 when wire == 0:
                    model.UnkId = (int)r.Varint();
                    break;
                case 45 when wire == 2:
                    model.UnkPiece = r.String();
                    break;
                default:
                    r.Skip(wire);
                    break;
            }
        }
    }

    private static void ParseNormalizer(ProtoReader r, SpModel model)
    {
        while (r.Next(out int field, out int wire))
        {
            if (field == 2 && wire == 2)
            {
                model.PrecompiledCharsmap = r.Bytes().ToArray();
            }
            else if (field == 3 && wire == 0)
            {
                model.AddDummyPrefix = r.Varint() != 0;
            }
            else
            {
                r.Skip(wire);
            }
        }
    }

    /// <summary>A protobuf wire-format reader over one message's bytes.</summary>
    private sealed class ProtoReader(string file, byte[] bytes, int start, int end)
    {
        private int at = start;

        public ZettException Error(string what) =>
            new($"{file}: not a SentencePiece model: {what} (at byte {at})");

        public bool Next(out int field, out int wire)
        {
            if (at >= end)
            {
                field = wire = 0;
                return false;
            }
            ulong key = Varint();
            field = (int)Math.Min(key >> 3, int.MaxValue);
            wire = (int)(key & 7);
            if (field == 0)
            {
                throw Error("field number 0");
            }
            return true;
        }

        public ulong Varint()
        {
            ulong value = 0;
            for (int shift = 0; shift < 64; shift += 7)
            {
                if (at >= end)
                {
                    throw Error("truncated varint");
                }
                byte b = bytes[at++];
                value |= (ulong)(b & 0x7F) << shift;
                if (b < 0x80)
                {
                    return value;
                }
            }
            throw Error("varint longer than 10 bytes");
        }

        public ReadOnlySpan<byte> Bytes()
        {
            ulong length = Varint();
            if (length > (ulong)(end - at))
            {
                throw Error($"a field of {length} bytes runs past its message");
            }
            ReadOnlySpan<byte> span = bytes.AsSpan(at, (int)length);
            at += (int)length;
            return span;
        }

        public string String()
        {
            ReadOnlySpan<byte> span = Bytes();
            try
            {
                return new UTF8Encoding(false, true).GetString(span);
            }
            catch (DecoderFallbackException)
            {
                throw Error("a string that is not UTF-8");
            }
        }

        public ProtoReader Message()
        {
            ulong length = Varint();
            if (length > (ulong)(end - at))
            {
                throw Error($"a message of {length} bytes runs past its parent");
            }
            var child = new ProtoReader(file, bytes, at, at + (int)length);
            at += (int)length;
            return child;
        }

        public float Fixed32Float()
        {
            if (end - at < 4)
            {
                throw Error("truncated float");
            }
            float value = System.Buffers.Binary.BinaryPrimitives.ReadSingleLittleEndian(
                bytes.AsSpan(at, 4));
            at += 4;
            return value;
        }

        public void Skip(int wire)
        {
            switch (wire)
            {
                case 0:
                    Varint();
                    break;
                case 1 when end - at >= 8:
                    at += 8;
                    break;
                case 2:
                    Bytes();
                    break;
                case 5 when end - at >= 4:
                    at += 4;
                    break;
                default:
                    throw Error($"wire type {wire}");
            }
        }
    }
}
