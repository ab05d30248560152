#!/usr/bin/env python3
"""Convert the stories260K llama2.c checkpoint into a Hugging Face Llama directory.

Input (see ../shared/data/SOURCES.md):
  stories260K.bin  llama2.c legacy (version-0) checkpoint: 7 x int32 header
                   (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
                   vocab_size < 0 means an unshared classifier follows the weights), then
                   fp32 weights in llama2.c order: token embedding [vocab, dim],
                   rms_att [L, dim], wq [L, dim, dim], wk [L, kv_dim, dim], wv [L, kv_dim, dim],
                   wo [L, dim, dim], rms_ffn [L, dim], w1 [L, hidden, dim], w2 [L, dim, hidden],
                   w3 [L, hidden, dim], rms_final [dim], freq_cis_real/imag
                   [seq_len, head_size/2] each (unused), optional classifier [vocab, dim].
                   Every matrix is stored as [out, in], row-major.
  tok512.bin       llama2.c tokenizer: int32 max_token_length, then per token
                   float32 score, int32 byte length, UTF-8 bytes. SentencePiece's "▁" is stored
                   as " ", BOS/EOS as "\\n<s>\\n" / "\\n</s>\\n".
  reference_greedy_generation.json  greedy (temperature 0) ids generated from BOS.

Output: a directory that transformers loads with AutoModelForCausalLM / AutoTokenizer:
config.json, generation_config.json, model.safetensors (F32), tokenizer.json,
tokenizer_config.json, special_tokens_map.json, reference_greedy_generation.json (copied),
PROVENANCE.md.

RoPE: llama2.c rotates adjacent pairs (2i, 2i+1) of each head; Hugging Face's Llama rotates
(i, i + head_dim/2) ("rotate_half"). The q and k projections are therefore permuted per head,
output row (h, r, i) <- llama2.c row (h, i, r) for r in {0, 1}, i < head_dim/2, which makes
rotate_half on the permuted vectors equal to the pairwise rotation on the original ones.

Verification (python standard library only, runs anywhere): the written model.safetensors is
read back and run with Hugging Face Llama semantics (rotate_half RoPE, RMSNorm, SwiGLU,
grouped-query attention) to greedily regenerate the reference ids from BOS; the written
tokenizer.json is run through a small BPE (merges by rank, byte fallback) and compared with
llama2.c's own score-driven encoder on the reference text. Any mismatch exits non-zero.

Usage:
  python3 scripts/convert_stories260k.py [--src ../shared/data/models/stories260K]
      [--out assets/stories260K] [--verify-steps 256]
"""

import argparse
import array
import hashlib
import json
import math
import os
import shutil
import struct
import sys
import time
from operator import mul

SPACE = "\u2581"  # SentencePiece's word-boundary marker "▁"
SPECIALS = ["<unk>", "<s>", "</s>"]
SOURCE_FILES = ["stories260K.bin", "tok512.bin", "reference_greedy_generation.json"]


# --------------------------------------------------------------------------------------------
# llama2.c checkpoint


def read_checkpoint(path):
    """Returns (config dict, shared_classifier, dict name -> (shape, array('f')))."""
    with open(path, "rb") as f:
        raw = f.read()
    header = struct.unpack_from("<7i", raw, 0)
    dim, hidden, n_layers, n_heads, n_kv_heads, vocab, seq_len = header
    shared = vocab > 0
    vocab = abs(vocab)
    if dim % n_heads != 0 or n_heads % n_kv_heads != 0:
        raise SystemExit(f"{path}: inconsistent header {header}")
    head = dim // n_heads
    kv_dim = n_kv_heads * head
    floats = array.array("f")
    floats.frombytes(raw[28:])
    if sys.byteorder != "little":
        floats.byteswap()

    pos = 0

    def take(*shape):
        nonlocal pos
        n = 1
        for s in shape:
            n *= s
        if pos + n > len(floats):
            raise SystemExit(f"{path}: truncated while reading a {shape} block at float {pos}")
        block = floats[pos:pos + n]
        pos += n
        return block

    w = {}
    w["tok_embeddings"] = ([vocab, dim], take(vocab, dim))
    for name, shape in [
        ("rms_att", [dim]),
        ("wq", [dim, dim]),
        ("wk", [kv_dim, dim]),
        ("wv", [kv_dim, dim]),
        ("wo", [dim, dim]),
        ("rms_ffn", [dim]),
        ("w1", [hidden, dim]),
        ("w2", [dim, hidden]),
        ("w3", [hidden, dim]),
    ]:
        block = take(n_layers, *shape)
        per = len(block) // n_layers
        for layer in range(n_layers):
            w[f"{name}.{layer}"] = (shape, block[layer * per:(layer + 1) * per])
    w["rms_final"] = ([dim], take(dim))
    take(seq_len, head // 2)  # freq_cis_real (legacy, recomputed at run time)
    take(seq_len, head // 2)  # freq_cis_imag
    if not shared:
        w["wcls"] = ([vocab, dim], take(vocab, dim))
    if pos != len(floats):
        raise SystemExit(f"{path}: {len(floats) - pos} trailing floats after the weights")
    config = dict(dim=dim, hidden_dim=hidden, n_layers=n_layers, n_heads=n_heads,
                  n_kv_heads=n_kv_heads, vocab_size=vocab, seq_len=seq_len, head_dim=head)
    return config, shared, w


def permute_rope_rows(weight, n_heads, head_dim, in_features):
    """llama2.c pairwise-RoPE row order -> Hugging Face rotate_half row order, per head."""
    out = array.array("f", bytes(4 * len(weight)))
    half = head_dim // 2
    for h in range(n_heads):
        for i in range(half):
            for r in range(2):
                src = (h * head_dim + 2 * i + r) * in_features
                dst = (h * head_dim + r * half + i) * in_features
                out[dst:dst + in_features] = weight[src:src + in_features]
    return out


def to_hf_tensors(cfg, shared, w):
    """Hugging Face LlamaForCausalLM state dict: name -> (shape, array('f'))."""
    t = {"model.embed_tokens.weight": w["tok_embeddings"]}
    for i in range(cfg["n_layers"]):
        p = f"model.layers.{i}."
        wq_shape, wq = w[f"wq.{i}"]
        wk_shape, wk = w[f"wk.{i}"]
        t[p + "self_attn.q_proj.weight"] = (
            wq_shape, permute_rope_rows(wq, cfg["n_heads"], cfg["head_dim"], cfg["dim"]))
        t[p + "self_attn.k_proj.weight"] = (
            wk_shape, permute_rope_rows(wk, cfg["n_kv_heads"], cfg["head_dim"], cfg["dim"]))
        t[p + "self_attn.v_proj.weight"] = w[f"wv.{i}"]
        t[p + "self_attn.o_proj.weight"] = w[f"wo.{i}"]
        t[p + "mlp.gate_proj.weight"] = w[f"w1.{i}"]
        t[p + "mlp.down_proj.weight"] = w[f"w2.{i}"]
        t[p + "mlp.up_proj.weight"] = w[f"w3.{i}"]
        t[p + "input_layernorm.weight"] = w[f"rms_att.{i}"]
        t[p + "post_attention_layernorm.weight"] = w[f"rms_ffn.{i}"]
    t["model.norm.weight"] = w["rms_final"]
    if not shared:
        t["lm_head.weight"] = w["wcls"]
    return t


# --------------------------------------------------------------------------------------------
# safetensors (written and read by hand)


def write_safetensors(path, tensors, metadata):
    names = sorted(tensors)
    header = {"__metadata__": metadata}
    offset = 0
    for name in names:
        shape, data = tensors[name]
        n = 1
        for s in shape:
            n *= s
        if n != len(data):
            raise SystemExit(f"{name}: shape {shape} does not match {len(data)} values")
        header[name] = {"dtype": "F32", "shape": list(shape),
                        "data_offsets": [offset, offset + 4 * n]}
        offset += 4 * n
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for name in names:
            data = array.array("f", tensors[name][1])
            if sys.byteorder != "little":
                data.byteswap()
            f.write(data.tobytes())
    os.replace(tmp, path)


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack_from("<Q", raw, 0)
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            raise SystemExit(f"{path}: {name} has dtype {info['dtype']}, expected F32")
        begin, end = info["data_offsets"]
        data = array.array("f")
        data.frombytes(raw[base + begin:base + end])
        if sys.byteorder != "little":
            data.byteswap()
        out[name] = (info["shape"], data)
    return header.get("__metadata__", {}), out


# --------------------------------------------------------------------------------------------
# tokenizer


def read_tok512(path, vocab_size):
    with open(path, "rb") as f:
        raw = f.read()
    (max_len,) = struct.unpack_from("<i", raw, 0)
    pos = 4
    pieces, scores = [], []
    for i in range(vocab_size):
        score, length = struct.unpack_from("<fi", raw, pos)
        pos += 8
        piece = raw[pos:pos + length].decode("utf-8")
        pos += length
        if length > max_len:
            raise SystemExit(f"{path}: token {i} is {length} bytes, above max {max_len}")
        pieces.append(piece)
        scores.append(score)
    if pos != len(raw):
        raise SystemExit(f"{path}: {len(raw) - pos} trailing bytes after {vocab_size} tokens")
    return max_len, pieces, scores


def sentencepiece_pieces(raw_pieces):
    """Undo llama2.c's export: standard special names, " " back to "▁"."""
    exported = {1: "\n<s>\n", 2: "\n</s>\n"}
    pieces = []
    for i, piece in enumerate(raw_pieces):
        if i < 3:
            expect = exported.get(i, SPECIALS[i])
            if piece != expect:
                raise SystemExit(f"tok512: id {i} is {piece!r}, expected {expect!r}")
            pieces.append(SPECIALS[i])
        else:
            pieces.append(piece.replace(" ", SPACE))
    for b in range(256):
        if pieces[3 + b] != f"<0x{b:02X}>":
            raise SystemExit(f"tok512: id {3 + b} is {pieces[3 + b]!r}, expected <0x{b:02X}>")
    if len(set(pieces)) != len(pieces):
        raise SystemExit("tok512: duplicate pieces")
    return pieces


def bpe_merges_from_scores(pieces, scores):
    """Merges as Hugging Face's SentencePiece conversion derives them from a BPE model: every
    split of a vocabulary piece into two vocabulary pieces is a merge; within one piece the
    splits are ordered by the ids of (left, right); all merges are then ordered by the piece's
    score descending, then by left length and right length descending (stable sort)."""
    vocab = {p: i for i, p in enumerate(pieces)}
    merges = []
    for piece, score in zip(pieces, scores):
        local = []
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in vocab and right in vocab:
                local.append((left, right, score))
        local.sort(key=lambda m: (vocab[m[0]], vocab[m[1]]))
        merges.extend(local)
    merges.sort(key=lambda m: (m[2], len(m[0]), len(m[1])), reverse=True)
    return [(left, right) for left, right, _ in merges]


def added_token(i, content):
    return {"id": i, "content": content, "single_word": False, "lstrip": False,
            "rstrip": False, "normalized": False, "special": True}


def tokenizer_json(pieces, merges):
    for left, right in merges:
        if " " in left or " " in right:
            raise SystemExit(f"merge {left!r} {right!r} contains a space")
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [added_token(i, SPECIALS[i]) for i in range(3)],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": SPACE},
            {"type": "Replace", "pattern": {"String": " "}, "content": SPACE},
        ]},
        "pre_tokenizer": None,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "<s>", "type_id": 1}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}},
        },
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": SPACE}, "content": " "},
            {"type": "ByteFallback"},
            {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0},
        ]},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": "<unk>",
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": True,
            "byte_fallback": True,
            "ignore_merges": False,
            "vocab": {p: i for i, p in enumerate(pieces)},
            "merges": [f"{left} {right}" for left, right in merges],
        },
    }


def hf_bpe_encode(text, vocab, merge_rank):
    """Encodes like the tokenizer.json above: normalizer (prepend ▁, spaces -> ▁), no
    pre-tokenizer (one word), characters missing from the vocabulary become byte tokens, then
    the lowest-ranked adjacent merge is applied until none applies."""
    if not text:
        return []
    word = SPACE + text.replace(" ", SPACE)
    symbols = []
    for ch in word:
        if ch in vocab:
            symbols.append(ch)
        else:
            symbols.extend(f"<0x{b:02X}>" for b in ch.encode("utf-8"))
    while len(symbols) > 1:
        best, best_at = None, -1
        for k in range(len(symbols) - 1):
            rank = merge_rank.get((symbols[k], symbols[k + 1]))
            if rank is not None and (best is None or rank < best):
                best, best_at = rank, k
        if best is None:
            break
        symbols[best_at:best_at + 2] = [symbols[best_at] + symbols[best_at + 1]]
    return [vocab[s] for s in symbols]


def llama2c_encode(text, raw_pieces, scores):
    """llama2.c's encoder on the raw tok512 vocabulary: dummy-prefix " ", one id per UTF-8
    character (byte fallback +3 otherwise), then repeatedly merge the adjacent pair whose
    concatenation is in the vocabulary with the highest score (leftmost on ties)."""
    if not text:
        return []
    lookup = {p: i for i, p in enumerate(raw_pieces)}
    ids = [lookup[" "]] if " " in lookup else []
    for ch in text:
        if ch in lookup:
            ids.append(lookup[ch])
        else:
            ids.extend(b + 3 for b in ch.encode("utf-8"))
    while True:
        best_score, best_id, best_at = -1e10, -1, -1
        for k in range(len(ids) - 1):
            merged = lookup.get(raw_pieces[ids[k]] + raw_pieces[ids[k + 1]])
            if merged is not None and scores[merged] > best_score:
                best_score, best_id, best_at = scores[merged], merged, k
        if best_at < 0:
            break
        ids[best_at:best_at + 2] = [best_id]
    return ids


def hf_decode(ids, pieces):
    """The tokenizer.json decoder: ▁ -> " ", byte tokens -> bytes, fuse, strip one leading
    space; special tokens skipped."""
    out = bytearray()
    for i in ids:
        if i < 3:
            continue
        p = pieces[i]
        if 3 <= i < 259:
            out.append(i - 3)
        else:
            out.extend(p.replace(SPACE, " ").encode("utf-8"))
    text = out.decode("utf-8", errors="replace")
    return text[1:] if text.startswith(" ") else text


# --------------------------------------------------------------------------------------------
# forward pass with Hugging Face Llama semantics


class HfLlama:
    """Greedy decoder over the HF-named tensors (float64 arithmetic on fp32 weights)."""

    def __init__(self, cfg, tensors, tied):
        self.cfg = cfg
        self.dim = cfg["hidden_size"]
        self.n_heads = cfg["num_attention_heads"]
        self.n_kv = cfg["num_key_value_heads"]
        self.head = self.dim // self.n_heads
        self.eps = cfg["rms_norm_eps"]
        self.theta = cfg["rope_theta"]

        def rows(name):
            shape, data = tensors[name]
            cols = shape[1]
            return [list(data[r * cols:(r + 1) * cols]) for r in range(shape[0])]

        self.embed = rows("model.embed_tokens.weight")
        self.lm_head = self.embed if tied else rows("lm_head.weight")
        self.norm = list(tensors["model.norm.weight"][1])
        self.layers = []
        for i in range(cfg["num_hidden_layers"]):
            p = f"model.layers.{i}."
            self.layers.append({
                k: rows(p + n) for k, n in [
                    ("q", "self_attn.q_proj.weight"), ("k", "self_attn.k_proj.weight"),
                    ("v", "self_attn.v_proj.weight"), ("o", "self_attn.o_proj.weight"),
                    ("gate", "mlp.gate_proj.weight"), ("up", "mlp.up_proj.weight"),
                    ("down", "mlp.down_proj.weight")]
            } | {"ln1": list(tensors[p + "input_layernorm.weight"][1]),
                 "ln2": list(tensors[p + "post_attention_layernorm.weight"][1])})
        half = self.head // 2
        self.inv_freq = [1.0 / (self.theta ** (2 * j / self.head)) for j in range(half)]
        self.cache = [([], []) for _ in self.layers]

    @staticmethod
    def matvec(m, x):
        return [sum(map(mul, row, x)) for row in m]

    def rmsnorm(self, x, w):
        s = 1.0 / math.sqrt(sum(v * v for v in x) / len(x) + self.eps)
        return [v * s * g for v, g in zip(x, w)]

    def rope(self, vec, n_heads, pos):
        half = self.head // 2
        cos = [math.cos(pos * f) for f in self.inv_freq] * 2
        sin = [math.sin(pos * f) for f in self.inv_freq] * 2
        out = []
        for h in range(n_heads):
            x = vec[h * self.head:(h + 1) * self.head]
            rot = [-v for v in x[half:]] + x[:half]  # rotate_half
            out.extend(x[j] * cos[j] + rot[j] * sin[j] for j in range(self.head))
        return out

    def step(self, token, pos):
        x = [float(v) for v in self.embed[token]]
        group = self.n_heads // self.n_kv
        scale = 1.0 / math.sqrt(self.head)
        for layer, (kcache, vcache) in zip(self.layers, self.cache):
            h = self.rmsnorm(x, layer["ln1"])
            q = self.rope(self.matvec(layer["q"], h), self.n_heads, pos)
            k = self.rope(self.matvec(layer["k"], h), self.n_kv, pos)
            v = self.matvec(layer["v"], h)
            kcache.append(k)
            vcache.append(v)
            attn = []
            for hd in range(self.n_heads):
                kv = hd // group  # repeat_kv: query head hd reads key/value head hd // group
                qh = q[hd * self.head:(hd + 1) * self.head]
                lo, hi = kv * self.head, (kv + 1) * self.head
                logits = [sum(map(mul, qh, kc[lo:hi])) * scale for kc in kcache]
                m = max(logits)
                e = [math.exp(a - m) for a in logits]
                z = sum(e)
                out = [0.0] * self.head
                for wgt, vc in zip(e, vcache):
                    wgt /= z
                    for j in range(self.head):
                        out[j] += wgt * vc[lo + j]
                attn.extend(out)
            x = [a + b for a, b in zip(x, self.matvec(layer["o"], attn))]
            h = self.rmsnorm(x, layer["ln2"])
            gate = self.matvec(layer["gate"], h)
            up = self.matvec(layer["up"], h)
            act = [g / (1.0 + math.exp(-g)) * u for g, u in zip(gate, up)]
            x = [a + b for a, b in zip(x, self.matvec(layer["down"], act))]
        x = self.rmsnorm(x, self.norm)
        return self.matvec(self.lm_head, x)


def greedy(model, bos, steps, stop):
    token, out = bos, []
    for pos in range(steps):
        logits = model.step(token, pos)
        token = max(range(len(logits)), key=logits.__getitem__)
        if token == stop:
            break
        out.append(token)
    return out


# --------------------------------------------------------------------------------------------
# output files


def write_json(path, obj):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def hf_config(cfg, shared):
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "head_dim": cfg["head_dim"],
        "hidden_act": "silu",
        "hidden_size": cfg["dim"],
        "initializer_range": 0.02,
        "intermediate_size": cfg["hidden_dim"],
        "max_position_embeddings": cfg["seq_len"],
        "mlp_bias": False,
        "num_attention_heads": cfg["n_heads"],
        "num_hidden_layers": cfg["n_layers"],
        "num_key_value_heads": cfg["n_kv_heads"],
        "pretraining_tp": 1,
        "rms_norm_eps": 1e-05,
        "rope_scaling": None,
        "rope_theta": 10000.0,
        "tie_word_embeddings": shared,
        "torch_dtype": "float32",
        "use_cache": True,
        "vocab_size": cfg["vocab_size"],
    }


def special_token_entry(content):
    return {"content": content, "lstrip": False, "normalized": False, "rstrip": False,
            "single_word": False}


def tokenizer_config(model_max_length):
    return {
        "add_bos_token": True,
        "add_eos_token": False,
        "added_tokens_decoder": {
            str(i): {k: v for k, v in added_token(i, s).items() if k not in ("id",)}
            for i, s in enumerate(SPECIALS)
        },
        "bos_token": "<s>",
        "clean_up_tokenization_spaces": False,
        "eos_token": "</s>",
        "legacy": True,
        "model_max_length": model_max_length,
        "pad_token": None,
        "padding_side": "right",
        "tokenizer_class": "LlamaTokenizerFast",
        "unk_token": "<unk>",
    }


PROVENANCE = """# stories260K (Hugging Face format) — provenance

A real Llama-architecture language model trained on TinyStories by Andrej Karpathy
(`tinyllamas/stories260K`, published with llama2.c), converted to a Hugging Face
`LlamaForCausalLM` directory by `scripts/convert_stories260k.py` in this repository.

Licence: MIT (llama2.c / tinyllamas; licence text `LICENSE.llama2c` beside the sources in
`../shared/data/models/stories260K/`).

## Source files

| file | size (B) | sha256 |
|---|---|---|
{rows}

The sha256 values equal those recorded in `../shared/data/SOURCES.md` (the converter refuses
other inputs).

## Model

{summary}

## Conversion

```
{command}
```

- Weights: llama2.c order → Hugging Face names (`wq/wk/wv/wo` → `self_attn.{{q,k,v,o}}_proj`,
  `w1/w3/w2` → `mlp.{{gate,up,down}}_proj`, `rms_att/rms_ffn` → `input_layernorm` /
  `post_attention_layernorm`, `rms_final` → `model.norm`); the header's vocab size is positive,
  so the classifier is the embedding matrix (`tie_word_embeddings: true`, no `lm_head.weight`).
  The legacy `freq_cis` tables are dropped (RoPE is recomputed with theta 10000).
- RoPE: llama2.c rotates pairs (2i, 2i+1) of each head, Hugging Face rotates (i, i+d/2);
  q_proj/k_proj rows are permuted per head: HF row (h, r, i) = llama2.c row (h, i, r).
- Tokenizer: the 512 pieces of `tok512.bin` (" " mapped back to "▁", `\\n<s>\\n`/`\\n</s>\\n`
  renamed `<s>`/`</s>`) form a SentencePiece-style BPE `tokenizer.json` (byte_fallback, fuse_unk,
  Prepend "▁" + Replace " "→"▁" normalizer, no pre-tokenizer); merges are derived from the
  piece scores the way Hugging Face converts SentencePiece BPE models ({n_merges} merges).

## Verification (run by the converter, python standard library)

{verification}
"""


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.dirname(here)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default_src = None
    parent = os.path.dirname(repo)
    while default_src is None:
        candidate = os.path.join(parent, "shared", "data", "models", "stories260K")
        if os.path.isfile(os.path.join(candidate, "stories260K.bin")):
            default_src = candidate
        elif os.path.dirname(parent) == parent:
            break
        parent = os.path.dirname(parent)
    ap.add_argument("--src", default=default_src, required=default_src is None,
                    help="folder holding stories260K.bin, tok512.bin and "
                         "reference_greedy_generation.json (default: shared/data/models/"
                         "stories260K in the nearest folder above the repository)")
    ap.add_argument("--sources-md", default=None,
                    help="SOURCES.md listing the expected sha256 (default: <src>/../../SOURCES.md)")
    ap.add_argument("--out", default=os.path.join(repo, "assets", "stories260K"))
    ap.add_argument("--verify-steps", type=int, default=256,
                    help="greedy tokens to regenerate and compare (0 skips the check)")
    args = ap.parse_args()
    src = os.path.abspath(args.src)

    # Inputs must be the recorded files.
    sources_md = args.sources_md or os.path.join(src, "..", "..", "SOURCES.md")
    with open(sources_md, encoding="utf-8") as f:
        recorded = f.read()
    hashes = {}
    for name in SOURCE_FILES:
        path = os.path.join(src, name)
        hashes[name] = (os.path.getsize(path), sha256(path))
        if f"`models/stories260K/{name}`" not in recorded or hashes[name][1] not in recorded:
            raise SystemExit(f"{path}: sha256 {hashes[name][1]} is not the one in {sources_md}")

    cfg, shared, w = read_checkpoint(os.path.join(src, "stories260K.bin"))
    print(f"checkpoint: {cfg}, shared classifier: {shared}")
    tensors = to_hf_tensors(cfg, shared, w)
    max_len, raw_pieces, scores = read_tok512(os.path.join(src, "tok512.bin"), cfg["vocab_size"])
    pieces = sentencepiece_pieces(raw_pieces)
    merges = bpe_merges_from_scores(pieces, scores)
    print(f"tokenizer: {len(pieces)} pieces, {len(merges)} merges, max piece {max_len} bytes")

    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    config = hf_config(cfg, shared)
    write_json(os.path.join(out, "config.json"), config)
    write_json(os.path.join(out, "generation_config.json"),
               {"_from_model_config": True, "bos_token_id": 1, "eos_token_id": 2})
    st_path = os.path.join(out, "model.safetensors")
    write_safetensors(st_path, tensors, {"format": "pt"})
    tok = tokenizer_json(pieces, merges)
    write_json(os.path.join(out, "tokenizer.json"), tok)
    write_json(os.path.join(out, "tokenizer_config.json"), tokenizer_config(cfg["seq_len"]))
    write_json(os.path.join(out, "special_tokens_map.json"), {
        "bos_token": special_token_entry("<s>"),
        "eos_token": special_token_entry("</s>"),
        "unk_token": special_token_entry("<unk>"),
    })
    shutil.copyfile(os.path.join(src, "reference_greedy_generation.json"),
                    os.path.join(out, "reference_greedy_generation.json"))
    os.chmod(os.path.join(out, "reference_greedy_generation.json"), 0o644)

    # Verification 1: greedy generation from the WRITTEN safetensors with HF semantics.
    with open(os.path.join(src, "reference_greedy_generation.json"), encoding="utf-8") as f:
        ref = json.load(f)
    ref_ids = ref["generated_ids"]
    lines = []
    if args.verify_steps > 0:
        _, back = read_safetensors(st_path)
        if sorted(back) != sorted(tensors):
            raise SystemExit("model.safetensors does not hold the expected tensors")
        model = HfLlama(config, back, tied=shared)
        steps = min(args.verify_steps, len(ref_ids))
        t0 = time.time()
        got = greedy(model, ref["start_token"], steps, stop=1)
        dt = time.time() - t0
        match = 0
        while match < min(len(got), steps) and got[match] == ref_ids[match]:
            match += 1
        print(f"greedy: {match}/{steps} tokens equal the reference ({dt:.1f} s)")
        if match != steps:
            raise SystemExit(f"greedy generation diverges at token {match}: "
                             f"{got[match:match + 8]} vs {ref_ids[match:match + 8]}")
        lines.append(f"- Greedy decoding from BOS with the converted `model.safetensors` read "
                     f"back and run with Hugging Face Llama semantics (rotate_half RoPE, "
                     f"RMSNorm eps 1e-5, SwiGLU, grouped-query attention 8 query / 4 key-value "
                     f"heads, tied classifier) reproduces all {match} of {len(ref_ids)} "
                     f"reference token ids of `reference_greedy_generation.json`.")
        if hf_decode(got, pieces) != ref["text"]:
            raise SystemExit("decoded greedy text differs from the reference text")
        lines.append("- The tokenizer.json decoder rules (▁→space, byte fallback, strip one "
                     "leading space) turn those ids into exactly the reference `text`.")

    # Verification 2: tokenizer.json BPE == llama2.c's encoder on the reference text.
    vocab = tok["model"]["vocab"]
    rank = {tuple(m.split(" ")): r for r, m in enumerate(tok["model"]["merges"])}
    samples = [s for s in ref["text"].split("\n") if s]
    samples += [s.strip() + "." for line in ref["text"].split("\n") for s in line.split(".")
                if s.strip()]
    samples += ["Hello world!", "Tom and Sue went to the café 🙂 at 3:45.", "a  b   c",
                "\u00e9t\u00e9 \u4e2d\u6587", "Once upon a time"]
    agree = 0
    for s in samples:
        a = hf_bpe_encode(s, vocab, rank)
        b = llama2c_encode(s, raw_pieces, scores)
        if a != b:
            raise SystemExit(f"tokenizer.json BPE and llama2.c encoder differ on {s!r}: {a} vs {b}")
        if hf_decode(a, pieces) != s:
            raise SystemExit(f"decode(encode({s!r})) = {hf_decode(a, pieces)!r}")
        agree += 1
    print(f"tokenizer: {agree}/{len(samples)} samples encode identically (BPE vs llama2.c) "
          f"and round-trip")
    lines.append(f"- A standard-library BPE over `tokenizer.json` (normalizer, merges by rank, "
                 f"byte fallback) and llama2.c's score-driven encoder over `tok512.bin` give the "
                 f"same ids on {agree} samples (every line and sentence of the reference text, "
                 f"plus non-ASCII/emoji/multi-space strings that exercise byte fallback); "
                 f"decode(encode(s)) == s for all of them.")
    enc = hf_bpe_encode(ref["text"], vocab, rank)
    if enc != ref_ids:
        raise SystemExit("tokenizer.json does not encode the reference text to the reference ids")
    print(f"tokenizer: the reference text encodes to the {len(enc)} reference ids")
    lines.append(f"- The same BPE encodes the whole reference `text` to exactly the {len(enc)} "
                 f"reference `generated_ids`.")

    rows = "\n".join(f"| `{n}` | {size:,} | `{h}` |" for n, (size, h) in hashes.items())
    summary = (f"dim {cfg['dim']}, hidden {cfg['hidden_dim']}, {cfg['n_layers']} layers, "
               f"{cfg['n_heads']} heads ({cfg['n_kv_heads']} key-value heads, head size "
               f"{cfg['head_dim']}), vocabulary {cfg['vocab_size']}, context {cfg['seq_len']}; "
               f"{sum(len(d) for _, d in tensors.values()):,} parameters stored as F32.")
    with open(os.path.join(out, "PROVENANCE.md"), "w", encoding="utf-8", newline="\n") as f:
        f.write(PROVENANCE.format(
            rows=rows, summary=summary, n_merges=len(merges), verification="\n".join(lines),
            command="python3 scripts/convert_stories260k.py --src "
                    "../shared/data/models/stories260K --out assets/stories260K"))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
