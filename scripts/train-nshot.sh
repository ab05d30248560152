#!/usr/bin/env bash
# Continued (n-shot) training on the CPU: a zero-shot hypernetwork for the built-in stories260K
# model (sampled 8 192-piece tokenizers on the TinyStories training text), then UPDATES updates
# under GPT-2's tokenizer from it twice — the hypernetwork alone, and with the backbone
# (--backbone-training full) — both with the lexical loss towards the initial predictions and a
# constant learning rate; FVT beside them; all compared with zett eval on the first 20 000
# bytes of the TinyStories dev text.
#
# Usage: scripts/train-nshot.sh [UPDATES] [OUT]   (defaults: 40, out/train-nshot)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
updates="${1:-40}"
out="${2:-$here/out/train-nshot}"
train="$here/../shared/data/text/tinystories/train.jsonl"
dev="$here/../shared/data/text/tinystories/dev.jsonl"
zett="$here/zett"
model="$here/assets/stories260K"
mkdir -p "$out"
rm -rf "$out"/{hn,fvt,zs,hnonly,hnonly-model,nshot}
common=(--data "$train" --batch 16 --block-size 128 --log-every 10 --device cpu)
"$zett" train --model "$model" --out "$out/hn" "${common[@]}" --steps 400 --identity-steps 40 \
    --pieces 8192 --seed 1
"$zett" transfer --model "$model" --tokenizer gpt2 --method fvt --out "$out/fvt"
"$zett" transfer --model "$model" --hypernet "$out/hn" --tokenizer gpt2 --out "$out/zs" --device cpu
cont=(--init-from "$out/hn" --lexical-loss-to-init --train-tokenizer gpt2 --steps "$updates"
    --main-lr 3e-4 --warmup-steps 0 --learning-rate-alpha 1 --seed 2)
"$zett" train --model "$model" --out "$out/hnonly" "${common[@]}" "${cont[@]}" --identity-steps 0
"$zett" transfer --model "$model" --hypernet "$out/hnonly" --tokenizer gpt2 \
    --out "$out/hnonly-model" --device cpu
"$zett" train --model "$model" --out "$out/nshot" "${common[@]}" "${cont[@]}" --backbone-training full
"$zett" eval --model "$model" --model "$out/fvt" --model "$out/zs" --model "$out/hnonly-model" \
    --model "$out/nshot/model" --model "$out/nshot/full_model" --data "$dev" --max-bytes 20000 \
    --json "$out/eval.json"
