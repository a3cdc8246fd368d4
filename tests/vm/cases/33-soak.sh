#!/usr/bin/env bash
# A short soak (see soak.sh): load, random faults and restores, metadata
# failures, suspend/resume, reloads and crashes, for 150 s (or what
# `make soak` wrote into soak-seconds), then identical legs and every
# acknowledged write read back.
# vm-timeout: 7800
. "$FRACTURE_VM/lib.sh"
. "$FRACTURE_VM/matrix.sh"
. "$FRACTURE_VM/soak.sh"
secs=150 seed=33
[ ! -f "$FRACTURE_RESULTS/soak-seconds" ] || read -r secs seed <"$FRACTURE_RESULTS/soak-seconds"
soak_run "$secs" "${seed:-33}"
