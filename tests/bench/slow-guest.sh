#!/usr/bin/env bash
# Slow-leg benchmark, inside the guest (see scripts/bench.sh):
#   slow-guest.sh <module.ko> <results> <flavour>
# One leg slow: leg B is behind dm-delay with a write (and flush) delay of
# D = 50 ms, leg A behind one of 20 ms (a fast leg that still takes time,
# so that writing the legs one after the other, 70 ms, differs from
# writing them at once, 50 ms); both dm-linear over brd, as in
# io-guest.sh. 4 KiB random writes at queue depth 1 for 5 s (about 100
# writes), after an unmeasured warm-up that marks the working set's
# regions; mean and p99 completion latency of:
#   linear       dm-linear on the slow leg: the slow device alone (d)
#   fracture     dm-fracture, A + B
#   mirror-disk  dm-mirror with a disk log, A + B
#   md-bitmap    md raid1 with an internal bitmap, A + B
# A mirror that writes its legs in parallel costs max(legs) = d per write,
# one that writes them one after the other the sum; the goal for
# dm-fracture is a mean at most 1.1 x d (d measured in the same run: the
# delay target's timer granularity adds to D). REPS repetitions, interleaved (the
# outer loop is the repetition). One JSON line per run in slow-raw.jsonl;
# tests/bench/report.py takes the medians.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tag=slow
# shellcheck source=tests/bench/lib.sh
. "$here/lib.sh"
ko=$1 results=$2 flavour=$3
REPS=${REPS:-3} DELAY_MS=50 FAST_MS=20 RUNTIME=5 WARMUP=3
raw=$results/slow-raw.jsonl
tmp=$(mktemp -d)
: >"$raw"
load_module "$ko"

peers=(linear fracture mirror-disk md-bitmap)
# la, lb: the RAM disks; fa: la delayed by FAST_MS, ld: lb delayed by
# DELAY_MS.
A=/dev/mapper/la B=/dev/mapper/lb D=/dev/mapper/ld FA=/dev/mapper/fa G=/dev/mapper/lg

cleanup() {
	dm_down b || true
	md_down "$FA" "$D" 2>/dev/null || true
	dm_down fa ld la lb lg || true
	rm -rf "$tmp"
}
trap cleanup EXIT

setup() {
	# Identical legs (the copy goes to lb, under the delay) and a zeroed
	# log, as in io-guest.sh.
	if ! same_legs "$A" "$B"; then
		warn "cannot copy leg A onto leg B"
		return 1
	fi
	if ! zero_dev "$G" "$MB"; then
		warn "cannot zero the log device"
		return 1
	fi
	case $1 in
	linear) dm_up b "0 $L linear $D 0" ;;
	fracture) dm_up b "0 $L fracture $G $R 2 $FA $D 1 nosync" ;;
	mirror-disk) dm_up b "0 $L mirror disk 3 $G $R nosync 2 $FA 0 $D 0" ;;
	md-bitmap) md_up "$FA" "$D" ;;
	*)
		warn "unknown peer $1"
		return 1
		;;
	esac
}

teardown() { peer_down "$1" "$FA" "$D"; }

# run_peer <rep> <peer>: setup, warm-up, the measurement, teardown; a
# failure is recorded as an "error" line and the run goes on.
run_peer() {
	local rep=$1 p=$2 dev out iops lat p99
	if ! setup "$p"; then
		warn "rep $rep $p: setup failed, skipped"
		json_line "$raw" peer="$p" rep="$rep" delay_ms="$DELAY_MS" fast_ms="$FAST_MS" error="setup failed"
		teardown "$p" || true
		return 0
	fi
	dev=$(dev_of "$p")
	if fio_json "$tmp/fio.json" "$dev" "$WARMUP" --rw=randwrite --bs=4k --iodepth=32 &&
		fio_json "$tmp/fio.json" "$dev" "$RUNTIME" --rw=randwrite --bs=4k --iodepth=1 &&
		out=$(fio_record "$tmp/fio.json" "$raw" peer="$p" rep="$rep" delay_ms="$DELAY_MS" fast_ms="$FAST_MS"); then
		read -r iops _ lat p99 <<<"$out"
		echo "slow: rep $rep/$REPS $p: mean ${lat} us, p99 ${p99} us ($iops IOPS)"
	else
		warn "rep $rep $p: fio failed"
		json_line "$raw" peer="$p" rep="$rep" delay_ms="$DELAY_MS" fast_ms="$FAST_MS" error="fio failed"
	fi
	if ! teardown "$p"; then
		warn "rep $rep $p: teardown failed"
	fi
}

dm_up lg "0 $L linear /dev/ram0 0"
dm_up la "0 $L linear /dev/ram1 0"
dm_up lb "0 $L linear /dev/ram2 0"
# dm-delay: reads <dev> <offset> <ms>, then writes (flushes go with them).
dm_up ld "0 $L delay $B 0 0 $B 0 $DELAY_MS"
dm_up fa "0 $L delay $A 0 0 $A 0 $FAST_MS"
# Written once, so brd's page allocation is not measured.
for d in "$A" "$B"; do
	dd if=/dev/zero of="$d" bs=1M count="$MB" oflag=direct status=none
done
echo "slow: $REPS reps x ${#peers[@]} peers, leg A delayed by $FAST_MS ms, leg B by $DELAY_MS ms ($flavour kernel)"
for ((rep = 1; rep <= REPS; rep++)); do
	for p in "${peers[@]}"; do
		run_peer "$rep" "$p"
	done
done
