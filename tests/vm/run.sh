#!/usr/bin/env bash
# Boot debug-kernel guests (virtme-ng, TCG; FRACTURE_VM_SHARDS of them at
# once, default 2) and run every VM test case in them, then the reboot and
# crash tests in guests of their own. Prints one line per case and "N passed, N failed" last; exits non-zero
# on any failure, on any kernel splat, or when the guest does not finish.
#
#   tests/vm/run.sh [case-name-pattern]
#
# Environment: KDIR (kernel tree, default the cached debug kernel),
# FRACTURE_VM_TIMEOUT (seconds, default 3600), FRACTURE_RESULTS (directory).
set -uo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
KDIR=${KDIR:-$("$top/scripts/kernel.sh" path debug)}
. "$top/scripts/vm.sh"
pattern=${1:-}
timeout_s=${FRACTURE_VM_TIMEOUT:-4800}
results=${FRACTURE_RESULTS:-$top/tests/results/vm-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$results"
results=$(cd "$results" && pwd)

[ -f "$KDIR/arch/x86/boot/bzImage" ] || { echo "run.sh: no kernel in $KDIR (make kernel)" >&2; exit 1; }
[ -f "$top/dm_fracture.ko" ] || { echo "run.sh: dm_fracture.ko not built (make)" >&2; exit 1; }
# The guest runs fracturectl from the host tree.
(cd "$top" && cargo build -q --locked -p fracturectl) || { echo "run.sh: cannot build fracturectl" >&2; exit 1; }

echo "vm: kernel $KDIR"
echo "vm: results in $results"
console="$results/console.log"
start=$(date +%s)
# The cases run in FRACTURE_VM_SHARDS guests at once (default 2, one vCPU
# each): a case is mostly one shell at a time, so two single-CPU guests get
# through the suite in about half the time of one with two CPUs. The guests
# share one queue, longest case first (tests/vm/durations): each takes the
# next case nobody has claimed (a claim is a mkdir in a directory both
# guests write, atomic on the host), so a guest that drew short cases takes
# more of them and both end at about the same time.
shards=${FRACTURE_VM_SHARDS:-2}
names=()
for c in "$top"/tests/vm/cases/*.sh; do
	name=$(basename "$c" .sh)
	[ -z "$pattern" ] || [[ "$name" == *$pattern* ]] || continue
	names+=("$name")
done
[ "${#names[@]}" -ge "$shards" ] || shards=${#names[@]}
[ "$shards" -ge 1 ] || shards=1
cpus=$((2 / shards))
[ "$cpus" -ge 1 ] || cpus=1
rm -rf "$results/claims" "$results"/shard-*.cases
mkdir -p "$results/claims"
printf '%s\n' "${names[@]}" | awk '
	FNR == NR { if ($0 !~ /^#/) t[$1] = $2; next }
	{ d = ($1 in t) ? t[$1] : 60; print d, $1 }' "$top/tests/vm/durations" - |
	sort -rn >"$results/queue.durations"
cut -d' ' -f2 "$results/queue.durations" >"$results/queue"
echo "vm: ${#names[@]} cases, about $(awk '{ s += $1 } END { print s + 0 }' "$results/queue.durations") s in all, $shards guests"
# brd: 12 RAM disks of 64 MiB (legs, metadata). Everything else the cases
# make themselves (null_blk through configfs, dm-linear slices, loop files).
# An oops, a hung task or a soft lockup panics the guest at once (the run
# then fails with the console showing why) instead of stalling the suite.
# The tests that boot guests of their own (reboot and crash), one guest at
# a time: their result lines go to boots.log, their verdicts to
# boots.status. FRACTURE_VM_BOOTS=overlap runs them beside the case guests
# (a third guest on the host's two CPUs); the default, after them.
boot_tests() {
	: >"$results/boots.log"
	# Persistence across a guest reboot: two boots sharing file-backed disks
	# (the RAM disks above do not survive one). Counted as two more cases: the
	# fracture log of a split leg, and a recovery interrupted by the reboot.
	reboot_ok=skip recovery_ok=skip activate_ok=skip
	if [ -z "$pattern" ] || [[ reboot == *$pattern* ]]; then
		reboot_ok=fail recovery_ok=fail activate_ok=fail
		imgs=()
		for i in 0 1 2 3 4 5 6 7 8; do
			img="$results/disk$i.img"
			rm -f "$img"
			truncate -s 32M "$img"
			imgs+=(--disk "$img")
		done
		for phase in 1 2; do
			vm_timeout 600 \
				vng --run "$KDIR" --disable-kvm --verbose --user root --cpus 2 --memory 1G \
					--rwdir "$results" "${imgs[@]}" \
					--append "oops=panic hung_task_panic=1 $VM_ROOT_APPEND" \
					-- "$top/tests/vm/reboot-guest.sh" "$phase" "$results" \
					>"$results/reboot-$phase.console.log" 2>&1 </dev/null || true
		done
		if [ -s "$results/reboot-status-1" ] && [ -s "$results/reboot-bits-1" ] &&
			cmp -s "$results/reboot-status-1" "$results/reboot-status-2" &&
			cmp -s "$results/reboot-bits-1" "$results/reboot-bits-2" &&
			grep -q "AF" "$results/reboot-status-1"; then
			reboot_ok=ok
		fi
		# rc: logged at phase 1 > left at the reboot > 0, then exactly `left`
		# regions copied, no bit left, legs identical.
		read -r rc_health rc_left rc_copied rc_bits <"$results/reboot-rc-end" 2>/dev/null || true
		rc_logged=$(cat "$results/reboot-rc-logged-1" 2>/dev/null || echo 0)
		if [ "${rc_health:-}" = AA ] && [ "${rc_bits:-x}" = 0 ] &&
			[ "${rc_left:-0}" -gt 0 ] && [ "$rc_left" -lt "$rc_logged" ] &&
			[ "$rc_copied" = "$rc_left" ] &&
			[ "$(cat "$results/reboot-rc-cmp" 2>/dev/null)" = same ]; then
			recovery_ok=ok
		fi
		rm -f "$results"/disk*.img
		if [ "$recovery_ok" = ok ]; then
			echo "ok   reboot-mid-recovery (logged $rc_logged, left after the reboot $rc_left, copied then $rc_copied, legs identical)" >>"$results/boots.log"
		else
			echo "FAIL reboot-mid-recovery" >>"$results/boots.log"
			for f in reboot-rc-logged-1 reboot-rc-status-1 reboot-rc-status-2 reboot-rc-end reboot-rc-cmp; do
				echo "    | $f: $(cat "$results/$f" 2>/dev/null)"
			done
		fi
		# ra: the state before the reboot (uuid, health, dirty, data) is what
		# activate brought back; then resynced, identical, metadata clean.
		if [ -s "$results/reboot-ra-1" ] && cmp -s "$results/reboot-ra-1" "$results/reboot-ra-2" &&
			grep -q " AF [1-9]" "$results/reboot-ra-1" &&
			[ "$(tr '\n' ' ' <"$results/reboot-ra-cmp" 2>/dev/null)" = "same clean " ]; then
			activate_ok=ok
			echo "ok   reboot-activate (fracturectl activate --all after a reboot, $(cat "$results/reboot-ra-lvs"), state '$(head -n1 "$results/reboot-ra-2")' as before, resynced, legs identical, check clean)" >>"$results/boots.log"
		else
			echo "FAIL reboot-activate" >>"$results/boots.log"
			for f in reboot-ra-1 reboot-ra-2 reboot-ra-lvs reboot-ra-activate reboot-ra-cmp reboot-ra-check; do
				echo "    | $f: $(cat "$results/$f" 2>/dev/null)"
			done
		fi
		if [ "$reboot_ok" = ok ]; then
			echo "ok   reboot-persistence (status '$(cat "$results/reboot-status-2")', bits '$(cat "$results/reboot-bits-2")')" >>"$results/boots.log"
		else
			echo "FAIL reboot-persistence" >>"$results/boots.log"
			for f in reboot-status-1 reboot-status-2 reboot-bits-1 reboot-bits-2; do
				echo "    | $f: $(cat "$results/$f" 2>/dev/null)"
			done
			tail -n 20 "$results/reboot-2.console.log" | sed 's/^/    | /'
		fi
	fi

	# Crash consistency with real guest crashes: a series of boots, each crashed
	# at a random moment of a write load (tests/vm/crash.sh; a boot of the debug
	# kernel takes ~40 s under TCG, so only FRACTURE_CRASH_POINTS, default 2,
	# here: case 22 adds 10 crash points inside the suite's guest, and
	# `make crash-soak` runs many). One more case.
	crash_ok=skip
	if [ -z "$pattern" ] || [[ crash == *$pattern* ]]; then
		crash_ok=fail
		FRACTURE_RESULTS="$results" KDIR="$KDIR" "$top/tests/vm/crash.sh" "${FRACTURE_CRASH_POINTS:-2}" >"$results/crash.log" 2>&1
		grep -q "^ok   crash-consistency" "$results/crash.log" && crash_ok=ok
		grep "crash-consistency" "$results/crash.log" >>"$results/boots.log"
		grep -v "^ok   crash-consistency" "$results/crash.log" | sed 's/^/    | /' >>"$results/boots.log"
	fi
	echo "$reboot_ok $recovery_ok $activate_ok $crash_ok" >"$results/boots.status"
}

# The host's CPU time while the guests run: how much of the two CPUs they
# kept busy (idle time is room for more guests; a full host is not).
cpu_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $5 + $6 }' /proc/stat; }
read -r busy0 idle0 < <(cpu_ticks)
rm -f "$results/boots.status"
boots_pid=
if [ "${FRACTURE_VM_BOOTS:-after}" = overlap ]; then
	boot_tests &
	boots_pid=$!
fi
pids=()
for ((i = 1; i <= shards; i++)); do
	mkdir -p "$results/shard-$i"
	vm_timeout "$timeout_s" \
		vng --run "$KDIR" --disable-kvm --verbose --user root --cpus "$cpus" --memory 3G \
			--rwdir "$results/shard-$i" --rwdir "$results/claims" \
			--append "brd.rd_nr=12 brd.rd_size=65536 null_blk.nr_devices=0 loglevel=7 oops=panic hung_task_panic=1 softlockup_panic=1 $VM_ROOT_APPEND" \
			-- "$top/tests/vm/guest.sh" "$results/shard-$i" "$pattern" "$results/queue" "$results/claims" \
			>"$results/shard-$i/console.log" 2>&1 </dev/null &
	pids+=($!)
done
rc=0
for p in "${pids[@]}"; do
	wait "$p" || rc=$?
done
read -r busy1 idle1 < <(cpu_ticks)
cpu_busy=$(( 100 * (busy1 - busy0) / (busy1 - busy0 + idle1 - idle0 + 1) ))
echo "vm: the host's CPUs were ${cpu_busy}% busy while the guests ran"
echo "host_cpu_busy_pct $cpu_busy" >>"$results/figures"
# One set of results, as from one guest: cases in name order.
: >"$results/cases.log"
: >"$results/dmesg.txt"
: >"$console"
sum_p=0 sum_f=0 finished=1
for ((i = 1; i <= shards; i++)); do
	d="$results/shard-$i"
	echo "=== guest $i" >>"$console"
	cat "$d/console.log" >>"$console"
	cat "$d/dmesg.txt" >>"$results/dmesg.txt" 2>/dev/null
	for f in "$d"/*.log "$d"/*.dmesg; do
		[ -e "$f" ] && [ "$(basename "$f")" != console.log ] && [ "$(basename "$f")" != cases.log ] && mv "$f" "$results/"
	done
	if [ -f "$d/summary" ]; then
		read -r p f <"$d/summary"
		sum_p=$((sum_p + p)) sum_f=$((sum_f + f))
	else
		finished=0
		echo "vm: guest $i did not finish (timeout or crash); console tail:" >>"$results/unfinished"
		tail -n 40 "$d/console.log" >>"$results/unfinished"
	fi
done
cat "$results"/shard-*/figures >>"$results/figures" 2>/dev/null
# Each case's block (its line and any indented failure lines) by name.
cat "$results"/shard-*/cases.log 2>/dev/null | awk '
	/^(ok|FAIL) / { key = $2 } { print key "\t" NR "\t" $0 }' | sort -t "$(printf '\t')" -k1,1 -k2,2n | cut -f3- >"$results/cases.log"
[ "$finished" = 0 ] || echo "$sum_p $sum_f" >"$results/summary"
echo "vm: guest ran $(( $(date +%s) - start ))s, exit $rc"
if [ -n "$boots_pid" ]; then
	wait "$boots_pid"
else
	boot_tests
fi
echo "vm: boot tests done at $(( $(date +%s) - start ))s"
read -r reboot_ok recovery_ok activate_ok crash_ok <"$results/boots.status" 2>/dev/null ||
	{ reboot_ok=fail recovery_ok=fail activate_ok=fail crash_ok=fail; }
cat "$results/boots.log" 2>/dev/null | tee -a "$results/cases.log"

fail=0
if [ ! -f "$results/summary" ]; then
	cat "$results/unfinished" 2>/dev/null || echo "vm: the guest did not finish"
	fail=1
fi
[ -f "$results/cases.log" ] && grep -v "reboot-\|crash-consistency" "$results/cases.log"

# Any splat anywhere in the guest's kernel log fails the run, whatever the
# cases said.
splats="$top/tests/vm/splat-patterns"
for f in "$results/dmesg.txt" "$console" "$results"/reboot-*.console.log "$results"/crash-*.console.log; do
	[ -f "$f" ] || continue
	if grep -E -f "$splats" "$f" >"$results/splats.txt"; then
		echo "vm: kernel splat in $(basename "$f"):"
		head -n 40 "$results/splats.txt"
		fail=1
		break
	fi
done
# Distinct splat lines over every guest (the console repeats dmesg).
cat "$results/dmesg.txt" "$console" "$results"/reboot-*.console.log "$results"/crash-*.console.log 2>/dev/null |
	grep -E -f "$splats" | sort -u | wc -l | sed 's/^/splats /' >>"$results/figures"

passed=0 failed=0
if [ -f "$results/summary" ]; then
	read -r passed failed <"$results/summary"
fi
for r in "$reboot_ok" "$recovery_ok" "$activate_ok" "$crash_ok"; do
	case $r in
		ok) passed=$((passed + 1)) ;;
		fail) failed=$((failed + 1)) ;;
	esac
done
[ "$failed" = 0 ] || fail=1
[ "$rc" = 0 ] || fail=1
[ "$fail" = 0 ] || [ "$failed" != 0 ] || failed=1
echo "$passed passed, $failed failed"
exit "$fail"
