#!/usr/bin/env bash
# Profile, inside the bench guest (scripts/bench.sh ... profile): where the
# CPU goes for 4 KiB random writes at QD32 and random reads at QD32 on
# dm-fracture over two RAM disks (brd: the emulated CPU is the limit, so the
# profile is the cost per I/O). `perf record -a -g` on the cpu-clock event
# (TCG has no hardware counters), then the top symbols by self time, to
# profile.txt. Not part of `all`: it is for finding the hot path when a goal
# is missed.
#   profile-guest.sh <module.ko> <results> <flavour>
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tag=profile
# shellcheck source=tests/bench/lib.sh
. "$here/lib.sh"
ko=$1 results=$2
load_module "$ko"
command -v perf >/dev/null || { warn "perf not installed (linux-perf)"; exit 1; }
out=$results/profile.txt
: >"$out"
dm_up lg "0 $L linear /dev/ram0 0"
dm_up b "0 $L fracture /dev/mapper/lg $R 2 /dev/ram1 /dev/ram2 1 nosync"
cleanup() { dm_down b lg || true; }
trap cleanup EXIT
dd if=/dev/zero of=/dev/mapper/b bs=1M count=150 oflag=direct status=none
for rw in randwrite randread; do
	perf record -q -a -g -e cpu-clock -o /tmp/perf.data -- \
		fio --name=p --filename=/dev/mapper/b --direct=1 --ioengine=libaio --iodepth=32 \
		--rw=$rw --bs=4k --size=$WS --time_based --runtime=5 --randrepeat=0 \
		--output-format=terse --minimal >/tmp/fio.terse
	# head closes the pipe early: perf's SIGPIPE is not a failure.
	{
		echo "== $rw 4k QD32 on dm-fracture (brd legs)"
		perf report -q -i /tmp/perf.data --no-children --sort sym --stdio -g none | head -n 45 || true
		echo
		echo "-- by module / kernel / user (dso)"
		perf report -q -i /tmp/perf.data --no-children --sort dso --stdio -g none | head -n 12 || true
		echo
	} >>"$out"
done
cat "$out"
