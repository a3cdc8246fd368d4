#!/usr/bin/env bash
# Data written through the target lands identically on every leg and reads
# back as written.
. "$FRACTURE_VM/lib.sh"

create m0 "$(fracture_table $RAM_SECTORS /dev/ram0 1024 /dev/ram1 /dev/ram2)"

step "dd random data at several offsets"
data=$(random_file 8)
dd if="$data" of=/dev/mapper/m0 bs=1M oflag=direct status=none
dd if="$data" of=/dev/mapper/m0 bs=4k seek=5000 oflag=direct status=none
dd if="$data" of=/dev/mapper/m0 bs=512 seek=77777 count=3333 status=none conv=fsync
fresh
cmp -n $((8 << 20)) "$data" /dev/mapper/m0 || fail "read back through target"
cmp -n $((8 << 20)) "$data" /dev/ram1 || fail "primary content"
legs_identical $RAM_SECTORS /dev/ram1 /dev/ram2

step "fio random writes with verify, odd sizes, buffered and direct"
fio_verify /dev/mapper/m0 48M
fio --name=buffered --filename=/dev/mapper/m0 --size=16M --offset=48M \
	--rw=randwrite --bs=3584 --ioengine=psync --end_fsync=1 \
	--output-format=terse --minimal >/dev/null || fail "buffered fio"
legs_identical $RAM_SECTORS /dev/ram1 /dev/ram2
assert_eq "AA" "$(health_of m0)" "status after writes"
dmsetup remove m0
