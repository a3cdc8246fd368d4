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

step "discarded regions stay read from the primary and unverified across a reload"
l2=$(nullb_create dz2 64)
wipe /dev/ram1
line=$(fracture_table $RAM_SECTORS /dev/ram1 1024 "$l0" "$l2")
create md "$line"
dd if="$data" of=/dev/mapper/md bs=1M oflag=direct status=none
blkdiscard -o $((1 << 20)) -l $((4 << 20)) /dev/mapper/md   # regions 2..9
# What a leg holds there is undefined: leg 1 holds other data than the
# primary's zeroes (a device whose discard does not zero, or that ignores
# it, as dm-fracture allows a leg without discard to do).
dd if=/dev/urandom of="$l2" bs=1M seek=1 count=4 oflag=direct status=none
dmsetup suspend md
dmsetup load md --table "$line"
dmsetup resume md
# Reads in parallel (balanced onto leg 1 if it were allowed) read zeroes.
for i in 1 2 3 4; do
	for j in 1 2 3; do
		cmp -n $((4 << 20)) <(dd if=/dev/mapper/md iflag=direct bs=64k skip=16 count=64 status=none) /dev/zero ||
			echo "read $i.$j differs" >>/tmp/dz.bad
	done &
done
wait
[ ! -s /tmp/dz.bad ] || { cat /tmp/dz.bad; rm -f /tmp/dz.bad; fail "a read of a discarded region was served by leg 1"; }
dmsetup message md 0 verify
for ((i = 0; i < 600; i++)); do
	[[ "$(verify_of md)" == verifying:* ]] || break
	sleep 0.1
done
assert_eq "verified:1:120/128:0:8" "$(verify_of md)" "verify after the reload (the 8 discarded regions skipped)"
assert_eq "AA" "$(health_of md)" "no leg split over the discarded regions"
dmsetup remove md
echo 0 >/sys/kernel/config/nullb/dz2/power
rmdir /sys/kernel/config/nullb/dz2
