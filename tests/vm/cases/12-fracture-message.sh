#!/usr/bin/env bash
# `fracture <leg>` splits a healthy secondary: it keeps the point-in-time
# contents, later writes are logged; bad requests are refused; rejoin is
# accepted and the state stays correct.
. "$FRACTURE_VM/lib.sh"

L=$RAM_SECTORS R=1024   # 128 regions
create fm "$(fracture_table $L /dev/ram0 $R /dev/ram1 /dev/ram2 /dev/ram3)"
dd if=/dev/urandom of=/dev/mapper/fm bs=1M count=16 oflag=direct status=none
fresh
before=$(md5sum </dev/ram3)
ev0=$(event_nr fm)

step "split leg 2"
dmsetup message fm 0 fracture 2
assert_eq "AAF" "$(health_of fm)" "health"
[ "$(event_nr fm)" -gt "$ev0" ] || fail "no dm event"
dmesg | grep -q "device-mapper: fracture: leg 2 (.*) fractured on request" || fail "no log line"

step "writes after the split are logged, the split leg is untouched"
dd if=/dev/urandom of=/dev/mapper/fm bs=512 seek=$((5 * R)) count=8 oflag=direct status=none
dd if=/dev/urandom of=/dev/mapper/fm bs=512 seek=$((100 * R + 7)) count=$((2 * R)) oflag=direct status=none
fresh
assert_eq "$before" "$(md5sum </dev/ram3)" "split leg content"
assert_eq "5 100 101 102" "$(logged_regions /dev/ram0 2)" "logged regions"
assert_eq "" "$(logged_regions /dev/ram0 1)" "in-sync leg has no bits"
legs_identical $L /dev/ram1 /dev/ram2
assert_eq "124/128" "$(status_field fm 6)" "in_sync of leg 2"

step "refused requests"
dmesg -C
dmsetup message fm 0 fracture 2 2>/dev/null && fail "fracturing a fractured leg"
dmesg | grep -q "cannot fracture leg 2: it is fractured, not in sync" || fail "reason for double fracture"
dmsetup message fm 0 fracture 0 2>/dev/null && fail "fracturing the primary"
dmesg | grep -q "invalid leg '0': secondaries are 1..2" || fail "reason for leg 0"
dmsetup message fm 0 fracture 3 2>/dev/null && fail "leg out of range"
dmsetup message fm 0 split 1 2>/dev/null && fail "unknown message"
dmesg | grep -q "unknown message 'split'" || fail "reason for unknown message"
dmsetup message fm 0 rejoin 1 2>/dev/null && fail "rejoin of an in-sync leg"

step "rejoin is accepted; state stays correct until recovery exists"
dmsetup message fm 0 rejoin 2
assert_eq "AAF" "$(health_of fm)" "health after rejoin"
assert_eq "5 100 101 102" "$(logged_regions /dev/ram0 2)" "bits kept"
dmsetup remove fm
