#!/usr/bin/env python3
"""Runs ON THE GPU MACHINE (torch + transformers + safetensors): the golden logits of the tiny
language models in tests/fixtures/lm once more, from Hugging Face `transformers` itself.

  python3 scripts/golden_lm_transformers.py --fixtures tests/fixtures/lm [--device cuda]

For each family directory (config.json + model.safetensors, written by scripts/golden_lm.py)
it loads the model with transformers (fp32, eager attention), runs golden.safetensors'
input_ids, writes golden_transformers.safetensors (`logits` F32 [T, V]) beside it, and prints
max |transformers − plain PyTorch| / max |logits|: the plain-PyTorch implementations in
golden_lm.py and transformers must agree (≤ 1e-4) for the CPU tests' references to mean what
they say. stories260K's logits over its first 64 reference tokens go to
tests/fixtures/lm/stories260K/golden_transformers.safetensors. Exit code 1 if any family
disagrees or fails to load.
"""

import argparse
import json
import os
import sys

import torch
from safetensors.torch import load_file, save_file


def load(directory, device):
    import transformers as tf
    with open(os.path.join(directory, "config.json")) as f:
        cfg = json.load(f)
    masked = cfg["model_type"] in ("roberta", "xlm-roberta")
    cls = tf.AutoModelForMaskedLM if masked else tf.AutoModelForCausalLM
    kwargs = dict(torch_dtype=torch.float32)
    try:
        model = cls.from_pretrained(directory, attn_implementation="eager", **kwargs)
    except TypeError:
        model = cls.from_pretrained(directory, **kwargs)
    return model.to(device).eval()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixtures", default="tests/fixtures/lm")
    ap.add_argument("--asset", default="assets/stories260K")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    # fp32 matmuls without TF32, so the comparison measures the implementation, not the tensor
    # cores.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    failed = False
    for family in sorted(os.listdir(args.fixtures)):
        d = os.path.join(args.fixtures, family)
        if not os.path.isfile(os.path.join(d, "golden.safetensors")):
            continue
        try:
            golden = load_file(os.path.join(d, "golden.safetensors"))
            ids = golden["input_ids"].long()[None, :].to(args.device)
            model = load(d, args.device)
            with torch.no_grad():
                logits = model(input_ids=ids).logits[0].float().cpu()
            save_file({"logits": logits.contiguous()},
                      os.path.join(d, "golden_transformers.safetensors"))
            ref = golden["logits"]
            rel = ((logits - ref).abs().max() / ref.abs().max()).item()
            ok = rel <= 1e-4
            failed |= not ok
            print(f"{family:12s} max|transformers - golden_lm| / max|logits| = {rel:.2e}"
                  f"{'' if ok else '  MISMATCH'}")
        except Exception as e:  # one family's failure must not hide the others'
            failed = True
            print(f"{family:12s} FAILED: {type(e).__name__}: {e}")
    try:
        with open(os.path.join(args.asset, "reference_greedy_generation.json")) as f:
            ref = json.load(f)
        ids = torch.tensor([[ref["start_token"]] + ref["generated_ids"][:63]], device=args.device)
        model = load(args.asset, args.device)
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0].float().cpu()
        out = os.path.join(args.fixtures, "stories260K")
        os.makedirs(out, exist_ok=True)
        save_file({"input_ids": ids[0].int().cpu().contiguous(), "logits": logits.contiguous()},
                  os.path.join(out, "golden_transformers.safetensors"))
        greedy = logits.argmax(-1)[:-1].tolist()
        agree = greedy == ref["generated_ids"][:63]
        failed |= not agree
        print(f"stories260K  greedy argmax over 63 positions equals the reference: {agree}")
    except Exception as e:
        failed = True
        print(f"stories260K  FAILED: {type(e).__name__}: {e}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
