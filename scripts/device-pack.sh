#!/usr/bin/env bash
# Runs HERE (a machine with the .NET SDK): prepares everything the GPU machine needs, which has
# nvcc, python3 + torch + transformers but no .NET, into the git-ignored folder .device/, to be
# carried by the `device` tool together with .ref (the reference checkout used only to make
# golden fixtures; never committed).
#
#   scripts/device-pack.sh          # then run scripts/device-check.sh there (README: GPU checks)
#
# .device/bundle.tar.xz holds self-contained publishes of the test runners and the benchmark
# driver, and the NativeAOT `zett` (~35 MB compressed; the carry limit is 64 MiB).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
./build.sh publish
rm -rf .device && mkdir -p .device/stage/app
# The GPU-side test runners and the benchmark driver are published self-contained into ONE
# folder so they share one copy of the runtime (four separate publishes were 157 MB packed).
# The CLI tests are CPU-only and stay here.
for proj in tests/ZeTT.Kernels.Tests/ZeTT.Kernels.Tests.csproj \
            tests/ZeTT.Ops.Tests/ZeTT.Ops.Tests.csproj \
            tests/ZeTT.Runtime.Tests/ZeTT.Runtime.Tests.csproj \
            bench/ZeTT.Bench/ZeTT.Bench.csproj; do
    name=$(basename "$proj" .csproj)
    echo "device-pack: publishing $name (self-contained linux-x64)"
    dotnet publish "$proj" -c Release -r linux-x64 --self-contained true -nologo -v:q \
        -clp:ErrorsOnly -p:PublishTrimmed=false \
        -o .device/stage/app >.device/publish.log 2>&1 || { cat .device/publish.log >&2; exit 1; }
done
rm -f .device/stage/app/*.pdb .device/stage/app/*.xml
cp publish/zett .device/stage/zett
tar -C .device/stage -cf - . | xz -T2 -6 >.device/bundle.tar.xz
rm -rf .device/stage
size=$(du -m .device/bundle.tar.xz | cut -f1)
echo "device-pack: .device/bundle.tar.xz is ${size} MB"
# What travels: tracked and untracked-not-ignored files, plus the carried .device and .ref.
tree=$( { git ls-files -z; git ls-files -z --others --exclude-standard; } \
    | xargs -0 -r du -cb 2>/dev/null | awk '/total$/ { s += $1 } END { print s + 0 }')
carried=$(du -cb .device/bundle.tar.xz .ref 2>/dev/null | awk '/total$/ { print $1 }')
total_mib=$(( (tree + carried) / 1048576 ))
echo "device-pack: a device call carries about ${total_mib} MiB (limit 64 MiB)"
if [ "$total_mib" -ge 64 ]; then
    echo "device-pack: too large to carry: shrink the bundle or the tracked files" >&2
    exit 1
fi
# The reference checkout (golden fixtures only; git-ignored, never committed): the hypernetwork
# port, the conversion code, and the one data file zett/utils.py reads at import.
REF_PARTS="hf_hypernet zett data/madlad400_metadata.csv"
MIRROR=${ZETT_REFERENCE_MIRROR:-/work/.mirror/bminixhofer+zett/repo}
if [ ! -f .ref/zett/data/madlad400_metadata.csv ] && [ -d "$MIRROR" ]; then
    mkdir -p .ref/zett && git -C "$MIRROR" archive HEAD $REF_PARTS | tar -x -C .ref/zett
fi
if [ ! -f .ref/zett/data/madlad400_metadata.csv ]; then
    echo "device-pack: NOTE: .ref/zett is missing or incomplete; golden fixtures need the reference."
    echo "  With the search tool's fetch of bminixhofer/zett (a bare repo), run:"
    echo "  mkdir -p .ref/zett && git -C <fetched repo> archive HEAD $REF_PARTS | tar -x -C .ref/zett"
fi
