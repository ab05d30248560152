#!/usr/bin/env python3
"""Golden fixtures for tokenizer conversion and surface forms, made by the reference's own code.

Runs the reference's ``convert_to_byte_level`` (zett/tokenizer_converters.py) and
``get_surface_form_matrix`` (zett/utils.py) on the real tokenizers carried in tests/data and
writes compact outputs that tests/ZeTT.Runtime.Tests/Tokenizers/GoldenTokenizerTests.cs compares
id for id:

  originals.json                   len, all_special_tokens/ids, pad/eos ids of each original
  converted/<label>.json           converted vocabulary (tokens in id order), merges or scores,
                                   len, special tokens, n_added (hn) of each converted tokenizer
  surface_forms/<hn>__<target>.safetensors   tensor "surface_forms" I32 [V, maxlen],
                                   metadata n_truncated

Cases: hn = mistral-7b-v0.1 and llama2-tinyllama with targets gpt2, t5-small and
bert-base-uncased; hn = roberta-base with target gpt-neox-20b. The hn tokenizer is converted
plainly (pad := eos when it has none); a target with make_whitespace_consistent=True and
match_special_tokens_to=<the hn's original tokenizer>, as scripts/transfer.py does.

No internet: every tokenizer is loaded from local files. The reference's utils module imports
jax/flax/optax/pandas at module level for unrelated code; those that are not installed are
replaced by inert stand-ins (they are not used by the two functions).

usage: python3 scripts/golden_tokenizers.py --ref .ref/zett --data tests/data/tokenizers \
           --out tests/fixtures/tokenizers
"""
import argparse
import json
import os
import sys
import types
from pathlib import Path

# The reference iterates Python sets when it builds extra merges; fix the string hash seed so a
# rerun gives the same file.
if os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable] + sys.argv)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

CLASSES = {
    "gpt2": "GPT2TokenizerFast",
    "roberta-base": "RobertaTokenizerFast",
    "t5-small": "T5TokenizerFast",
    "bert-base-uncased": "BertTokenizerFast",
    "llama2-tinyllama": "LlamaTokenizerFast",
    "mistral-7b-v0.1": "LlamaTokenizerFast",
    "gpt-neox-20b": "GPTNeoXTokenizerFast",
}
CASES = [
    ("mistral-7b-v0.1", ["gpt2", "t5-small", "bert-base-uncased"]),
    ("llama2-tinyllama", ["gpt2", "t5-small", "bert-base-uncased"]),
    ("roberta-base", ["gpt-neox-20b"]),
]
MAXLEN = 7


class _Inert:
    """Stands in for any attribute of a missing heavy module."""

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        return _Inert()

    def __getattr__(self, name):
        return _Inert()

    def __mro_entries__(self, bases):
        return (object,)


def _stub(name):
    try:
        __import__(name)
        return
    except Exception:
        pass
    parts = name.split(".")
    for i in range(1, len(parts) + 1):
        sub = ".".join(parts[:i])
        if sub not in sys.modules:
            module = types.ModuleType(sub)
            module.__getattr__ = lambda attr: _Inert
            sys.modules[sub] = module
            if i > 1:
                setattr(sys.modules[".".join(parts[: i - 1])], parts[i - 1], module)


def load(cls_name, directory):
    import transformers

    return getattr(transformers, cls_name).from_pretrained(str(directory))


def dump_converted(tokenizer, path, n_added):
    from tokenizers import models

    data = json.loads(tokenizer._tokenizer.to_str())
    model = tokenizer._tokenizer.model
    out = {
        "len": len(tokenizer),
        "vocab": tokenizer.convert_ids_to_tokens(list(range(len(tokenizer)))),
        "all_special_tokens": tokenizer.all_special_tokens,
        "all_special_ids": tokenizer.all_special_ids,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "n_added": n_added,
        "model_type": type(model).__name__,
        "post_processor": data.get("post_processor"),
    }
    if isinstance(model, models.BPE):
        out["merges"] = [m if isinstance(m, str) else " ".join(m) for m in data["model"]["merges"]]
    if isinstance(model, models.Unigram):
        out["scores"] = [score for _, score in data["model"]["vocab"]]
    path.write_text(json.dumps(out, ensure_ascii=False))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ref", required=True, help="checkout of the reference repository")
    parser.add_argument("--data", default="tests/data/tokenizers")
    parser.add_argument("--out", default="tests/fixtures/tokenizers")
    args = parser.parse_args()

    for name in ["jax", "jax.numpy", "jax.sharding", "flax", "flax.linen", "flax.serialization",
                 "flax.traverse_util", "optax", "pandas", "tqdm", "tqdm.auto"]:
        _stub(name)
    if not hasattr(sys.modules["tqdm.auto"], "__file__"):
        sys.modules["tqdm.auto"].tqdm = lambda iterable=None, *a, **k: iterable
    sys.path.insert(0, str(Path(args.ref).resolve()))
    from zett.tokenizer_converters import convert_to_byte_level
    from zett.utils import get_surface_form_matrix
    import numpy as np
    from safetensors.numpy import save_file

    data = Path(args.data)
    out = Path(args.out)
    (out / "converted").mkdir(parents=True, exist_ok=True)
    (out / "surface_forms").mkdir(parents=True, exist_ok=True)

    originals = {}
    for name, cls_name in CLASSES.items():
        t = load(cls_name, data / name)
        originals[name] = {
            "class": cls_name,
            "len": len(t),
            "all_special_tokens": t.all_special_tokens,
            "all_special_ids": t.all_special_ids,
            "pad_token_id": t.pad_token_id,
            "eos_token_id": t.eos_token_id,
        }
    (out / "originals.json").write_text(json.dumps(originals, ensure_ascii=False, indent=1))

    import transformers
    import tokenizers

    versions = {"transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
                "python": sys.version.split()[0], "PYTHONHASHSEED": os.environ["PYTHONHASHSEED"],
                "maxlen": MAXLEN}
    for hn_name, targets in CASES:
        hn_original = load(CLASSES[hn_name], data / hn_name)
        hn, n_added = convert_to_byte_level(load(CLASSES[hn_name], data / hn_name))
        if hn.pad_token is None:
            hn.pad_token = hn.eos_token
        dump_converted(hn, out / "converted" / f"{hn_name}.json", n_added)
        for target_name in targets:
            target, _ = convert_to_byte_level(
                load(CLASSES[target_name], data / target_name),
                make_whitespace_consistent=True,
                match_special_tokens_to=hn_original,
            )
            label = f"{hn_name}__{target_name}"
            dump_converted(target, out / "converted" / f"{label}.json", None)
            matrix, n_truncated = get_surface_form_matrix(target, maxlen=MAXLEN,
                                                          tokenizer_to_use=hn)
            save_file({"surface_forms": np.ascontiguousarray(matrix, dtype=np.int32)},
                      str(out / "surface_forms" / f"{label}.safetensors"),
                      metadata={"n_truncated": str(n_truncated)})
            print(f"{label}: {matrix.shape} truncated {n_truncated}")
    (out / "VERSIONS.json").write_text(json.dumps(versions, indent=1))
    (out / "README.md").write_text(
        "Made by scripts/golden_tokenizers.py from the reference's own convert_to_byte_level and "
        "get_surface_form_matrix (not a reconstruction). Versions in VERSIONS.json.\n")


if __name__ == "__main__":
    main()
