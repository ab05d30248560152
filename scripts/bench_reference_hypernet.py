#!/usr/bin/env python3
"""Benchmark the PyTorch port of the reference hypernetwork on the GPU machine.

Runs the reference's own ZettHypernet class (from the git-ignored checkout given by --ref; never
committed) with random weights at the sizes of the released hypernetworks, in bf16 on CUDA, over
real surface forms (the file `zett surface-forms` writes: tensor `surface_forms` I32 [V, L]),
batch 16384 as the reference's transfer uses. Writes pytorch-hypernet.json to --out with tokens/s
per size and the bf16 matmul peak measured in the same process.

    python3 scripts/bench_reference_hypernet.py --ref .ref/zett \
        --surface-forms bench/results/surface-forms-mistral-gpt2.safetensors --out bench/results
"""
import argparse
import json
import os
import sys
import time

SIZES = [
    # name, n_embd, H, I, heads, untied
    ("xlm-roberta-base", 768, 768, 1536, 12, False),
    ("tinyllama-1.1b", 2048, 2048, 4096, 32, False),
    ("mistral-7b", 4096, 4096, 8192, 32, True),
]


def load_reference(ref):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from reference_env import patch_roberta_config
    sys.path.insert(0, os.path.abspath(ref))
    patch_roberta_config(None)  # transformers' default attention (SDPA), as users run it
    from hf_hypernet.configuration_hypernet import ZettHypernetConfig
    from hf_hypernet.modeling_hypernet import ZettHypernet
    return ZettHypernetConfig, ZettHypernet


def peak_bf16_tflops(torch):
    n = 8192
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(10):
        a @ b
    torch.cuda.synchronize()
    return 2 * n ** 3 * 10 / (time.perf_counter() - start) / 1e12


def useful_flops_per_token(n_embd, h, i, untied, seq, layers=3):
    d_in = 2 * n_embd if untied else n_embd
    per_pos = 2 * (d_in * h + 2 * h * i)            # input projection + projector block
    per_pos += layers * 2 * (4 * h * h + 2 * h * i)  # encoder GEMMs
    per_pos += layers * 2 * 2 * seq * h              # attention scores + weighted sum
    heads = 2 * (2 * h * i + h * n_embd) * (2 if untied else 1) + 2 * h
    return seq * per_pos + heads


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--ref", required=True)
    p.add_argument("--surface-forms", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--batch-size", type=int, default=16384)
    p.add_argument("--original-vocab-size", type=int, default=32000,
                   help="hn tokenizer ids below this index the source embeddings (Mistral: 32000)")
    p.add_argument("--pad-id", type=int, default=2, help="hn pad id (Mistral: eos = 2)")
    args = p.parse_args()

    import torch
    from safetensors.torch import load_file

    sf = load_file(args.surface_forms)["surface_forms"].long().cuda()
    vocab, maxlen = sf.shape
    ZettHypernetConfig, ZettHypernet = load_reference(args.ref)
    result = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
              "surface_forms": args.surface_forms, "vocab": vocab, "maxlen": maxlen,
              "batch_size": args.batch_size, "peak_bf16_tflops": peak_bf16_tflops(torch),
              "sizes": []}
    original_vocab = args.original_vocab_size
    for name, n_embd, h, i, heads, untied in SIZES:
        entry = {"name": name, "hidden": h, "intermediate": i, "heads": heads}
        try:
            config = ZettHypernetConfig(
                hn_surface_maxlen=maxlen, hn_n_layers=3, n_embd=n_embd, hn_hidden_size=h,
                hn_intermediate_size=i, hn_num_attention_heads=heads,
                hn_rescale_embeddings=True, hn_predict_bias=True,
                hn_embed_using_source_embeddings=True)
            config.original_vocab_size = original_vocab
            config.pad_token_id = args.pad_id
            config.hn_n_extra_tokens = 522
            config.separate_out_embeddings = untied
            model = ZettHypernet(config).to("cuda", torch.bfloat16).eval()
            d_in = 2 * n_embd if untied else n_embd
            source = torch.randn(original_vocab, d_in, device="cuda", dtype=torch.bfloat16)
            with torch.inference_mode():
                model(sf[: args.batch_size], source_embeddings=source)
                torch.cuda.synchronize()
                start = time.perf_counter()
                for b in range(0, vocab, args.batch_size):
                    model(sf[b: b + args.batch_size], source_embeddings=source)
                torch.cuda.synchronize()
            seconds = time.perf_counter() - start
            flops = useful_flops_per_token(n_embd, h, i, untied, maxlen) * vocab
            entry.update(tokens_per_s=vocab / seconds, seconds=seconds,
                         useful_tflops=flops / seconds / 1e12)
            del model, source
            torch.cuda.empty_cache()
        except Exception as e:  # recorded in the result, the other sizes still run
            entry["error"] = f"{type(e).__name__}: {e}"
        result["sizes"].append(entry)
        print(json.dumps(entry), flush=True)
    with open(f"{args.out}/pytorch-hypernet.json", "w") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
