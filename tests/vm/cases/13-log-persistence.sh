#!/usr/bin/env bash
# A fractured leg stays fractured with the same bits across remove/create,
# table reload and module reload.
. "$FRACTURE_VM/lib.sh"
py_start   # the Python helpers in one process (logged_regions, legs_identical...)

L=$RAM_SECTORS R=512   # 256 regions
table=$(fracture_table $L /dev/ram0 $R /dev/ram1 /dev/ram2)
create fp "$table"
dmsetup message fp 0 fracture 1
for s in 0 5000 70000 130000; do
	dd if=/dev/urandom of=/dev/mapper/fp bs=512 seek=$s count=16 oflag=direct status=none
done
# A suspend empties the write-intent log (status field 0 below).
dmsetup suspend fp
dmsetup resume fp
bits=$(logged_regions /dev/ram0 1)
assert_eq "0 9 136 253" "$bits" "logged regions"
st=$(status_of fp)
assert_eq "2 AF 0 256/256 252/256 0 idle rw -" "$st" "status"

step "table reload"
dmsetup load fp --table "$table"
dmsetup resume fp
assert_eq "$st" "$(status_of fp)" "status after reload"

step "remove and create"
dmsetup remove fp
assert_eq "$bits" "$(logged_regions /dev/ram0 1)" "bits after remove"
create fp "$table"
assert_eq "$st" "$(status_of fp)" "status after re-create"

step "module reload"
dmsetup remove fp
rmmod dm_fracture
create fp "$table"
assert_eq "$st" "$(status_of fp)" "status after module reload"
dd if=/dev/urandom of=/dev/mapper/fp bs=512 seek=$((200 * R)) count=1 oflag=direct status=none
assert_eq "0 9 136 200 253" "$(logged_regions /dev/ram0 1)" "logging goes on"
dmsetup remove fp
