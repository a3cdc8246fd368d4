#!/usr/bin/env bash
# The module autoloads on `dmsetup create`, the target is listed, status and
# table are as documented, and the module unloads only when unused.
. "$FRACTURE_VM/lib.sh"

step "autoload through the dm-fracture alias"
lsmod | grep -q '^dm_fracture' && fail "module already loaded"
create m0 "$(fracture_table $RAM_SECTORS /dev/ram0 1024 /dev/ram1 /dev/ram2)"
lsmod | grep -q '^dm_fracture' || fail "module not loaded by create"
dmsetup targets | grep -E '^fracture +v[0-9]+\.[0-9]+\.[0-9]+' || fail "target not listed"

step "status and table"
assert_eq "2 AA 0 128/128 128/128 0 idle rw -" "$(status_of m0)" "status"
assert_eq "$(devnum /dev/ram0) 1024 2 $(devnum /dev/ram1) $(devnum /dev/ram2) 1 nosync" "$(table_of m0)" "table"
assert_eq "$RAM_SECTORS" "$(sectors /dev/mapper/m0)" "size"

step "module busy while a device uses it"
rmmod dm_fracture 2>/dev/null && fail "rmmod succeeded with a device present"
dmsetup remove m0
dmsetup info m0 >/dev/null 2>&1 && fail "m0 still present"
rmmod dm_fracture
lsmod | grep -q '^dm_fracture' && fail "module still loaded"

step "explicit modprobe, create with a target offset and a partial last region"
modprobe dm_fracture
wipe /dev/ram0
dmsetup create m1 <<TABLE
0 1000 linear /dev/ram5 0
1000 50000 fracture /dev/ram0 64 2 /dev/ram1 /dev/ram2 1 nosync
TABLE
assert_eq "51000" "$(sectors /dev/mapper/m1)" "size of two-target device"
dmsetup status m1 | tail -n1 | grep -q "fracture 2 AA" || fail "status of second target"
dmsetup remove m1
rmmod dm_fracture
