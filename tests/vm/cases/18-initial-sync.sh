#!/usr/bin/env bash
# A new mirror on a blank metadata device copies the primary to every
# secondary (health R until done), unless the table says `nosync`.
. "$FRACTURE_VM/lib.sh"
py_start   # the Python helpers and the status helpers in one process

L=$RAM_SECTORS R=1024   # 128 regions
head -c 64M /dev/urandom >/dev/ram1     # the primary holds data already
dd if=/dev/urandom of=/dev/ram3 bs=1M count=8 status=none   # leg 2 holds junk

step "initial sync of two secondaries"
create is "0 $L fracture /dev/ram0 $R 3 /dev/ram1 /dev/ram2 /dev/ram3"
h=$(health_of is)
assert_match "^A(RR|AR|RA|AA)$" "$h" "health right after create"
dmesg | grep -q "every secondary will be copied from the primary" || fail "no format log line"
wait_health is AAA 60
assert_eq 256 "$(stat_of is regions_copied)" "regions copied (128 per secondary)"
assert_eq "" "$(logged_regions /dev/ram0 1)$(logged_regions /dev/ram0 2)" "bits after sync"
legs_identical $L /dev/ram1 /dev/ram2 /dev/ram3
dmsetup remove is

step "the synced mirror comes back in sync"
create is "0 $L fracture /dev/ram0 $R 3 /dev/ram1 /dev/ram2 /dev/ram3"
assert_eq "AAA" "$(health_of is)" "health after re-create"
assert_eq 0 "$(stat_of is regions_copied)" "nothing copied again"
dmsetup remove is

step "nosync: legs declared identical, nothing copied"
wipe /dev/ram0 /dev/ram1 /dev/ram2
create ns "0 $L fracture /dev/ram0 $R 2 /dev/ram1 /dev/ram2 1 nosync"
assert_eq "AA" "$(health_of ns)" "health with nosync"
sleep 1
assert_eq 0 "$(stat_of ns regions_copied)" "regions copied with nosync"
assert_eq "0 $L fracture 1:0 $R 2 1:1 1:2 1 nosync" "$(dmsetup table ns)" "table line"

step "rebuild copies the whole leg again"
dmsetup message ns 0 rebuild 1
wait_health ns AA 60
assert_eq 128 "$(stat_of ns regions_copied)" "regions copied by rebuild"
dmsetup remove ns
