#!/usr/bin/env bash
# Three legs, and the maximum of nine, all get every write.
. "$FRACTURE_VM/lib.sh"

step "three legs"
create m3 "$(fracture_table $RAM_SECTORS /dev/ram0 256 /dev/ram1 /dev/ram2 /dev/ram3)"
assert_eq "AAA" "$(health_of m3)" "status"
fio_verify /dev/mapper/m3 32M
legs_identical $RAM_SECTORS /dev/ram1 /dev/ram2 /dev/ram3
dmsetup remove m3

step "nine legs"
legs=$(echo /dev/ram{1..9})
# shellcheck disable=SC2086
wipe /dev/ram0 $legs
create m9 "$(fracture_table $RAM_SECTORS /dev/ram0 8 $legs)"
assert_eq "AAAAAAAAA" "$(health_of m9)" "status"
fio_verify /dev/mapper/m9 16M --iodepth=32
# shellcheck disable=SC2086
legs_identical $RAM_SECTORS $legs
dmsetup remove m9
