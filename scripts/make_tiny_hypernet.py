#!/usr/bin/env python3
"""Make a tiny random ZeTT hypernetwork for a given model with the reference's own classes.

Runs on the GPU machine (python3 with torch, transformers, tokenizers; no hub, no internet):

  python3 scripts/make_tiny_hypernet.py --ref .ref/zett --model DIR --out DIR [--seed 0]

Uses the reference checkout (git-ignored .ref/zett): hf_hypernet.ZettHypernet (PyTorch) and
zett.tokenizer_converters.convert_to_byte_level. Mirrors the reference training script's setup:
the hypernetwork's tokenizer is the model's tokenizer (pad := eos when it has none) converted to
byte level; `hn_n_extra_tokens` is the number of tokens that conversion appended;
`original_vocab_size` is the model's embedding row count; `separate_out_embeddings` is set for
untied models. The inner RoBERTa encoder's configuration would be fetched from the hub
(`roberta-base`); here it is the roberta-base configuration written out by hand
(RobertaConfig.from_pretrained is patched), resized by the hn_* keys.

Sizes: hn_hidden_size 64, hn_intermediate_size 128, hn_n_layers 1, hn_surface_maxlen 7,
2 attention heads, rescaling and bias prediction on, embedding through the source embeddings.
Every parameter is drawn at random (seeded), including the rescalers and LayerNorms, so that
no term of the computation is an identity.

Writes DIR/config.json (model_type zett_hypernetwork), DIR/model.safetensors (PyTorch state-dict
names, F32) and the converted hn tokenizer (tokenizer.json etc.), as the reference saves it.
"""

import argparse
import copy
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_env import ROBERTA_BASE, import_reference, patch_roberta_config  # noqa: E402,F401


def randomize(module, torch, seed):
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith(("ln.weight", "LayerNorm.weight")) or name.endswith((".w",)):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif name.endswith(".b"):
                p.copy_(0.1 * torch.randn_like(p))
            else:
                p.copy_(0.05 * torch.randn_like(p))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ref", default=".ref/zett", help="reference checkout")
    ap.add_argument("--model", required=True, help="Hugging Face model directory")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--intermediate", type=int, default=128)
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--maxlen", type=int, default=7)
    args = ap.parse_args()

    ref, standins = import_reference(args.ref)
    import torch
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoTokenizer

    patch_roberta_config()
    model_config = AutoConfig.from_pretrained(args.model)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    hn_tokenizer, n_extra = ref.converters.convert_to_byte_level(copy.deepcopy(tokenizer))
    if hn_tokenizer.pad_token is None:
        hn_tokenizer.pad_token = hn_tokenizer.eos_token

    tied = bool(getattr(model_config, "tie_word_embeddings", True))
    config = ref.Config(
        hn_model_name_or_path="roberta-base",
        hn_surface_maxlen=args.maxlen,
        hn_n_layers=args.layers,
        n_embd=model_config.hidden_size,
        hn_hidden_size=args.hidden,
        hn_intermediate_size=args.intermediate,
        hn_num_attention_heads=args.heads,
        hn_rescale_embeddings=True,
        hn_predict_bias=True,
        hn_embed_using_source_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
    )
    config.original_vocab_size = model_config.vocab_size
    config.hn_n_extra_tokens = n_extra
    config.separate_out_embeddings = not tied
    config.pad_token_id = tokenizer.pad_token_id

    hypernet = ref.Hypernet(config).float().eval()
    randomize(hypernet, torch, args.seed)

    os.makedirs(args.out, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in hypernet.state_dict().items()}
    save_file(state, os.path.join(args.out, "model.safetensors"), metadata={"format": "pt"})
    data = config.to_dict()
    data["model_type"] = "zett_hypernetwork"
    data["architectures"] = ["ZettHypernet"]
    for key in ("original_vocab_size", "hn_n_extra_tokens", "separate_out_embeddings",
                "pad_token_id", "n_embd", "hn_hidden_size", "hn_intermediate_size",
                "hn_n_layers", "hn_surface_maxlen", "hn_num_attention_heads"):
        data[key] = getattr(config, key)
    data = json.loads(json.dumps(data, default=str))
    with open(os.path.join(args.out, "config.json"), "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True)
    hn_tokenizer.save_pretrained(args.out)

    summary = {
        "out": args.out, "model": args.model, "reference_standins": standins,
        "parameters": sum(v.numel() for v in state.values()), "tensors": len(state),
        "hn_n_extra_tokens": n_extra, "original_vocab_size": model_config.vocab_size,
        "hn_tokenizer_length": len(hn_tokenizer), "pad_token_id": tokenizer.pad_token_id,
        "separate_out_embeddings": not tied, "n_embd": model_config.hidden_size,
    }
    with open(os.path.join(args.out, "make_tiny_hypernet.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
