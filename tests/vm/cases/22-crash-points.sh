#!/usr/bin/env bash
# Crash points without rebooting (the reboot kind is tests/vm/crash.sh):
# under a load of FUA writes whose acknowledgements are recorded with a
# timestamp, the metadata device and the three legs are cut off in a random
# order at a random moment (each suspended, then swapped for dm-flakey
# drop_writes: from then on nothing reaches it, as in a power cut where the
# disks stop a few milliseconds apart). The mirror is then torn down (its
# last metadata writes are lost too) and the disks restored. Before the next
# activation: every region where a secondary differs from the primary must
# be set in the intent bitmap or its fracture bitmap. After it: recovery,
# identical legs, and every write acknowledged before the cut-off present.
# A crash point takes ~35 s in the debug guest under TCG.
# vm-timeout: 1500
. "$FRACTURE_VM/lib.sh"

POINTS=${FRACTURE_CRASH_POINTS_SIM:-20}
L=16384 R=64   # 8 MiB, 256 regions
RANDOM=${FRACTURE_CRASH_SEED:-22}
names=(cm cp ca cb) disks=(/dev/ram0 /dev/ram1 /dev/ram2 /dev/ram3)
wipe "${disks[@]}"
for i in 0 1 2 3; do
	dmsetup create "${names[i]}" --table "0 $L linear ${disks[i]} 0"
done
delays=(50 200 1000 5000)
table() { echo "0 $L fracture /dev/mapper/cm $R 3 /dev/mapper/cp /dev/mapper/ca /dev/mapper/cb 3 nosync intent_delay $1"; }
acks=() checked=0 differing=0 intent_total=0 copied_total=0

for ((pt = 1; pt <= POINTS; pt++)); do
	delay=${delays[RANDOM % 4]}
	create cr "$(table "$delay")"
	ack=/tmp/acks-$pt
	python3 "$FRACTURE_VM/ackload.py" write /dev/mapper/cr "$ack" "$pt" 60 "$RANDOM" &
	writer=$!
	for _ in $(seq 300); do [ -s "$ack" ] && break; sleep 0.1; done
	[ -s "$ack" ] || fail "crash point $pt: the load generator wrote nothing in 30 s"
	ms=$((100 + RANDOM % 1500))
	sleep "$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))"
	# The cut-off: writes acknowledged before it count. Then every disk is
	# frozen (in-flight I/O completes, nothing new does), in a random
	# order, and only then switched to dropping writes.
	cutoff=$(date +%s%N)
	order=$(shuf -e cm cp ca cb)
	# shellcheck disable=SC2086
	dmsetup suspend --noflush $order
	for i in 0 1 2 3; do
		dmsetup load "${names[i]}" --table "0 $L flakey ${disks[i]} 0 0 1 1 drop_writes"
	done
	# shellcheck disable=SC2086
	dmsetup resume $order
	kill -9 "$writer" 2>/dev/null || true
	wait "$writer" 2>/dev/null || true
	dmsetup remove cr
	dmsetup suspend "${names[@]}"
	for i in 0 1 2 3; do
		dmsetup load "${names[i]}" --table "0 $L linear ${disks[i]} 0"
	done
	dmsetup resume "${names[@]}"
	acks+=("$ack:$cutoff")

	# Before activation: the logs cover every difference.
	fresh
	pre=$(python3 "$FRACTURE_VM/crashcheck.py" /dev/ram0 $L $R /dev/ram1 /dev/ram2 /dev/ram3) ||
		fail "crash point $pt: a region differs between the legs and is not logged"
	read -r _ n_intent _ n_diff <<<"$pre"
	differing=$((differing + n_diff))
	intent_total=$((intent_total + n_intent))

	# Activation: the marked regions are resynced.
	create cr "$(table "$delay")"
	wait_health cr AAA 120
	copied_total=$((copied_total + $(stat_of cr regions_copied)))
	fresh
	cmp -n $((L * 512)) /dev/ram1 /dev/ram2 >/dev/null && cmp -n $((L * 512)) /dev/ram1 /dev/ram3 >/dev/null ||
		fail "crash point $pt: legs differ after the resync"
	res=$(python3 "$FRACTURE_VM/ackload.py" check /dev/mapper/cr "${acks[@]}") || fail "crash point $pt: $res"
	checked=$(awk '{ print $2 }' <<<"$res")
	echo "crash point $pt: cut after $ms ms, intent_delay $delay, order [$(echo $order)], $pre, $res"
	dmsetup remove cr
done
dmsetup remove "${names[@]}"
echo "crash points $POINTS, acknowledged blocks checked $checked, mismatches 0, region differences at the crashes $differing (all covered), intent regions resynced $intent_total, region copies $copied_total"
