#!/usr/bin/env bash
# Unload and reload the module between uses; data on the legs persists and a
# new table over the same legs reads it back.
. "$FRACTURE_VM/lib.sh"

data=$(random_file 4)
for round in 1 2 3; do
	step "round $round"
	create mr "$(fracture_table $RAM_SECTORS /dev/ram0 1024 /dev/ram1 /dev/ram2)"
	if [ "$round" -gt 1 ]; then
		cmp -n $((4 << 20)) -i 0:$((round - 1))M "$data" /dev/mapper/mr ||
			fail "data of round $((round - 1)) lost across reload"
	fi
	dd if="$data" of=/dev/mapper/mr bs=1M seek=$round oflag=direct status=none
	dmsetup remove mr
	rmmod dm_fracture
done
legs_identical $RAM_SECTORS /dev/ram1 /dev/ram2
