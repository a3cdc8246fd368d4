#!/usr/bin/env bash
# `fracture <leg>` splits a healthy secondary: it keeps the point-in-time
# contents, later writes are logged; bad requests are refused; a resume does
# not rejoin it (only a failed leg is retried); `rejoin` resyncs it. Its
# log says exactly what changed: the regions written after the split, not
# those merely marked in the write-intent log (the split's flush made what
# the leg took durable).
. "$FRACTURE_VM/lib.sh"
py_start   # the Python helpers in one process (logged_regions, legs_identical...)

L=$RAM_SECTORS R=1024   # 128 regions
# A long intent_delay: the regions written before the split are still marked
# in the write-intent log, and must not reach the split leg's log.
create fm "$(fracture_table $L /dev/ram0 $R /dev/ram1 /dev/ram2 /dev/ram3 | sed 's/1 nosync$/3 nosync intent_delay 600000/')"
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
dd if=/dev/urandom of=/dev/mapper/fm bs=512 seek=$((40 * R)) count=8 oflag=direct status=none
dd if=/dev/urandom of=/dev/mapper/fm bs=512 seek=$((100 * R + 7)) count=$((2 * R)) oflag=direct status=none
fresh
assert_eq "$before" "$(md5sum </dev/ram3)" "split leg content"
# Not 0..31, the 16 MiB written before the split (still marked in the
# intent log with the 4 written after it): the split's flush made them
# durable on the leg.
assert_eq 36 "$(status_field fm 7)" "intent_regions (0..31 and the 4 written after the split)"
assert_eq "40 100 101 102" "$(logged_regions /dev/ram0 2)" "logged regions"
assert_eq "" "$(logged_regions /dev/ram0 1)" "in-sync leg has no bits"
legs_identical $L /dev/ram1 /dev/ram2
assert_eq "124/128" "$(status_field fm 6)" "in_sync of leg 2"

step "refused requests"
dmesg -C
dmsetup message fm 0 fracture 2 2>/dev/null && fail "fracturing a fractured leg"
dmesg | grep -q "cannot fracture leg 2: it is fractured, not in sync or recovering" || fail "reason for double fracture"
dmsetup message fm 0 fracture 0 2>/dev/null && fail "fracturing the primary"
dmesg | grep -q "cannot fracture leg 0: it is the primary" || fail "reason for leg 0"
dmsetup message fm 0 fracture 3 2>/dev/null && fail "leg out of range"
dmesg | grep -q "invalid leg '3': legs are 0..2" || fail "reason for leg 3"
dmsetup message fm 0 split 1 2>/dev/null && fail "unknown message"
dmesg | grep -q "unknown message 'split'" || fail "reason for unknown message"
dmsetup message fm 0 rejoin 1 2>/dev/null && fail "rejoin of an in-sync leg"

dmsetup message fm 0 rebuild 0 2>/dev/null && fail "rebuild of the primary"
dmsetup message fm 0 recovery_rate 5k 2>/dev/null && fail "rate with a unit"
dmesg | grep -q "invalid recovery_rate '5k'" || fail "reason for a bad rate"

step "a split leg stays split across suspend/resume"
dmsetup suspend fm
dmsetup resume fm
assert_eq "AAF" "$(health_of fm)" "health after resume"
fresh
assert_eq "$before" "$(md5sum </dev/ram3)" "split leg content after resume"

step "rejoin resyncs the split leg: only its 4 logged regions are copied"
c0=$(stat_of fm regions_copied)
dmsetup message fm 0 rejoin 2
wait_health fm AAA 30
assert_eq 4 "$(( $(stat_of fm regions_copied) - c0 ))" "regions copied"
assert_eq "" "$(logged_regions /dev/ram0 2)" "bits after recovery"
legs_identical $L /dev/ram1 /dev/ram2 /dev/ram3
dmsetup remove fm
