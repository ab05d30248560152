"""CPU reconstruction of the hypernetwork fixtures (NOT the reference).

Runs the forward pass of ZETT.md section 3, written from the spec with plain torch ops (no
transformers), on the cases of hypernet_cases.py, and writes them in the golden fixture format
into tests/fixtures/hypernet-reconstruction/. It exists so the CPU backend is verified before
a GPU session runs scripts/golden_hypernet.py against the reference's own ZettHypernet.

    /usr/bin/python3 scripts/reconstruct_hypernet_fixtures.py \
        --out tests/fixtures/hypernet-reconstruction

Needs torch and numpy only (Debian: apt-get install python3-torch python3-numpy).
"""
import argparse
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hypernet_cases as hc  # noqa: E402

MAX_POSITIONS = 514  # roberta-base


def param_shapes(c):
    h, i, n = c["hn_hidden_size"], c["hn_intermediate_size"], c["n_embd"]
    d = 2 * n if c["separate_out_embeddings"] else n
    shapes = {
        "model.embeddings.position_embeddings.weight": (MAX_POSITIONS, h),
        "model.embeddings.token_type_embeddings.weight": (1, h),
        "model.embeddings.LayerNorm.weight": (h,), "model.embeddings.LayerNorm.bias": (h,),
        "fallback_embeddings.weight": (max(c["hn_n_extra_tokens"], 1), d),
    }

    def lin(p, fan_in, fan_out):
        shapes[p + ".weight"] = (fan_out, fan_in)
        shapes[p + ".bias"] = (fan_out,)

    def ln(p, dim):
        shapes[p + ".weight"] = (dim,)
        shapes[p + ".bias"] = (dim,)

    def block(p):
        lin(p + ".dense1", h, i)
        lin(p + ".dense2", i, h)
        ln(p + ".ln", h)

    for layer in range(c["hn_n_layers"]):
        p = f"model.encoder.layer.{layer}."
        for x in ("query", "key", "value"):
            lin(p + "attention.self." + x, h, h)
        lin(p + "attention.output.dense", h, h)
        ln(p + "attention.output.LayerNorm", h)
        lin(p + "intermediate.dense", h, i)
        lin(p + "output.dense", i, h)
        ln(p + "output.LayerNorm", h)
    if c["hn_embed_lang_id"]:
        shapes["lang_embeddings.weight"] = (c["n_langs"], h)
    lin("input_projection.0", d, h)
    block("input_projection.1")
    block("output_projection.0")
    lin("output_projection.1", h, d if c["hn_single_head"] else n)
    if c["separate_out_embeddings"] and not c["hn_single_head"]:
        block("output_projection_out.0")
        lin("output_projection_out.1", h, n)
    if c["hn_rescale_embeddings"]:
        for name, dim in (("in_scaler", d), ("scaler", n)):
            shapes[name + ".w"] = (1, dim)
            shapes[name + ".b"] = (1, dim)
        if c["separate_out_embeddings"]:
            shapes["out_scaler.w"] = (1, n)
            shapes["out_scaler.b"] = (1, n)
    if c["hn_predict_bias"]:
        lin("bias_projection", h, 1)
    return shapes


def forward(c, w, ids, source, lang_index):
    n, h = c["n_embd"], c["hn_hidden_size"]
    heads = c["hn_num_attention_heads"]
    orig = c["original_vocab_size"]

    def linear(x, p):
        return x @ w[p + ".weight"].T + w[p + ".bias"]

    def layer_norm(x, p, eps):
        return F.layer_norm(x, (x.shape[-1],), w[p + ".weight"], w[p + ".bias"], eps)

    def block(x, p):
        y = F.gelu(linear(F.gelu(linear(x, p + ".dense1"), approximate="tanh"), p + ".dense2"),
            approximate="tanh")
        return layer_norm(y + x, p + ".ln", 1e-6)

    ids = ids.long()
    main = torch.clamp(ids, max=orig - 1)
    fb = torch.clamp(ids - orig, min=0)
    x = source[main]
    if c["hn_rescale_embeddings"]:
        x = w["in_scaler.w"] * x + w["in_scaler.b"]
    x = torch.where((ids >= orig)[..., None], w["fallback_embeddings.weight"][fb], x)
    x = block(linear(x, "input_projection.0"), "input_projection.1")
    rows, length = ids.shape
    mask = ids != c["pad_token_id"]
    pos = w["model.embeddings.position_embeddings.weight"]
    x = x + w["model.embeddings.token_type_embeddings.weight"][0] + pos[:length]
    if c["hn_embed_lang_id"]:
        lang = w["lang_embeddings.weight"][lang_index].expand(rows, 1, h)
        x = torch.cat([x, lang], dim=1)  # no position or type embedding at this position
        mask = torch.cat([mask, torch.ones((rows, 1), dtype=torch.bool)], dim=1)
    x = layer_norm(x, "model.embeddings.LayerNorm", 1e-5)
    seq = x.shape[1]
    additive = torch.where(mask, 0.0, torch.finfo(torch.float32).min)[:, None, None, :]
    dh = h // heads
    for layer in range(c["hn_n_layers"]):
        p = f"model.encoder.layer.{layer}."

        def split(t):
            return t.view(rows, seq, heads, dh).transpose(1, 2)

        q = split(linear(x, p + "attention.self.query"))
        k = split(linear(x, p + "attention.self.key"))
        v = split(linear(x, p + "attention.self.value"))
        scores = q @ k.transpose(-1, -2) / math.sqrt(dh) + additive
        ctx = (scores.softmax(-1) @ v).transpose(1, 2).reshape(rows, seq, h)
        x = layer_norm(linear(ctx, p + "attention.output.dense") + x,
            p + "attention.output.LayerNorm", 1e-5)
        y = linear(F.gelu(linear(x, p + "intermediate.dense")), p + "output.dense")
        x = layer_norm(y + x, p + "output.LayerNorm", 1e-5)
    z = x.reshape(rows, -1) if c.get("hn_concat_last_hidden_state") else x[:, 0]
    out = linear(block(z, "output_projection.0"), "output_projection.1")
    e_out = None
    if c["hn_single_head"]:
        e_in = out[:, :n]
        if c["separate_out_embeddings"]:
            e_out = out[:, n:]
    else:
        e_in = out
        if c["separate_out_embeddings"]:
            e_out = linear(block(z, "output_projection_out.0"), "output_projection_out.1")
    if c["hn_rescale_embeddings"]:
        e_in = w["scaler.w"] * e_in + w["scaler.b"]
        if e_out is not None:
            e_out = w["out_scaler.w"] * e_out + w["out_scaler.b"]
    bias = linear(z, "bias_projection")[:, 0] if c["hn_predict_bias"] else torch.zeros(rows)
    return e_in, e_out, bias


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="tests/fixtures/hypernet-reconstruction")
    args = ap.parse_args()
    torch.set_num_threads(1)
    for seed, (name, case) in enumerate(sorted(hc.CASES.items())):
        params = {k: torch.nn.Parameter(torch.empty(s)) for k, s in param_shapes(case).items()}
        hc.randomize(params.items(), 1000 + seed)
        w = {k: v.detach() for k, v in params.items()}
        ids, source = hc.make_inputs(case, 1000 + seed)
        with torch.no_grad():
            outputs = forward(case, w, ids, source, case["lang_index"])
        hc.save_case(args.out, name, case, w, ids, source, outputs,
            "reconstruction (scripts/reconstruct_hypernet_fixtures.py), not the reference")
        print(f"{name}: {ids.shape[0]} rows, L {ids.shape[1]}")


if __name__ == "__main__":
    main()
