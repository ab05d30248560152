#!/usr/bin/env bash
# Runs ON THE GPU MACHINE (H200: nvcc 13, python3 + torch + transformers, no .NET, no network),
# in one `device` call, in well under 8 minutes. Prepare here first with scripts/device-pack.sh;
# the exact call is in the README ("GPU checks"). Each step is logged and timed; a failing step
# does not stop the others, and the exit code says whether any failed.
#
# Writes:  bench/results/   (benchmarks, device info, GPU test logs)
#          tests/fixtures/  (golden outputs of the reference: hypernet/, tokenizers/)
# and packs both into $OUT/device-results.tar.gz to be unpacked and committed here.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/.device/out}
RES=$ROOT/bench/results
LOG=$RES/device-check.log
mkdir -p "$OUT" "$RES" tests/fixtures
: >"$LOG"
failures=()
PY=${PYTHON:-python3}

# Steps start only while the whole run is inside its budget, so that the results archive is
# always written before the device call's own limit (README: timeout_s 540).
BUDGET_S=${BUDGET_S:-450}

step() {  # step NAME TIMEOUT_S COMMAND...
    local name=$1 limit=$2; shift 2
    local start=$SECONDS rc
    if [ $SECONDS -ge "$BUDGET_S" ]; then
        echo "=== $name: skipped, ${SECONDS} s of the ${BUDGET_S} s budget used" | tee -a "$LOG"
        failures+=("$name (no time)")
        return 0
    fi
    if [ $((SECONDS + limit)) -gt "$BUDGET_S" ]; then limit=$((BUDGET_S - SECONDS + 30)); fi
    echo "=== $name" | tee -a "$LOG"
    timeout "$limit" "$@" >>"$LOG" 2>&1; rc=$?
    echo "=== $name: rc=$rc in $((SECONDS - start)) s" | tee -a "$LOG"
    [ $rc = 0 ] || failures+=("$name")
    return 0
}

step "unpack bundle" 120 bash -c "mkdir -p .device/run && xz -dc .device/bundle.tar.xz | tar -C .device/run -xf -"
BIN=$ROOT/.device/run/app
ZETT=$ROOT/.device/run/zett
step "device info" 30 bash -c "nvidia-smi; nvcc --version; $PY -c 'import torch, transformers; print(torch.__version__, transformers.__version__, torch.cuda.get_device_name())'"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv \
    >"$RES/device-info.csv" 2>/dev/null

# Kernels: the bundle embeds compute_80 PTX built by nvcc 11.8; also build sm_90 cubins with
# this machine's nvcc and point the loader at them, so both paths are exercised.
step "kernels sm_90 cubins" 120 bash -c "mkdir -p build/kernels-sm90 && for f in kernels/*.cu; do nvcc -std=c++17 -O3 -lineinfo -arch=sm_90 -cubin \$f -o build/kernels-sm90/\$(basename \$f .cu).cubin || exit 1; done"

# Golden fixtures from the reference (needs .ref/zett, carried; never committed).
if [ -d .ref/zett ]; then
    for gen in scripts/golden_hypernet.py scripts/golden_tokenizers.py; do
        [ -f "$gen" ] || continue
        name=$(basename "$gen" .py); area=${name#golden_}
        step "$name" 120 $PY "$gen" --ref .ref/zett --out "tests/fixtures/$area"
    done
else
    echo "=== golden fixtures skipped: .ref/zett not carried" | tee -a "$LOG"
fi

# GPU tests (and all others) from the self-contained runners, with the fixtures just made.
for name in ZeTT.Kernels.Tests ZeTT.Runtime.Tests; do
    step "tests $name" 240 env ZETT_REPO_ROOT="$ROOT" "$BIN/$name" \
        -xml "$RES/tests-$name.xml" -noColor
done
GPU_FILTER=(-namespace ZeTT.Kernels.Tests.Gpu)
step "GPU tests with sm_90 cubins" 180 env ZETT_KERNELS_DIR="$ROOT/build/kernels-sm90" \
    "$BIN/ZeTT.Kernels.Tests" "${GPU_FILTER[@]}" -noColor
step "CUDA backend tests with sm_90 cubins" 180 env ZETT_KERNELS_DIR="$ROOT/build/kernels-sm90" \
    "$BIN/ZeTT.Runtime.Tests" -class "*CudaHypernetBackendTests" \
    -class "*BackendParityTests" -noColor

# Benchmarks: ours, then the PyTorch reference at the same sizes in the same session, over
# the real surface forms of GPT-2's 50257 tokens spelled by Mistral's tokenizer (L = 7).
SF=$ROOT/.device/surface-forms-mistral-gpt2.safetensors
step "surface forms for benchmarks" 60 "$ZETT" surface-forms \
    --hn-tokenizer tests/data/tokenizers/mistral-7b-v0.1 --tokenizer gpt2 --maxlen 7 --out "$SF"
step "bench zett" 300 env ZETT_REQUIRE_GPU=1 "$BIN/ZeTT.Bench" gemm-gpu hypernet-gpu --surface-forms "$SF" \
    --out "$RES"
if [ -d .ref/zett ] && [ -f scripts/bench_reference_hypernet.py ]; then
    step "bench pytorch reference" 240 $PY scripts/bench_reference_hypernet.py --ref .ref/zett \
        --surface-forms "$SF" --out "$RES"
fi

# Hugging Face interop: the default asset loads in transformers and generates the reference
# text; tiny random models of each family, transferred by zett, load and match the reference.
step "default asset in transformers" 90 $PY scripts/check_default_asset.py \
    --asset assets/stories260K --out "$RES"
step "default transfer in transformers" 90 bash -c "'$ZETT' transfer && $PY -c \"
from transformers import AutoModelForCausalLM, AutoTokenizer
m = AutoModelForCausalLM.from_pretrained('out/default'); t = AutoTokenizer.from_pretrained('out/default')
ids = t('Once upon a time there was a little girl.', return_tensors='pt')
out = m(**ids); assert out.logits.shape[-1] == len(t) == m.config.vocab_size, (out.logits.shape, len(t))
print('default transfer loads:', len(t), 'tokens', t.convert_ids_to_tokens(ids['input_ids'][0])[:8])\""
# Hugging Face interop: tiny random models of each family, transferred by zett.
if [ -d .ref/zett ] && [ -f scripts/interop.sh ]; then
    step "hf interop" 240 bash scripts/interop.sh "$ZETT" "$RES"
fi

if command -v compute-sanitizer >/dev/null; then
    for tool in memcheck racecheck; do
        step "compute-sanitizer $tool" 240 compute-sanitizer --tool $tool --error-exitcode 9 \
            "$BIN/ZeTT.Kernels.Tests" "${GPU_FILTER[@]}" -noColor
    done
fi

{
    echo "failed steps: ${failures[*]:-none}"
} | tee -a "$LOG"
tar -czf "$OUT/device-results.tar.gz" bench/results tests/fixtures 2>/dev/null
cp "$LOG" "$OUT/device-check.log"
[ ${#failures[@]} = 0 ]
