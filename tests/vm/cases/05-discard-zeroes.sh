#!/usr/bin/env bash
# Discard and write-zeroes reach every leg: the legs read back zeroes and
# stay identical.
. "$FRACTURE_VM/lib.sh"

l0=$(nullb_create dz0 64)
l1=$(nullb_create dz1 64)
create mz "$(fracture_table $RAM_SECTORS /dev/ram0 1024 $l0 $l1)"
[ "$(cat /sys/block/dz0/queue/discard_max_bytes)" != 0 ] || fail "null_blk without discard"
dm=$(dm_sysname mz)
[ "$(cat /sys/block/$dm/queue/discard_max_bytes)" != 0 ] || fail "dm device does not advertise discard"

data=$(random_file 16)
dd if="$data" of=/dev/mapper/mz bs=1M oflag=direct status=none
legs_identical $RAM_SECTORS "$l0" "$l1"

step "discard 4 MiB at 1 MiB"
blkdiscard -o $((1 << 20)) -l $((4 << 20)) /dev/mapper/mz
fresh
for l in "$l0" "$l1"; do
	cmp -n $((4 << 20)) -i $((1 << 20)):0 "$l" /dev/zero || fail "$l not zero after discard"
done
legs_identical $RAM_SECTORS "$l0" "$l1"

step "zero-out 2 MiB at 8 MiB"
blkdiscard -z -o $((8 << 20)) -l $((2 << 20)) /dev/mapper/mz
fresh
for l in "$l0" "$l1"; do
	cmp -n $((2 << 20)) -i $((8 << 20)):0 "$l" /dev/zero || fail "$l not zero after zero-out"
done
legs_identical $RAM_SECTORS "$l0" "$l1"
assert_eq "AA" "$(health_of mz)" "status"
dmsetup remove mz
