#!/usr/bin/env python3
"""PyTorch (CPU) anchor for the hypernet-cpu benchmark: the padded hypernetwork forward at
xlm-roberta-base size, written with torch.nn.functional, computing what our CPU backend computes
when it does not skip padding (every surface-form position through the input projection,
projector block and encoder layers; in the last layer only position 0 queries, as ours), so both
execute the same FLOPs. Random weights (speed only, no parity), fp32, batches of 512 rows,
torch.set_num_threads(--threads). Prints one JSON object: tokens/s and GFLOP/s per repeat and
their medians.

Called by `ZeTT.Bench hypernet-cpu` when python3 with torch is installed (Debian:
apt-get install python3-torch); CI never runs it.

    python3 scripts/bench_cpu_pytorch_hypernet.py --ids ids.bin --rows 1024 --threads 2
"""
import argparse
import json
import math
import statistics
import sys
import time

import torch
import torch.nn.functional as F

D, H, I, HEADS, LAYERS, L, N_EMBD, VOCAB, PAD = 768, 768, 1536, 12, 3, 7, 768, 20000, 1


def row_flops(h, i, d, layers, positions, extra, n_out):
    """Multiply-adds of the padded forward, counted as bench/ZeTT.Bench/HypernetCpuBench does."""
    s, l = positions + extra, positions
    block = 2 * (2 * h * i)
    flops = l * (2 * d * h + block)
    for layer in range(layers):
        q = 1 if layer == layers - 1 else s
        flops += s * 2 * h * 2 * h + q * (2 * h * h * 2 + 2 * 2 * h * i) + q * s * 4 * h
    return flops + block + 2 * h * n_out + 2 * h


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ids", help="int32 [rows, L] surface forms (raw little-endian); random if absent")
    ap.add_argument("--rows", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)

    def lin(o, i_):
        return (torch.randn(o, i_, generator=g) * (1 / math.sqrt(i_)), torch.randn(o, generator=g) * 0.02)

    def ln():
        return (1 + 0.1 * torch.randn(H, generator=g), 0.1 * torch.randn(H, generator=g))

    table = torch.randn(VOCAB + 200, D, generator=g)
    w_in = lin(H, D)
    blocks = {name: (lin(I, H), lin(H, I), ln()) for name in ("input", "output")}
    pos = torch.randn(L + 1, H, generator=g) * 0.02
    type0 = torch.randn(H, generator=g) * 0.02
    lang = torch.randn(H, generator=g) * 0.02
    emb_ln = ln()
    layers = [dict(q=lin(H, H), kv=lin(2 * H, H), o=lin(H, H), ln1=ln(), i=lin(I, H), out=lin(H, I), ln2=ln())
              for _ in range(LAYERS)]
    w_out, w_bias = lin(N_EMBD, H), lin(1, H)

    if args.ids:
        ids = torch.frombuffer(bytearray(open(args.ids, "rb").read()), dtype=torch.int32).view(-1, L)
        rows = ids.shape[0]
    else:
        rows = args.rows
        ids = torch.randint(2, VOCAB, (rows, L), dtype=torch.int32)
    ids = ids.long()

    def block(x, p):
        (w1, b1), (w2, b2), (gam, bet) = p
        y = F.gelu(F.linear(x, w1, b1), approximate="tanh")
        y = F.gelu(F.linear(y, w2, b2), approximate="tanh")
        return F.layer_norm(y + x, (H,), gam, bet, 1e-6)

    def attention(q, k, v, mask_add):
        b, sq, s = q.shape[0], q.shape[1], k.shape[1]
        dh = H // HEADS
        q = q.view(b, sq, HEADS, dh).transpose(1, 2)
        k = k.view(b, s, HEADS, dh).transpose(1, 2)
        v = v.view(b, s, HEADS, dh).transpose(1, 2)
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(dh) + mask_add[:, None, None, :]
        ctx = torch.matmul(torch.softmax(scores, dim=-1), v)
        return ctx.transpose(1, 2).reshape(b, sq, H)

    def forward(batch_ids):
        b = batch_ids.shape[0]
        x = F.embedding(batch_ids, table)
        x = block(F.linear(x, *w_in), blocks["input"])
        x = x + type0 + pos[:L]
        hidden = torch.cat([x, (lang + type0 + pos[L]).expand(b, 1, H)], dim=1)
        hidden = F.layer_norm(hidden, (H,), *emb_ln, 1e-5)
        mask = torch.cat([batch_ids != PAD, torch.ones(b, 1, dtype=torch.bool)], dim=1)
        mask_add = torch.zeros(mask.shape).masked_fill(~mask, torch.finfo(torch.float32).min)
        att = hidden
        for li, p in enumerate(layers):
            last = li == LAYERS - 1
            att = hidden[:, :1] if last else hidden
            q = F.linear(att, *p["q"])
            k, v = F.linear(hidden, *p["kv"]).split(H, dim=-1)
            att = F.layer_norm(F.linear(attention(q, k, v, mask_add), *p["o"]) + att, (H,), *p["ln1"], 1e-5)
            ff = F.linear(F.gelu(F.linear(att, *p["i"])), *p["out"])
            att = F.layer_norm(ff + att, (H,), *p["ln2"], 1e-5)
            hidden = att
        pooled = att[:, 0]
        e_in = F.linear(block(pooled, blocks["output"]), *w_out)
        bias = F.linear(pooled, *w_bias)
        return e_in, bias

    flops = rows * row_flops(H, I, D, LAYERS, L, 1, N_EMBD)
    times = []
    with torch.inference_mode():
        for r in range(args.repeats + 1):
            start = time.perf_counter()
            for b0 in range(0, rows, args.batch):
                forward(ids[b0:b0 + args.batch])
            if r > 0:  # the first run warms up
                times.append(time.perf_counter() - start)
    med = statistics.median(times)
    json.dump({
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "blas": "see torch.__config__.show()",
        "rows": rows,
        "mflop_per_token": round(flops / rows / 1e6, 2),
        "seconds": times,
        "median_seconds": med,
        "tokens_per_second": round(rows / med, 1),
        "gflops": round(flops / med / 1e9, 2),
    }, sys.stdout)
    print()


if __name__ == "__main__":
    main()
