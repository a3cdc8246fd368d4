#!/usr/bin/env bash
# One boot of the crash test (see crash.sh), in a guest with four
# file-backed disks: metadata, primary, two secondaries.
#
#   crash-guest.sh <boot> <last-boot> <results>
#
# Every boot but the first finds the mirror as the previous boot's crash
# left it and checks, before activating it, that every region where a
# secondary differs from the primary is set in the intent bitmap or in
# that leg's fracture bitmap; then activates it, waits for the resync,
# checks the legs are identical and that every acknowledged write (all
# boots' ack logs) is there. Every boot but the last then runs the
# load generator and crashes the guest (sysrq b: no sync, no teardown) at
# a random moment.
set -euo pipefail
export DM_DISABLE_UDEV=1
boot=$1 last=$2 results=$3
top=$(cd "$(dirname "$0")/../.." && pwd)
vm=$top/tests/vm
out=$results/crash-boot-$boot
log() { echo "$*" >>"$out"; }
bad() { log "FAIL $*"; echo "FAIL $*"; exit 1; }
insmod "$top/dm_fracture.ko"
if [ -b /dev/vda ]; then p=/dev/vd; else p=/dev/sd; fi
meta=${p}a prim=${p}b s1=${p}c s2=${p}d
for d in "$meta" "$prim" "$s1" "$s2"; do [ -b "$d" ] || bad "missing disk $d"; done
len=$(blockdev --getsz "$prim")
R=128
RANDOM=$((boot * 7919 + ${FRACTURE_CRASH_SEED:-1}))
delays=(100 300 1000 5000)
delay=${delays[RANDOM % 4]}
table="0 $len fracture $meta $R 3 $prim $s1 $s2 3 nosync intent_delay $delay"
. "$vm/fresh.sh"
bits() { python3 "$vm/bitmap.py" "$meta" "$1"; }

if [ "$boot" -gt 0 ]; then
	fresh
	intent=$(bits intent)
	for leg in 1 2; do
		dev=$s1
		[ "$leg" = 2 ] && dev=$s2
		diff=$(python3 "$vm/diffregions.py" "$prim" "$dev" "$len" "$R")
		logged=$(bits "$leg")
		for r in $diff; do
			[[ " $intent $logged " == *" $r "* ]] ||
				bad "boot $boot: leg $leg differs from the primary in region $r, which is in neither the intent bitmap nor its fracture bitmap"
		done
		log "differing $(wc -w <<<"$diff") leg$leg"
	done
	log "intent $(wc -w <<<"$intent")"
	dmsetup create cr --table "$table"
	for _ in $(seq 1200); do
		[ "$(dmsetup status cr | awk '{ print $5 }')" = AAA ] && break
		sleep 0.1
	done
	health=$(dmsetup status cr | awk '{ print $5 }')
	[ "$health" = AAA ] || bad "boot $boot: health $health after 120 s: $(dmsetup status cr)"
	log "copied $(dmsetup message cr 0 stats | tr ' ' '\n' | sed -n 's/^regions_copied=//p')"
	fresh
	for dev in "$s1" "$s2"; do
		cmp -n $((len * 512)) "$prim" "$dev" >/dev/null || bad "boot $boot: $dev differs from the primary after the resync"
	done
	acks=()
	for ((b = 0; b < boot; b++)); do acks+=("$results/crash-acks-$b"); done
	res=$(python3 "$vm/ackload.py" check /dev/mapper/cr "${acks[@]}" 2>>"$out") ||
		bad "boot $boot: acknowledged writes lost: $res"
	log "$res"
else
	dmsetup create cr --table "$table"
fi

if [ "$boot" -ge "$last" ]; then
	dmsetup remove cr
	log "done"
	exit 0
fi
# Crash somewhere between 0.3 and 3 s into the load.
ms=$((300 + RANDOM % 2700))
log "crash after ${ms} ms (intent_delay $delay)"
sync
python3 "$vm/ackload.py" write /dev/mapper/cr "$results/crash-acks-$boot" "$((boot + 1))" 60 "$RANDOM" &
# The crash timer starts with the first acknowledged write (python starts
# slowly in a fresh guest).
for _ in $(seq 300); do
	[ -s "$results/crash-acks-$boot" ] && break
	sleep 0.1
done
[ -s "$results/crash-acks-$boot" ] || bad "boot $boot: the load generator wrote nothing in 30 s"
sleep "$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))"
echo b >/proc/sysrq-trigger
sleep 30
bad "boot $boot: still alive after sysrq b"
