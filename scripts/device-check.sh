#!/usr/bin/env bash
# Runs ON THE GPU MACHINE (H200: nvcc 13, python3 + torch + transformers, no .NET, no network),
# in one `device` call. Prepare here first with scripts/device-pack.sh; the exact call is in the
# README ("GPU checks"). Every step is logged (bench/results/logs/<step>.log) and timed; a failing
# step does not stop the others, and the exit code says whether any failed.
#
# Order: what needs the GPU to itself (the benchmarks) runs first and alone; CPU-only work (the
# tokenizer golden fixtures, the sm_90 cubin build) runs beside it; the tests, the Hugging Face
# interop and the sanitizer follow, the interop beside the tests.
#
# Writes:  bench/results/   (benchmarks, device info, test and step logs)
#          tests/fixtures/  (golden outputs of the reference: hypernet/, tokenizers/, lm/)
# and packs both into $OUT/device-results.tar.gz to be unpacked and committed here.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/.device/out}
RES=$ROOT/bench/results
LOGS=$RES/logs
LOG=$OUT/device-check.log
mkdir -p "$OUT" "$RES" "$LOGS" tests/fixtures
: >"$LOG"
STEPS=$LOGS/steps.tsv
: >"$STEPS"
PY=${PYTHON:-python3}
export ZETT_REPO_ROOT=$ROOT PYTHONUNBUFFERED=1 JAX_PLATFORMS=cpu XLA_PYTHON_CLIENT_PREALLOCATE=false \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1 \
    DOTNET_CLI_TELEMETRY_OPTOUT=1

# Steps start only while the run is inside its budget, and a step's limit is cut to what is
# left, so that the results archive is always written before the device call's own limit
# (README: timeout_s 480).
BUDGET_S=${BUDGET_S:-400}
T0=$SECONDS

log() { echo "[$((SECONDS - T0))s] $*" | tee -a "$LOG"; }

step() {  # step NAME TIMEOUT_S COMMAND...   (output in $LOGS/NAME.log)
    local name=$1 limit=$2; shift 2
    local start=$SECONDS rc elapsed=$((SECONDS - T0))
    if [ "$elapsed" -ge "$BUDGET_S" ]; then
        log "=== $name: skipped, ${elapsed} s of the ${BUDGET_S} s budget used"
        printf '%s\t%s\t%s\n' "$name" "skipped" 0 >>"$STEPS"
        return 0
    fi
    if [ $((elapsed + limit)) -gt "$BUDGET_S" ]; then limit=$((BUDGET_S - elapsed + 20)); fi
    log "=== $name (limit ${limit} s)"
    timeout -k 5 "$limit" "$@" >"$LOGS/$name.log" 2>&1; rc=$?
    log "=== $name: rc=$rc in $((SECONDS - start)) s"
    if [ $rc != 0 ]; then tail -n 25 "$LOGS/$name.log" | sed 's/^/    /' >>"$LOG"; fi
    printf '%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - start))" >>"$STEPS"
    return 0
}

BG=()
bg() { step "$@" & BG+=($!); }  # a step in the background

step unpack 120 bash -c "mkdir -p .device/run && xz -T0 -dc .device/bundle.tar.xz | tar -C .device/run -xf -"
BIN=$ROOT/.device/run/app
ZETT=$ROOT/.device/run/zett
step device-info 60 bash -c "nvidia-smi; nvcc --version; $PY -c 'import torch, transformers, tokenizers; print(\"torch\", torch.__version__, \"transformers\", transformers.__version__, \"tokenizers\", tokenizers.__version__, torch.cuda.get_device_name())'; '$ZETT' version; ldconfig -p | grep -E 'libcuda.so|libcublas|libnccl' || true"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv \
    >"$RES/device-info.csv" 2>/dev/null

# CPU-only, beside everything: sm_90 cubins with this machine's nvcc (the bundle embeds
# compute_80 PTX from nvcc 11.8; the GPU tests run once more on these), and the tokenizer
# golden fixtures from the reference's own conversion code (needs .ref/zett, carried).
bg cubins-sm90 150 bash -c "mkdir -p build/kernels-sm90 && for f in kernels/*.cu; do nvcc -std=c++17 -O3 -lineinfo -arch=sm_90 -cubin \$f -o build/kernels-sm90/\$(basename \$f .cu).cubin || exit 1; done"
# GOLDEN=0 keeps the committed fixtures (a rerun that only checks code changes).
if [ -d .ref/zett ] && [ "${GOLDEN:-1}" = 1 ]; then
    # Written to a side folder and moved in at the end, so that the tests running meanwhile
    # never read a half-written fixture (they skip while it is absent).
    bg golden-tokenizers 300 bash -c "rm -rf .device/tok-fixtures; $PY scripts/golden_tokenizers.py --ref .ref/zett --out .device/tok-fixtures; rc=\$?; rm -rf tests/fixtures/tokenizers; mv .device/tok-fixtures tests/fixtures/tokenizers; exit \$rc"
    step golden-hypernet 90 $PY scripts/golden_hypernet.py --ref .ref/zett --out tests/fixtures/hypernet
else
    log "=== golden fixtures not regenerated (GOLDEN=${GOLDEN:-1}, .ref/zett $( [ -d .ref/zett ] && echo present || echo absent))"
fi

# Language-model golden logits from transformers itself (no .ref needed): written beside the
# plain-PyTorch fixtures, which they must equal (the CPU tests then check against both).
if [ "${GOLDEN:-1}" = 1 ]; then
    step golden-lm 120 $PY scripts/golden_lm_transformers.py --fixtures tests/fixtures/lm
fi

# Benchmarks, GPU to themselves: ours (with CUDA-vs-golden parity), then the PyTorch reference
# at the same sizes, over the real surface forms of GPT-2's 50257 tokens spelled by Mistral's
# tokenizer (L = 7).
SF=$ROOT/.device/surface-forms-mistral-gpt2.safetensors
step surface-forms 60 "$ZETT" surface-forms \
    --hn-tokenizer tests/data/tokenizers/mistral-7b-v0.1 --tokenizer gpt2 --maxlen 7 --out "$SF"
step bench-zett 260 env ZETT_REQUIRE_GPU=1 "$BIN/ZeTT.Bench" gemm-gpu hypernet-gpu \
    --surface-forms "$SF" --out "$RES"
# The op layer's own kernels: flash attention forward/backward at 2k-8k tokens and the fused
# LM-head cross-entropy, TFLOP/s against the measured bf16 GEMM peak.
step bench-ops 180 env ZETT_REQUIRE_GPU=1 "$BIN/ZeTT.Bench" ops-gpu --out "$RES"
# Language models: zett's LM forward on CUDA (eval of 2048-token sequences, greedy decoding
# with the KV cache) against transformers with sdpa attention in bf16, at TinyLlama-1.1B and
# Mistral-7B shapes; ZeTT.Bench writes the random bf16 weights (2.2 + 14.5 GB, one model at a
# time, deleted after) and runs scripts/bench_lm_pytorch.py on them (bench/results/lm-gpu.json).
# BENCH_LM=0 leaves it out (≈ 3 min of the budget).
if [ "${BENCH_LM:-1}" = 1 ]; then
    step bench-lm 240 env ZETT_REQUIRE_GPU=1 ZETT_BENCH_PYTHON="$PY" "$BIN/ZeTT.Bench" lm-gpu \
        --lm-dir "$ROOT/.device/lm" --out "$RES"
fi
# Training: one whole main-stage step (the hypernetwork's forward over the padded vocabulary,
# the frozen LM's forward and backward, the losses, the hypernetwork's backward, clip and AdamW),
# zett on CUDA against PyTorch eager (scripts/bench_train_pytorch.py, the golden fixtures' math)
# on the same weights and batch, fp32 on both sides (no TF32), at stories260K and a reduced
# TinyLlama (d 512, 4 layers; ZeTT.Bench writes its 44 M random weights and deletes them).
# MFU against ZETT_PEAK_TFLOPS (default 67: the H100/H200 SXM fp32 non-tensor peak); the batch
# from ZETT_BENCH_TRAIN_PIECES (vocabulary rows, default 8192), ZETT_BENCH_TRAIN_BATCH (16) and
# ZETT_BENCH_TRAIN_TOKENS (128), taken from the environment. bench/results/train-gpu.json.
# BENCH_TRAIN=0 leaves it out (≈ 1 min of the budget).
if [ "${BENCH_TRAIN:-1}" = 1 ]; then
    step bench-train 150 env ZETT_REQUIRE_GPU=1 ZETT_BENCH_PYTHON="$PY" \
        ZETT_PEAK_TFLOPS="${ZETT_PEAK_TFLOPS:-67}" "$BIN/ZeTT.Bench" train-gpu --out "$RES"
fi
if [ -d .ref/zett ]; then
    step bench-pytorch 150 $PY scripts/bench_reference_hypernet.py --ref .ref/zett \
        --surface-forms "$SF" --out "$RES"
fi

# Hugging Face interop beside the tests: the default asset and the default transfer load in
# transformers; tiny random models of each family, transferred by zett on CUDA, load and
# match the reference hypernetwork and conversion (families in parallel).
bg default-asset 240 $PY scripts/check_default_asset.py --asset assets/stories260K --out "$RES"
bg default-transfer 120 bash -c "'$ZETT' transfer && $PY -c \"
from transformers import AutoModelForCausalLM, AutoTokenizer
m = AutoModelForCausalLM.from_pretrained('out/default'); t = AutoTokenizer.from_pretrained('out/default')
ids = t('Once upon a time there was a little girl.', return_tensors='pt')
out = m(**ids); assert out.logits.shape[-1] == len(t) == m.config.vocab_size, (out.logits.shape, len(t))
print('default transfer loads:', type(t).__name__, len(t), 'tokens', t.convert_ids_to_tokens(ids['input_ids'][0])[:8])\""
if [ -d .ref/zett ]; then
    bg hf-interop 240 bash scripts/interop.sh "$ZETT" "$RES"
fi
# zett eval of the default model on the CPU, on CUDA in fp32 and on CUDA with bf16 activations,
# same text (bench/results/eval-{cpu,cuda-fp32,cuda-bf16}.json: bits per byte side by side).
bg eval-devices 120 bash -c "for v in 'cpu fp32' 'cuda fp32' 'cuda bf16'; do set -- \$v; \
    '$ZETT' eval --model assets/stories260K --data tests/fixtures/lm/eval/tinystories-dev-25.jsonl \
    --device \$1 --dtype \$2 --json '$RES'/eval-\$1\$( [ \$1 = cuda ] && echo -\$2 ).json --overwrite \
    || exit 1; done"


# All tests (GPU tests included) from the self-contained runners, with the fresh fixtures.
for name in ZeTT.Kernels.Tests ZeTT.Ops.Tests ZeTT.Runtime.Tests; do
    step "tests-$name" 180 "$BIN/$name" -xml "$RES/tests-$name.xml" -noColor
done
# The whole main-stage step (loss and every hypernetwork gradient) on the CUDA backend against
# PyTorch autograd (tests/fixtures/train), on its own so that its log is easy to find; the CPU
# float64 twin of the same test runs in the full suite above and on every CI run.
step train-step-oracle-cuda 90 "$BIN/ZeTT.Runtime.Tests" -class "*TrainStepOracleTests" -noColor
# Data parallelism over NCCL at world size 1 on the one GPU (the binding, the unique id through
# the rendezvous directory, a one-rank all-reduce: a 5-update run bit-identical to the run
# without ranks); also part of the full suites above, here on its own to be easy to find.
step nccl-smoke 90 bash -c "'$BIN/ZeTT.Kernels.Tests' -class '*NcclTests' -noColor && \
    '$BIN/ZeTT.Runtime.Tests' -method '*One_nccl_rank_trains_as_one_process' -noColor"
GPU_FILTER=(-namespace ZeTT.Kernels.Tests.Gpu)
wait "${BG[0]}" 2>/dev/null  # the cubins
if [ -f build/kernels-sm90/flash_attention.cubin ]; then
    step gpu-tests-sm90-cubins 120 env ZETT_KERNELS_DIR="$ROOT/build/kernels-sm90" \
        "$BIN/ZeTT.Kernels.Tests" "${GPU_FILTER[@]}" -noColor
    step cuda-backend-tests-sm90-cubins 120 env ZETT_KERNELS_DIR="$ROOT/build/kernels-sm90" \
        "$BIN/ZeTT.Runtime.Tests" -class "*CudaHypernetGraphTests" \
        -class "*CudaLanguageModelTests" -class "*TrainStepOracleTests" -noColor
    step op-tests-sm90-cubins 120 env ZETT_KERNELS_DIR="$ROOT/build/kernels-sm90" \
        "$BIN/ZeTT.Ops.Tests" -class "ZeTT.Ops.Tests.CudaBackendOpTests" -noColor
fi

SANITIZER=""
if command -v compute-sanitizer >/dev/null; then
    for tool in memcheck racecheck; do
        # --report-api-errors no: the tests provoke CUDA API errors on purpose (a missing kernel
        # name, an allocation larger than the device); memory and race errors are still reported.
        step "sanitizer-$tool" 120 compute-sanitizer --tool $tool --error-exitcode 9 \
            --report-api-errors no \
            "$BIN/ZeTT.Kernels.Tests" "${GPU_FILTER[@]}" -noColor
        step "sanitizer-ops-$tool" 120 compute-sanitizer --tool $tool --error-exitcode 9 \
            --report-api-errors no \
            "$BIN/ZeTT.Ops.Tests" -class "ZeTT.Ops.Tests.CudaBackendOpTests" -noColor
        for n in "sanitizer-$tool" "sanitizer-ops-$tool"; do
            rc=$(awk -F'\t' -v n="$n" '$1 == n { print $2 }' "$STEPS")
            [ "$rc" = 0 ] || SANITIZER="$SANITIZER $n: rc=$rc;"
        done
    done
    SANITIZER=${SANITIZER:-clean}
else
    SANITIZER="not run: no compute-sanitizer"
fi

log "waiting for background steps"
wait
step merge-results 30 $PY scripts/merge_gpu_results.py --results "$RES" --sanitizer "$SANITIZER"

failed=$(awk -F'\t' '$2 != "0" { printf "%s(%s) ", $1, $2 }' "$STEPS")
log "failed steps: ${failed:-none}"
cp "$LOG" "$RES/device-check.log"
tar -czf "$OUT/device-results.tar.gz" bench/results tests/fixtures 2>/dev/null
ls -la "$OUT" | tee -a "$LOG"
[ -z "$failed" ]
