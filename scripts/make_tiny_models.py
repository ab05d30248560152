#!/usr/bin/env python3
"""Make tiny random Hugging Face models of every family ZeTT transfers, with real tokenizers.

Runs on the GPU machine (python3 with torch, transformers, tokenizers; no hub, no internet):

  python3 scripts/make_tiny_models.py --out DIR [--tokenizers tests/data/tokenizers]
      [--families llama,mistral,gpt2,gpt_neox,xlm-roberta] [--seed 0]

Each family gets DIR/<family>/ written by save_pretrained (safetensors): config.json,
model.safetensors, tokenizer files. Models have hidden size 64 and 2 layers; their vocabulary
size equals the length of the real tokenizer they ship with, read from local tokenizer.json
files (first found of --tokenizers, tests/data/tokenizers, ../shared/data/tokenizers):

  family        model class                 tokenizer          embeddings
  llama         LlamaForCausalLM            llama2-tinyllama   untied (lm_head)
  mistral       MistralForCausalLM          mistral-7b-v0.1    untied (lm_head)
  gpt2          GPT2LMHeadModel             gpt2               tied
  gpt_neox      GPTNeoXForCausalLM          gpt-neox-20b       untied (embed_out)
  xlm-roberta   XLMRobertaForMaskedLM       roberta-base       tied, random lm_head.bias

Tokenizers are wrapped as generic fast tokenizers (tokenizer.json kept as is) with the
family's special tokens, so that AutoTokenizer reloads exactly that tokenizer.json.
DIR/manifest.json (or --manifest) lists what was made.
"""

import argparse
import inspect
import json
import os
import sys

FAMILIES = {
    "llama": dict(tokenizer="llama2-tinyllama", kind="causal",
                  special=dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>")),
    "mistral": dict(tokenizer="mistral-7b-v0.1", kind="causal",
                    special=dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>")),
    "gpt2": dict(tokenizer="gpt2", kind="causal",
                 special=dict(bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                              unk_token="<|endoftext|>")),
    # pad := <|padding|> (id 1): the reference's PyTorch hypernetwork sizes RoBERTa's word
    # embeddings as pad_token_id + 1 rows while RoBERTa's own padding_idx stays 1, so a
    # hypernetwork whose pad id is 0 (eos <|endoftext|>) cannot be built by it.
    "gpt_neox": dict(tokenizer="gpt-neox-20b", kind="causal",
                     special=dict(bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                  unk_token="<|endoftext|>", pad_token="<|padding|>")),
    "xlm-roberta": dict(tokenizer="roberta-base", kind="masked",
                        special=dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                     sep_token="</s>", cls_token="<s>", pad_token="<pad>",
                                     mask_token="<mask>")),
}

HIDDEN, LAYERS, HEADS, INTERMEDIATE, POSITIONS = 64, 2, 4, 128, 256


def find_tokenizer_dir(name, roots):
    for root in roots:
        path = os.path.join(root, name)
        if os.path.isfile(os.path.join(path, "tokenizer.json")):
            return path
    raise SystemExit(f"no {name}/tokenizer.json under any of {roots}")


def load_tokenizer(path, special):
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer.from_file(os.path.join(path, "tokenizer.json"))
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, clean_up_tokenization_spaces=False,
                                  **special)
    for key, token in special.items():
        if tok.convert_tokens_to_ids(token) is None or token not in backend.get_vocab():
            raise SystemExit(f"{path}: special token {key}={token!r} is not in the vocabulary")
    return tok


def make_config(family, tok):
    import transformers as tf

    v = len(tok)
    ids = {k: tok.convert_tokens_to_ids(getattr(tok, k))
           for k in ("bos_token", "eos_token", "pad_token") if getattr(tok, k) is not None}
    common = dict(vocab_size=v, bos_token_id=ids["bos_token"], eos_token_id=ids["eos_token"])
    if family == "llama":
        return tf.LlamaConfig(hidden_size=HIDDEN, intermediate_size=INTERMEDIATE,
                              num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                              num_key_value_heads=2, max_position_embeddings=POSITIONS,
                              tie_word_embeddings=False, **common)
    if family == "mistral":
        return tf.MistralConfig(hidden_size=HIDDEN, intermediate_size=INTERMEDIATE,
                                num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                                num_key_value_heads=2, max_position_embeddings=POSITIONS,
                                tie_word_embeddings=False, **common)
    if family == "gpt2":
        return tf.GPT2Config(n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS, n_positions=POSITIONS,
                             n_inner=INTERMEDIATE, tie_word_embeddings=True, **common)
    if family == "gpt_neox":
        return tf.GPTNeoXConfig(hidden_size=HIDDEN, intermediate_size=INTERMEDIATE,
                                num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                                max_position_embeddings=POSITIONS, tie_word_embeddings=False,
                                **common)
    if family == "xlm-roberta":
        return tf.XLMRobertaConfig(hidden_size=HIDDEN, intermediate_size=INTERMEDIATE,
                                   num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                                   max_position_embeddings=POSITIONS + 2, type_vocab_size=1,
                                   pad_token_id=ids["pad_token"], tie_word_embeddings=True,
                                   **common)
    raise SystemExit(f"unknown family {family}")


def make_model(family, config, torch):
    import transformers as tf

    cls = {"llama": tf.LlamaForCausalLM, "mistral": tf.MistralForCausalLM,
           "gpt2": tf.GPT2LMHeadModel, "gpt_neox": tf.GPTNeoXForCausalLM,
           "xlm-roberta": tf.XLMRobertaForMaskedLM}[family]
    model = cls(config).float().eval()
    with torch.no_grad():
        if family == "xlm-roberta":
            # A bias that is not all zeros, so a transfer that drops or misplaces it shows.
            model.lm_head.bias.normal_(0.0, 0.5)
        for module in model.modules():
            # Non-trivial norms too (default init is exactly 1 / 0).
            if isinstance(module, torch.nn.LayerNorm) or type(module).__name__.endswith("RMSNorm"):
                module.weight.add_(torch.randn_like(module.weight) * 0.1)
    return model


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.dirname(here)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--tokenizers", default=None,
                    help="folder with <name>/tokenizer.json (searched before tests/data/"
                         "tokenizers and ../shared/data/tokenizers)")
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--manifest", default="manifest.json",
                    help="file name of the manifest in --out (one per parallel run)")
    args = ap.parse_args()

    import torch
    import transformers

    roots = [r for r in [args.tokenizers, os.path.join(repo, "tests", "data", "tokenizers"),
                         os.path.join(repo, "..", "shared", "data", "tokenizers")] if r]
    manifest = {"transformers": transformers.__version__, "torch": torch.__version__,
                "seed": args.seed, "models": {}}
    for family in args.families.split(","):
        spec = FAMILIES[family]
        tok_dir = find_tokenizer_dir(spec["tokenizer"], roots)
        tok = load_tokenizer(tok_dir, spec["special"])
        torch.manual_seed(args.seed)
        config = make_config(family, tok)
        model = make_model(family, config, torch)
        out = os.path.join(args.out, family)
        os.makedirs(out, exist_ok=True)
        save_kwargs = {}
        if "safe_serialization" in inspect.signature(model.save_pretrained).parameters:
            save_kwargs["safe_serialization"] = True
        model.save_pretrained(out, **save_kwargs)
        tok.save_pretrained(out)
        if not os.path.isfile(os.path.join(out, "model.safetensors")):
            raise SystemExit(f"{out}: save_pretrained wrote no model.safetensors")

        # Reload as a user would, and run one forward pass.
        from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer
        auto = AutoModelForMaskedLM if spec["kind"] == "masked" else AutoModelForCausalLM
        back = auto.from_pretrained(out).eval()
        back_tok = AutoTokenizer.from_pretrained(out)
        enc = back_tok("Hello world, this is a test.", return_tensors="pt")
        with torch.no_grad():
            logits = back(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
        if logits.shape[-1] != config.vocab_size or not torch.isfinite(logits).all():
            raise SystemExit(f"{out}: forward pass gave logits {tuple(logits.shape)}")
        untied = back.get_output_embeddings().weight.data_ptr() != \
            back.get_input_embeddings().weight.data_ptr()
        manifest["models"][family] = {
            "dir": out, "kind": spec["kind"], "class": type(back).__name__,
            "tokenizer_source": tok_dir, "vocab_size": config.vocab_size,
            "tokenizer_length": len(back_tok), "hidden_size": HIDDEN, "layers": LAYERS,
            "untied": untied, "special_tokens": back_tok.all_special_tokens,
            "special_ids": back_tok.all_special_ids,
        }
        print(f"{family}: {out} ({type(back).__name__}, vocab {config.vocab_size}, "
              f"{'untied' if untied else 'tied'})")
    with open(os.path.join(args.out, args.manifest), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
