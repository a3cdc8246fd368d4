#!/usr/bin/env bash
# Rewrites tests/vm/durations from the cases.log of a VM run (run.sh or
# make check: tests/results/<run>/cases.log), keeping the header and the
# cases that run did not have:
#
#   tests/vm/update-durations.sh tests/results/check-YYYYmmdd-HHMMSS
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
log=${1:?usage: $0 <results directory>}/cases.log
[ -f "$log" ] || { echo "update-durations: no $log" >&2; exit 1; }
out=$(mktemp)
{
	grep '^#' "$here/durations"
	# "ok   name (123s)" lines of this run, then the old lines of cases
	# not in it; each case once, by name.
	{
		sed -n 's/^\(ok\|FAIL\) *\([0-9][0-9]-[^ ]*\) (\([0-9]*\)s.*/\2 \3/p' "$log"
		grep -v '^#' "$here/durations"
	} | awk '!seen[$1]++' | sort
} >"$out"
mv "$out" "$here/durations"
echo "update-durations: $(grep -vc '^#' "$here/durations") cases in $here/durations"
