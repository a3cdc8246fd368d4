#!/usr/bin/env bash
# Runs inside a guest with six file-backed disks (see run.sh), in two boots
# with no clean shutdown of the mirrors in between (the guest goes down with
# them active, like a crash after the writes were acknowledged):
#
# - mirror rb (disks 0-2): phase 1 splits leg 1 and logs writes; phase 2
#   checks that the same table comes back with the same split leg and bits.
# - mirror rc (disks 3-5): phase 1 splits leg 1, writes, rejoins it
#   with a slow recovery rate and goes down in the middle of the recovery;
#   phase 2 checks that recovery continues from the durable bits (copies
#   exactly what is left, not everything) and ends with identical legs.
# - mirror ra (disks 6-8, LVM): phase 1 makes two volume groups and a
#   mirror of their LVs with `fracturectl create` (activation file in the
#   results folder), splits leg 1 and writes; phase 2 (LVM inactive after
#   the boot) brings it back with `fracturectl activate --all`: same data,
#   same split leg and dirty regions; then rejoins it and checks the legs
#   and the metadata.
set -euo pipefail
export DM_DISABLE_UDEV=1
phase=$1 results=$2
top=$(cd "$(dirname "$0")/../.." && pwd)
insmod "$top/dm_fracture.ko"
# vng attaches --disk files over virtio-blk (vda..), older versions over
# virtio-scsi (sda..).
if [ -b /dev/vda ]; then p=/dev/vd; else p=/dev/sd; fi
disks=("${p}a" "${p}b" "${p}c" "${p}d" "${p}e" "${p}f" "${p}g" "${p}h" "${p}i")
for d in "${disks[@]}"; do [ -b "$d" ] || { echo "missing $d" | tee "$results/reboot-error"; exit 1; }; done
. "$top/tests/vm/fresh.sh"
# bitmap.py reads with O_DIRECT.
bits() { python3 "$top/tests/vm/bitmap.py" "$1" 1; }
stat_of() { dmsetup message "$1" 0 stats | tr ' ' '\n' | sed -n "s/^$2=//p"; }

meta=${disks[0]}
len=$(blockdev --getsz "${disks[1]}")
table="0 $len fracture $meta 256 2 ${disks[1]} ${disks[2]} 1 nosync"
dmsetup create rb --table "$table"
rc_meta=${disks[3]}
rc_table="0 $len fracture $rc_meta 256 2 ${disks[4]} ${disks[5]} 3 nosync recovery_rate 256"
# LVM and fracturectl for mirror ra (no udev in the guest).
export PATH="$top/target/debug:$PATH" LVM_SYSTEM_DIR=/tmp/lvm-reboot LVM_SUPPRESS_FD_WARNINGS=1
export FRACTURE_CONFIG_DIR=$results/fcfg
mkdir -p "$LVM_SYSTEM_DIR"
printf 'devices { obtain_device_list_from_udev = 0 external_device_info_source = "none" use_devicesfile = 0 }\nactivation { udev_sync = 0 udev_rules = 0 monitoring = 0 }\nbackup { backup = 1 backup_dir = "/tmp/lvm-reboot/backup" archive = 0 }\n' >"$LVM_SYSTEM_DIR/lvm.conf"
ra_state() {
	fracturectl status ra --json | python3 -c 'import json,sys; m=json.load(sys.stdin)[0]; print(m["uuid"], "".join(l["health"] for l in m["legs"]), m["legs"][1]["regions_dirty"])'
}

case $phase in
1)
	pvcreate -q "${disks[6]}" "${disks[7]}" "${disks[8]}"
	vgcreate -q rvg0 "${disks[6]}" "${disks[7]}"
	vgcreate -q rvg1 "${disks[8]}"
	lvcreate -q -L 4M -n meta rvg0
	lvcreate -q -L 16M -n a rvg0
	lvcreate -q -L 16M -n b rvg1
	dd if=/dev/zero of=/dev/rvg0/meta bs=1M count=4 oflag=direct status=none
	rm -rf "$FRACTURE_CONFIG_DIR"
	fracturectl create ra --metadata rvg0/meta --primary rvg0/a --secondary rvg1/b --region-size 256K --nosync
	dd if=/dev/urandom of=/dev/mapper/ra bs=1M count=16 oflag=direct status=none
	fracturectl fracture ra 1
	dd if=/dev/urandom of=/dev/mapper/ra bs=256K seek=3 count=5 oflag=direct status=none
	ra_state >"$results/reboot-ra-1"
	md5sum </dev/mapper/ra >>"$results/reboot-ra-1"

	dmsetup message rb 0 fracture 1
	for s in 0 4096 9000; do
		dd if=/dev/urandom of=/dev/mapper/rb bs=512 seek=$s count=8 oflag=direct status=none
	done
	# A suspend empties the write-intent log (tested by case 21 and the
	# crash test): what survives here is the fracture log alone.
	dmsetup suspend rb
	dmsetup resume rb
	dmsetup status rb | cut -d' ' -f4- >"$results/reboot-status-1"
	bits "$meta" >"$results/reboot-bits-1"

	dmsetup create rc --table "$rc_table"
	dmsetup message rc 0 fracture 1
	# 64 regions of 128 KiB written, every other one.
	for i in $(seq 0 2 127); do
		dd if=/dev/urandom of=/dev/mapper/rc bs=128k seek="$i" count=1 oflag=direct status=none
	done
	dmsetup suspend rc
	dmsetup resume rc
	bits "$rc_meta" | wc -w >"$results/reboot-rc-logged-1"
	dmsetup message rc 0 rejoin 1
	sleep 3
	dmsetup status rc | cut -d' ' -f4- >"$results/reboot-rc-status-1"
	sync
	;;
2)
	# udev in the guest may have auto-activated the LVs already (LVM's
	# rules); if not, activate does it (case 27 covers that path).
	if command dmsetup info rvg0-a >/dev/null 2>&1; then lvs=active; else lvs=inactive; fi
	echo "LVs $lvs before activate" >"$results/reboot-ra-lvs"
	fracturectl activate --all >"$results/reboot-ra-activate" 2>&1
	ra_state >"$results/reboot-ra-2"
	md5sum </dev/mapper/ra >>"$results/reboot-ra-2"
	fracturectl rejoin ra rvg1/b
	fracturectl wait ra --in-sync --timeout 120
	cmp /dev/rvg0/a /dev/rvg1/b && echo same >"$results/reboot-ra-cmp"
	fracturectl remove ra
	fracturectl check rvg0/meta >"$results/reboot-ra-check" 2>&1 && echo clean >>"$results/reboot-ra-cmp"

	dmsetup status rb | cut -d' ' -f4- >"$results/reboot-status-2"
	bits "$meta" >"$results/reboot-bits-2"
	dmsetup remove rb

	# What the reboot left: the copies already done are not done again.
	left=$(bits "$rc_meta" | wc -w)
	dmsetup create rc --table "$rc_table"
	dmsetup status rc | cut -d' ' -f4- >"$results/reboot-rc-status-2"
	dmsetup message rc 0 recovery_rate 0
	for _ in $(seq 600); do
		[ "$(dmsetup status rc | awk '{ print $5 }')" = AA ] && break
		sleep 0.1
	done
	echo "$(dmsetup status rc | awk '{ print $5 }') $left $(stat_of rc regions_copied) $(bits "$rc_meta" | wc -w)" \
		>"$results/reboot-rc-end"
	dmsetup remove rc
	fresh
	if cmp -n $((len * 512)) "${disks[4]}" "${disks[5]}"; then
		echo same >"$results/reboot-rc-cmp"
	else
		echo differ >"$results/reboot-rc-cmp"
	fi
	;;
esac
echo "phase $phase done"
