#!/usr/bin/env bash
# Three legs, and the maximum of nine, all get every write.
. "$FRACTURE_VM/lib.sh"

# A 16 MiB mirror: nine legs of it are compared whole.
L=32768

step "three legs"
create m3 "$(fracture_table $L /dev/ram0 256 /dev/ram1 /dev/ram2 /dev/ram3)"
assert_eq "AAA" "$(health_of m3)" "status"
fio_verify /dev/mapper/m3 16M
legs_identical $L /dev/ram1 /dev/ram2 /dev/ram3
dmsetup remove m3

step "nine legs"
legs=$(echo /dev/ram{1..9})
# shellcheck disable=SC2086
wipe /dev/ram0 $legs
create m9 "$(fracture_table $L /dev/ram0 8 $legs)"
assert_eq "AAAAAAAAA" "$(health_of m9)" "status"
fio_verify /dev/mapper/m9 8M --iodepth=32
# shellcheck disable=SC2086
legs_identical $L $legs
dmsetup remove m9
