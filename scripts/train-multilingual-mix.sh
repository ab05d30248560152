#!/usr/bin/env bash
# A longer multilingual run on the CPU with the languages mixed within batches
# (--mix-languages: one tokenizer sampler over all of them, language "all"): stories260K on the
# UDHR texts of LANGS (default en de fr es; ../shared/data/text/udhr, each text's non-blank lines,
# the first three quarters for training and the rest for validation, made into OUT), a tokenizer
# sampled per batch (--pieces 1024), per-language validation under GPT-2. Then the hypernetwork
# transfers stories260K to GPT-2 and zett eval compares it with FVT on each language.
#
# Usage: scripts/train-multilingual-mix.sh [MINUTES] [OUT]   (defaults: 15, out/train-multilingual-mix)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
minutes="${1:-15}"
out="${2:-$here/out/train-multilingual-mix}"
langs=(${LANGS:-en de fr es})
declare -A file=([en]=eng [de]=deu [fr]=fra [es]=spa [it]=ita [pt]=por_BR [pl]=pol [tr]=tur [id]=ind [vi]=vie [sw]=swh)
zett="$here/zett"
mkdir -p "$out"
rm -rf "$out/hypernet"
data=(); valid=()
for l in "${langs[@]}"; do
    /usr/bin/python3 - "$here/../shared/data/text/udhr/${file[$l]}.txt" "$out/$l" <<'PY'
import json, sys
lines = [l.strip() for l in open(sys.argv[1], encoding="utf-8") if l.strip()]
cut = len(lines) * 3 // 4
for name, part in (("train", lines[:cut]), ("valid", lines[cut:])):
    with open(f"{sys.argv[2]}-{name}.jsonl", "w", encoding="utf-8") as f:
        for line in part:
            f.write(json.dumps({"text": line}, ensure_ascii=False) + "\n")
PY
    data+=(--data "$out/$l-train.jsonl:lang=$l")
    valid+=(--valid-data "$out/$l-valid.jsonl:lang=$l")
done
/usr/bin/time -f "train: %e s wall, %U s user + %S s system CPU" \
"$zett" train --model "$here/assets/stories260K" --out "$out/hypernet" "${data[@]}" --mix-languages \
    --pieces 1024 --batch 8 --block-size 64 --identity-steps 200 --identity-batch 512 \
    --lr 1e-3 --main-lr 3e-3 --steps 1000000 --max-minutes "$minutes" --save-every 100 \
    --log-every 20 --valid-tokenizer gpt2 "${valid[@]}" --valid-every 100 --device cpu
"$zett" transfer --model "$here/assets/stories260K" --hypernet "$out/hypernet" --tokenizer gpt2 \
    --device cpu --out "$out/stories260K-gpt2" --overwrite
"$zett" transfer --model "$here/assets/stories260K" --method fvt --tokenizer gpt2 \
    --out "$out/stories260K-gpt2-fvt" --overwrite
for l in "${langs[@]}"; do
    "$zett" eval --model "$out/stories260K-gpt2-fvt" --model "$out/stories260K-gpt2" \
        --data "$out/$l-valid.jsonl" --json "$out/eval-$l.json" --overwrite
done
