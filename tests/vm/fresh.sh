# shellcheck shell=bash
# Sourced by the guest scripts (lib.sh, crash-guest.sh, reboot-guest.sh,
# demo-guest.sh). fresh: what a buffered read of a block device returns next
# comes from the device, not from the page cache.
#
# Only the block devices' caches are dropped (BLKFLSBUF on each, one
# blockdev for all): `echo 3 >drop_caches` also threw away the binaries
# the guest had read over 9p, and every exec after it read them again
# (seconds per call under TCG). Falls back to drop_caches if a device
# cannot be opened. Readers with O_DIRECT (bitmap.py, legscmp.py,
# diffregions.py, ackload.py) need none of this.
fresh() {
	local d devs=()
	sync
	for d in /sys/block/*; do
		[ -b "/dev/${d##*/}" ] && devs+=("/dev/${d##*/}")
	done
	blockdev --flushbufs "${devs[@]}" 2>/dev/null || echo 3 >/proc/sys/vm/drop_caches
}
