#!/usr/bin/env bash
# Benchmarks in one virtme-ng guest (TCG) on the non-debug kernel:
# - recovery (tests/bench/recovery-guest.sh): resync bandwidth of dm-fracture
#   against a raw copy and dm-mirror's recovery between the same RAM disks,
#   and resync time for 1% and 100% dirty regions -> recovery.md;
# - write (tests/bench/write-guest.sh): 4 KiB random write IOPS and p99
#   latency against dm-linear, dm-mirror (core and disk log) and md raid1
#   with an internal bitmap, and metadata writes per 1000 writes -> write.md.
# Prints markdown tables of ratios, written to tests/results/bench-<time>/.
#
#   scripts/bench.sh [debug|release] [all|recovery|write]   (default release all)
#
# The module is built for the benchmark kernel in a copy of the sources under
# the cache, so the debug build in the work tree is left alone.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
flavour=${1:-release}
which=${2:-all}
scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
KDIR=$(scripts/kernel.sh build "$flavour")
build=${XDG_CACHE_HOME:-$HOME/.cache}/dm-fracture/bench-module-$flavour
mkdir -p "$build"
# Sources only (no objects of the work tree's build).
tar -C "$top" -cf - Kbuild Makefile rust | tar -C "$build" -xf -
make -s -C "$build" KDIR="$KDIR" modules
results=$top/tests/results/bench-$(date +%Y%m%d-%H%M%S)
mkdir -p "$results"
echo "bench: kernel $KDIR ($flavour); results in $results"
timeout --foreground 1800 vng --run "$KDIR" --disable-kvm --user root --cpus 2 --memory 2G \
	--rwdir "$results" --append "brd.rd_nr=4 brd.rd_size=262144" \
	-- "$top/tests/bench/guest.sh" "$build/dm_fracture.ko" "$results" "$flavour" "$which" </dev/null
cat "$results"/*.md
