#!/usr/bin/env bash
# Prints the reliability figures of a test run: scenarios run, failure
# matrix cells passed, faults injected, crash points, acknowledged writes
# checked, mismatches, fuzz executions, kernel splats. Reads the run's folder (default: the newest
# tests/results/*/ with figures): its `figures` file (lines "<name> <n>",
# added to by the VM cases, tests/vm/crash.sh, scripts/fuzz.sh and
# scripts/check.sh) and its cases.log.
#
#   scripts/report.sh [<results-folder>]
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-}
if [ -z "$dir" ]; then
	dir=$(ls -td "$top"/tests/results/*/ 2>/dev/null | while read -r d; do
		[ -f "$d/figures" ] && { echo "$d"; break; }
	done)
fi
[ -n "$dir" ] && [ -f "$dir/figures" ] || { echo "report: no figures found (run make check first)" >&2; exit 1; }
dir=${dir%/}

sum() { awk -v k="$1" '$1 == k { n += $2; seen = 1 } END { if (seen) print n; else print "-" }' "$dir/figures"; }
ok=$(grep -c "^ok " "$dir/cases.log" 2>/dev/null)
bad=$(grep -c "^FAIL " "$dir/cases.log" 2>/dev/null)
echo "dm-fracture reliability figures ($dir)"
printf '  %-30s %s\n' "VM scenarios run" "$((ok + bad)) ($ok passed, $bad failed)"
printf '  %-30s %s\n' "host tests passed" "$(sum host_tests)"
printf '  %-30s %s\n' "failure matrix cells passed" "$(sum matrix_cells)"
printf '  %-30s %s\n' "faults injected" "$(sum faults)"
printf '  %-30s %s\n' "crash points" "$(sum crash_points)"
printf '  %-30s %s\n' "acknowledged writes checked" "$(sum acked_checked)"
printf '  %-30s %s\n' "mismatches" "$(sum mismatches)"
printf '  %-30s %s\n' "fuzz executions" "$(sum fuzz_executions) ($(sum fuzz_targets) targets, $(sum fuzz_crashes) crashes)"
printf '  %-30s %s\n' "kernel splats" "$(sum splats)"
