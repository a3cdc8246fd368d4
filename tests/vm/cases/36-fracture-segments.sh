#!/usr/bin/env bash
# dm-fracture as the second and third segment of one table, as LVM builds
# them (a linear segment first): every target but the first starts past
# sector 0, and dm core hands an empty flush to each of them with the
# sector of the bio it came from. Writes with FUA, fsync (flushes),
# discards and write-zeroes across the segment boundaries; the legs of
# each mirror end identical, the data reads back, nothing splats.
. "$FRACTURE_VM/lib.sh"

S=32768   # 16 MiB per segment, 64 KiB regions
# null_blk: discard, and a volatile cache (flush and FUA mean something).
n=$(nullb_create sg0 16)
a0=$(nullb_create sg1 16) a1=$(nullb_create sg2 16)
b0=$(nullb_create sg3 16) b1=$(nullb_create sg4 16)
wipe /dev/ram5 /dev/ram8
printf '%s\n' "0 $S linear $n 0" \
	"$S $S fracture /dev/ram5 128 2 $a0 $a1 1 nosync" \
	"$((2 * S)) $S fracture /dev/ram8 128 2 $b0 $b1 1 nosync" |
	dmsetup create seg
[ -b /dev/mapper/seg ] || fail "no /dev/mapper/seg"
data=$(random_file 48)

step "FUA writes over the three segments, then fsync"
dd if="$data" of=/dev/mapper/seg bs=1M oflag=direct,dsync status=none
dd if="$data" of=/dev/mapper/seg bs=64k count=8 conv=fsync status=none
sync

step "writes across the boundaries, flushed"
# 1 MiB at 15.5 MiB and at 31.5 MiB: each crosses into the next segment.
for off in $((31 * 512)) $((63 * 512)); do
	dd if=/dev/urandom of=/tmp/chunk bs=1k count=1024 status=none
	dd if=/tmp/chunk of=/dev/mapper/seg bs=1k seek="$off" conv=fsync,notrunc status=none
	dd if=/tmp/chunk of="$data" bs=1k seek="$off" conv=notrunc status=none
done

step "discards and write-zeroes across the boundaries"
# Discarded ranges read as zeroes on these RAM disks (and legs).
blkdiscard -o $((14 * 1048576)) -l $((4 * 1048576)) /dev/mapper/seg
blkdiscard -z -o $((30 * 1048576)) -l $((4 * 1048576)) /dev/mapper/seg
dd if=/dev/zero of="$data" bs=1M seek=14 count=4 conv=notrunc status=none
dd if=/dev/zero of="$data" bs=1M seek=30 count=4 conv=notrunc status=none
python3 -c 'import os; fd = os.open("/dev/mapper/seg", os.O_RDWR); os.fsync(fd)'

step "data and legs"
fresh
cmp /dev/mapper/seg "$data" || fail "the device does not read back what was written"
health=$(dmsetup status seg | awk '$3 == "fracture" { printf "%s ", $5 }')
assert_eq "AA AA " "$health" "health of both mirrors"
cmp -n $((S * 512)) "$a0" "$a1" || fail "legs of the first mirror differ"
cmp -n $((S * 512)) "$b0" "$b1" || fail "legs of the second mirror differ"
cmp -n $((S * 512)) "$a0" <(tail -c +$((S * 512 + 1)) "$data") || fail "first mirror's leg 0"
rm -f "$data" /tmp/chunk
dmsetup remove seg
meta_check "$(devnum /dev/ram8)"
for d in sg0 sg1 sg2 sg3 sg4; do
	echo 0 >/sys/kernel/config/nullb/$d/power
	rmdir /sys/kernel/config/nullb/$d
done
