#!/usr/bin/env bash
# Crash consistency: <points> guest crashes (sysrq b, no sync, no teardown)
# at random moments of a write load on a 3-leg mirror over file-backed
# disks; after each, the next boot checks that the intent and fracture
# bitmaps cover every region where the legs differ, resyncs, and checks
# identical legs and every acknowledged write (tests/vm/crash-guest.sh).
# Prints one summary line and "ok"/"FAIL crash-consistency"; exits non-zero
# on a failure or a kernel splat.
#
#   tests/vm/crash.sh [points]     (default FRACTURE_CRASH_POINTS or 20)
#
# Environment: KDIR, FRACTURE_RESULTS (directory), FRACTURE_CRASH_SEED.
set -uo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
. "$top/scripts/vm.sh"
KDIR=${KDIR:-$("$top/scripts/kernel.sh" path debug)}
points=${1:-${FRACTURE_CRASH_POINTS:-20}}
results=${FRACTURE_RESULTS:-$top/tests/results/crash-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$results"
results=$(cd "$results" && pwd)
rm -f "$results"/crash-*

imgs=()
for i in 0 1 2 3; do
	img="$results/crash-disk$i.img"
	truncate -s 16M "$img"
	imgs+=(--disk "$img")
done
start=$(date +%s)
fail=0
for ((boot = 0; boot <= points; boot++)); do
	vm_timeout 300 \
		vng --run "$KDIR" --disable-kvm --verbose --user root --cpus 2 --memory 1G \
			--rwdir "$results" "${imgs[@]}" \
			--append "oops=panic hung_task_panic=1 $VM_ROOT_APPEND" \
			-- "$top/tests/vm/crash-guest.sh" "$boot" "$points" "$results" \
			>"$results/crash-$boot.console.log" 2>&1 </dev/null
	if grep -q "^FAIL" "$results/crash-boot-$boot" 2>/dev/null || [ ! -s "$results/crash-boot-$boot" ]; then
		echo "crash: boot $boot failed:"
		sed 's/^/    | /' "$results/crash-boot-$boot" 2>/dev/null
		tail -n 20 "$results/crash-$boot.console.log" | sed 's/^/    | /'
		fail=1
		break
	fi
	if [ "$boot" -lt "$points" ] && ! grep -q "^crash after" "$results/crash-boot-$boot"; then
		echo "crash: boot $boot did not reach its crash point"
		fail=1
		break
	fi
done
rm -f "$results"/crash-disk*.img

splats="$top/tests/vm/splat-patterns"
for f in "$results"/crash-*.console.log; do
	if grep -E -f "$splats" "$f" >"$results/crash-splats.txt"; then
		echo "crash: kernel splat in $(basename "$f"):"
		head -n 40 "$results/crash-splats.txt"
		fail=1
		break
	fi
done

# Figures over every boot.
sum() { cat "$results"/crash-boot-* 2>/dev/null | awk -v k="$1" '$1 == k { n += $2 } END { print n + 0 }'; }
checked=$(cat "$results"/crash-boot-* 2>/dev/null | awk '$1 == "checked" { n += $2 } END { print n + 0 }')
mism=$(cat "$results"/crash-boot-* 2>/dev/null | awk '$1 == "checked" { n += $4 } END { print n + 0 }')
crashes=$(cat "$results"/crash-boot-* 2>/dev/null | grep -c "^crash after")
diffs=$(sum differing)
summary="crash points $crashes, acknowledged writes checked $checked, mismatches $mism, regions differing at reboot $diffs (all covered by the logs), intent regions resynced $(sum intent), region copies $(sum copied), $(( $(date +%s) - start ))s"
echo "$summary" >"$results/crash-summary"
{
	echo "crash_points $crashes"
	echo "acked_checked $checked"
	echo "mismatches $mism"
} >>"$results/figures"
if [ "$fail" = 0 ] && [ "$crashes" = "$points" ] && [ "$mism" = 0 ] && [ "$checked" -gt 0 ]; then
	echo "ok   crash-consistency ($summary)"
	exit 0
fi
echo "FAIL crash-consistency ($summary)"
exit 1
