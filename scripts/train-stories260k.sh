#!/usr/bin/env bash
# Trains a hypernetwork for the built-in stories260K model on the CPU, transfers the model to
# GPT-2's tokenizer with it and with FVT, and compares them with zett eval.
#
# What runs today is the identity stage only (the network learns the model's own embeddings
# from single-id surface forms); the main stage (LM loss under sampled tokenizers on
# ../shared/data/text/tinystories) is not implemented yet, so the hypernetwork is not expected
# to beat FVT. Usage: scripts/train-stories260k.sh [MINUTES] [OUT]   (defaults: 30, out/train-stories260k)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
minutes="${1:-30}"
out="${2:-$here/out/train-stories260k}"
eval_data="$here/tests/fixtures/lm/eval/tinystories-dev-25.jsonl"
zett="$here/zett"
"$zett" train --model "$here/assets/stories260K" --out "$out/hypernet" --steps 1000000 \
    --max-minutes "$minutes" --lr 1e-3 --save-every 500
"$zett" transfer --model "$here/assets/stories260K" --hypernet "$out/hypernet" \
    --tokenizer gpt2 --device cpu --out "$out/stories260K-gpt2-hypernet" --overwrite
"$zett" transfer --model "$here/assets/stories260K" --method fvt --tokenizer gpt2 \
    --out "$out/stories260K-gpt2-fvt" --overwrite
"$zett" eval --model "$here/assets/stories260K" --model "$out/stories260K-gpt2-fvt" \
    --model "$out/stories260K-gpt2-hypernet" --data "$eval_data" --json "$out/eval.json"
