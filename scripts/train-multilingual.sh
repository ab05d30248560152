#!/usr/bin/env bash
# A small multilingual run on the CPU: stories260K, English and German UDHR text
# (tests/fixtures/train/udhr, one language per batch drawn by (bytes/N)^0.3), a hypernetwork
# with language embeddings (--embed-lang-id), fixed training tokenizers that do not include
# GPT-2's, per-language validation under GPT-2 (valid/en_bpb, valid/de_bpb). Then each
# language's row is transferred to GPT-2 and evaluated on both languages' validation text.
#
# Usage: scripts/train-multilingual.sh [MINUTES] [OUT]   (defaults: 15, out/train-multilingual)
# EMBED=0 trains the same hypernetwork without language embeddings (one transfer, evaluated on
# both languages), for comparison; STEPS=N runs exactly N updates instead of the time budget.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
minutes="${1:-15}"
out="${2:-$here/out/train-multilingual}"
udhr="$here/tests/fixtures/train/udhr"
toks="$here/../shared/data/tokenizers"
zett="$here/zett"
mkdir -p "$out"
rm -rf "$out/hypernet"
if [[ -n "${STEPS:-}" ]]; then length=(--steps "$STEPS"); else length=(--steps 1000000 --max-minutes "$minutes"); fi
if [[ "${EMBED:-1}" == 1 ]]; then embed=(--embed-lang-id); langs=(en de); else embed=(); langs=(none); fi
/usr/bin/time -f "train: %e s wall, %U s user + %S s system CPU" \
"$zett" train --model "$here/assets/stories260K" --out "$out/hypernet" \
    --data "$udhr/eng-train.jsonl:lang=en" --data "$udhr/deu-train.jsonl:lang=de" \
    "${embed[@]}" \
    --train-tokenizer "$toks/gpt-neox-20b" --train-tokenizer "$toks/llama2-tinyllama" \
    --train-tokenizer "$toks/t5-small" --train-tokenizer "$toks/mistral-7b-v0.1" \
    --vocab-subsample 1024 --batch 8 --block-size 64 \
    --identity-steps 200 --identity-batch 512 --lr 1e-3 --main-lr 3e-3 --lexical-weight 0.5 \
    "${length[@]}" --save-every 100 --log-every 10 \
    --valid-tokenizer gpt2 --valid-data "$udhr/eng-valid.jsonl:lang=en" \
    --valid-data "$udhr/deu-valid.jsonl:lang=de" --valid-every 50
models=()
for lang in "${langs[@]}"; do
    sel=(); [[ "$lang" != none ]] && sel=(--lang "$lang")
    "$zett" transfer --model "$here/assets/stories260K" --hypernet "$out/hypernet" \
        --tokenizer gpt2 "${sel[@]}" --device cpu --out "$out/stories260K-gpt2-$lang" \
        --overwrite
    models+=(--model "$out/stories260K-gpt2-$lang")
done
for text in eng deu; do
    "$zett" eval "${models[@]}" --data "$udhr/$text-valid.jsonl" --json "$out/eval-$text.json" \
        --overwrite
done
