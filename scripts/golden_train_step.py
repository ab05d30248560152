#!/usr/bin/env python3
"""Golden main-stage training steps: the loss and every hypernetwork gradient, from autograd.

  /usr/bin/python3 scripts/golden_train_step.py --out tests/fixtures/train

Needs only torch (Debian's python3-torch 1.13 on the CPU); everything runs in float64. For two
frozen tiny base models of tests/fixtures/lm — `llama` (causal, untied) and `xlm-roberta`
(masked, tied, with an LM-head bias) — it builds a tiny hypernetwork with seeded random
weights and one batch under a made-up target vocabulary, and computes TRAINING.md §7.2-7.3 as
the reference's train_step does (the step itself: scripts/train_step_torch.py, shared with
scripts/bench_train_pytorch.py):

  * the hypernetwork (scripts/reconstruct_hypernet_fixtures.py's forward) predicts every row of
    the padded vocabulary (padded rows: surface forms of zeros);
  * the special tokens' rows are replaced by the base model's (§6.1), in and (untied) out;
  * the LM runs with those embeddings, its own LM-head bias replaced by the predicted bias
    (masked LM, learnable_bias) and -100000 added to the logits of the padded rows;
  * causal: CE of the next id where the input position is real, over their count; masked:
    15 % of the non-special ids selected (80 % <mask>, 10 % random, 10 % kept, as
    DataCollatorForLanguageModeling), CE of the originals at those positions; XLM-R positions
    from the input ids (pads at padding_idx) and no attention mask, as the reference's Flax
    model gets;
  * plus 0.5 x the lexical loss (§7.3) on the post-replacement embeddings.

Writes OUT/<family>/: config.json (the hypernetwork), model.safetensors (its weights, F32),
batch.safetensors (surface_forms, input_ids, targets (-1: none), mask, special_ids,
special_ids_in_reference; I32) and golden.safetensors (F64: loss, lm_loss, lexical_loss,
grad.<name> for every trainable parameter — all but in_scaler and scaler — and lm_grad.<name>
for every weight of the base model but its embeddings, for backbone training). The base model is
read from tests/fixtures/lm/<family> (made by scripts/golden_lm.py).
"""
import argparse
import json
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hypernet_cases as hc  # noqa: E402
import reconstruct_hypernet_fixtures as rh  # noqa: E402
import train_step_torch as ts  # noqa: E402

ROWS, REAL, L, BATCH, TOKENS = 32, 26, 4, 2, 10
LEXICAL_WEIGHT = 0.5


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        dtype, t = tensors[name]
        a = {"F64": np.float64, "F32": np.float32, "I32": np.int32}[dtype]
        raw = np.ascontiguousarray(t.detach().numpy().astype(a)).astype(
            np.dtype(a).newbyteorder("<")).tobytes()
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


def hn_case(family, cfg):
    untied = family == "llama"
    return dict(n_embd=cfg["hidden_size"], hn_hidden_size=48, hn_intermediate_size=64,
                hn_n_layers=2, hn_num_attention_heads=4, hn_surface_maxlen=L,
                hn_rescale_embeddings=True, hn_predict_bias=True, hn_single_head=False,
                hn_embed_lang_id=False, hn_n_extra_tokens=3,
                original_vocab_size=cfg["vocab_size"], pad_token_id=2 if untied else 1,
                separate_out_embeddings=untied, lang_index=-1, vocab=cfg["vocab_size"],
                rows=ROWS)


def make_batch(family, case, g):
    """Surface forms [ROWS, L]: specials [hn id, pad...], one-id rows (lexical loss), longer
    rows with padding, fallback ids; rows REAL.. are padding (zeros, masked)."""
    pad, v0 = case["pad_token_id"], case["original_vocab_size"]
    masked = family != "llama"
    if masked:   # <s> <pad> </s> <unk> at their ids; <mask> at row 4, the base model's 95
        special, in_ref, mask_id = [0, 1, 2, 3, 4], [0, 1, 2, 3, 95], 4
    else:        # <unk> <s> </s>; one more special at row 20, the base model's 90
        special, in_ref, mask_id = [0, 1, 2, 20], [0, 1, 2, 90], None
    sf = torch.zeros((ROWS, L), dtype=torch.int64)
    for r in range(REAL):
        sf[r] = pad
        if r in special:
            sf[r, 0] = in_ref[special.index(r)]
        elif r % 3 == 0:
            sf[r, 0] = int(torch.randint(3, v0, (1,), generator=g))
        else:
            used = 2 + int(torch.randint(0, L - 1, (1,), generator=g))
            sf[r, :used] = torch.randint(3, v0 + 3, (used,), generator=g)
            if r % 5 == 1:
                sf[r, 1] = pad   # padding between ids
    ids = torch.full((BATCH, TOKENS), pad if masked else 2, dtype=torch.int64)
    lengths = [TOKENS - 1, 6]
    for b, n in enumerate(lengths):
        ids[b, 0] = 0 if masked else 1
        body = torch.randint(5, REAL, (n - 2,), generator=g)
        body[body == 20] = 21
        ids[b, 1:n - 1] = body
        ids[b, n - 1] = 2
    if masked:
        targets = torch.full_like(ids, -1)
        sel = (torch.rand(ids.shape, generator=g) < 0.3) & ~torch.isin(ids, torch.tensor(special))
        sel[0, 3] = sel[1, 2] = True   # at least a few
        u = torch.rand(ids.shape, generator=g)
        v = torch.rand(ids.shape, generator=g)
        rand_ids = torch.randint(0, REAL, ids.shape, generator=g)
        targets[sel] = ids[sel]
        inp = ids.clone()
        inp[sel & (u < 0.8)] = mask_id
        inp[sel & (u >= 0.8) & (v < 0.5)] = rand_ids[sel & (u >= 0.8) & (v < 0.5)]
        ids = inp
    else:
        # The next id where the input position is real (the reference's mask at the input
        # position: the first pad after a text is a target).
        targets = torch.full_like(ids, -1)
        for b, n in enumerate(lengths):
            targets[b, :min(n, TOKENS - 1)] = ids[b, 1:min(n, TOKENS - 1) + 1]
    mask = torch.arange(ROWS) < REAL
    return sf, ids, targets, mask, torch.tensor(special), torch.tensor(in_ref)


# Embedding tensors of the tiny base models: replaced by the hypernetwork's predictions (the
# source E for its targets), never trained.
EMBEDDINGS = {"model.embed_tokens.weight", "lm_head.weight",
              "roberta.embeddings.word_embeddings.weight", "lm_head.bias",
              "lm_head.decoder.weight", "lm_head.decoder.bias"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="tests/fixtures/train")
    ap.add_argument("--lm", default="tests/fixtures/lm")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    for seed, family in enumerate(["llama", "xlm-roberta"]):
        lm_dir = os.path.join(args.lm, family)
        with open(os.path.join(lm_dir, "config.json")) as f:
            lm_cfg = json.load(f)
        lm_w = ts.read_safetensors(os.path.join(lm_dir, "model.safetensors"), torch.float64)
        # The backbone (every LM weight but the embeddings) takes gradients too: backbone
        # training (TRAINING.md §12.2) checks them; the hypernetwork's are unchanged by it.
        for k in lm_w:
            if k not in EMBEDDINGS:
                lm_w[k] = lm_w[k].clone().requires_grad_(True)
        case = hn_case(family, lm_cfg)
        shapes = rh.param_shapes(case)
        params = {k: torch.nn.Parameter(torch.empty(s, dtype=torch.float32))
                  for k, s in shapes.items()}
        hc.randomize(params.items(), 2000 + seed)
        # The golden step computes from exactly the stored fp32 values, in float64.
        params = {k: torch.nn.Parameter(v.detach().double()) for k, v in params.items()}
        g = torch.Generator().manual_seed(3000 + seed)
        batch = make_batch(family, case, g)
        loss, lm_loss, lex = ts.step(family, case, lm_cfg, lm_w, params, batch, LEXICAL_WEIGHT)
        loss.backward()
        golden = {"loss": ("F64", loss.detach().reshape(1)),
                  "lm_loss": ("F64", lm_loss.detach().reshape(1)),
                  "lexical_loss": ("F64", lex.detach().reshape(1))}
        for k, p in params.items():
            if k.startswith("in_scaler.") or k.startswith("scaler."):
                continue   # frozen (get_labels)
            grad = p.grad if p.grad is not None else torch.zeros_like(p)
            golden["grad." + k] = ("F64", grad)
        for k, p in lm_w.items():
            if p.requires_grad:
                grad = p.grad if p.grad is not None else torch.zeros_like(p)
                golden["lm_grad." + k] = ("F64", grad)
        out = os.path.join(args.out, family)
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "config.json"), "w") as f:
            json.dump(hc.config_json(case), f, indent=2)
            f.write("\n")
        write_safetensors(os.path.join(out, "model.safetensors"),
                          {k: ("F32", v.detach()) for k, v in params.items()})
        sf, ids, targets, mask, special, in_ref = batch
        write_safetensors(os.path.join(out, "batch.safetensors"), {
            "surface_forms": ("I32", sf), "input_ids": ("I32", ids), "targets": ("I32", targets),
            "mask": ("I32", mask.long()), "special_ids": ("I32", special),
            "special_ids_in_reference": ("I32", in_ref)})
        write_safetensors(os.path.join(out, "golden.safetensors"), golden)
        print(f"{family}: loss {loss.item():.6f} (lm {lm_loss.item():.6f}, lexical "
              f"{lex.item():.6f}), {int((targets >= 0).sum())} targets, "
              f"{sum(k.startswith('grad.') for k in golden)} hypernetwork and "
              f"{sum(k.startswith('lm_grad.') for k in golden)} backbone gradients")


if __name__ == "__main__":
    main()
