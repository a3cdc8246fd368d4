#!/usr/bin/env bash
# A soak of MINUTES minutes (default 10) in one debug guest: tests/vm/soak.sh
# (case 33, which make check runs for 150 s). Prints the case's summary
# line; exits non-zero on any lost write, difference or kernel splat.
#
#   scripts/soak.sh [MINUTES] [SEED]
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
minutes=${1:-10}
seed=${2:-$RANDOM}
[[ "$minutes" =~ ^[1-9][0-9]*$ ]] && [ "$minutes" -le 120 ] ||
	{ echo "soak: MINUTES must be 1..120, not '$minutes'" >&2; exit 2; }
results=${FRACTURE_RESULTS:-$top/tests/results/soak-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$results/shard-1"
echo "$((minutes * 60)) $seed" >"$results/shard-1/soak-seconds"
FRACTURE_VM_SHARDS=1 FRACTURE_RESULTS=$results FRACTURE_VM_TIMEOUT=$((minutes * 60 + 1200)) \
	"$top/tests/vm/run.sh" 33-soak
rc=$?
grep -h '^soak: .*rounds' "$results/33-soak.log" 2>/dev/null || echo "soak: no summary (see $results/33-soak.log)"
exit "$rc"
