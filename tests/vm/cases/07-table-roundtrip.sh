#!/usr/bin/env bash
# `dmsetup table` prints a line that `dmsetup load` accepts unchanged.
. "$FRACTURE_VM/lib.sh"

create rt "$(fracture_table $RAM_SECTORS /dev/ram0 2048 /dev/ram1 /dev/ram2 /dev/ram3)"
before=$(dmsetup table rt)
echo "table: $before"
dmsetup load rt --table "$before"
dmsetup resume rt
assert_eq "$before" "$(dmsetup table rt)" "table after reload of its own output"

step "remove, then create again from the printed line"
dmsetup remove rt
dmsetup create rt2 --table "$before"
assert_eq "$before" "$(dmsetup table rt2)" "table of the copy"
dmsetup remove rt2
