"""The main-stage training step (TRAINING.md §7.2-7.3, §7.5) in plain PyTorch, as the reference's
train_step computes it: shared by scripts/golden_train_step.py (the float64 golden fixtures) and
scripts/bench_train_pytorch.py (the eager PyTorch timing of the same step).

  * the hypernetwork (scripts/reconstruct_hypernet_fixtures.py's forward) predicts every row of
    the padded vocabulary (padded rows: surface forms of zeros);
  * the special tokens' rows are replaced by the base model's (§6.1), in and (untied) out;
  * the LM runs with those embeddings, its own LM-head bias replaced by the predicted bias
    (masked LM, learnable_bias) and -100000 added to the logits of the padded rows;
  * causal: CE of the targets (-1: none) over their count; masked: CE of the originals at the
    masked positions; XLM-R positions from the input ids (pads at padding_idx) and no attention
    mask, as the reference's Flax model gets;
  * plus lexical_weight x the lexical loss (§7.3) on the post-replacement embeddings;
  * the update: global-norm clip of the trainable parameters' gradients (0.1), AdamW
    (β 0.9 / 0.95, ε 1e-8, decay 0.01 but not on biases and LayerNorm parameters; in_scaler
    and scaler frozen).

Computes in the dtype of its inputs (float64 for the fixtures, float32 for the benchmark).
"""
import json
import math
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import golden_lm as glm  # noqa: E402
import reconstruct_hypernet_fixtures as rh  # noqa: E402

NEG = -100000.0


def read_safetensors(path, float_dtype):
    """name -> tensor: F32 / BF16 as float_dtype, I32 / I64 as int64."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        raw = np.frombuffer(data[a:b], dtype=np.uint8)
        kind = info["dtype"]
        if kind == "F32":
            v = torch.from_numpy(raw.view(np.float32).copy()).to(float_dtype)
        elif kind == "BF16":
            v = torch.from_numpy((raw.view(np.uint16).astype(np.uint32) << 16)
                                 .view(np.float32)).to(float_dtype)
        elif kind in ("I32", "I64"):
            v = torch.from_numpy(raw.view(np.int32 if kind == "I32" else np.int64)
                                 .astype(np.int64))
        else:
            raise ValueError(f"{path}: tensor {name} is {kind}")
        out[name] = v.reshape(info["shape"])
    return out


def roberta_positions(ids, pad):
    real = (ids != pad).long()
    return torch.cumsum(real, dim=-1) * real + pad


def roberta_logits(w, cfg, ids, pos):
    """golden_lm.roberta with the position rows given (Hugging Face's from the input ids)."""
    d, hq = cfg["hidden_size"], cfg["num_attention_heads"]
    dh, eps, t = d // hq, cfg["layer_norm_eps"], len(ids)
    e = "roberta.embeddings."
    x = w[e + "word_embeddings.weight"][ids] + w[e + "position_embeddings.weight"][pos] \
        + w[e + "token_type_embeddings.weight"][0]
    x = glm.layer_norm(x, w[e + "LayerNorm.weight"], w[e + "LayerNorm.bias"], eps)
    for layer in range(cfg["num_hidden_layers"]):
        p = f"roberta.encoder.layer.{layer}."

        def lin(name, inp):
            return inp @ w[p + name + ".weight"].T + w[p + name + ".bias"]
        q, k, v = (lin(f"attention.self.{n}", x).reshape(t, hq, dh)
                   for n in ("query", "key", "value"))
        a = lin("attention.output.dense", glm.attention(q, k, v, False))
        x = glm.layer_norm(x + a, w[p + "attention.output.LayerNorm.weight"],
                           w[p + "attention.output.LayerNorm.bias"], eps)
        m = lin("output.dense", glm.gelu_erf(lin("intermediate.dense", x)))
        x = glm.layer_norm(x + m, w[p + "output.LayerNorm.weight"],
                           w[p + "output.LayerNorm.bias"], eps)
    h = glm.gelu_erf(x @ w["lm_head.dense.weight"].T + w["lm_head.dense.bias"])
    h = glm.layer_norm(h, w["lm_head.layer_norm.weight"], w["lm_head.layer_norm.bias"], eps)
    return h @ w[e + "word_embeddings.weight"].T + w["lm_head.bias"]


def llama_batched(w, cfg, ids):
    """golden_lm.llama_like (Llama / Mistral without a window) over a batch ids [B, T] in the
    weights' dtype: one matrix product per projection for the whole batch, matmul attention
    with a causal mask as transformers' eager path. Returns logits [B, T, V]."""
    d, hq, hkv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    dh = cfg.get("head_dim") or d // hq
    eps, theta = cfg["rms_norm_eps"], cfg.get("rope_theta", 10000.0)
    emb = w["model.embed_tokens.weight"]
    b, t = ids.shape
    dtype = emb.dtype
    half = dh // 2
    inv = theta ** (-torch.arange(0, half, dtype=torch.float64) * 2 / dh)
    ang = torch.arange(t, dtype=torch.float64)[:, None] * inv[None, :]
    cos = torch.cos(ang).to(dtype=dtype, device=emb.device)[None, None]
    sin = torch.sin(ang).to(dtype=dtype, device=emb.device)[None, None]
    causal = torch.ones(t, t, dtype=torch.bool, device=emb.device).tril()

    def rope(x):   # x [B, H, T, Dh]
        x1, x2 = x[..., :half], x[..., half:]
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)

    def rms(x, g):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * g

    x = emb[ids]
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        h = rms(x, w[p + "input_layernorm.weight"])
        q = (h @ w[p + "self_attn.q_proj.weight"].T).view(b, t, hq, dh).transpose(1, 2)
        k = (h @ w[p + "self_attn.k_proj.weight"].T).view(b, t, hkv, dh).transpose(1, 2)
        v = (h @ w[p + "self_attn.v_proj.weight"].T).view(b, t, hkv, dh).transpose(1, 2)
        q, k = rope(q), rope(k)
        k = k.repeat_interleave(hq // hkv, dim=1)
        v = v.repeat_interleave(hq // hkv, dim=1)
        s = (q @ k.transpose(-1, -2)) / math.sqrt(dh)
        s = s.masked_fill(~causal, float("-inf"))
        a = (s.softmax(-1) @ v).transpose(1, 2).reshape(b, t, hq * dh)
        x = x + a @ w[p + "self_attn.o_proj.weight"].T
        h = rms(x, w[p + "post_attention_layernorm.weight"])
        g = glm.silu(h @ w[p + "mlp.gate_proj.weight"].T) * (h @ w[p + "mlp.up_proj.weight"].T)
        x = x + g @ w[p + "mlp.down_proj.weight"].T
    x = rms(x, w["model.norm.weight"])
    head = emb if cfg.get("tie_word_embeddings") else w["lm_head.weight"]
    return x @ head.T


def source_embeddings(family, lm_w, untied):
    """The hypernetwork's source E [V0, D_in]: the LM's input rows, its output rows beside them
    when untied."""
    if family == "llama":
        if untied:
            return torch.cat([lm_w["model.embed_tokens.weight"], lm_w["lm_head.weight"]], dim=1)
        return lm_w["model.embed_tokens.weight"]
    return lm_w["roberta.embeddings.word_embeddings.weight"]


def step(family, case, lm_cfg, lm_w, params, batch, lexical_weight, batched=False):
    """The main-stage loss of one micro-batch: (loss, lm_loss, lexical_loss). batch is
    (surface_forms [R, L], ids [B, T], targets [B, T] (-1: none), mask [R], special_ids,
    special_ids_in_reference). batched: the causal LM over the whole batch at once
    (llama_batched) rather than one sequence at a time (golden_lm.llama_like)."""
    sf, ids, targets, mask, special, in_ref = batch
    n, pad, v0 = case["n_embd"], case["pad_token_id"], case["original_vocab_size"]
    untied = case["separate_out_embeddings"]
    rows = sf.shape[0]
    source = source_embeddings(family, lm_w, untied)
    e_in, e_out, bias = rh.forward(case, params, sf, source, -1)
    # §6.1: the special rows are the base model's (constants: no gradient into them).
    e_in = e_in.index_put((special,), source[in_ref, :n])
    if untied:
        e_out = e_out.index_put((special,), source[in_ref, n:])
    add = torch.where(mask, 0.0, NEG).to(e_in.dtype)
    w = dict(lm_w)
    if family == "llama":
        w["model.embed_tokens.weight"] = e_in
        if untied:
            w["lm_head.weight"] = e_out
    if batched:
        if family != "llama":
            raise ValueError("batched: causal Llama-family models only")
        logits = (llama_batched(w, lm_cfg, ids) + add).reshape(-1, rows)
    else:
        logits = []
        for b in range(ids.shape[0]):
            if family == "llama":
                z = glm.llama_like(w, lm_cfg, ids[b], "llama") + add
            else:
                w["roberta.embeddings.word_embeddings.weight"] = e_in
                w["lm_head.bias"] = bias + add   # the model's own bias is zeroed (learnable_bias)
                z = roberta_logits(w, lm_cfg, ids[b],
                                   roberta_positions(ids[b], lm_cfg["pad_token_id"]))
            logits.append(z)
        logits = torch.stack(logits).reshape(-1, rows)
    t = targets.reshape(-1)
    keep = t >= 0
    lm_loss = torch.nn.functional.cross_entropy(logits[keep], t[keep], reduction="sum") / keep.sum()
    # §7.3 on the post-replacement rows; a first id past V0 is clamped as JAX indexes.
    first = torch.clamp(sf[:, 0], max=v0 - 1)
    overlap = (sf[:, 1:] == pad).all(dim=1).to(e_in.dtype)
    heads = [(e_in, source[first, :n])] + ([(e_out, source[first, n:])] if untied else [])
    lex = 0
    for e, tgt in heads:
        d = ((e - tgt) ** 2).sum(-1) * overlap
        lex = lex + d.sum() / (overlap.sum() + 1e-8) / torch.linalg.norm(tgt, dim=1).mean()
    lex = lex / len(heads)
    return lm_loss + lexical_weight * lex, lm_loss, lex


def trainable(name):
    """All but the in_scaler and the scaler (get_labels)."""
    return not (name.startswith("in_scaler.") or name.startswith("scaler."))


def decayed(name):
    """AdamW decays all but biases and LayerNorm parameters (decay_mask_fn)."""
    return not (name.endswith(".bias") or "LayerNorm" in name or ".ln." in name)


def optimizer(params, lr, weight_decay=0.01, betas=(0.9, 0.95), eps=1e-8):
    """torch.optim.AdamW over the trainable parameters, decay on decayed() only; frozen
    parameters get requires_grad False."""
    decay, plain = [], []
    for name, p in params.items():
        if not trainable(name):
            p.requires_grad_(False)
        else:
            (decay if decayed(name) else plain).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": plain, "weight_decay": 0.0}],
                             lr=lr, betas=betas, eps=eps)


def update(params, opt, max_grad_norm=0.1):
    """Global-norm clip (optax.clip_by_global_norm) and one AdamW step; returns the norm
    before clipping."""
    grads = [p for p in params.values() if p.requires_grad]
    norm = torch.nn.utils.clip_grad_norm_(grads, max_grad_norm)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return norm
