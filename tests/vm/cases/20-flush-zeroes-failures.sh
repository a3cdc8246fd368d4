#!/usr/bin/env bash
# A secondary that fails a write-zeroes is fractured with that range logged;
# one that fails a flush is fractured with every region logged (a failed
# flush may have lost any earlier write). Both are on disk before the host's
# bio completes, and the host's bio succeeds. The legs are null_blk devices
# with a write cache, so that flushes reach them.
. "$FRACTURE_VM/lib.sh"
py_start   # the Python helpers in one process (logged_regions, legs_identical...)

L=$RAM_SECTORS
l0=$(nullb_create fz0 64)
l1=$(nullb_create fz1 64)
linear_over s "$l1"
# down all the time: every write, flush and write-zeroes fails.
fail_writes() {
	dmsetup suspend s
	dmsetup load s --table "0 $L flakey $l1 0 0 1 1 error_writes"
	dmsetup resume s
}

step "write-zeroes fails on the secondary: its range is logged"
create zf "$(fracture_table $L /dev/ram0 1024 $l0 /dev/mapper/s)"
dd if=/dev/urandom of=/dev/mapper/zf bs=1M count=16 oflag=direct status=none
# A suspend empties the write-intent log, whose regions a fracture would
# log too (case 21): only the failed range is logged below.
dmsetup suspend zf
dmsetup resume zf
fail_writes
blkdiscard -z -o $((8 << 20)) -l $((2 << 20)) /dev/mapper/zf || fail "host zero-out failed"
assert_eq "AF" "$(health_of zf)" "health"
assert_eq "16 17 18 19" "$(logged_regions /dev/ram0 1)" "regions logged"
fresh
cmp -n $((2 << 20)) -i $((8 << 20)):0 "$l0" /dev/zero || fail "primary not zeroed"
dmsetup remove zf

step "a flush fails on the secondary: every region is logged"
wipe /dev/ram0
repair_dev s "$l1"
create ff "$(fracture_table $L /dev/ram0 1024 $l0 /dev/mapper/s)"
dd if=/dev/urandom of=/dev/mapper/ff bs=1M count=4 oflag=direct status=none
fail_writes
"$PYTHON" -c 'import os, sys; fd = os.open(sys.argv[1], os.O_WRONLY); os.fsync(fd)' /dev/mapper/ff ||
	fail "host flush failed"
assert_eq "AF" "$(health_of ff)" "health"
assert_eq 128 "$(count_words "$(logged_regions /dev/ram0 1)")" "regions logged"
dmesg | grep -q "leg 1 fractured with every region out of sync" || fail "no log line"
dmsetup remove ff s
