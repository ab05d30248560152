#!/usr/bin/env python3
"""Golden fixtures for tokenizer conversion and surface forms, made by the reference's own code.

Runs the reference's ``convert_to_byte_level`` (zett/tokenizer_converters.py) and
``get_surface_form_matrix`` (zett/utils.py) on the real tokenizers carried in tests/data and
writes compact outputs (each gzip-compressed to <name>.gz) that
tests/ZeTT.Runtime.Tests/Tokenizers/GoldenTokenizerTests.cs compares id for id:

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
import traceback
from pathlib import Path

# The reference iterates Python sets when it builds extra merges; fix the string hash seed so a
# rerun gives the same file.
if os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable] + sys.argv)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_env import (TEST_TOKENIZER_CLASSES, import_reference,  # noqa: E402
                           load_tokenizer_verbatim, special_tokens_v4)

CLASSES = TEST_TOKENIZER_CLASSES
CASES = [
    ("mistral-7b-v0.1", ["gpt2", "t5-small", "bert-base-uncased"]),
    ("llama2-tinyllama", ["gpt2", "t5-small", "bert-base-uncased"]),
    ("roberta-base", ["gpt-neox-20b"]),
]
MAXLEN = 7


def load(cls_name, directory):
    """tokenizer.json verbatim with transformers 4.x's special tokens for cls_name (see
    reference_env.load_tokenizer_verbatim: transformers 5 would rebuild some pipelines)."""
    return load_tokenizer_verbatim(str(directory), cls_name)[0]


def dump_converted(tokenizer, path, n_added):
    from tokenizers import models

    data = json.loads(tokenizer._tokenizer.to_str())
    model = tokenizer._tokenizer.model
    out = {
        "len": len(tokenizer),
        "vocab": tokenizer.convert_ids_to_tokens(list(range(len(tokenizer)))),
        "all_special_tokens": special_tokens_v4(tokenizer),
        "all_special_ids": tokenizer.convert_tokens_to_ids(special_tokens_v4(tokenizer)),
        "library_all_special_tokens": list(tokenizer.all_special_tokens),
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


def make_case(hn_name, targets, data, out, convert_to_byte_level, get_surface_form_matrix):
    import numpy as np
    from safetensors.numpy import save_file

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
        print(f"{label}: {matrix.shape} truncated {n_truncated}", flush=True)


def compress(out):
    """gzips originals.json, converted/*.json and surface_forms/*.safetensors in place (mtime 0,
    so a rerun gives the same bytes): the tests read <name>.gz; the working tree travels to the
    GPU machine under a size limit."""
    import gzip
    import shutil

    files = [out / "originals.json", *sorted((out / "converted").glob("*.json")),
             *sorted((out / "surface_forms").glob("*.safetensors"))]
    for path in files:
        if not path.is_file():
            continue
        with open(path, "rb") as src, open(str(path) + ".gz", "wb") as raw, \
                gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz:
            shutil.copyfileobj(src, gz)
        path.unlink()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ref", required=True, help="checkout of the reference repository")
    parser.add_argument("--data", default="tests/data/tokenizers")
    parser.add_argument("--out", default="tests/fixtures/tokenizers")
    args = parser.parse_args()

    ref, standins = import_reference(args.ref)
    convert_to_byte_level = ref.converters.convert_to_byte_level
    get_surface_form_matrix = ref.utils.get_surface_form_matrix

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
            "all_special_tokens": special_tokens_v4(t),
            "all_special_ids": t.convert_tokens_to_ids(special_tokens_v4(t)),
            "library_all_special_tokens": list(t.all_special_tokens),
            "pad_token_id": t.pad_token_id,
            "eos_token_id": t.eos_token_id,
        }
    (out / "originals.json").write_text(json.dumps(originals, ensure_ascii=False, indent=1))

    import transformers
    import tokenizers

    versions = {"transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
                "python": sys.version.split()[0], "PYTHONHASHSEED": os.environ["PYTHONHASHSEED"],
                "maxlen": MAXLEN, "reference_standins": standins}
    failed = []
    for hn_name, targets in CASES:
        try:
            make_case(hn_name, targets, data, out, convert_to_byte_level,
                      get_surface_form_matrix)
        except Exception:  # noqa: BLE001 - reported, the other cases still run, exit 1 below
            traceback.print_exc()
            failed.append(hn_name)
    compress(out)
    (out / "VERSIONS.json").write_text(json.dumps(versions, indent=1))
    (out / "README.md").write_text(
        "Made by scripts/golden_tokenizers.py from the reference's own convert_to_byte_level and "
        "get_surface_form_matrix (not a reconstruction). Versions in VERSIONS.json.\n")
    if failed:
        raise SystemExit(f"golden_tokenizers: failed for {failed}")


if __name__ == "__main__":
    main()
