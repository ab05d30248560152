#!/usr/bin/env python3
"""The PyTorch anchor of the lm benchmarks (bench/ZeTT.Bench/LmBench.cs runs it in the same run).

  python3 scripts/bench_lm_pytorch.py --model DIR --device cpu|cuda --impl plain|transformers \
      [--threads N] [--batch B] [--tokens T] [--new-tokens N] [--repeats R]

DIR is a Hugging Face Llama / Mistral directory (config.json, model.safetensors or shards).
Prints one JSON object on stdout: eval and generation tokens/s (medians of --repeats after a
warm-up), the eval's mean loss and the greedy ids, which LmBench compares with its own.

* eval: B sequences of T tokens, ids 3 + (i * 7919 mod (vocab - 3)) over the flat position i
  (the same formula as LmBench.Ids); logits of every position and the mean cross-entropy
  against the next token (the last position of each sequence predicts nothing).
* generation: greedy from the BOS token (id 1), N new tokens, one forward pass per token over
  a KV cache.

--impl plain (CPU, needs only torch: Debian's python3-torch 1.13 is enough): the Llama written
out below in eager PyTorch, fp32, attention as transformers' eager path computes it (q·kᵀ, a
causal mask, softmax, ·v), the cache preallocated, torch.set_num_threads(--threads).
--impl transformers (the GPU machine): AutoModelForCausalLM with attn_implementation="sdpa" in
bfloat16; eval is model(ids, labels=ids), generation model.generate(do_sample=False,
min_new_tokens=N, max_new_tokens=N).
"""

import argparse
import json
import math
import mmap
import os
import statistics
import struct
import sys
import time

import numpy as np

# Debian's torch calls the system BLAS (OpenBLAS), whose own thread pool ignores
# torch.set_num_threads: give it the same count, before it loads.
if "--threads" in sys.argv:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", sys.argv[sys.argv.index("--threads") + 1])
    os.environ.setdefault("OMP_NUM_THREADS", sys.argv[sys.argv.index("--threads") + 1])
import torch  # noqa: E402


def ids_for(count, vocab):
    i = np.arange(count, dtype=np.int64)
    return 3 + (i * 7919) % (vocab - 3)


# ---- safetensors without the safetensors package --------------------------------------------

def read_safetensors(directory):
    """name -> fp32 torch tensor (bf16 / fp16 widened exactly)."""
    index = os.path.join(directory, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    out = {}
    for name in files:
        with open(os.path.join(directory, name), "rb") as f:
            data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        (n,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8:8 + n])
        base = 8 + n
        for key, e in header.items():
            if key == "__metadata__":
                continue
            lo, hi = e["data_offsets"]
            raw = np.frombuffer(data, dtype=np.uint8, count=hi - lo, offset=base + lo)
            if e["dtype"] == "F32":
                a = raw.view(np.float32)
            elif e["dtype"] == "BF16":
                a = (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
            elif e["dtype"] == "F16":
                a = raw.view(np.float16).astype(np.float32)
            else:
                raise ValueError(f"{name}: tensor {key} is {e['dtype']}")
            out[key] = torch.from_numpy(a.reshape(e["shape"]).copy())
    return out


# ---- the plain eager Llama --------------------------------------------------------------------

class PlainLlama:
    def __init__(self, directory):
        with open(os.path.join(directory, "config.json")) as f:
            c = json.load(f)
        self.c = c
        self.w = read_safetensors(directory)
        self.d = c["hidden_size"]
        self.hq = c["num_attention_heads"]
        self.hkv = c.get("num_key_value_heads", self.hq)
        self.dh = c.get("head_dim", self.d // self.hq)
        self.eps = c["rms_norm_eps"]
        self.layers = c["num_hidden_layers"]
        self.vocab = c["vocab_size"]
        self.window = (c.get("sliding_window") or 0) if c["model_type"] == "mistral" else 0
        head = "lm_head.weight"
        self.head = self.w["model.embed_tokens.weight"] if c.get("tie_word_embeddings") \
            or head not in self.w else self.w[head]
        theta = c.get("rope_theta", 10000.0)
        # As transformers: inv_freq and the angles in fp32.
        self.inv_freq = 1.0 / (theta ** (torch.arange(0, self.dh, 2, dtype=torch.float32)
                                         / self.dh))
        self.scale = 1.0 / math.sqrt(self.dh)

    def rms(self, x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * w

    def rotary(self, x, pos):
        """x [B, H, T, Dh], half-split (rotate_half)."""
        ang = pos[:, None].float() * self.inv_freq[None, :]
        emb = torch.cat([ang, ang], dim=-1)
        cos, sin = emb.cos(), emb.sin()
        half = self.dh // 2
        rot = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return x * cos + rot * sin

    def new_cache(self, batch, capacity):
        shape = (batch, self.hkv, capacity, self.dh)
        return [(torch.zeros(shape), torch.zeros(shape)) for _ in range(self.layers)]

    def forward(self, ids, cache=None, start=0):
        """ids [B, T] -> logits [B, T, V]."""
        b, t = ids.shape
        total = start + t
        x = self.w["model.embed_tokens.weight"][ids]
        pos = torch.arange(start, total)
        mask = None
        if t > 1:
            i = torch.arange(start, total)[:, None]
            j = torch.arange(total)[None, :]
            visible = j <= i
            if self.window:
                visible &= (i - j) < self.window
            mask = torch.zeros(t, total).masked_fill(~visible, float("-inf"))
        group = self.hq // self.hkv
        for layer in range(self.layers):
            p = f"model.layers.{layer}."
            w = lambda n: self.w[p + n]
            h = self.rms(x, w("input_layernorm.weight"))
            q = (h @ w("self_attn.q_proj.weight").T).view(b, t, self.hq, self.dh).transpose(1, 2)
            k = (h @ w("self_attn.k_proj.weight").T).view(b, t, self.hkv, self.dh).transpose(1, 2)
            v = (h @ w("self_attn.v_proj.weight").T).view(b, t, self.hkv, self.dh).transpose(1, 2)
            q, k = self.rotary(q, pos), self.rotary(k, pos)
            if cache is not None:
                kc, vc = cache[layer]
                kc[:, :, start:total] = k
                vc[:, :, start:total] = v
                k, v = kc[:, :, :total], vc[:, :, :total]
            if group > 1:
                k = k.repeat_interleave(group, dim=1)
                v = v.repeat_interleave(group, dim=1)
            s = (q @ k.transpose(-1, -2)) * self.scale
            if mask is not None:
                s = s + mask
            a = (torch.softmax(s, dim=-1) @ v).transpose(1, 2).reshape(b, t, self.hq * self.dh)
            x = x + a @ w("self_attn.o_proj.weight").T
            h = self.rms(x, w("post_attention_layernorm.weight"))
            g = torch.nn.functional.silu(h @ w("mlp.gate_proj.weight").T)
            x = x + (g * (h @ w("mlp.up_proj.weight").T)) @ w("mlp.down_proj.weight").T
        x = self.rms(x, self.w["model.norm.weight"])
        return x @ self.head.T

    def eval_loss(self, ids):
        logits = self.forward(ids)
        v = logits.shape[-1]
        return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, v),
                                                 ids[:, 1:].reshape(-1)).item()

    def generate(self, new_tokens):
        cache = self.new_cache(1, 1 + new_tokens)
        out, token, start = [], torch.tensor([[1]]), 0
        for _ in range(new_tokens):
            logits = self.forward(token, cache, start)
            start += token.shape[1]
            nxt = int(torch.argmax(logits[0, -1]))
            out.append(nxt)
            token = torch.tensor([[nxt]])
        return out


class TransformersLlama:
    def __init__(self, directory, device):
        import transformers
        from transformers import AutoModelForCausalLM
        self.device = device
        # transformers 5 renamed torch_dtype to dtype (an unknown keyword would silently become
        # a config attribute, leaving the model in fp32).
        major = int(transformers.__version__.split(".")[0])
        kw = {"dtype": torch.bfloat16} if major >= 5 else {"torch_dtype": torch.bfloat16}
        self.m = AutoModelForCausalLM.from_pretrained(
            directory, attn_implementation="sdpa", **kw).to(device).eval()
        assert next(self.m.parameters()).dtype == torch.bfloat16
        self.vocab = self.m.config.vocab_size

    def eval_loss(self, ids):
        return self.m(input_ids=ids, labels=ids).loss.item()

    def generate(self, new_tokens):
        ids = torch.tensor([[1]], device=self.device)
        out = self.m.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                              max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                              pad_token_id=0)
        return out[0, 1:].tolist()


def median_seconds(fn, repeats, sync):
    fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--impl", default="plain", choices=["plain", "transformers"])
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.impl == "plain" and a.device != "cpu":
        sys.exit("--impl plain runs on the cpu")
    model = PlainLlama(a.model) if a.impl == "plain" else TransformersLlama(a.model, a.device)
    sync = torch.cuda.synchronize if a.device == "cuda" else (lambda: None)
    ids = torch.from_numpy(ids_for(a.batch * a.tokens, model.vocab)).view(a.batch, a.tokens)
    ids = ids.to(a.device)
    result = {}
    with torch.inference_mode():
        loss = []
        seconds = median_seconds(lambda: loss.append(model.eval_loss(ids)), a.repeats, sync)
        generated = []
        gen = median_seconds(lambda: generated.append(model.generate(a.new_tokens)),
                             a.repeats, sync)
    result = {
        "impl": a.impl,
        "device": a.device,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "eval_seconds": round(seconds, 4),
        "eval_tokens_per_second": round(a.batch * a.tokens / seconds, 1),
        "eval_mean_loss": loss[-1],
        "generate_seconds": round(gen, 4),
        "generate_tokens_per_second": round(a.new_tokens / gen, 1),
        "generated_ids": generated[-1],
    }
    if a.impl == "transformers":
        import transformers
        result["transformers"] = transformers.__version__
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
