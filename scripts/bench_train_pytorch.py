#!/usr/bin/env python3
"""The PyTorch eager anchor of `ZeTT.Bench train-cpu` / `train-gpu`: one main-stage training
step of a hypernetwork (forward, backward, clip and AdamW), timed.

  python3 scripts/bench_train_pytorch.py --lm DIR --hypernet DIR --batch FILE \
      [--device cpu|cuda] [--threads N] [--repeats R] [--warmup W] [--lr LR] \
      [--lexical-weight X] [--out FILE]

DIR (--lm): a Hugging Face Llama directory (config.json, model.safetensors), the frozen LM.
--hypernet: a zett hypernetwork directory (config.json, model.safetensors). --batch: a
safetensors file of I32 surface_forms [R, L], input_ids [B, T], targets [B, T] (-1: none),
mask [R], special_ids, special_ids_in_reference (the format of tests/fixtures/train). ZeTT.Bench
writes all three for its shapes and runs this on them in the same run; any others work too.

The step is scripts/train_step_torch.py's (the math of the golden fixtures) in float32 with the
LM batched (llama_batched), then loss.backward(), the global-norm clip at 0.1 and
torch.optim.AdamW (β 0.9 / 0.95, ε 1e-8, decay 0.01 on the decayed parameters), zero_grad.
The first step's losses are those of the initial weights (what zett's first step reports);
then W - 1 more warm-up steps and R timed steps (cuda: synchronized), their median wall
time and median CPU time (time.process_time: user + system, all threads).
Prints one JSON object (and writes it to --out when given).
"""
import argparse
import json
import os
import statistics
import sys
import time

# Debian's torch calls the system BLAS (OpenBLAS), whose own thread pool ignores
# torch.set_num_threads: give it the same count, before it loads.
if "--threads" in sys.argv:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", sys.argv[sys.argv.index("--threads") + 1])
    os.environ.setdefault("OMP_NUM_THREADS", sys.argv[sys.argv.index("--threads") + 1])
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_step_torch as ts  # noqa: E402


def fail(path, what):
    print(f"error: {path}: {what}", file=sys.stderr)
    sys.exit(2)


def load(args, device):
    lm_config = os.path.join(args.lm, "config.json")
    hn_config = os.path.join(args.hypernet, "config.json")
    for path in (lm_config, os.path.join(args.lm, "model.safetensors"), hn_config,
                 os.path.join(args.hypernet, "model.safetensors"), args.batch):
        if not os.path.isfile(path):
            fail(path, "not found")
    with open(lm_config) as f:
        lm_cfg = json.load(f)
    if lm_cfg.get("model_type") not in ("llama", "mistral") or lm_cfg.get("sliding_window"):
        fail(lm_config, f"model_type {lm_cfg.get('model_type')!r}: Llama without a window only")
    with open(hn_config) as f:
        case = json.load(f)
    lm_w = {k: v.to(device) for k, v in
            ts.read_safetensors(os.path.join(args.lm, "model.safetensors"), torch.float32).items()}
    raw = ts.read_safetensors(os.path.join(args.hypernet, "model.safetensors"), torch.float32)
    params = {k: torch.nn.Parameter(v.to(device)) for k, v in raw.items()
              if k != "model.embeddings.word_embeddings.weight"}   # never read
    b = ts.read_safetensors(args.batch, torch.float32)
    need = ["surface_forms", "input_ids", "targets", "mask", "special_ids",
            "special_ids_in_reference"]
    missing = [k for k in need if k not in b]
    if missing:
        fail(args.batch, "missing " + ", ".join(missing))
    batch = tuple(b[k].to(device) for k in need)
    sf, ids, targets, mask = batch[:4]
    if sf.shape[1] != case["hn_surface_maxlen"] or mask.shape[0] != sf.shape[0] \
            or ids.shape != targets.shape or ids.dim() != 2:
        fail(args.batch, f"shapes surface_forms {list(sf.shape)}, input_ids {list(ids.shape)}, "
             f"targets {list(targets.shape)}, mask {list(mask.shape)} do not fit L "
             f"{case['hn_surface_maxlen']}")
    batch = (sf, ids, targets, mask.bool(), batch[4], batch[5])
    return lm_cfg, lm_w, case, params, batch


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lm", required=True)
    ap.add_argument("--hypernet", required=True)
    ap.add_argument("--batch", required=True)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--lexical-weight", type=float, default=0.5)
    ap.add_argument("--out")
    args = ap.parse_args()
    if args.repeats < 1 or args.warmup < 1:
        fail("--repeats/--warmup", "at least 1 each (the first step gives the losses)")
    if args.device == "cuda" and not torch.cuda.is_available():
        fail("--device cuda", "torch sees no CUDA device")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    lm_cfg, lm_w, case, params, batch = load(args, device)
    opt = ts.optimizer(params, args.lr)
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    first = None

    def one():
        nonlocal first
        loss, lm_loss, lex = ts.step("llama", case, lm_cfg, lm_w, params, batch,
                                     args.lexical_weight, batched=True)
        loss.backward()
        norm = ts.update(params, opt)
        if first is None:
            first = {"loss": loss.item(), "lm_loss": lm_loss.item(),
                     "lexical_loss": float(lex), "grad_norm": float(norm)}

    for _ in range(args.warmup):
        one()
    times, cpu = [], []
    for _ in range(args.repeats):
        sync()
        start, cpu0 = time.perf_counter(), time.process_time()
        one()
        sync()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - cpu0)
    s = statistics.median(times)
    sf, ids, targets = batch[0], batch[1], batch[2]
    tokens = ids.numel()
    predicted = int((targets >= 0).sum())
    result = {
        "impl": "pytorch eager (scripts/train_step_torch.py, float32)",
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "rows": int(sf.shape[0]),
        "batch": int(ids.shape[0]),
        "tokens": int(ids.shape[1]),
        "repeats": args.repeats,
        "step_seconds": [round(t, 5) for t in times],
        "median_ms": round(1000 * s, 2),
        "median_cpu_seconds": round(statistics.median(cpu), 4),
        "tokens_per_second": round(tokens / s, 1),
        "target_tokens_per_second": round(predicted / s, 1),
        "first_step": first,
        "peak_memory_bytes": torch.cuda.max_memory_allocated() if args.device == "cuda" else None,
    }
    text = json.dumps(result, indent=2)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
