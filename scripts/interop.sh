#!/usr/bin/env bash
# Hugging Face interop of `zett transfer`, on the GPU machine (python3 with torch, transformers,
# tokenizers, safetensors; the reference checkout in .ref/zett; no network, no .NET needed):
#
#   bash scripts/interop.sh ZETT_BIN RESULTS_DIR
#
# For each family of scripts/make_tiny_models.py (llama, mistral, gpt2, gpt_neox, xlm-roberta):
# a tiny random model with its real tokenizer, a tiny random reference hypernetwork for it
# (scripts/make_tiny_hypernet.py), then `zett transfer --dtype fp32 --device cuda` to gpt2 (built
# in); llama also to tests/data/tokenizers/t5-small and tests/data/tokenizers/bert-base-uncased
# (every family to all three with INTEROP_ALL_TARGETS=1); and scripts/hf_interop_check.py on each output (loads with AutoModel*/AutoTokenizer, tokenizer
# equals the reference conversion, forward pass, rows equal the PyTorch reference hypernetwork,
# special rows, bias). Once more with --method fvt (llama -> gpt2): loads and runs a forward pass.
# Writes RESULTS_DIR/interop/<case>.json and the combined verdict RESULTS_DIR/interop.json; each
# case is logged; exit status 1 if any case failed.
set -u
ZETT=${1:?usage: interop.sh ZETT_BIN RESULTS_DIR}
RES=${2:?usage: interop.sh ZETT_BIN RESULTS_DIR}
mkdir -p "$RES" && RES=$(cd "$RES" && pwd)
case $ZETT in /*) ;; */*) ZETT=$PWD/$ZETT ;; esac
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
REF=${REF:-.ref/zett}
DEVICE=${ZETT_DEVICE:-cuda}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/zett-interop-XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$RES/interop"
CASES=$WORK/cases.tsv
: >"$CASES"

case_result() {  # case_result NAME RC SECONDS
    printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$CASES"
    if [ "$2" = 0 ]; then echo "[PASS] $1 (${3} s)"; else echo "[FAIL] $1 rc=$2 (${3} s)"; fi
}

run_case() {  # run_case NAME LIMIT_S COMMAND...
    local name=$1 limit=$2; shift 2
    local start=$SECONDS rc
    echo "--- $name: $*"
    timeout "$limit" "$@" >"$RES/interop/$name.log" 2>&1; rc=$?
    tail -n 5 "$RES/interop/$name.log"
    case_result "$name" "$rc" "$((SECONDS - start))"
    return $rc
}

FAMILIES=(llama mistral gpt2 gpt_neox xlm-roberta)
# zett's --tokenizer | the check's --target-tokenizer | short name
TARGETS=("gpt2|tests/data/tokenizers/gpt2|gpt2"
         "tests/data/tokenizers/t5-small|tests/data/tokenizers/t5-small|t5-small"
         "tests/data/tokenizers/bert-base-uncased|tests/data/tokenizers/bert-base-uncased|bert")

# One chain per family, all families at once (each python start imports torch; the machine
# has 16 cores): tiny model, tiny hypernetwork, transfers, checks.
family_chain() {  # family_chain FAMILY
    local fam=$1 model=$WORK/models/$1 hn=$WORK/hn/$1 t zett_tok check_tok short out
    run_case "$fam-model" 180 $PY scripts/make_tiny_models.py --out "$WORK/models" \
        --families "$fam" --manifest "manifest-$fam.json" || return 0
    run_case "$fam-hypernet" 120 $PY scripts/make_tiny_hypernet.py --ref "$REF" --model "$model" \
        --out "$hn" || return 0
    # Every family to GPT-2's tokenizer; the Unigram (t5-small) and WordPiece (bert) targets on
    # llama only, unless INTEROP_ALL_TARGETS=1.
    local targets=("${TARGETS[0]}")
    if [ "$fam" = llama ] || [ "${INTEROP_ALL_TARGETS:-0}" = 1 ]; then targets=("${TARGETS[@]}"); fi
    for t in "${targets[@]}"; do
        IFS='|' read -r zett_tok check_tok short <<<"$t"
        out=$WORK/out/$fam-$short
        run_case "$fam-$short-transfer" 120 "$ZETT" transfer --model "$model" --tokenizer "$zett_tok" \
            --out "$out" --hypernet "$hn" --dtype fp32 --device "$DEVICE" || continue
        run_case "$fam-$short-check" 180 $PY scripts/hf_interop_check.py --model "$model" \
            --transferred "$out" --hypernet "$hn" --ref "$REF" --target-tokenizer "$check_tok" \
            --out "$RES/interop/$fam-$short.json"
    done
    if [ "$fam" = llama ]; then
        # FVT needs no hypernetwork: the output must load and run.
        local fvt_out=$WORK/out/llama-gpt2-fvt
        run_case llama-gpt2-fvt-transfer 120 "$ZETT" transfer --model "$model" \
            --tokenizer gpt2 --out "$fvt_out" --method fvt || return 0
        run_case llama-gpt2-fvt-check 120 $PY - "$fvt_out" "$RES/interop/llama-gpt2-fvt.json" <<'EOF'
import json, sys
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
out, verdict_path = sys.argv[1], sys.argv[2]
model = AutoModelForCausalLM.from_pretrained(out).float().eval()
tok = AutoTokenizer.from_pretrained(out)
ids = tok("Hello world, this is a test.", return_tensors="pt")["input_ids"]
with torch.no_grad():
    logits = model(input_ids=ids).logits
ok = (model.config.vocab_size == len(tok) == model.get_input_embeddings().weight.shape[0]
      and bool(torch.isfinite(logits).all()) and logits.shape[-1] == len(tok))
json.dump({"ok": ok, "vocab_size": model.config.vocab_size, "tokenizer_length": len(tok),
           "logits_shape": list(logits.shape)}, open(verdict_path, "w"), indent=2)
print("PASS" if ok else "FAIL")
sys.exit(0 if ok else 1)
EOF
    fi
    return 0
}

pids=()
for fam in "${FAMILIES[@]}"; do
    family_chain "$fam" >"$RES/interop/chain-$fam.log" 2>&1 &
    pids+=($!)
done
wait "${pids[@]}"
cat "$RES"/interop/chain-*.log

$PY - "$CASES" "$RES/interop" "$RES/interop.json" <<'EOF'
import json, os, sys
cases_tsv, case_dir, out = sys.argv[1:4]
cases = {}
for line in open(cases_tsv, encoding="utf-8"):
    name, rc, seconds = line.rstrip("\n").split("\t")
    entry = {"ok": rc == "0", "rc": int(rc), "seconds": int(seconds)}
    verdict = os.path.join(case_dir, name.removesuffix("-check") + ".json")
    if name.endswith("-check") and os.path.isfile(verdict):
        with open(verdict, encoding="utf-8") as f:
            v = json.load(f)
        entry["failed_checks"] = sorted(k for k, c in v.get("checks", {}).items() if not c.get("ok"))
    cases[name] = entry
result = {"ok": bool(cases) and all(c["ok"] for c in cases.values()), "cases": cases}
with open(out, "w", encoding="utf-8") as f:
    json.dump(result, f, indent=2)
print(("PASS" if result["ok"] else "FAIL") + f": {sum(c['ok'] for c in cases.values())}/{len(cases)} cases, wrote {out}")
sys.exit(0 if result["ok"] else 1)
EOF
