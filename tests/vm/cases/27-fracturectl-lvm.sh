#!/usr/bin/env bash
# fracturectl against the real target and real LVM: a mirror of logical
# volumes in two volume groups, created, watched, split, rejoined, failed
# and auto-rejoined by `monitor`, rebuilt, switched over; refusals (in use,
# mounted, duplicate, too small, another mirror's metadata); activation
# after the mirror and its LVs went away (as after a reboot); offline dump,
# check, repair and format of the metadata LV; a volume group on top of the
# mirror and the duplicate-PV problem with its documented fixes.
# vm-timeout: 900
. "$FRACTURE_VM/lib.sh"
py_start   # the Python helpers and the status helpers in one process

# LVM with a configuration of its own: no udev sync in the guest, backups
# in /tmp.
export LVM_SYSTEM_DIR=/tmp/lvm-case LVM_SUPPRESS_FD_WARNINGS=1
rm -rf "$LVM_SYSTEM_DIR" /tmp/fcfg
mkdir -p "$LVM_SYSTEM_DIR"
cat >"$LVM_SYSTEM_DIR/lvm.conf" <<'EOF'
devices {
	obtain_device_list_from_udev = 0
	external_device_info_source = "none"
	use_devicesfile = 0
}
activation {
	udev_sync = 0
	udev_rules = 0
	monitoring = 0
}
backup {
	backup = 1
	backup_dir = "/tmp/lvm-case/backup"
	archive = 0
}
EOF
export FRACTURE_CONFIG_DIR=/tmp/fcfg

# Three 128 MiB disks: loop devices over files in the guest's /tmp.
loops=()
for i in 0 1 2 3 4; do
	rm -f "/tmp/lvdisk$i"
	truncate -s 128M "/tmp/lvdisk$i"
	loops+=("$(losetup -f --show "/tmp/lvdisk$i")")
done
cleanup_lvm() {
	set +e
	for n in m0 m2 m3; do command dmsetup remove "$n" 2>/dev/null; done
	vgchange -an vgtop vg0 vg1 >/dev/null 2>&1
	command dmsetup remove_all >/dev/null 2>&1
	for l in "${loops[@]}"; do losetup -d "$l"; done
	rm -f /tmp/lvdisk*
}
trap cleanup_lvm EXIT

# ferr <expected stderr regex> <command...>: the command must fail with a
# message on stderr matching the regex, and print nothing on stdout.
ferr() {
	local want=$1 out err rc=0
	shift
	out=$("$@" 2>/tmp/ferr.err) || rc=$?
	err=$(cat /tmp/ferr.err)
	[ "$rc" != 0 ] || fail "'$*' succeeded"
	[ -z "$out" ] || fail "'$*' printed on stdout: $out"
	[[ "$err" =~ $want ]] || fail "'$*': stderr '$err' does not match /$want/"
	echo "refused as expected: $* -> $err"
}

# json <mirror> <python expression over m>: a field of status --json.
json() {
	fracturectl status "$1" --json | python3 -c "import json,sys; m=json.load(sys.stdin)[0]; print($2)"
}

step "LVM: two volume groups, LVs for the legs and the metadata"
pvcreate -q "${loops[0]}" "${loops[1]}" "${loops[2]}"
vgcreate -q vg0 "${loops[0]}" "${loops[1]}"
vgcreate -q vg1 "${loops[2]}"
lvcreate -q -L 4M -n meta vg0
lvcreate -q -L 64M -n a vg0
lvcreate -q -L 64M -n b vg1
lvcreate -q -L 4M -n meta2 vg0
lvcreate -q -L 32M -n small vg1
# The metadata LV must start blank (LVM does not zero it for us here).
dd if=/dev/zero of=/dev/vg0/meta bs=1M count=4 oflag=direct status=none
dd if=/dev/zero of=/dev/vg0/meta2 bs=1M count=4 oflag=direct status=none
dd if=/dev/urandom of=/dev/vg0/a bs=1M count=64 oflag=direct status=none

step "create on LVs, initial sync, wait with progress lines"
out=$(fracturectl create m0 --metadata vg0/meta --primary vg0/a --secondary vg1/b --region-size 256K --recovery-rate 3M)
# Slowed down at once, so that the sync is still running however slow the
# guest is at the steps below (3 MiB/s again for the wait).
dmsetup message m0 0 recovery_rate 64
echo "$out"
assert_match "created /dev/mapper/m0: 2 legs, 64M, 256 regions of 256K, metadata vg0/meta \(formatted\)" "$out" "create output"
[ -f /tmp/fcfg/m0.toml ] || fail "no activation file"
cat /tmp/fcfg/m0.toml
[ -b /dev/mapper/m0 ] || fail "no /dev/mapper/m0"
st=$(fracturectl status m0)
echo "$st"
assert_match "vg1-b +secondary +recovering" "$st" "status during the initial sync"
assert_match "recovery recovering \(leg 1\)" "$st" "recovery line"
fracturectl wait m0 --in-sync --timeout 300 >/tmp/wait.out &
wpid=$!
sleep 6
dmsetup message m0 0 recovery_rate 3072
wait "$wpid" || fail "fracturectl wait failed: $(cat /tmp/wait.out)"
wout=$(cat /tmp/wait.out)
echo "$wout"
assert_match "m0: recovering leg 1: [0-9]+/256 region copies" "$wout" "progress lines when not a terminal"
assert_match "m0: every leg is in sync" "$wout" "wait end"
legs_identical 131072 /dev/vg0/a /dev/vg1/b
assert_eq "primary in-sync 100.0 0" "$(json m0 "m['legs'][0]['role'], m['legs'][1]['state'], m['legs'][1]['percent_in_sync'], m['legs'][1]['regions_dirty']")" "status --json"
assert_eq "$(sed -n 's/^uuid = "\(.*\)"$/\1/p' /tmp/fcfg/m0.toml)" "$(json m0 "m['uuid']")" "uuid in status = activation file"
assert_eq "1 256 512 3072" "$(json m0 "m['version'], m['regions'], m['region_sectors'], m['options']['recovery_rate']")" "json geometry"

step "refusals: in use, duplicate, too small, mounted, existing name, bad sizes"
ferr "vg0/a \(leg 0\) is in use by m0" fracturectl create m1 --metadata vg0/meta2 --primary vg0/a --secondary vg1/small
ferr "vg1/small \(leg 1\) and vg1/small \(leg 0\) are the same device" fracturectl create m1 --metadata vg0/meta2 --primary vg1/small --secondary vg1/small
ferr "vg0/meta2 \(metadata\) and /dev/vg0/meta2 \(leg 1\)|same device" fracturectl create m1 --metadata vg0/meta2 --primary vg1/small --secondary /dev/vg0/meta2
ferr "vg1/small \(leg 1\) is too small: 32M \(65536 sectors\), the mirror is 64M" fracturectl create m1 --metadata vg0/meta2 --primary /dev/ram5 --secondary vg1/small --size 64M
ferr "a device called m0 exists already" fracturectl create m0 --metadata vg0/meta2 --primary vg1/small --secondary vg1/small
ferr "no such logical volume, or it is not active" fracturectl create m1 --metadata vg0/meta2 --primary vg9/nope --secondary vg1/small
ferr "region-size .*power of two" fracturectl create m1 --metadata vg0/meta2 --primary vg1/small --secondary vg0/meta2 --region-size 100K
mkfs.ext4 -q /dev/vg1/small
mkdir -p /tmp/mnt-small
mount /dev/vg1/small /tmp/mnt-small
ferr "vg1/small \(leg 1\) is mounted on /tmp/mnt-small" fracturectl create m1 --metadata vg0/meta2 --primary /dev/ram5 --secondary vg1/small --size 16M
umount /tmp/mnt-small
ferr "no device nope" fracturectl status nope
ferr "no leg 5 \(legs are 0..1\)" fracturectl fracture m0 5
ferr "cannot fracture leg 0: it is the primary" fracturectl fracture m0 0
ferr "vg1/small \(.*\) is not one of its legs" fracturectl rejoin m0 vg1/small
ferr "in use .*remove the mirror first" fracturectl check vg0/meta
assert_eq "AA" "$(health_of m0)" "nothing changed by the refusals"

step "split leg 1 (by number), write, rejoin it (by device), wait"
fracturectl fracture m0 1
dd if=/dev/urandom of=/dev/mapper/m0 bs=256K seek=10 count=5 oflag=direct status=none
assert_eq "fractured 5" "$(json m0 "m['legs'][1]['state'], m['legs'][1]['regions_dirty']")" "split leg state"
fracturectl rejoin m0 vg1/b
fracturectl wait m0 --in-sync --timeout 120
legs_identical 131072 /dev/vg0/a /dev/vg1/b

step "leg 1 fails under monitor --auto-rejoin, comes back, is resynced"
fracturectl monitor m0 --auto-rejoin --duration 60 >/tmp/monitor.log 2>&1 &
mon=$!
sleep 1
b_table=$(command dmsetup table vg1-b)
b_len=$(sectors /dev/vg1/b)
command dmsetup suspend vg1-b
command dmsetup load vg1-b --table "0 $b_len error"
command dmsetup resume vg1-b
dd if=/dev/urandom of=/dev/mapper/m0 bs=256K seek=40 count=4 oflag=direct status=none
assert_eq "AF" "$(health_of m0)" "leg 1 failed"
sleep 2
command dmsetup suspend vg1-b
command dmsetup load vg1-b --table "$b_table"
command dmsetup resume vg1-b
# monitor retries (5 s, then 10 s...): the leg is back within ~20 s.
for _ in $(seq 60); do
	[ "$(health_of m0)" = AA ] && break
	sleep 1
done
assert_eq "AA" "$(health_of m0)" "auto-rejoined and resynced"
kill "$mon" 2>/dev/null || true
wait "$mon" 2>/dev/null || true
cat /tmp/monitor.log
grep -qE '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]+Z m0: leg 1 \(vg1-b\): in-sync -> fractured' /tmp/monitor.log || fail "monitor: no fractured line"
grep -q "auto-rejoin: leg 1 (vg1-b) rejoined" /tmp/monitor.log || fail "monitor: no auto-rejoin"
grep -qE "m0: leg 1 \(vg1-b\): (recovering|fractured) -> in-sync" /tmp/monitor.log || fail "monitor: no back-in-sync line"
legs_identical 131072 /dev/vg0/a /dev/vg1/b

step "a split leg is not auto-rejoined; rebuild; switchover with primary"
fracturectl monitor m0 --auto-rejoin --duration 8 >/tmp/monitor2.log 2>&1 &
mon=$!
fracturectl fracture m0 1
wait "$mon"
assert_eq "AF" "$(health_of m0)" "split leg left alone by auto-rejoin"
grep -q "in-sync -> fractured" /tmp/monitor2.log || fail "monitor2: no fractured line"
grep -q "auto-rejoin" /tmp/monitor2.log && fail "monitor rejoined a split leg"
fracturectl rebuild m0 1
assert_eq "True" "$(json m0 "m['recovery']['total'] >= 256 and m['legs'][1]['state'] == 'recovering'")" "rebuild copies every region"
fracturectl wait m0 --in-sync --timeout 300
fracturectl primary m0 1
assert_eq "1 primary" "$(json m0 "m['primary_leg'], m['legs'][1]['role']")" "switchover"
fracturectl primary m0 0
legs_identical 131072 /dev/vg0/a /dev/vg1/b
sum=$(md5sum </dev/mapper/m0)
table_before=$(table_of m0)

step "offline: remove, check, dump, format refusal"
fracturectl remove m0
[ -b /dev/mapper/m0 ] && fail "node left after remove"
[ -f /tmp/fcfg/m0.toml ] || fail "remove deleted the activation file"
fracturectl check vg0/meta
dump=$(fracturectl dump vg0/meta)
echo "$dump"
assert_match "$(sed -n 's/^uuid = "\(.*\)"$/\1/p' /tmp/fcfg/m0.toml)" "$dump" "dump shows the uuid"
ferr "not all zero|not empty|--force" fracturectl format vg0/meta --legs 2 --size 64M

step "activation after the LVs went away (as after a reboot)"
vgchange -q -an vg0 vg1
[ -e /dev/vg0/a ] && fail "LV still active"
out=$(fracturectl activate m0)
echo "$out"
assert_match "m0: activated" "$out" "activate"
[ -e /dev/vg0/a ] || fail "activate did not activate the LVs"
assert_eq "AA" "$(health_of m0)" "activated in sync"
assert_eq "$sum" "$(md5sum </dev/mapper/m0)" "same data after activation"
# Same table, up to the LVs' minor numbers.
norm() { sed -E 's/[0-9]+:[0-9]+/D/g'; }
assert_eq "$(norm <<<"$table_before")" "$(table_of m0 | norm)" "same table"
assert_eq "m0: already active" "$(fracturectl activate m0)" "second activate"
# The command the shipped systemd unit runs.
unit=$FRACTURE_TOP/contrib/systemd/fracture-activate@.service
[ -f "$unit" ] || fail "no systemd unit"
cmd=$(sed -n 's/^ExecStart=//p' "$unit" | sed 's/%i/m0/g; s|^/[^ ]*/fracturectl|fracturectl|')
assert_match "fracturectl activate m0" "$cmd" "unit command"
assert_eq "m0: already active" "$($cmd)" "unit command runs"

step "activation refuses another mirror's metadata and a blank device"
lvchange -q -ay vg0/meta2   # inactive since the vgchange above
lvcreate -q -L 16M -n c vg0
lvcreate -q -L 16M -n d vg1
fracturectl create m2 --metadata vg0/meta2 --primary vg0/c --secondary vg1/d --nosync --no-config
fracturectl remove m2
[ -f /tmp/fcfg/m2.toml ] && fail "--no-config wrote a file"
fracturectl remove m0
cp /tmp/fcfg/m0.toml /tmp/m0.toml.orig
sed -i 's|^metadata = .*|metadata = "vg0/meta2"|' /tmp/fcfg/m0.toml
ferr "vg0/meta2 \(metadata\) is not the device the mirror was created on .*refusing to activate" fracturectl activate m0
# Without the recorded identity, the metadata UUID still tells.
sed -i 's|^metadata_id = .*|metadata_id = ""|' /tmp/fcfg/m0.toml
ferr "vg0/meta2 holds the metadata of another mirror .*refusing to activate" fracturectl activate m0
dd if=/dev/zero of=/dev/vg0/meta2 bs=1M count=4 oflag=direct status=none
ferr "vg0/meta2 is blank .*refusing to activate" fracturectl activate m0
command dmsetup info m0 >/dev/null 2>&1 && fail "a refused activation left a device"
cp /tmp/m0.toml.orig /tmp/fcfg/m0.toml
grep -q '^leg_ids = \["dm-uuid:LVM-.*", "dm-uuid:LVM-.*"\]' /tmp/fcfg/m0.toml || fail "no leg identities recorded"
# Leg 1 replaced by another LV of the same size: refused by its identity.
sed -i 's|"vg1/b"\]|"vg0/c"]|' /tmp/fcfg/m0.toml
lvchange -q -ay vg0/c
ferr "vg0/c \(leg 1\) is not the device the mirror was created on" fracturectl activate m0
cp /tmp/m0.toml.orig /tmp/fcfg/m0.toml
fracturectl activate --all
assert_eq "AA" "$(health_of m0)" "activate --all"

step "repair: a damaged bitmap block is rebuilt all dirty"
fracturectl remove m0
dd if=/dev/vg0/meta of=/tmp/meta.img bs=4096 count=4 iflag=direct status=none
printf '\xff' | dd of=/tmp/meta.img bs=1 seek=$((2 * 4096 + 100)) conv=notrunc status=none
rc=0
fracturectl check /tmp/meta.img >/tmp/check.out 2>&1 || rc=$?
cat /tmp/check.out
assert_eq 1 "$rc" "check of a damaged image"
assert_match "block 2 fails its checksum" "$(cat /tmp/check.out)" "check names the block"
fracturectl repair /tmp/meta.img vg0/meta2
fracturectl check vg0/meta2
assert_eq "256" "$(fracturectl dump vg0/meta2 --json | python3 -c "import json,sys; d=json.load(sys.stdin); print(d['legs'][1]['dirty_regions'])")" "repaired leg 1 all dirty"
ferr "same" fracturectl repair vg0/meta2 /dev/vg0/meta2
fracturectl format vg0/meta2 --legs 2 --size 64M --force
fracturectl check vg0/meta2

step "a volume group on the mirror: the legs carry the same PV label"
fracturectl activate m0
pvcreate -q /dev/mapper/m0
vgcreate -q vgtop /dev/mapper/m0
lvcreate -q -L 8M -n data vgtop
# LV legs are not scanned (devices/scan_lvs = 0, LVM's default): no
# duplicate. Legs on plain disks are: mirror m3 over two loop devices.
vgchange -q -an vgtop
fracturectl remove m0
ferr "vg0/meta2 already holds the metadata of mirror .*--reuse-metadata" fracturectl create m3 --metadata vg0/meta2 --primary "${loops[3]}" --secondary "${loops[4]}" --size 64M --nosync --no-config
dd if=/dev/zero of=/dev/vg0/meta2 bs=1M count=4 oflag=direct status=none
fracturectl create m3 --metadata vg0/meta2 --primary "${loops[3]}" --secondary "${loops[4]}" --size 64M --nosync --no-config
# Without a filter LVM reads the new PV label through the mirror and
# through both legs: it refuses to put a VG on the duplicates.
pvcreate -q /dev/mapper/m3
out=$(vgcreate vgm3 /dev/mapper/m3 2>&1) && fail "vgcreate worked with the legs visible: $out"
echo "$out"
assert_match "[Dd]uplicate|Not using device" "$out" "duplicate PVs without a filter"
# The documented fix 1: a global_filter that hides the legs.
filter="devices { global_filter = [ \"r|^${loops[3]}\$|\", \"r|^${loops[4]}\$|\" ] }"
vgcreate -q --config "$filter" vgm3 /dev/mapper/m3
out=$(pvs --config "$filter" 2>&1)
echo "$out"
assert_match "/dev/mapper/m3 +vgm3" "$out" "PV on the mirror with the filter"
[[ "$out" =~ [Dd]uplicate|Not\ using|[Mm]ultiple ]] && fail "duplicates despite the filter"
out=$(pvs 2>&1 || true)
echo "$out"
assert_match "Not using device ${loops[3]}|Not using device ${loops[4]}|[Dd]uplicate" "$out" "the problem, without the filter"
# The documented fix 2: the devices file lists only the mirror.
mkdir -p "$LVM_SYSTEM_DIR/devices"
lvm lvmdevices --config 'devices { use_devicesfile = 1 }' --adddev /dev/mapper/m3
out=$(pvs --config 'devices { use_devicesfile = 1 }' 2>&1)
echo "$out"
assert_match "/dev/mapper/m3 +vgm3" "$out" "PV on the mirror with the devices file"
[[ "$out" =~ ${loops[3]}|${loops[4]}|[Dd]uplicate ]] && fail "legs visible despite the devices file"
vgchange -q -an --config "$filter" vgm3
fracturectl remove m3
echo "fracturectl and LVM: ok"
