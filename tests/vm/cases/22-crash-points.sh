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
# At every third point the primary starts failing writes (dm error) half way
# to the cut-off: a failover under load, then the crash, maybe in the
# middle of the failover's commit (the checks then use the leg the kernel
# will serve from, see crashcheck.py).
# A crash point takes ~15 s in the debug guest under TCG (a Python start
# alone takes seconds: the helpers run in one process, see pyserve.py).
# vm-timeout: 1500
. "$FRACTURE_VM/lib.sh"

POINTS=${FRACTURE_CRASH_POINTS_SIM:-6}
L=16384 R=64   # 8 MiB, 256 regions
RANDOM=${FRACTURE_CRASH_SEED:-22}
names=(cm cp ca cb) disks=(/dev/ram0 /dev/ram1 /dev/ram2 /dev/ram3)
wipe "${disks[@]}"
for i in 0 1 2 3; do
	dmsetup create "${names[i]}" --table "0 $L linear ${disks[i]} 0"
done
delays=(50 200 1000 5000)
# The Python helpers (load generator, checks) run in one process for the
# whole case: see pyserve.py.
py_start
# start_loads flakey|linear: loads that table, inactive, on the four disks'
# devices, in parallel (a dmsetup start is slow here); the next resume of
# a device swaps it in. wait_loads: until they are done.
start_loads() {
	local i t
	loaders=()
	for i in 0 1 2 3; do
		t="0 $L linear ${disks[i]} 0"
		[ "$1" = linear ] || t="0 $L flakey ${disks[i]} 0 0 1 1 drop_writes"
		[ "$1" != flakey ] || [ "$i" != "${failing:-}" ] || t="0 $L error"
		command dmsetup load "${names[i]}" --table "$t" &
		loaders+=($!)
	done
}
wait_loads() {
	local p
	for p in "${loaders[@]}"; do
		wait "$p" || fail "crash point $pt: dmsetup load failed"
	done
}
table() { echo "0 $L fracture /dev/mapper/cm $R 3 /dev/mapper/cp /dev/mapper/ca /dev/mapper/cb 3 nosync intent_delay $1"; }
acks=() checked=0 checked_total=0 differing=0 intent_total=0 copied_total=0 failovers=0 fo_points=0

for ((pt = 1; pt <= POINTS; pt++)); do
	delay=${delays[RANDOM % 4]}
	create cr "$(table "$delay")"
	prim=$(status_field cr 3)
	# The primary's device (names[0] is the metadata), failed at this point?
	failing=
	[ $((pt % 3)) != 0 ] || { failing=$((prim + 1)) fo_points=$((fo_points + 1)); }
	ack=/tmp/acks-$pt
	# The tables of the cut-off, loaded while the load runs.
	start_loads flakey
	py_call ackload.py write /dev/mapper/cr "$ack" "$pt" 60 "$RANDOM" || fail "crash point $pt: $py_out"
	writer=$py_out
	# Shell built-ins only where possible: starting a process is slow here.
	for ((i = 0; i < 300; i++)); do [ -s "$ack" ] && break; sleep 0.1; done
	[ -s "$ack" ] || fail "crash point $pt: the load generator wrote nothing in 30 s"
	t0=${EPOCHREALTIME//[!0-9]/}   # µs
	ms=$((100 + RANDOM % 1500))
	wait_loads
	if [ -n "$failing" ]; then
		# Half way: the primary fails every I/O (its error table, loaded
		# inactive above, swapped in).
		us=$((ms * 500 - (${EPOCHREALTIME//[!0-9]/} - t0)))
		if [ "$us" -gt 0 ]; then
			printf -v secs '%d.%06d' $((us / 1000000)) $((us % 1000000))
			sleep "$secs"
		fi
		dmsetup resume "${names[failing]}"
	fi
	# The cut-off comes <ms> ms after the first acknowledgement.
	us=$((ms * 1000 - (${EPOCHREALTIME//[!0-9]/} - t0)))
	if [ "$us" -gt 0 ]; then
		printf -v secs '%d.%06d' $((us / 1000000)) $((us % 1000000))
		sleep "$secs"
	fi
	# The cut-off: writes acknowledged before it count. Then every disk is
	# frozen (in-flight I/O completes, nothing new does), in a random
	# order, and only then switched to dropping writes.
	cutoff=${EPOCHREALTIME//[!0-9]/}000   # ns since the epoch, as date +%s%N
	ms=$(((cutoff / 1000 - t0) / 1000))
	order=(cm cp ca cb)
	for ((i = 3; i > 0; i--)); do
		j=$((RANDOM % (i + 1)))
		tmp=${order[i]} order[i]=${order[j]} order[j]=$tmp
	done
	dmsetup suspend --noflush "${order[@]}"
	# (the drop_writes tables, loaded above, swapped in)
	dmsetup resume "${order[@]}"
	py_call kill "$writer" || fail "crash point $pt: killing the load generator: $py_out"
	start_loads linear
	dmsetup remove cr
	wait_loads
	# The disks back: resume suspends each device and swaps the table in.
	dmsetup resume "${names[@]}"
	acks+=("$ack:$cutoff")

	# Before activation: the logs cover every difference (crashcheck.py
	# reads with O_DIRECT: no page cache to drop).
	py_call crashcheck.py /dev/ram0 $L $R /dev/ram1 /dev/ram2 /dev/ram3 ||
		fail "crash point $pt: a region differs between the legs and is not logged: $py_out"
	pre=$py_out
	read -r _ n_intent _ n_diff _ _ <<<"$pre"
	differing=$((differing + n_diff))
	intent_total=$((intent_total + n_intent))

	# Activation: the marked regions are resynced.
	create cr "$(table "$delay")"
	wait_health cr AAA 120
	copied_total=$((copied_total + $(stat_of cr regions_copied)))
	[ "$(status_field cr 3)" = "$prim" ] || failovers=$((failovers + 1))
	# legscmp.py: cmp -n of each leg against the primary, O_DIRECT.
	py_call legscmp.py $((L * 512)) /dev/ram1 /dev/ram2 /dev/ram3 ||
		fail "crash point $pt: legs differ after the resync: $py_out"
	py_call ackload.py check /dev/mapper/cr "${acks[@]}" || fail "crash point $pt: $py_out"
	res=$py_out
	read -r _ checked _ <<<"$res"
	checked_total=$((checked_total + checked))
	echo "crash point $pt: cut after $ms ms, intent_delay $delay, order [${order[*]}]${failing:+, primary leg $prim failed half way}, $pre, $res, primary now $(status_field cr 3)"
	dmsetup remove cr
done
dmsetup remove "${names[@]}"
[ "$fo_points" = 0 ] || [ "$failovers" -gt 0 ] || fail "the primary failed at $fo_points points and never failed over"
figure crash_points "$POINTS"
figure acked_checked "$checked_total"
figure mismatches 0
echo "crash points $POINTS ($fo_points with the primary failing, $failovers failovers), acknowledged blocks checked $checked_total, mismatches 0, region differences at the crashes $differing (all covered), intent regions resynced $intent_total, region copies $copied_total"
