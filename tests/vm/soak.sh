#!/usr/bin/env bash
# The soak (Documentation/reliability.rst, "Soak"): one mirror under a
# write load that never stops, rounds of 8 s each with one random event:
# a fault on the primary or the secondary (error, error_writes, delay,
# removed) restored a few seconds later, a metadata failure (then a
# reload), a suspend/resume, a table reload, or a crash (the devices frozen
# in a random order, then cut; the table torn down, the devices back, the
# mirror activated again from its metadata). After every round: the way
# back (as in the failure matrix), every write the load had acknowledged
# in any round (before the cut, for a crash) read back from both legs;
# every third round and at the end, the legs compared. Ends with one
# summary line.
# Sourced by case 33 (a short one) and by `make soak` (scripts/soak.sh):
#   soak_run <seconds> <seed>
# Uses matrix.sh's devices and helpers (sourced first).

SOAK_ROUND=8

# soak_fault: a random fault on a random leg, restored after 1-3 s.
soak_fault() {
	local faults=(error error_writes delay removed) slots=(mxp mxs) slot fault
	slot=${slots[RANDOM % 2]}
	fault=${faults[RANDOM % 4]}
	echo "round $round: $fault on $slot"
	mx_inject "$slot" "$fault"
	sleep $((1 + RANDOM % 3))
	mx_restore "$slot" "$fault"
	n_faults=$((n_faults + 1))
}

# soak_crash: a power cut: the three devices frozen one after the other in
# a random order (suspended without flushing: their I/O waits, nothing
# completes), then swapped for dm-flakey drop_writes (what was waiting,
# and everything after, goes nowhere), as case 22 does; the mirror torn
# down, the devices back, the mirror activated from its metadata. Only
# writes acknowledged before the first freeze must survive.
soak_crash() {
	local s order r=$RANDOM
	echo "round $round: crash"
	order=$(printf '%s\n' mxm mxp mxs | shuf --random-source=<(yes "$r"))
	for s in $order; do
		dmc load $s 0 $MX_LEN flakey "$(mx_base_of $s)" 0 0 1 1 drop_writes
	done
	py_call ackload.py now
	cutoff=$py_out
	for s in $order; do
		dmc suspend $s noflush
	done
	for s in $order; do
		dmc resume $s
	done
	py_call kill "$load"
	load= MX_LOAD=
	dmsetup remove mxa
	dmsetup remove mx
	for s in mxm mxp mxs; do
		dmc load $s 0 $MX_LEN linear "$(mx_base_of $s)" 0
		dmc resume $s
	done
	create mx "$MX_TABLE"
	dmsetup create mxa --table "0 $MX_LOAD_LEN linear /dev/mapper/mx 0"
	n_crashes=$((n_crashes + 1))
	figure crash_points 1
}

# soak_check <leg-dev>: every write acknowledged so far (in any round, up
# to its crash if it had one) is on it: the last generation of each block,
# or a later one.
soak_check() {
	py_call ackload.py check "$1" "${all_acks[@]}" || fail "round $round: acknowledged writes lost on $1: $py_out"
	n_checked=$((n_checked + $(awk '/^checked/ { print $2 }' <<<"$py_out")))
}

soak_run() {
	local secs=$1 deadline round=0 acks load cutoff ev t0
	local all_acks=() n_faults=0 n_meta=0 n_suspends=0 n_reloads=0 n_crashes=0 n_checked=0 n_compares=0
	RANDOM=$2
	echo "soak: $secs s, seed $2"
	py_start
	mx_setup
	trap mx_cleanup EXIT
	deadline=$((SECONDS + secs))
	while [ "$SECONDS" -lt "$deadline" ]; do
		round=$((round + 1))
		acks=/tmp/soak.acks.$round cutoff=
		t0=$SECONDS
		# Generations grow with the round: a block a later round wrote
		# holds a higher one.
		py_call ackload.py write /dev/mapper/mxa "$acks" "$round" "$SOAK_ROUND" "$RANDOM" || fail "ackload: $py_out"
		load=$py_out MX_LOAD=$py_out
		sleep 1
		ev=$((RANDOM % 10))
		case $ev in
			0 | 1 | 2 | 3) soak_fault ;;
			4)
				echo "round $round: metadata write errors"
				mx_inject mxm error
				sleep 1
				mx_restore mxm error
				n_meta=$((n_meta + 1))
				;;
			5)
				echo "round $round: suspend/resume"
				dmsetup suspend mx
				sleep 1
				dmsetup resume mx
				n_suspends=$((n_suspends + 1))
				;;
			6)
				echo "round $round: reload"
				mx_reload
				n_reloads=$((n_reloads + 1))
				;;
			7) soak_crash ;;
			*) echo "round $round: load only" ;;
		esac
		sleep $((SOAK_ROUND - (SECONDS - t0) > 0 ? SOAK_ROUND - (SECONDS - t0) : 0))
		[ -z "$load" ] || py_call kill "$load"
		MX_LOAD=
		all_acks+=("$acks${cutoff:+:$cutoff}")
		# A failed metadata device is used again only by a new table.
		[ "$(status_field mx 8)" = rw ] || mx_reload
		mx_heal
		soak_check /dev/mapper/mxp
		soak_check /dev/mapper/mxs
		if [ $((round % 3)) = 0 ]; then
			legs_identical $MX_LEN /dev/mapper/mxp /dev/mapper/mxs >/dev/null
			n_compares=$((n_compares + 1))
		fi
	done
	legs_identical $MX_LEN /dev/mapper/mxp /dev/mapper/mxs
	dmsetup remove mxa
	dmsetup remove mx
	figure acked_checked "$n_checked"
	figure mismatches 0
	echo "soak: $secs s, seed $2: $round rounds, $n_faults leg faults, $n_meta metadata faults, $n_suspends suspends, $n_reloads reloads, $n_crashes crashes; $n_checked acknowledged writes checked, 0 lost; legs identical ($((n_compares + 1)) comparisons)"
}
