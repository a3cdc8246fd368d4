#!/usr/bin/env bash
# Runs inside the demo guest (scripts/demo.sh). Narrates each step.
set -euo pipefail
export DM_DISABLE_UDEV=1
top=$(cd "$(dirname "$0")/../.." && pwd)
. "$top/tests/vm/fresh.sh"
export PATH="$top/target/debug:$PATH"
cd /tmp
say() { printf '\n\033[1m## %s\033[0m\n' "$*"; }
# libdevmapper notes on every call that udev runs while DM_DISABLE_UDEV is
# set (nodes are made by dmsetup itself here): keep that out of the demo.
run() { printf '$ %s\n' "$*"; "$@" 2> >(grep -v "^Udev is running" >&2); }

insmod "$top/dm_fracture.ko"
L=131072
health() { dmsetup status mirror | awk '{ print $5 }'; }
# wait_sync <health>: show the status every half second until <health>.
wait_sync() {
	local i
	for ((i = 0; i < 240; i++)); do
		printf '  %s\n' "$(dmsetup status mirror)"
		[ "$(health)" = "$1" ] && return 0
		sleep 0.5
	done
	echo "  (still not $1)"
}

say "Legs: /dev/ram1 (primary), /dev/ram2 and /dev/ram3 (secondaries); metadata on /dev/ram0."
say "The primary already holds data: a new mirror first copies it to every secondary (R)."
dd if=/dev/urandom of=/dev/ram1 bs=1M count=16 oflag=direct status=none
say "The primary and the secondary /dev/ram3 sit behind dm-linear devices we can break later."
run dmsetup create prim --table "0 $L linear /dev/ram1 0"
run dmsetup create sec2 --table "0 $L linear /dev/ram3 0"
run dmsetup create mirror --table "0 $L fracture /dev/ram0 1024 3 /dev/mapper/prim /dev/ram2 /dev/mapper/sec2 2 intent_delay 1000"
run dmsetup table mirror
say "Initial sync by the recovery thread (kfracture_rec, dm-kcopyd):"
wait_sync AAA
run dmsetup message mirror 0 stats

say "Write 32 MiB of random data through the mirror."
head -c $((32 << 20)) /dev/urandom >/tmp/data
run dd if=/tmp/data of=/dev/mapper/mirror bs=1M oflag=direct status=none
say "Before a write goes to the legs, its regions are marked in the write-intent"
say "log on the metadata device (the field after the per-leg counts): after a crash"
say "only those would be resynced. The regions just written are marked (the first"
say "ones may already be cleared again: intent_delay is 1 s here):"
run dmsetup status mirror
say "Regions left alone for intent_delay (1 s here; default 5 s) are cleared,"
say "after a flush of the legs:"
sleep 2.5
run dmsetup status mirror
say "Every leg holds the same bytes:"
for d in /dev/mapper/mirror /dev/ram1 /dev/ram2 /dev/ram3; do
	printf '  %-20s %s\n' "$d" "$(head -c $((32 << 20)) "$d" | md5sum | cut -d' ' -f1)"
done
fresh
run cmp -n $((L * 512)) /dev/ram1 /dev/ram2
run cmp -n $((L * 512)) /dev/ram1 /dev/ram3
echo "  legs identical"

say "Break the second secondary: its writes now fail."
run dmsetup suspend sec2
run dmsetup load sec2 --table "0 $L error"
run dmsetup resume sec2
say "The host keeps writing; its writes succeed. The broken leg is fractured (F)"
say "and the regions it misses are logged on the metadata device first."
run dd if=/dev/urandom of=/dev/mapper/mirror bs=1M count=4 seek=40 oflag=direct status=none
run dmsetup status mirror
dmesg | grep 'device-mapper: fracture' | tail -n 2
say "Status: <legs> <health> <primary> <in-sync regions per leg> <intent> <recovery> <metadata>."
say "Leg 2 has 8 of its 128 regions (the 4 MiB just written) logged as out of sync."

say "Split leg 1 on purpose (a point-in-time copy for a backup), keep writing:"
run dmsetup message mirror 0 fracture 1
run dd if=/dev/urandom of=/dev/mapper/mirror bs=1M count=1 seek=3 oflag=direct status=none
run dmsetup status mirror
fresh
cmp -s -n $((L * 512)) /dev/ram1 /dev/ram2 || echo "  leg 1 keeps its split-time contents; the 1 MiB written since is logged"

say "The log survives the device: remove it and create it again."
run dmsetup remove mirror
run dmsetup create mirror --table "0 $L fracture /dev/ram0 1024 3 /dev/mapper/prim /dev/ram2 /dev/mapper/sec2 2 intent_delay 1000"
sleep 1
run dmsetup status mirror
say "Resume retried the failed leg 2; it is still broken, so it is fractured again."
dmesg | grep 'device-mapper: fracture' | tail -n 3

say "Repair leg 2 and rejoin it: only its logged regions are copied."
run dmsetup suspend sec2
run dmsetup load sec2 --table "0 $L linear /dev/ram3 0"
run dmsetup resume sec2
run dmsetup message mirror 0 rejoin 2
wait_sync AFA
say "Rejoin the split leg 1 too (its point-in-time copy is given up)."
run dmsetup message mirror 0 rejoin 1
wait_sync AAA
run dmsetup message mirror 0 stats
fresh
run cmp -n $((L * 512)) /dev/ram1 /dev/ram2
run cmp -n $((L * 512)) /dev/ram1 /dev/ram3
echo "  every leg is identical to the primary again"

say "Now the primary itself fails. The next write fails on it, so the first"
say "in-sync secondary (leg 1) takes over as the primary; the host sees no error."
run dmsetup suspend prim
run dmsetup load prim --table "0 $L error"
run dmsetup resume prim
run dd if=/dev/urandom of=/tmp/late bs=1M count=2 status=none
run dd if=/tmp/late of=/dev/mapper/mirror bs=1M seek=60 oflag=direct status=none
run dmsetup status mirror
dmesg | grep 'device-mapper: fracture' | tail -n 1
say "primary_leg (third field) is 1 now; the old primary, leg 0, is fractured (F)"
say "with the regions it missed logged. Reads come from leg 1:"
fresh
run cmp -n $((2 << 20)) /tmp/late -i 0:60M /dev/mapper/mirror
echo "  the data written after the failure reads back"
say "Repair the old primary and rejoin it: it comes back as a secondary,"
say "copied from the new primary."
run dmsetup suspend prim
run dmsetup load prim --table "0 $L linear /dev/ram1 0"
run dmsetup resume prim
run dmsetup message mirror 0 rejoin 0
wait_sync AAA
fresh
run cmp -n $((L * 512)) /dev/ram2 /dev/ram1
run cmp -n $((L * 512)) /dev/ram2 /dev/ram3
echo "  every leg is identical to the new primary"

say "A secondary on another site can stop answering without failing anything."
say "With io_timeout (500 ms here), the mirror stops waiting for it. Reload the"
say "table with the feature (the metadata carries the state over):"
run dmsetup load mirror --table "0 $L fracture /dev/ram0 1024 3 /dev/mapper/prim /dev/ram2 /dev/mapper/sec2 4 intent_delay 1000 io_timeout 500"
run dmsetup suspend mirror
run dmsetup resume mirror
say "Cut leg 2's link (its I/O now just waits) and keep writing:"
run dmsetup suspend sec2
t0=$(date +%s%N)
run dd if=/dev/urandom of=/dev/mapper/mirror bs=1M count=2 seek=20 oflag=direct status=none
echo "  2 MiB written in $((($(date +%s%N) - t0) / 1000000)) ms"
run dmsetup status mirror
dmesg | grep 'device-mapper: fracture' | tail -n 1
run dmsetup message mirror 0 stats
say "Leg 2 is fractured; its writes that timed out are still out there (late_ios)."
say "A rejoin is refused until they are done: one landing after recovery copied"
say "its region would undo the copy."
run dmsetup message mirror 0 rejoin 2 || true
dmesg | grep 'device-mapper: fracture' | tail -n 1
say "The link comes back: the late writes complete; the rejoin copies the logged"
say "regions."
run dmsetup resume sec2
for _ in $(seq 50); do
	[ "$(dmsetup message mirror 0 stats | tr ' ' '\n' | sed -n 's/^late_ios=//p')" = 0 ] && break
	sleep 0.1
done
run dmsetup message mirror 0 rejoin 2
wait_sync AAA
fresh
run cmp -n $((L * 512)) /dev/ram2 /dev/ram3
echo "  leg 2 is identical to the primary again"

say "A leg can also lose writes without any error (a lying cache, a firmware"
say "bug): no mirror can see that on the write path. Leg 2 silently drops"
say "writes (dm-flakey drop_writes) while 1 MiB is written:"
run dmsetup suspend sec2
run dmsetup load sec2 --table "0 $L flakey /dev/ram3 0 0 1 1 drop_writes"
run dmsetup resume sec2
run dd if=/dev/urandom of=/dev/mapper/mirror bs=1M count=1 seek=40 oflag=direct status=none
run dmsetup status mirror
say "Still AAA. Leg 2 works again, but lacks that write. A verify check"
say "compares it with the primary, region by region, and only counts what"
say "differs (last status field; nothing marked, nothing split):"
run dmsetup suspend sec2
run dmsetup load sec2 --table "0 $L linear /dev/ram3 0"
run dmsetup resume sec2
sleep 2
run dmsetup message mirror 0 verify check 2
for _ in $(seq 240); do
	dmsetup status mirror | grep -q " checking:" || break
	sleep 0.5
done
run dmsetup status mirror
say "The primary is the good copy here, so a plain verify splits leg 2 with"
say "the regions that differ marked:"
run dmsetup message mirror 0 verify 2
for _ in $(seq 240); do
	dmsetup status mirror | grep -q " verifying:" || break
	sleep 0.5
done
run dmsetup status mirror
dmesg | grep 'device-mapper: fracture: verify' | tail -n 2
say "Leg 2 differed in the regions of that write: it is split (F) with those"
say "regions marked; nothing was repaired in place. rejoin copies them from the"
say "primary:"
run dmsetup message mirror 0 rejoin 2
wait_sync AAA
fresh
run cmp -n $((L * 512)) /dev/ram2 /dev/ram3
echo "  leg 2 is identical to the primary again"

run dmsetup remove mirror
run dmsetup remove sec2 prim

say "The same with fracturectl, on LVM logical volumes in two volume groups"
say "(two 96 MiB loop disks standing in for two physical disks)."
export LVM_SYSTEM_DIR=/tmp/lvm-demo LVM_SUPPRESS_FD_WARNINGS=1 FRACTURE_CONFIG_DIR=/tmp/fracture-demo
mkdir -p "$LVM_SYSTEM_DIR"
printf 'devices { obtain_device_list_from_udev = 0 external_device_info_source = "none" use_devicesfile = 0 }\nactivation { udev_sync = 0 udev_rules = 0 monitoring = 0 }\nbackup { backup = 1 backup_dir = "/tmp/lvm-demo/backup" archive = 0 }\n' >"$LVM_SYSTEM_DIR/lvm.conf"
lvmq() { "$@" 2>&1 | grep -vE "Udev is running|NOT backed up" || true; }
for i in 0 1; do truncate -s 96M /tmp/demo-disk$i; done
d0=$(losetup -f --show /tmp/demo-disk0)
d1=$(losetup -f --show /tmp/demo-disk1)
lvmq vgcreate -q vg0 "$d0"
lvmq vgcreate -q vg1 "$d1"
lvmq lvcreate -q -L 4M -n meta vg0
lvmq lvcreate -q -L 64M -n a vg0
lvmq lvcreate -q -L 64M -n b vg1
dd if=/dev/zero of=/dev/vg0/meta bs=1M count=4 oflag=direct status=none
dd if=/dev/urandom of=/dev/vg0/a bs=1M count=64 oflag=direct status=none
run fracturectl create m0 --metadata vg0/meta --primary vg0/a --secondary vg1/b --recovery-rate 16M
run fracturectl status m0
run fracturectl wait m0 --in-sync
say "Leg 1's disk fails (its LV's table swapped for dm-error); writes go on:"
b_table=$(dmsetup table vg1-b)
dmsetup suspend vg1-b; dmsetup load vg1-b --table "0 131072 error"; dmsetup resume vg1-b
run dd if=/dev/urandom of=/dev/mapper/m0 bs=1M count=4 seek=8 oflag=direct status=none
run fracturectl status m0
say "The disk comes back; rejoin copies only the logged regions:"
dmsetup suspend vg1-b; dmsetup load vg1-b --table "$b_table"; dmsetup resume vg1-b
run fracturectl rejoin m0 vg1/b
run fracturectl wait m0 --in-sync
run cmp /dev/vg0/a /dev/vg1/b
echo "  the two LVs are identical"
say "Offline: the metadata LV, checked and dumped once the mirror is removed;"
say "then the mirror comes back from its activation file."
run fracturectl remove m0
run fracturectl check vg0/meta
run fracturectl dump vg0/meta
run fracturectl activate m0
run fracturectl status m0 --json
run fracturectl remove m0 --forget
lvmq vgchange -q -an vg0 vg1
losetup -d "$d0" "$d1"
run rmmod dm_fracture
say "Done."
