#!/usr/bin/env bash
# A secondary that fails writes is fractured (F) and gets no more writes;
# the host's writes still succeed. A primary that fails writes fails them.
. "$FRACTURE_VM/lib.sh"
py_start   # the Python helpers and the status helpers in one process

dmsetup create p --table "0 $RAM_SECTORS linear /dev/ram1 0"
dmsetup create s --table "0 $RAM_SECTORS linear /dev/ram2 0"
create fe "$(fracture_table $RAM_SECTORS /dev/ram0 1024 /dev/mapper/p /dev/mapper/s)"
fio_verify /dev/mapper/fe 8M

step "secondary starts failing writes"
dmsetup suspend s
dmsetup load s --table "0 $RAM_SECTORS error"
dmsetup resume s
data=$(random_file 4)
dd if="$data" of=/dev/mapper/fe bs=1M seek=10 oflag=direct status=none || fail "host write failed"
assert_eq "AF" "$(health_of fe)" "status after secondary failure"
dmesg | grep -q "device-mapper: fracture: leg 1 failed a write: fractured, its changes are logged" ||
	fail "no log line for the failed secondary"
cmp -n $((4 << 20)) "$data" -i 0:10M /dev/mapper/fe || fail "data read back"
fio_verify /dev/mapper/fe 8M --offset=20M

step "the secondary comes back but, being fractured, gets no writes"
dmsetup suspend s
dmsetup load s --table "0 $RAM_SECTORS linear /dev/ram2 0"
dmsetup resume s
dd if=/dev/urandom of=/dev/mapper/fe bs=1M count=1 seek=40 oflag=direct status=none
fresh
cmp -n $((1 << 20)) -i 40M:40M /dev/ram1 /dev/ram2 && fail "a fractured leg received a write"
assert_eq "AF" "$(health_of fe)" "status stays F"

step "primary fails writes: the host write fails"
dmsetup suspend p
dmsetup load p --table "0 $RAM_SECTORS error"
dmsetup resume p
if dd if=/dev/urandom of=/dev/mapper/fe bs=4k count=1 oflag=direct status=none 2>/dev/null; then
	fail "write succeeded with a failed primary"
fi
assert_eq "DF" "$(health_of fe)" "status with failed primary"
dmsetup remove fe p s
