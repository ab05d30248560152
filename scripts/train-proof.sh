#!/usr/bin/env bash
# The training proof on the CPU: trains a hypernetwork for the built-in stories260K model on the
# TinyStories training text in at most MINUTES minutes (identity stage, then the main stage under
# fixed target tokenizers that do not include GPT-2's), transfers stories260K to GPT-2's
# tokenizer with it and with FVT, and compares them with zett eval on the TinyStories dev
# fixture (the first 25 stories of ../shared/data/text/tinystories/dev.jsonl). Validation during
# training uses other dev stories (the last 25 of dev.jsonl), never the evaluation fixture.
#
# Usage: scripts/train-proof.sh [MINUTES] [OUT]   (defaults: 30, out/train-proof)
# SAMPLED=1 trains under a tokenizer sampled per batch (the reference's algorithm, --pieces 1024)
# instead of the fixed tokenizers.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
minutes="${1:-30}"
out="${2:-$here/out/train-proof}"
text="$here/../shared/data/text/tinystories"
toks="$here/../shared/data/tokenizers"
eval_data="$here/tests/fixtures/lm/eval/tinystories-dev-25.jsonl"
zett="$here/zett"
mkdir -p "$out"
tail -n 25 "$text/dev.jsonl" > "$out/valid-25.jsonl"
rm -rf "$out/hypernet"
if [[ "${SAMPLED:-0}" == 1 ]]; then
    vocab=(--pieces 1024)
else
    vocab=(--train-tokenizer "$toks/gpt-neox-20b" --train-tokenizer "$toks/llama2-tinyllama"
        --train-tokenizer "$toks/t5-small" --train-tokenizer "$toks/mistral-7b-v0.1"
        --vocab-subsample 1024)
fi
# GNU time reports the CPU time the run got: on a shared machine far less than 2 cores.
/usr/bin/time -f "train: %e s wall, %U s user + %S s system CPU" \
"$zett" train --model "$here/assets/stories260K" --out "$out/hypernet" \
    --data "$text/train.jsonl" \
    "${vocab[@]}" --batch 16 --block-size 128 \
    --identity-steps 300 --identity-batch 512 --lr 1e-3 --main-lr 3e-3 --lexical-weight 0.5 \
    --steps 1000000 --max-minutes "$minutes" --save-every 100 --log-every 10 \
    --valid-tokenizer gpt2 --valid-data "$out/valid-25.jsonl" --valid-every 100
"$zett" transfer --model "$here/assets/stories260K" --hypernet "$out/hypernet" \
    --tokenizer gpt2 --device cpu --out "$out/stories260K-gpt2-hypernet" --overwrite
"$zett" transfer --model "$here/assets/stories260K" --method fvt --tokenizer gpt2 \
    --out "$out/stories260K-gpt2-fvt" --overwrite
"$zett" eval --model "$here/assets/stories260K" --model "$out/stories260K-gpt2-fvt" \
    --model "$out/stories260K-gpt2-hypernet" --data "$eval_data" --json "$out/eval.json"
