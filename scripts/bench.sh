#!/usr/bin/env bash
# Benchmarks in one virtme-ng guest (TCG, 2 vCPUs) on the non-debug kernel:
# - recovery (tests/bench/recovery-guest.sh): resync bandwidth of dm-fracture
#   against a raw copy and dm-mirror's recovery between the same RAM disks,
#   and resync time for 1% and 100% dirty regions -> recovery.md;
# - io (tests/bench/io-guest.sh): fio random writes (QD1, QD32), random
#   reads, sequential writes and a 70/30 mix against dm-linear, dm-mirror
#   (core and disk log), md raid1 and dm-raid (raid1) with write-intent
#   bitmaps, and dm-fracture with and without its write-intent log, on two
#   leg sets (RAM disks, and null_blk legs with a 200 us latency), 3
#   interleaved repetitions; metadata writes per 1000 writes;
# - slow (tests/bench/slow-guest.sh): write latency with one leg behind a
#   50 ms dm-delay, against the slow leg alone, dm-mirror and md raid1;
# - profile (tests/bench/profile-guest.sh, only when named): perf in the
#   guest over random writes and reads at QD32 -> profile.txt.
# On the host, tests/bench/report.py turns the raw results of io and slow
# into bench.md (tables of medians, min-max, ratios, the goals) and
# chart.png (with gnuplot). Everything lands in tests/results/bench-<time>/.
#
#   scripts/bench.sh [debug|release] [all|recovery|io|slow|profile]   (default release all)
#
# The module is built for the benchmark kernel in a copy of the sources under
# the cache, so the debug build in the work tree is left alone. brd, null_blk,
# md raid1 and the dm targets are built into the kernel: their parameters go
# on the kernel command line (4 RAM disks of 256 MiB; no default null_blk
# device, the io benchmark makes its own through configfs).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
. scripts/vm.sh
flavour=${1:-release}
which=${2:-all}
case $flavour in
debug | release) ;;
*) echo "usage: $0 [debug|release] [all|recovery|io|slow|profile]" >&2; exit 2 ;;
esac
case $which in
all | recovery | io | slow | profile) ;;
*) echo "usage: $0 [debug|release] [all|recovery|io|slow|profile]" >&2; exit 2 ;;
esac
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
# All of it takes about 27 minutes under TCG (measured 2026-11-26); the guest
# prints a line per run. Its exit status is not relied on: guest.sh leaves
# guest-status.
vm_timeout 3600 vng --run "$KDIR" --disable-kvm --user root --cpus 2 --memory 3G \
	--rwdir "$results" --append "brd.rd_nr=4 brd.rd_size=262144 null_blk.nr_devices=0 $VM_ROOT_APPEND" \
	-- "$top/tests/bench/guest.sh" "$build/dm_fracture.ko" "$results" "$flavour" "$which" </dev/null ||
	echo "bench: the guest exited with status $?" >&2
# The report is made even when a benchmark failed: what was measured is
# shown, the rest is n/a.
python3 tests/bench/report.py "$results" || echo "bench: report.py failed" >&2
for md in "$results"/*.md; do
	[ -e "$md" ] || continue
	echo
	cat "$md"
done
status=$(cat "$results/guest-status" 2>/dev/null || echo "the guest did not finish (timeout or crash)")
if [ "$status" != ok ]; then
	echo "bench: $status" >&2
	exit 1
fi
