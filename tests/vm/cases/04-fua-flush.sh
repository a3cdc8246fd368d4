#!/usr/bin/env bash
# REQ_FUA writes and REQ_PREFLUSH flushes reach every leg. The legs are
# null_blk devices with a write cache (brd has none, so the block layer
# would strip both flags), and the block_bio_queue tracepoint shows the
# flags of every bio that reaches a leg.
. "$FRACTURE_VM/lib.sh"

l0=$(nullb_create fl0 64)
l1=$(nullb_create fl1 64)
l2=$(nullb_create fl2 64)
cat /sys/block/fl0/queue/write_cache | grep -q "write back" || fail "null_blk has no write cache"
create mf "$(fracture_table $RAM_SECTORS /dev/ram0 1024 $l0 $l1 $l2)"
grep -q "write back" /sys/block/"$(dm_sysname mf)"/queue/write_cache ||
	fail "dm device does not advertise a write cache"

T=/sys/kernel/tracing
echo 0 >$T/tracing_on
echo >$T/trace
echo 1 >$T/events/block/block_bio_queue/enable
echo 1 >$T/tracing_on

step "O_DSYNC direct write (FUA) and fsync (flush)"
dd if=/dev/urandom of=/dev/mapper/mf bs=4k count=1 seek=100 oflag=direct,dsync status=none
dd if=/dev/urandom of=/dev/mapper/mf bs=4k count=1 seek=200 oflag=direct conv=fsync status=none
echo 0 >$T/tracing_on
echo 0 >$T/events/block/block_bio_queue/enable
cat $T/trace >/tmp/trace.txt

for l in $l0 $l1 $l2; do
	dn=$(devnum "$l" | tr : ,)
	# FUA write of sector 800 (4k block 100): rwbs has F after W.
	grep -E " $dn W[A-Z]*F[A-Z]* 800 \+ 8 " /tmp/trace.txt ||
		fail "no FUA write to $l ($dn)"
	# Empty flush: rwbs starts with F, zero sectors.
	grep -E " $dn F[A-Z]* [0-9]+ \+ 0 " /tmp/trace.txt ||
		fail "no flush to $l ($dn)"
done
legs_identical 131072 "$l0" "$l1" "$l2"
dmsetup remove mf
