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
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hypernet_cases as hc  # noqa: E402
from reference_env import patch_roberta_config  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", default=".ref/zett", help="checkout of the reference repository")
    ap.add_argument("--out", default="tests/fixtures/hypernet")
    args = ap.parse_args()
    sys.path.insert(0, os.path.abspath(args.ref))
    import transformers
    from hf_hypernet.configuration_hypernet import ZettHypernetConfig
    from hf_hypernet.modeling_hypernet import ZettHypernet

    patch_roberta_config()
    torch.set_num_threads(4)
    producer = f"reference ZettHypernet (hf_hypernet), torch {torch.__version__}, " \
        f"transformers {transformers.__version__}"
    for seed, (name, case) in enumerate(sorted(hc.CASES.items())):
        cfg = hc.config_json(case)
        kwargs = {k: v for k, v in cfg.items() if k != "model_type"}
        model = ZettHypernet(ZettHypernetConfig(**kwargs)).eval().float()
        hc.randomize(model.named_parameters(), 1000 + seed)
        ids, source = hc.make_inputs(case, 1000 + seed)
        lang = torch.tensor(case["lang_index"]) if case["hn_embed_lang_id"] else None
        with torch.no_grad():
            outputs = model(target_surface_forms=ids.long(), source_embeddings=source,
                lang_index=lang)
        hc.save_case(args.out, name, case, model.state_dict(), ids, source, outputs, producer)
        print(f"{name}: {ids.shape[0]} rows, L {ids.shape[1]}")
    with open(os.path.join(args.out, "README.md"), "w") as f:
        f.write("# Hypernetwork golden fixtures\n\nProduced by `scripts/golden_hypernet.py` from "
            f"the reference's own ZettHypernet ({producer}) with seeded random weights; see "
            "scripts/hypernet_cases.py for the cases and the file format.\n")


if __name__ == "__main__":
    main()
