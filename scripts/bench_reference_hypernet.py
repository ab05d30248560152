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
import sys
import time

SIZES = [
    # name, n_embd, H, I, heads, untied
    ("xlm-roberta-base", 768, 768, 1536, 12, False),
    ("tinyllama-1.1b", 2048, 2048, 4096, 32, False),
    ("mistral-7b", 4096, 4096, 8192, 32, True),
]


def roberta_base_config(transformers):
    # roberta-base's settings by hand: there is no hub on the GPU machine.
    return transformers.RobertaConfig(
        vocab_size=50265, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
        intermediate_size=3072, hidden_act="gelu", hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1, max_position_embeddings=514, type_vocab_size=1,
        initializer_range=0.02, layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=0,
        eos_token_id=2)


def load_reference(ref):
    import transformers
    sys.path.insert(0, ref)
    base = roberta_base_config(transformers)
    original = transformers.RobertaConfig.from_pretrained

    def from_pretrained(name, *args, **kwargs):
        if name == "roberta-base":
            return transformers.RobertaConfig(**base.to_dict())
        return original(name, *args, **kwargs)

    transformers.RobertaConfig.from_pretrained = from_pretrained
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
