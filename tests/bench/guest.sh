#!/usr/bin/env bash
# Runs the selected benchmarks inside the bench guest (scripts/bench.sh).
#   guest.sh <module.ko> <results> <flavour> <all|recovery|write>
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
ko=$1 results=$2 flavour=$3 which=$4
for b in recovery write; do
	if [ "$which" = all ] || [ "$which" = "$b" ]; then
		"$here/$b-guest.sh" "$ko" "$results" "$flavour"
	fi
done
