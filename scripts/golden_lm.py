#!/usr/bin/env python3
"""Golden logits for the language-model families, from plain PyTorch.

  /usr/bin/python3 scripts/golden_lm.py --out tests/fixtures/lm [--seed 0]

Needs only torch (Debian's python3-torch 1.13 on the CPU is enough) — no transformers. Each
architecture below is written from its published description (Llama: RMSNorm, rotary
half-split "rotate_half" layout, SwiGLU, grouped-query attention; Mistral: + sliding window;
Qwen2: + q/k/v biases; Gemma: √d-scaled embeddings, (1 + w) RMSNorm, GeGLU with tanh GELU,
tied head; GPT-2: learned positions, Conv1D [in, out] weights, tanh GELU, tied; GPT-NeoX:
parallel residual, per-head fused QKV, partial rotary, erf GELU; RoBERTa / XLM-R: post-norm
encoder, positions from padding_idx + 1, token-type 0, masked-LM head dense → GELU →
LayerNorm → tied decoder + bias).

For each family it writes OUT/<family>/ as a Hugging Face directory (config.json and
model.safetensors, by the small writer below) and OUT/<family>/golden.safetensors holding
`input_ids` (I32 [T]) and `logits` (F32 [T, V]) computed in float64 from the stored weights.
`llama-bf16` stores the llama weights as bfloat16; its reference logits are computed from
those bf16 weights widened exactly, so fp32 compute must match it as tightly as fp32 weights.
The models are tiny (vocab 96, hidden 32, 2 layers) so the fixtures stay small.
"""

import argparse
import json
import math
import os
import struct

import torch

VOCAB, HIDDEN, LAYERS, HEADS, INTER, POSITIONS, TOKENS = 96, 32, 2, 4, 48, 64, 12


def write_safetensors(path, tensors):
    """tensors: name -> (dtype name, torch tensor). Offsets tile the data section."""
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        dtype, t = tensors[name]
        t = t.contiguous()
        if dtype == "F32":
            raw = t.to(torch.float32).numpy().tobytes()
        elif dtype == "BF16":
            raw = t.to(torch.bfloat16).view(torch.int16).numpy().tobytes()
        elif dtype == "I32":
            raw = t.to(torch.int32).numpy().tobytes()
        else:
            raise ValueError(dtype)
        header[name] = {"dtype": dtype, "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


# ---- building blocks (float64) ----------------------------------------------------------

def rms_norm(x, w, eps, unit_offset=False):
    scale = (1 + w) if unit_offset else w
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * scale


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdim=True)
    var = (x - mu).pow(2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def gelu_erf(x):
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def gelu_tanh(x):
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def silu(x):
    return x * torch.sigmoid(x)


def rotary(x, positions, dims, theta):
    """x [T, H, Dh]; rotates the first `dims` dimensions, pairing i with i + dims/2."""
    half = dims // 2
    inv = theta ** (-torch.arange(0, half, dtype=torch.float64) * 2 / dims)
    ang = positions[:, None].double() * inv[None, :]
    cos, sin = torch.cos(ang)[:, None, :], torch.sin(ang)[:, None, :]
    a, b, rest = x[..., :half], x[..., half:dims], x[..., dims:]
    return torch.cat([a * cos - b * sin, b * cos + a * sin, rest], dim=-1)


def attention(q, k, v, causal, window=0):
    """q [T, Hq, Dh], k/v [T, Hkv, Dh] -> [T, Hq*Dh]; plain softmax over a full mask."""
    t, hq, dh = q.shape
    group = hq // k.shape[1]
    k = k.repeat_interleave(group, dim=1)
    v = v.repeat_interleave(group, dim=1)
    scores = torch.einsum("ihd,jhd->hij", q, k) / math.sqrt(dh)
    i = torch.arange(t)[:, None]
    j = torch.arange(t)[None, :]
    visible = torch.ones(t, t, dtype=torch.bool)
    if causal:
        visible &= j <= i
        if window:
            visible &= (i - j) < window
    scores = scores.masked_fill(~visible, float("-inf"))
    p = torch.softmax(scores, dim=-1)
    return torch.einsum("hij,jhd->ihd", p, v).reshape(t, hq * dh)


# ---- families -----------------------------------------------------------------------------

def llama_like(w, cfg, ids, family):
    d, hq, hkv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    dh = cfg.get("head_dim", d // hq)
    gemma = family == "gemma"
    eps = cfg["rms_norm_eps"]
    pos = torch.arange(len(ids))
    x = w["model.embed_tokens.weight"][ids]
    if gemma:
        x = x * math.sqrt(d)
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        h = rms_norm(x, w[p + "input_layernorm.weight"], eps, gemma)
        def proj(name, width):
            y = h @ w[p + f"self_attn.{name}.weight"].T
            if p + f"self_attn.{name}.bias" in w:
                y = y + w[p + f"self_attn.{name}.bias"]
            return y.reshape(len(ids), width, dh)
        q, k, v = proj("q_proj", hq), proj("k_proj", hkv), proj("v_proj", hkv)
        q = rotary(q, pos, dh, cfg["rope_theta"])
        k = rotary(k, pos, dh, cfg["rope_theta"])
        a = attention(q, k, v, True, cfg.get("sliding_window") or 0)
        x = x + a @ w[p + "self_attn.o_proj.weight"].T
        h = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps, gemma)
        act = gelu_tanh if gemma else silu
        g = act(h @ w[p + "mlp.gate_proj.weight"].T) * (h @ w[p + "mlp.up_proj.weight"].T)
        x = x + g @ w[p + "mlp.down_proj.weight"].T
    x = rms_norm(x, w["model.norm.weight"], eps, gemma)
    head = w["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else w["lm_head.weight"]
    return x @ head.T


def gpt2(w, cfg, ids):
    d, hq = cfg["n_embd"], cfg["n_head"]
    dh, eps, t = d // hq, cfg["layer_norm_epsilon"], len(ids)
    x = w["transformer.wte.weight"][ids] + w["transformer.wpe.weight"][torch.arange(t)]
    for l in range(cfg["n_layer"]):
        p = f"transformer.h.{l}."
        h = layer_norm(x, w[p + "ln_1.weight"], w[p + "ln_1.bias"], eps)
        qkv = h @ w[p + "attn.c_attn.weight"] + w[p + "attn.c_attn.bias"]
        q, k, v = (qkv[:, i * d:(i + 1) * d].reshape(t, hq, dh) for i in range(3))
        a = attention(q, k, v, True)
        x = x + a @ w[p + "attn.c_proj.weight"] + w[p + "attn.c_proj.bias"]
        h = layer_norm(x, w[p + "ln_2.weight"], w[p + "ln_2.bias"], eps)
        m = gelu_tanh(h @ w[p + "mlp.c_fc.weight"] + w[p + "mlp.c_fc.bias"])
        x = x + m @ w[p + "mlp.c_proj.weight"] + w[p + "mlp.c_proj.bias"]
    x = layer_norm(x, w["transformer.ln_f.weight"], w["transformer.ln_f.bias"], eps)
    return x @ w["transformer.wte.weight"].T


def gpt_neox(w, cfg, ids):
    d, hq = cfg["hidden_size"], cfg["num_attention_heads"]
    dh, eps, t = d // hq, cfg["layer_norm_eps"], len(ids)
    rot = int(dh * cfg["rotary_pct"])
    pos = torch.arange(t)
    x = w["gpt_neox.embed_in.weight"][ids]
    for l in range(cfg["num_hidden_layers"]):
        p = f"gpt_neox.layers.{l}."
        h1 = layer_norm(x, w[p + "input_layernorm.weight"], w[p + "input_layernorm.bias"], eps)
        h2 = layer_norm(x, w[p + "post_attention_layernorm.weight"],
                        w[p + "post_attention_layernorm.bias"], eps)
        qkv = h1 @ w[p + "attention.query_key_value.weight"].T \
            + w[p + "attention.query_key_value.bias"]
        qkv = qkv.reshape(t, hq, 3 * dh)
        q, k, v = qkv[..., :dh], qkv[..., dh:2 * dh], qkv[..., 2 * dh:]
        q = rotary(q, pos, rot, cfg["rotary_emb_base"])
        k = rotary(k, pos, rot, cfg["rotary_emb_base"])
        a = attention(q, k, v, True) @ w[p + "attention.dense.weight"].T \
            + w[p + "attention.dense.bias"]
        m = gelu_erf(h2 @ w[p + "mlp.dense_h_to_4h.weight"].T + w[p + "mlp.dense_h_to_4h.bias"])
        m = m @ w[p + "mlp.dense_4h_to_h.weight"].T + w[p + "mlp.dense_4h_to_h.bias"]
        x = x + a + m
    x = layer_norm(x, w["gpt_neox.final_layer_norm.weight"],
                   w["gpt_neox.final_layer_norm.bias"], eps)
    return x @ w["embed_out.weight"].T


def roberta(w, cfg, ids):
    d, hq = cfg["hidden_size"], cfg["num_attention_heads"]
    dh, eps, t = d // hq, cfg["layer_norm_eps"], len(ids)
    e = "roberta.embeddings."
    pos = torch.arange(t) + cfg["pad_token_id"] + 1
    x = w[e + "word_embeddings.weight"][ids] + w[e + "position_embeddings.weight"][pos] \
        + w[e + "token_type_embeddings.weight"][0]
    x = layer_norm(x, w[e + "LayerNorm.weight"], w[e + "LayerNorm.bias"], eps)
    for l in range(cfg["num_hidden_layers"]):
        p = f"roberta.encoder.layer.{l}."
        def lin(name, inp):
            return inp @ w[p + name + ".weight"].T + w[p + name + ".bias"]
        q, k, v = (lin(f"attention.self.{n}", x).reshape(t, hq, dh)
                   for n in ("query", "key", "value"))
        a = lin("attention.output.dense", attention(q, k, v, False))
        x = layer_norm(x + a, w[p + "attention.output.LayerNorm.weight"],
                       w[p + "attention.output.LayerNorm.bias"], eps)
        m = lin("output.dense", gelu_erf(lin("intermediate.dense", x)))
        x = layer_norm(x + m, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"],
                       eps)
    h = gelu_erf(x @ w["lm_head.dense.weight"].T + w["lm_head.dense.bias"])
    h = layer_norm(h, w["lm_head.layer_norm.weight"], w["lm_head.layer_norm.bias"], eps)
    return h @ w[e + "word_embeddings.weight"].T + w["lm_head.bias"]


# ---- configs and random weights ----------------------------------------------------------

def configs():
    base_llama = dict(hidden_size=HIDDEN, intermediate_size=INTER, num_hidden_layers=LAYERS,
                      num_attention_heads=HEADS, num_key_value_heads=2, vocab_size=VOCAB,
                      max_position_embeddings=POSITIONS, rms_norm_eps=1e-5, rope_theta=10000.0,
                      tie_word_embeddings=False, hidden_act="silu", bos_token_id=1,
                      eos_token_id=2)
    return {
        "llama": dict(base_llama, model_type="llama", architectures=["LlamaForCausalLM"]),
        "mistral": dict(base_llama, model_type="mistral", sliding_window=5,
                        architectures=["MistralForCausalLM"]),
        "qwen2": dict(base_llama, model_type="qwen2", rope_theta=1000000.0,
                      use_sliding_window=False, architectures=["Qwen2ForCausalLM"]),
        "gemma": dict(base_llama, model_type="gemma", head_dim=16, num_key_value_heads=1,
                      rms_norm_eps=1e-6, tie_word_embeddings=True, hidden_act="gelu_pytorch_tanh",
                      hidden_activation="gelu_pytorch_tanh", architectures=["GemmaForCausalLM"]),
        "gpt2": dict(model_type="gpt2", n_embd=HIDDEN, n_head=HEADS, n_layer=LAYERS,
                     n_positions=POSITIONS, n_inner=INTER, vocab_size=VOCAB,
                     layer_norm_epsilon=1e-5, activation_function="gelu_new",
                     tie_word_embeddings=True, bos_token_id=0, eos_token_id=0,
                     architectures=["GPT2LMHeadModel"]),
        "gpt_neox": dict(model_type="gpt_neox", hidden_size=HIDDEN, num_attention_heads=2,
                         num_hidden_layers=LAYERS, intermediate_size=INTER, vocab_size=VOCAB,
                         max_position_embeddings=POSITIONS, rotary_pct=0.25,
                         rotary_emb_base=10000, layer_norm_eps=1e-5, hidden_act="gelu",
                         use_parallel_residual=True, tie_word_embeddings=False,
                         bos_token_id=0, eos_token_id=0, architectures=["GPTNeoXForCausalLM"]),
        "roberta": dict(model_type="roberta", hidden_size=HIDDEN, num_attention_heads=HEADS,
                        num_hidden_layers=LAYERS, intermediate_size=INTER, vocab_size=VOCAB,
                        max_position_embeddings=POSITIONS + 2, type_vocab_size=1,
                        layer_norm_eps=1e-5, hidden_act="gelu", pad_token_id=1, bos_token_id=0,
                        eos_token_id=2, position_embedding_type="absolute",
                        architectures=["RobertaForMaskedLM"]),
    }


def random_weights(family, cfg, g):
    def n(*shape, std=0.2):
        return torch.randn(*shape, generator=g, dtype=torch.float64) * std

    def norm(name, d, bias):
        out = {name + ".weight": 1 + n(d, std=0.1) if family != "gemma" else n(d, std=0.1)}
        if bias:
            out[name + ".bias"] = n(d, std=0.1)
        return out

    w = {}
    if family in ("llama", "mistral", "qwen2", "gemma"):
        d, hq, hkv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
        dh = cfg.get("head_dim", d // hq)
        w["model.embed_tokens.weight"] = n(VOCAB, d)
        for l in range(LAYERS):
            p = f"model.layers.{l}."
            w.update(norm(p + "input_layernorm", d, False))
            w.update(norm(p + "post_attention_layernorm", d, False))
            for name, rows in (("q_proj", hq * dh), ("k_proj", hkv * dh), ("v_proj", hkv * dh)):
                w[p + f"self_attn.{name}.weight"] = n(rows, d)
                if family == "qwen2":
                    w[p + f"self_attn.{name}.bias"] = n(rows, std=0.1)
            w[p + "self_attn.o_proj.weight"] = n(d, hq * dh)
            w[p + "mlp.gate_proj.weight"] = n(INTER, d)
            w[p + "mlp.up_proj.weight"] = n(INTER, d)
            w[p + "mlp.down_proj.weight"] = n(d, INTER)
        w.update(norm("model.norm", d, False))
        if not cfg["tie_word_embeddings"]:
            w["lm_head.weight"] = n(VOCAB, d)
    elif family == "gpt2":
        d = HIDDEN
        w["transformer.wte.weight"] = n(VOCAB, d)
        w["transformer.wpe.weight"] = n(POSITIONS, d)
        for l in range(LAYERS):
            p = f"transformer.h.{l}."
            w.update(norm(p + "ln_1", d, True))
            w.update(norm(p + "ln_2", d, True))
            w[p + "attn.c_attn.weight"], w[p + "attn.c_attn.bias"] = n(d, 3 * d), n(3 * d, std=.1)
            w[p + "attn.c_proj.weight"], w[p + "attn.c_proj.bias"] = n(d, d), n(d, std=.1)
            w[p + "mlp.c_fc.weight"], w[p + "mlp.c_fc.bias"] = n(d, INTER), n(INTER, std=.1)
            w[p + "mlp.c_proj.weight"], w[p + "mlp.c_proj.bias"] = n(INTER, d), n(d, std=.1)
        w.update(norm("transformer.ln_f", d, True))
    elif family == "gpt_neox":
        d = HIDDEN
        w["gpt_neox.embed_in.weight"] = n(VOCAB, d)
        for l in range(LAYERS):
            p = f"gpt_neox.layers.{l}."
            w.update(norm(p + "input_layernorm", d, True))
            w.update(norm(p + "post_attention_layernorm", d, True))
            w[p + "attention.query_key_value.weight"] = n(3 * d, d)
            w[p + "attention.query_key_value.bias"] = n(3 * d, std=.1)
            w[p + "attention.dense.weight"], w[p + "attention.dense.bias"] = n(d, d), n(d, std=.1)
            w[p + "mlp.dense_h_to_4h.weight"] = n(INTER, d)
            w[p + "mlp.dense_h_to_4h.bias"] = n(INTER, std=.1)
            w[p + "mlp.dense_4h_to_h.weight"] = n(d, INTER)
            w[p + "mlp.dense_4h_to_h.bias"] = n(d, std=.1)
        w.update(norm("gpt_neox.final_layer_norm", d, True))
        w["embed_out.weight"] = n(VOCAB, d)
    else:
        d, e = HIDDEN, "roberta.embeddings."
        w[e + "word_embeddings.weight"] = n(VOCAB, d)
        w[e + "position_embeddings.weight"] = n(cfg["max_position_embeddings"], d)
        w[e + "token_type_embeddings.weight"] = n(1, d)
        w.update(norm(e + "LayerNorm", d, True))
        for l in range(LAYERS):
            p = f"roberta.encoder.layer.{l}."
            for name, rows, cols in (("attention.self.query", d, d), ("attention.self.key", d, d),
                                     ("attention.self.value", d, d),
                                     ("attention.output.dense", d, d),
                                     ("intermediate.dense", INTER, d),
                                     ("output.dense", d, INTER)):
                w[p + name + ".weight"], w[p + name + ".bias"] = n(rows, cols), n(rows, std=.1)
            w.update(norm(p + "attention.output.LayerNorm", d, True))
            w.update(norm(p + "output.LayerNorm", d, True))
        w["lm_head.dense.weight"], w["lm_head.dense.bias"] = n(d, d), n(d, std=.1)
        w.update(norm("lm_head.layer_norm", d, True))
        w["lm_head.bias"] = n(VOCAB, std=.1)
    return w


def logits_of(family, w, cfg, ids):
    if family in ("llama", "mistral", "qwen2", "gemma", "llama-bf16"):
        return llama_like(w, cfg, ids, "llama" if family == "llama-bf16" else family)
    if family == "gpt2":
        return gpt2(w, cfg, ids)
    if family == "gpt_neox":
        return gpt_neox(w, cfg, ids)
    return roberta(w, cfg, ids)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/lm")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    cfgs = configs()
    cfgs["llama-bf16"] = dict(cfgs["llama"], torch_dtype="bfloat16")
    cfgs["xlm-roberta"] = dict(cfgs["roberta"], model_type="xlm-roberta",
                               architectures=["XLMRobertaForMaskedLM"])
    for i, (family, cfg) in enumerate(sorted(cfgs.items())):
        g = torch.Generator().manual_seed(args.seed * 1000 + i)
        kind = family.replace("-bf16", "").replace("xlm-", "")
        w = random_weights(kind, cfg, g)
        dtype = "BF16" if family.endswith("bf16") else "F32"
        # The reference computes from exactly the stored values.
        w = {k: (v.to(torch.bfloat16) if dtype == "BF16" else v.float()).double()
             for k, v in w.items()}
        ids = torch.randint(3, VOCAB, (TOKENS,), generator=g)
        with torch.no_grad():
            logits = logits_of(family if family != "xlm-roberta" else "roberta", w, cfg, ids)
        out = os.path.join(args.out, family)
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "config.json"), "w") as f:
            json.dump(cfg, f, indent=1, sort_keys=True)
            f.write("\n")
        write_safetensors(os.path.join(out, "model.safetensors"),
                          {k: (dtype, v) for k, v in w.items()})
        write_safetensors(os.path.join(out, "golden.safetensors"),
                          {"input_ids": ("I32", ids), "logits": ("F32", logits)})
        print(f"{family}: logits {tuple(logits.shape)}, |max| {logits.abs().max():.3f}")


if __name__ == "__main__":
    main()
