#!/usr/bin/env bash
# Runs inside a guest with three file-backed disks (see run.sh): phase 1
# fractures a leg and logs writes, phase 2 (after a reboot) checks that the
# same table comes back with the same fractured leg and the same bits.
set -euo pipefail
export DM_DISABLE_UDEV=1
phase=$1 results=$2
top=$(cd "$(dirname "$0")/../.." && pwd)
insmod "$top/dm_fracture.ko"
# vng attaches --disk files over virtio-blk (vda..), older versions over
# virtio-scsi (sda..).
if [ -b /dev/vda ]; then disks=(/dev/vda /dev/vdb /dev/vdc); else disks=(/dev/sda /dev/sdb /dev/sdc); fi
for d in "${disks[@]}"; do [ -b "$d" ] || { echo "missing $d" | tee "$results/reboot-error"; exit 1; }; done
meta=${disks[0]}
len=$(blockdev --getsz "${disks[1]}")
table="0 $len fracture $meta 256 2 ${disks[1]} ${disks[2]}"
dmsetup create rb --table "$table"
case $phase in
1)
	dmsetup message rb 0 fracture 1
	for s in 0 4096 9000; do
		dd if=/dev/urandom of=/dev/mapper/rb bs=512 seek=$s count=8 oflag=direct status=none
	done
	dmsetup status rb | cut -d' ' -f4- >"$results/reboot-status-1"
	python3 "$top/tests/vm/bitmap.py" "$meta" 1 >"$results/reboot-bits-1"
	# No remove: the guest goes down with the device active, like a crash
	# after the writes were acknowledged.
	sync
	;;
2)
	dmsetup status rb | cut -d' ' -f4- >"$results/reboot-status-2"
	python3 "$top/tests/vm/bitmap.py" "$meta" 1 >"$results/reboot-bits-2"
	dmsetup remove rb
	;;
esac
echo "phase $phase done"
