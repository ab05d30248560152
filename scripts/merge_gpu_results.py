#!/usr/bin/env python3
"""Completes bench/results/hypernet-gpu.json after a device run (standard library only).

    python3 scripts/merge_gpu_results.py --results bench/results --sanitizer "clean|..."

Adds the PyTorch reference's tokens/s of the same run (pytorch-hypernet.json, written by
scripts/bench_reference_hypernet.py) to each size, with the ratio zett / PyTorch and the fraction
of the measured bf16 peak, and records the compute-sanitizer verdict. Sizes are matched by name,
case-insensitively. Exits 1 when hypernet-gpu.json is missing.
"""
import argparse
import json
import os
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", default="bench/results")
    ap.add_argument("--sanitizer", default=None,
                    help='"clean", or what failed (e.g. "memcheck: 3 errors")')
    args = ap.parse_args()

    ours_path = os.path.join(args.results, "hypernet-gpu.json")
    if not os.path.isfile(ours_path):
        print(f"merge: {ours_path} is missing (the zett benchmark did not finish)")
        return 1
    with open(ours_path, encoding="utf-8") as f:
        ours = json.load(f)
    torch_path = os.path.join(args.results, "pytorch-hypernet.json")
    theirs = {}
    if os.path.isfile(torch_path):
        with open(torch_path, encoding="utf-8") as f:
            ref = json.load(f)
        theirs = {s["name"].lower(): s for s in ref.get("sizes", [])}
        ours["pytorch"] = {"torch": ref.get("torch"), "batch_size": ref.get("batch_size"),
                           "peak_bf16_tflops": ref.get("peak_bf16_tflops")}
    for size in ours.get("sizes", []):
        t = theirs.get(size["name"].lower())
        if t is not None and t.get("tokens_per_s"):
            size["pytorch_tokens_per_s"] = round(t["tokens_per_s"])
            size["speedup_vs_pytorch"] = round(size["zett_tokens_per_s"] / t["tokens_per_s"], 2)
        elif t is not None:
            size["pytorch_error"] = t.get("error", "no tokens_per_s")
        if size.get("peak_tflops"):
            size["roofline_fraction"] = round(size["useful_tflops"] / size["peak_tflops"], 3)
    if args.sanitizer is not None:
        ours["sanitizer"] = args.sanitizer
    with open(ours_path, "w", encoding="utf-8") as f:
        json.dump(ours, f, indent=2)
        f.write("\n")
    for size in ours.get("sizes", []):
        print(f"{size['name']:<18} zett {size.get('zett_tokens_per_s')} tokens/s, PyTorch "
              f"{size.get('pytorch_tokens_per_s')}, ×{size.get('speedup_vs_pytorch')}, "
              f"{size.get('useful_tflops')} of {size.get('peak_tflops')} TFLOP/s")
    print(f"parity {json.dumps({k: ours.get('parity', {}).get(k) for k in ('fp32_max_rel_err', 'bf16_max_rel_err')})}"
          f", sanitizer {ours.get('sanitizer')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
