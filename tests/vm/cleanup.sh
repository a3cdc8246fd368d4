#!/usr/bin/env bash
# Removes whatever a test case left: dm devices, null_blk devices, loops.
export DM_DISABLE_UDEV=1
for _ in 1 2 3; do
	dmsetup ls 2>/dev/null | grep -q . || break
	dmsetup remove_all --force >/dev/null 2>&1
done
for d in /sys/kernel/config/nullb/*/; do
	[ -d "$d" ] || continue
	echo 0 >"$d/power" 2>/dev/null
	rmdir "$d" 2>/dev/null
done
losetup -D 2>/dev/null
# The next case starts with the module unloaded, whichever case ran before
# (the guests take cases in queue order, not by name): case 01 checks
# that dmsetup create loads it by its alias.
rmmod dm_fracture 2>/dev/null
# Wipe the RAM disks so that a case never sees another's data.
for r in /dev/ram*; do
	blkdiscard "$r" 2>/dev/null || dd if=/dev/zero of="$r" bs=1M status=none 2>/dev/null
done
exit 0
