"""Golden hypernetwork fixtures from the reference's own ZettHypernet (PyTorch port).

Runs on the GPU machine (torch + transformers installed, no internet, no hub):

    python3 scripts/golden_hypernet.py --ref .ref/zett --out tests/fixtures/hypernet

For every case of hypernet_cases.py it builds the reference's ZettHypernet from its
hf_hypernet/ package (the encoder gets roberta-base's settings by hand, since there is no hub),
overwrites every parameter with seeded random values, runs it in fp32 on the CPU (exact fp32,
no TF32) in eval mode, and writes config, weights (PyTorch names), inputs and outputs. The
reference's code is only run here, never copied or committed.
"""
import argparse
import json
import os
import struct
import sys
import traceback

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hypernet_cases as hc  # noqa: E402
from reference_env import patch_roberta_config  # noqa: E402


def reconstruction_names(case):
    """The parameter names of our reconstruction's fixture for the same case (the 4.x layout
    the released checkpoints use), read from its safetensors header; None when absent."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures",
                        "hypernet-reconstruction", case, "model.safetensors")
    if not os.path.isfile(path):
        return None
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    return {k for k in header if k != "__metadata__"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", default=".ref/zett", help="checkout of the reference repository")
    ap.add_argument("--out", default="tests/fixtures/hypernet")
    args = ap.parse_args()
    sys.path.insert(0, os.path.abspath(args.ref))
    import transformers
    from hf_hypernet.configuration_hypernet import ZettHypernetConfig
    from hf_hypernet.modeling_hypernet import ZettHypernet

    patch_roberta_config("eager")
    torch.set_num_threads(4)
    producer = f"reference ZettHypernet (hf_hypernet), torch {torch.__version__}, " \
        f"transformers {transformers.__version__}"
    failed = []
    for seed, (name, case) in enumerate(sorted(hc.CASES.items())):
        try:
            cfg = hc.config_json(case)
            kwargs = {k: v for k, v in cfg.items() if k != "model_type"}
            model = ZettHypernet(ZettHypernetConfig(**kwargs)).eval().float()
            hc.randomize(model.named_parameters(), 1000 + seed)
            ids, source = hc.make_inputs(case, 1000 + seed)
            lang = torch.tensor(case["lang_index"]) if case["hn_embed_lang_id"] else None
            attn = getattr(model.model.config, "_attn_implementation", "?")
            with torch.no_grad():
                outputs = model(target_surface_forms=ids.long(), source_embeddings=source,
                    lang_index=lang)
            state = model.state_dict()
                # RoBERTa's word embeddings are allocated but never read (inputs_embeds is always
            # given); our reconstruction leaves them out, the released checkpoints have them.
            names = {k for k, v in state.items() if v.is_floating_point()} - \
                {"model.embeddings.word_embeddings.weight"}
            expected = reconstruction_names(name)
            if expected is not None and names != expected:
                # The released checkpoints use transformers 4.x's names; a renamed module in this
                # transformers would make fixtures that no real checkpoint looks like.
                print(f"{name}: parameter names differ from the 4.x layout: only here "
                      f"{sorted(names - expected)[:8]}, missing {sorted(expected - names)[:8]}")
                failed.append(name)
            hc.save_case(args.out, name, case, state, ids, source, outputs, producer)
            print(f"{name}: {ids.shape[0]} rows, L {ids.shape[1]}, attention {attn}", flush=True)
        except Exception:  # noqa: BLE001 - reported; the other cases still run; exit 1 below
            traceback.print_exc()
            failed.append(name)
    with open(os.path.join(args.out, "README.md"), "w") as f:
        f.write("# Hypernetwork golden fixtures\n\nProduced by `scripts/golden_hypernet.py` from "
            f"the reference's own ZettHypernet ({producer}) with seeded random weights; see "
            "scripts/hypernet_cases.py for the cases and the file format.\n")
    if failed:
        raise SystemExit(f"golden_hypernet: failed for {failed}")


if __name__ == "__main__":
    main()
