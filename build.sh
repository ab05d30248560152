#!/usr/bin/env bash
# One entry point for a fresh Debian machine.
#
#   ./build.sh           install what is missing, compile kernels to PTX, build everything
#   ./build.sh test      the above, then run every test project; ends with
#                        "N passed, N failed, N skipped" and exits non-zero on any failure
#   ./build.sh publish   the above, then a NativeAOT `zett` in publish/zett
#   ./build.sh bench [NAME ...]   run CPU benchmarks (results in bench/results/); installs
#                        libopenblas0-pthread, gemm-cpu's anchor
#
# After a build, ./zett runs the CLI from the repo root.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$PWD
MODE=${1:-build}
CONFIG=Release

say() { echo "build.sh: $*" >&2; }

apt_updated=0
apt_install() {
    if [ "$(id -u)" != 0 ]; then
        say "need root to apt-get install $* (or install them yourself)"; exit 1
    fi
    if [ $apt_updated = 0 ]; then
        apt-get update -qq >/dev/null; apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

enable_contrib_non_free() {
    # nvidia-cuda-toolkit lives in Debian's contrib/non-free components; add them to the
    # already-configured Debian source rather than naming a new mirror.
    local changed=0 f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        if grep -q '^Components: main$' "$f"; then
            sed -i 's/^Components: main$/Components: main contrib non-free/' "$f"; changed=1
        fi
    done
    if [ -f /etc/apt/sources.list ] && grep -qE '^deb .* main$' /etc/apt/sources.list; then
        sed -i -E 's/^(deb .* main)$/\1 contrib non-free/' /etc/apt/sources.list; changed=1
    fi
    if [ $changed = 1 ]; then apt_updated=0; fi
}

ensure_tools() {
    if ! command -v dotnet >/dev/null; then
        say "the .NET 10 SDK is required (dotnet not on PATH)"; exit 1
    fi
    if ! command -v cmake >/dev/null; then
        say "installing cmake (drives the kernel build)"; apt_install cmake
    fi
    if ! command -v nvcc >/dev/null && [ ! -x /usr/local/cuda/bin/nvcc ]; then
        say "installing nvidia-cuda-toolkit (nvcc compiles kernels/*.cu to PTX; ~3 GB, once)"
        enable_contrib_non_free
        apt_install nvidia-cuda-toolkit
    fi
    if command -v nvcc >/dev/null && nvcc --version | grep -q 'release 11\.' \
        && ! command -v clang++-14 >/dev/null; then
        say "installing clang-14 (CUDA 11.8's supported host compiler)"; apt_install clang-14
    fi
}

# node-llama-cpp (pinned) ships prebuilt llama.cpp binaries as npm packages; the llama.cpp tests
# run the exported GGUF files in it and skip, reported as skipped, where it is absent.
NODE_LLAMA_CPP_VERSION=3.21.1
ensure_llama_cpp() {
    local dir=$ROOT/build/llama pkg
    pkg=$dir/node_modules/node-llama-cpp/package.json
    if [ -f "$pkg" ] && grep -q "\"version\": \"$NODE_LLAMA_CPP_VERSION\"" "$pkg"; then return; fi
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        if [ "$(id -u)" = 0 ]; then
            # Some sources' nodejs already provides npm (and conflicts with Debian's npm): install
            # nodejs first, npm only if still missing; a failure skips the checks, not the build.
            say "installing nodejs (llama.cpp checks of GGUF exports)"
            apt_install nodejs || { say "nodejs install failed: the llama.cpp checks will be skipped"; return; }
            if ! command -v npm >/dev/null; then
                apt_install npm || { say "npm install failed: the llama.cpp checks will be skipped"; return; }
            fi
        else
            say "node/npm not found: the llama.cpp checks will be skipped"; return
        fi
    fi
    local major; major=$(node --version | sed -E 's/^v([0-9]+).*/\1/')
    if [ "$major" -lt 20 ]; then
        say "node $(node --version) is older than 20 (node-llama-cpp needs 20): llama.cpp checks will skip"
        return
    fi
    say "installing node-llama-cpp $NODE_LLAMA_CPP_VERSION (prebuilt llama.cpp for linux-x64) into build/llama"
    mkdir -p "$dir"
    [ -f "$dir/package.json" ] || echo '{"name": "zett-llama-check", "private": true}' >"$dir/package.json"
    # Prebuilt CPU binaries from npm only: no optional GPU packages, no postinstall download or
    # source build (NODE_LLAMA_CPP_SKIP_DOWNLOAD), no install scripts.
    (cd "$dir" && NODE_LLAMA_CPP_SKIP_DOWNLOAD=true npm install --no-audit --no-fund --ignore-scripts \
        --omit=optional -E "node-llama-cpp@$NODE_LLAMA_CPP_VERSION" \
        "@node-llama-cpp/linux-x64@$NODE_LLAMA_CPP_VERSION" >"$dir/npm.log" 2>&1) \
        || { cat "$dir/npm.log" >&2; say "npm install failed: the llama.cpp checks will be skipped"; }
}

build_kernels() {
    cmake -S . -B build/cmake -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build build/cmake -j 2 >/dev/null 2>build/cmake/errors.log || {
        cat build/cmake/errors.log >&2; say "kernel compilation failed"; exit 1; }
}

build_dotnet() {
    dotnet build ZeTT.Native.sln -c $CONFIG -nologo -clp:ErrorsOnly -v:q
}

# xunit v3 writes "    Namespace.Class.Method(args) [SKIP]" (or [FAIL]) with the reason or the
# first line of the failure on the next line: one line each, "SKIP name: reason", skips first.
name_outcomes() {
    awk '/\[(FAIL|SKIP)\][[:space:]]*$/ {
            tag = ($0 ~ /\[FAIL\][[:space:]]*$/) ? "FAIL" : "SKIP"
            test = $0; sub(/^[[:space:]]+/, "", test); sub(/[[:space:]]*\[(FAIL|SKIP)\][[:space:]]*$/, "", test)
            why = ""; if ((getline line) > 0) { why = line; sub(/^[[:space:]]+/, "", why) }
            if (tag == "SKIP") { skips[++s] = "  SKIP " test ": " why } else { fails[++f] = "  FAIL " test ": " why }
         }
         END { for (i = 1; i <= s; i++) print skips[i]; for (i = 1; i <= f; i++) print fails[i] }' "$1"
}

run_tests() {
    local results=$ROOT/.test-results passed=0 failed=0 skipped=0 status=0 t name xml
    rm -rf "$results"; mkdir -p "$results"
    for proj in tests/*/*.Tests.csproj; do
        t=$(dirname "$proj"); name=$(basename "$t")
        local exe=$t/bin/$CONFIG/net10.0/$name
        [ -x "$exe" ] || { say "missing test executable $exe"; exit 1; }
        xml=$results/$name.xml
        say "running $name"
        "$exe" -xml "$xml" -noColor -parallel collections >"$results/$name.log" 2>&1 || status=1
        name_outcomes "$results/$name.log" | tee -a "$results/outcomes.txt"
        if [ ! -s "$xml" ]; then
            cat "$results/$name.log" >&2; say "$name produced no results"; failed=$((failed + 1))
            continue
        fi
        local a; a=$(grep -o '<assembly [^>]*>' "$xml")
        attr() { echo "$a" | grep -o " $1=\"[0-9]*\"" | grep -o '[0-9]*'; }
        passed=$((passed + $(attr passed)))
        failed=$((failed + $(attr failed) + $(attr errors)))
        skipped=$((skipped + $(attr skipped)))
    done
    if [ $status != 0 ] && [ $failed = 0 ]; then failed=1; fi
    if grep -q '^  FAIL ' "$results/outcomes.txt" 2>/dev/null; then
        echo "failed:"; grep '^  FAIL ' "$results/outcomes.txt"
    fi
    echo "$passed passed, $failed failed, $skipped skipped"
    [ $failed = 0 ]
}

ensure_tools
ensure_llama_cpp
build_kernels
case "$MODE" in
    build) build_dotnet ;;
    test) build_dotnet; run_tests ;;
    publish)
        if ! dpkg -s zlib1g-dev >/dev/null 2>&1; then
            say "installing zlib1g-dev (NativeAOT links against it)"; apt_install zlib1g-dev
        fi
        build_dotnet
        dotnet publish src/ZeTT.Cli/ZeTT.Cli.csproj -c $CONFIG -r linux-x64 -o publish -nologo \
            -clp:ErrorsOnly -v:q
        say "NativeAOT binary: publish/zett" ;;
    bench)
        # The CPU benchmarks' anchors: OpenBLAS for gemm-cpu (loaded by the benchmark only,
        # never by zett) and, when installed, Debian's python3-torch for hypernet-cpu.
        if ! ldconfig -p | grep -q 'libopenblas\.so\.0'; then
            say "installing libopenblas0-pthread (the gemm-cpu benchmark's anchor)"
            apt_install libopenblas0-pthread
        fi
        if ! /usr/bin/python3 -c 'import torch' 2>/dev/null; then
            say "no python3-torch: hypernet-cpu runs without its PyTorch anchor (apt-get install python3-torch)"
        fi
        build_dotnet; shift
        dotnet bench/ZeTT.Bench/bin/$CONFIG/net10.0/ZeTT.Bench.dll "$@" ;;
    *) say "unknown mode '$MODE' (build | test | publish | bench)"; exit 2 ;;
esac
