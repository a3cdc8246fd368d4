#!/usr/bin/env bash
# Runs the selected benchmarks inside the bench guest (scripts/bench.sh).
#   guest.sh <module.ko> <results> <flavour> <all|recovery|io|slow|profile>
# A benchmark that fails does not stop the others. The outcome goes to
# <results>/guest-status ("ok" or the failed ones): the host reads it
# there rather than trusting vng's exit status.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
ko=$1 results=$2 flavour=$3 which=$4
failed=()
for b in recovery io slow profile; do
	# The profile is asked for by name only.
	if { [ "$which" = all ] && [ "$b" != profile ]; } || [ "$which" = "$b" ]; then
		if ! "$here/$b-guest.sh" "$ko" "$results" "$flavour"; then
			echo "bench: the $b benchmark failed" >&2
			failed+=("$b")
		fi
	fi
done
if [ "${#failed[@]}" -gt 0 ]; then
	echo "failed: ${failed[*]}" >"$results/guest-status"
	exit 1
fi
echo ok >"$results/guest-status"
