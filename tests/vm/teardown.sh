#!/usr/bin/env bash
# Runs after every case (guest.sh): removes the dm-fracture devices the case
# left, through lib.sh's dmsetup wrapper, so that their metadata devices are
# checked with `fracturectl check` like those the case removed itself.
. "$FRACTURE_VM/lib.sh"
set +e
for name in $(command dmsetup ls --target fracture 2>/dev/null | awk '$1 != "No" { print $1 }'); do
	# A suspended device cannot be removed cleanly: resume it first.
	command dmsetup info "$name" 2>/dev/null | grep -q SUSPENDED && command dmsetup resume "$name"
	dmsetup remove "$name" || echo "teardown: cannot remove $name"
done
exit 0
