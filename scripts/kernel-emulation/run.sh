#!/usr/bin/env bash
# Runs the op layer's CUDA kernels (kernels/*.cu, unchanged but for three mechanical rewrites) on
# the CPU under a small emulation of the CUDA execution model — one std::thread per CUDA thread,
# blocks one after another, std::barrier for __syncthreads/__syncwarp/shuffles, dynamic shared
# memory as a host buffer — and compares them with plain float64 loops. A pre-device smoke check
# of the kernels' indexing, tiling, masking and synchronisation logic where there is no GPU; it
# says nothing about speed, races the barriers hide, or the real hardware's arithmetic. The
# numeric test of record is tests/ZeTT.Ops.Tests/BackendOpTests on the GPU.
#
#   scripts/kernel-emulation/run.sh        (needs clang++ with C++20; ~30 s, mostly thread start-up)
set -euo pipefail
cd "$(dirname "$0")"
HERE=$PWD
ROOT=$(cd ../.. && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
CXX=${CXX:-$(command -v clang++-14 || command -v clang++ || command -v g++)}
cp "$ROOT/kernels/common.cuh" "$HERE/shim.h" "$HERE/shim.cpp" "$WORK/"
for f in flash_attention cross_entropy norm activation rotary gather residual; do
    # extern __shared__ arrays become the emulator's dynamic shared memory; extern "C" goes
    # (the emulation links one translation unit per check).
    sed -e 's/extern __shared__ float \([a-z]*\)\[\];/float* \1 = reinterpret_cast<float*>(emu_dyn_smem);/' \
        -e 's/extern __shared__ __align__(16) uint16_t \([a-z0-9_]*\)\[\];/uint16_t* \1 = reinterpret_cast<uint16_t*>(emu_dyn_smem);/' \
        -e 's/extern "C" //' "$ROOT/kernels/$f.cu" >"$WORK/$f.emu.cpp"
done
status=0
for check in check_flash_attention check_ops; do
    cp "$HERE/$check.cpp" "$WORK/"
    "$CXX" -std=c++20 -O2 -include "$WORK/shim.h" -I"$WORK" "$WORK/$check.cpp" "$WORK/shim.cpp" \
        -o "$WORK/$check" -lpthread
    echo "== $check"
    "$WORK/$check" || status=1
done
exit $status
