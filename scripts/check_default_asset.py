#!/usr/bin/env python3
"""Check the built-in default model (assets/stories260K) with Hugging Face transformers.

Runs on the GPU machine (python3 with torch and transformers; no internet, no .NET):

  python3 scripts/check_default_asset.py --asset assets/stories260K --out DIR

1. AutoModelForCausalLM.from_pretrained and AutoTokenizer.from_pretrained load the directory.
2. Greedy decoding from BOS (full recomputation each step, fp32, TF32 off) on the CPU and,
   when present, on the GPU reproduces `generated_ids` of reference_greedy_generation.json
   (stop at BOS or after --steps tokens); `model.generate(do_sample=False)` is compared too.
3. The tokenizer decodes those ids to the reference text and encodes the reference text back
   to the same ids (with BOS first when special tokens are added).

Writes DIR/default_asset_check.json and exits 1 when any check fails.
"""

import argparse
import json
import os
import platform
import sys
import time
import traceback


def greedy(model, torch, bos, steps, device):
    ids = [bos]
    with torch.no_grad():
        for _ in range(steps):
            logits = model(torch.tensor([ids], device=device)).logits[0, -1]
            nxt = int(torch.argmax(logits).item())
            if nxt == bos:
                break
            ids.append(nxt)
    return ids[1:]


def first_mismatch(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--asset", default="assets/stories260K")
    ap.add_argument("--out", required=True, help="folder for default_asset_check.json")
    ap.add_argument("--steps", type=int, default=256)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    result = {"asset": args.asset, "checks": {}, "python": platform.python_version()}
    checks = result["checks"]

    def record(name, ok, **details):
        checks[name] = {"ok": bool(ok), **details}
        print(f"[{'PASS' if ok else 'FAIL'}] {name} {json.dumps(details)[:300]}")

    try:
        import torch
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer

        result["torch"] = torch.__version__
        result["transformers"] = transformers.__version__
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False

        with open(os.path.join(args.asset, "reference_greedy_generation.json"), encoding="utf-8") as f:
            ref = json.load(f)
        ref_ids = ref["generated_ids"][:args.steps]
        bos = ref["start_token"]

        model = AutoModelForCausalLM.from_pretrained(args.asset).float().eval()
        record("model_loads", True, cls=type(model).__name__,
               parameters=sum(p.numel() for p in model.parameters()),
               tied=model.get_output_embeddings().weight.data_ptr()
               == model.get_input_embeddings().weight.data_ptr())
        tok = AutoTokenizer.from_pretrained(args.asset)
        record("tokenizer_loads", len(tok) == model.config.vocab_size, cls=type(tok).__name__,
               length=len(tok), vocab_size=model.config.vocab_size)

        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        for device in devices:
            m = model.to(device)
            t0 = time.time()
            got = greedy(m, torch, bos, len(ref_ids), device)
            mismatch = first_mismatch(got, ref_ids)
            record(f"greedy_{device}", mismatch is None, steps=len(ref_ids),
                   matched=len(ref_ids) if mismatch is None else mismatch,
                   seconds=round(time.time() - t0, 2),
                   got_head=got[:16], ref_head=ref_ids[:16])
            with torch.no_grad():
                gen = m.generate(torch.tensor([[bos]], device=device), do_sample=False,
                                 max_new_tokens=len(ref_ids), min_new_tokens=len(ref_ids),
                                 pad_token_id=0)
            gen_ids = [int(x) for x in gen[0, 1:].tolist()]
            mismatch = first_mismatch(gen_ids, ref_ids)
            record(f"generate_{device}", mismatch is None,
                   matched=len(ref_ids) if mismatch is None else mismatch)
        model.to("cpu")

        text = tok.decode(ref_ids, skip_special_tokens=True)
        full = len(ref_ids) == len(ref["generated_ids"])
        record("decode_matches_reference_text", (text == ref["text"]) if full
               else ref["text"].startswith(text), decoded_head=text[:120])
        plain = tok(ref["text"], add_special_tokens=False)["input_ids"]
        with_bos = tok(ref["text"])["input_ids"]
        record("encode_matches_reference_ids", plain == ref["generated_ids"],
               n=len(plain), first_mismatch=first_mismatch(plain, ref["generated_ids"]))
        record("encode_adds_bos", with_bos[:1] == [bos] and with_bos[1:] == plain,
               head=with_bos[:4])
        for sample in ["Once upon a time", "Tom and Sue went to the café 🙂 at 3:45."]:
            ids = tok(sample, add_special_tokens=False)["input_ids"]
            record(f"roundtrip:{sample}", tok.decode(ids) == sample, ids=ids)
    except Exception:  # noqa: BLE001 - the verdict file must say what broke
        record("exception", False, traceback=traceback.format_exc())

    result["ok"] = all(c["ok"] for c in checks.values())
    out = os.path.join(args.out, "default_asset_check.json")
    with open(out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2, ensure_ascii=False)
    print(f"{'PASS' if result['ok'] else 'FAIL'}: wrote {out}")
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
