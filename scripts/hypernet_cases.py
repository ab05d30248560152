"""Hypernetwork fixture cases shared by golden_hypernet.py (the reference's own model, on the
GPU machine) and reconstruct_hypernet_fixtures.py (our torch reconstruction, on CPU).

A case folder holds:
  config.json          the hypernetwork config (model_type zett_hypernetwork)
  model.safetensors    every parameter under its PyTorch-port name, F32
  inputs.safetensors   surface_forms I32 [N, L], source_embeddings F32 [V, D_in],
                       lang_index I32 [1] (-1 when the model has no language embeddings)
  outputs.safetensors  embeddings_in F32 [N, n_embd], embeddings_out F32 [N, n_embd] (untied
                       models), bias F32 [N] (when the config predicts one)
Only torch and numpy are needed (no safetensors package: the writer below is 20 lines).
"""
import json
import os
import struct

import numpy as np
import torch

# Small widths keep the fixtures small (< 5 MB in all); heads 1..12 divide H = 48.
CASES = {
    # lang id, tied, rescale, bias, extra tokens, fully padded rows, 12 heads, L 7.
    "lang_tied_rescale_bias": dict(n_embd=32, hn_hidden_size=48, hn_intermediate_size=96,
        hn_n_layers=3, hn_num_attention_heads=12, hn_surface_maxlen=7, hn_rescale_embeddings=True,
        hn_predict_bias=True, hn_single_head=False, hn_embed_lang_id=True, n_langs=3,
        langs=["en", "de", "sw"], hn_n_extra_tokens=5, original_vocab_size=60, pad_token_id=1,
        separate_out_embeddings=False, lang_index=2, vocab=60, rows=24),
    # untied with a separate output head, no lang id, L 16, 1 head, rescale, no bias.
    "untied_separate_heads_L16": dict(n_embd=32, hn_hidden_size=48, hn_intermediate_size=64,
        hn_n_layers=2, hn_num_attention_heads=1, hn_surface_maxlen=16,
        hn_rescale_embeddings=True, hn_predict_bias=False, hn_single_head=False,
        hn_embed_lang_id=False, hn_n_extra_tokens=3, original_vocab_size=70, pad_token_id=2,
        separate_out_embeddings=True, lang_index=-1, vocab=72, rows=20),
    # single head on an untied model (split [:n_embd] / [n_embd:]), lang id, 4 heads, bias.
    "single_head_untied_lang": dict(n_embd=24, hn_hidden_size=48, hn_intermediate_size=80,
        hn_n_layers=3, hn_num_attention_heads=4, hn_surface_maxlen=7, hn_rescale_embeddings=True,
        hn_predict_bias=True, hn_single_head=True, hn_embed_lang_id=True, n_langs=2,
        langs=["en", "fr"], hn_n_extra_tokens=0, original_vocab_size=40, pad_token_id=1,
        separate_out_embeddings=True, lang_index=0, vocab=40, rows=16),
    # single head on a tied model, no rescale, no bias, 3 heads, L 16, fully padded rows
    # without a language position (they attend uniformly).
    "single_head_tied_plain": dict(n_embd=32, hn_hidden_size=48, hn_intermediate_size=72,
        hn_n_layers=1, hn_num_attention_heads=3, hn_surface_maxlen=16,
        hn_rescale_embeddings=False, hn_predict_bias=False, hn_single_head=True,
        hn_embed_lang_id=False, hn_n_extra_tokens=7, original_vocab_size=50, pad_token_id=3,
        separate_out_embeddings=False, lang_index=-1, vocab=55, rows=18),
    # hn_concat_last_hidden_state where the shapes allow it: L 1, no language position.
    "concat_last_hidden_L1": dict(n_embd=32, hn_hidden_size=48, hn_intermediate_size=64,
        hn_n_layers=2, hn_num_attention_heads=2, hn_surface_maxlen=1,
        hn_rescale_embeddings=False, hn_predict_bias=True, hn_single_head=False,
        hn_embed_lang_id=False, hn_n_extra_tokens=2, original_vocab_size=30, pad_token_id=1,
        hn_concat_last_hidden_state=True, separate_out_embeddings=False, lang_index=-1,
        vocab=30, rows=10),
    # 6 heads, tied, lang id, many extra tokens, default-sized batch.
    "lang_heads6_extra": dict(n_embd=40, hn_hidden_size=48, hn_intermediate_size=96,
        hn_n_layers=3, hn_num_attention_heads=6, hn_surface_maxlen=7, hn_rescale_embeddings=False,
        hn_predict_bias=True, hn_single_head=False, hn_embed_lang_id=True, n_langs=4,
        langs=["en", "de", "fr", "es"], hn_n_extra_tokens=12, original_vocab_size=45,
        pad_token_id=1, separate_out_embeddings=False, lang_index=3, vocab=45, rows=20),
}

NON_CONFIG_KEYS = ("lang_index", "vocab", "rows")


def config_json(case):
    cfg = {k: v for k, v in case.items() if k not in NON_CONFIG_KEYS}
    cfg.setdefault("hn_concat_last_hidden_state", False)
    cfg.setdefault("langs", [])
    cfg.update(model_type="zett_hypernetwork", hn_model_name_or_path="roberta-base",
        hn_model_type="roberta", hn_embed_using_source_embeddings=True,
        hn_embed_target_priors=False, hn_add_inter_token_attention=False)
    if not cfg["hn_embed_lang_id"]:
        cfg["n_langs"] = None
    return cfg


def randomize(named_params, seed):
    """Overwrites every parameter with seeded values of a scale that keeps every path of the
    network numerically significant (LayerNorm gains near 1, Linear weights ~ 1/sqrt(fan_in))."""
    g = torch.Generator().manual_seed(seed)
    for name, p in sorted(named_params, key=lambda x: x[0]):
        shape = tuple(p.shape)
        n = torch.randn(shape, generator=g, dtype=torch.float32)
        if "LayerNorm" in name or name.endswith(".ln.weight") or name.endswith(".ln.bias"):
            v = (1.0 + 0.2 * n) if name.endswith("weight") else 0.2 * n
        elif name.endswith(".w"):
            v = 1.0 + 0.3 * n
        elif name.endswith(".b"):
            v = 0.2 * n
        elif "embeddings" in name:
            v = 0.5 * n
        elif name.endswith("weight"):
            v = n / (shape[1] ** 0.5)
        else:
            v = 0.1 * n
        with torch.no_grad():
            p.copy_(v.to(p.dtype))


def make_inputs(case, seed):
    g = torch.Generator().manual_seed(seed + 1)
    n = case["n_embd"] * (2 if case["separate_out_embeddings"] else 1)
    source = torch.randn((case["vocab"], n), generator=g) * 0.7
    rows, length = case["rows"], case["hn_surface_maxlen"]
    pad = case["pad_token_id"]
    top = case["original_vocab_size"] + case["hn_n_extra_tokens"]
    ids = torch.full((rows, length), pad, dtype=torch.int32)
    for r in range(rows):
        if r % 7 == 3:
            continue  # fully padded row
        used = 1 + int(torch.randint(0, length, (1,), generator=g))
        ids[r, :used] = torch.randint(0, top, (used,), generator=g, dtype=torch.int32)
        if case["hn_n_extra_tokens"] > 0 and r % 5 == 1:
            ids[r, 0] = top - 1 - (r % case["hn_n_extra_tokens"])  # a fallback id first
    return ids, source


def write_safetensors(path, tensors, metadata=None):
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        a = np.ascontiguousarray(t.detach().cpu().numpy())
        dtype = {np.dtype("float32"): "F32", np.dtype("int32"): "I32"}[a.dtype]
        data = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape),
            "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    if metadata:
        header["__metadata__"] = metadata
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * ((8 - len(raw) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def save_case(out_dir, name, case, state_dict, ids, source, outputs, producer):
    d = os.path.join(out_dir, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(config_json(case), f, indent=2)
    write_safetensors(os.path.join(d, "model.safetensors"),
        {k: v.float() for k, v in sorted(state_dict.items()) if v.is_floating_point()}, {"format": "pt", "producer": producer})
    write_safetensors(os.path.join(d, "inputs.safetensors"), {
        "surface_forms": ids.to(torch.int32),
        "source_embeddings": source.float(),
        "lang_index": torch.tensor([case["lang_index"]], dtype=torch.int32)})
    e_in, e_out, bias = outputs
    out = {"embeddings_in": e_in.float()}
    if e_out is not None:
        out["embeddings_out"] = e_out.float()
    if case["hn_predict_bias"]:
        out["bias"] = bias.float()
    write_safetensors(os.path.join(d, "outputs.safetensors"), out, {"producer": producer})
