#!/usr/bin/env bash
# Geometry at the extremes: a 16 TiB mirror (dm-zero legs) at 4 KiB, 64 KiB
# and 512 KiB regions is either accepted and works, or refused up front
# with how much memory it would need and which region size fits (never a
# page-allocator warning); the create time of the large format is logged.
# And a metadata device that drops writes at create time is named as such.
# 132 s in the debug guest on a busy host (the 64 KiB format: 10 s; create 31 s).
. "$FRACTURE_VM/lib.sh"
modprobe dm_fracture

# 16 TiB.
L=$((1 << 35))
dmsetup create z0 --table "0 $L zero"
dmsetup create z1 --table "0 $L zero"

# A sparse metadata file on the guest's tmpfs, as large as 4 KiB regions
# need: (1 + 3 * ceil(2^32 / 32512)) blocks of 4 KiB = 1.51 GiB. Only what
# a format writes takes memory (101 MiB at 64 KiB regions).
meta_dev() {
	rm -f /tmp/geom-meta
	truncate -s 1600M /tmp/geom-meta
	losetup -f --show /tmp/geom-meta
}
cleanup() {
	dmsetup remove g 2>/dev/null || true
	losetup -D 2>/dev/null || true
	rm -f /tmp/geom-meta
}
trap cleanup EXIT

# try <region sectors>: creates the mirror; on success a write and a read
# at both ends, status checked, removal (the metadata then checked by
# fracturectl). Prints "accepted" or "refused".
try() {
	local region=$1 meta t0 t1 regions out
	meta=$(meta_dev)
	regions=$((L / region))
	dmesg -C
	t0=$(date +%s%N)
	if ! out=$(command dmsetup create g --table "$(fracture_table $L "$meta" "$region" /dev/mapper/z0 /dev/mapper/z1)" 2>&1); then
		echo "refused: $out"
		dmesg | grep 'device-mapper: fracture:' || true
		dmsetup info g >/dev/null 2>&1 && fail "device left behind"
		losetup -d "$meta"
		REFUSED=$(dmesg | grep -F 'device-mapper: fracture: region_size' | head -n1)
		return 0
	fi
	t1=$(date +%s%N)
	echo "created in $(((t1 - t0) / 1000000)) ms"
	# The teardown's `fracturectl check` reads the 97 MiB of metadata of
	# the 64 KiB regions too (the shared crate is optimised in the debug
	# build: Cargo.toml).
	dmesg | grep 'device-mapper: fracture:' || true
	status_words g
	assert_eq "2 AA 0 $regions/$regions $regions/$regions" "${st[*]:3:5}" "status after create"
	dd if=/dev/urandom of=/tmp/geom-data bs=64k count=1 status=none
	dd if=/tmp/geom-data of=/dev/mapper/g bs=64k count=1 oflag=direct status=none
	dd if=/tmp/geom-data of=/dev/mapper/g bs=64k count=1 seek=$((L / 128 - 1)) oflag=direct status=none
	# The legs are dm-zero: what was written reads back as zeros.
	assert_eq "$(head -c 65536 /dev/zero | md5sum)" \
		"$(dd if=/dev/mapper/g bs=64k count=1 skip=$((L / 128 - 1)) iflag=direct status=none | md5sum)" "read at the end"
	status_words g
	assert_eq "2 AA 0 $regions/$regions $regions/$regions" "${st[*]:3:5}" "status after I/O"
	[[ ${st[8]} =~ ^[0-9]+$ ]] || fail "intent count: ${st[8]}"
	echo "status: ${st[*]:3}"
	t0=$(date +%s%N)
	dmsetup remove g
	t1=$(date +%s%N)
	echo "removed (and metadata checked) in $(((t1 - t0) / 1000000)) ms"
	losetup -d "$meta"
	ACCEPTED=1
}

step "16 TiB, 512 KiB regions"
ACCEPTED=0
try 1024
assert_eq 1 "$ACCEPTED" "512 KiB regions accepted"

step "16 TiB, 64 KiB regions"
ACCEPTED=0
try 128
assert_eq 1 "$ACCEPTED" "64 KiB regions accepted"

step "16 TiB, 4 KiB regions"
ACCEPTED=0 REFUSED=
try 8
# 3.5 GiB of bitmaps in a 3 GiB guest: refused before anything is
# allocated, with the region size that fits.
assert_eq 0 "$ACCEPTED" "4 KiB regions refused"
assert_match "^.*device-mapper: fracture: region_size 8 needs 36[0-9][0-9] MiB of memory for 4294967296 regions; a table may use [0-9]+ MiB \(1/8 of RAM\): region_size [0-9]+ \([0-9]+ KiB\) or larger fits" \
	"$REFUSED" "refusal"
fit=$(sed -E 's/.*: region_size ([0-9]+) \(.*/\1/' <<<"$REFUSED")
if [ "$fit" != 128 ]; then
	step "the suggested region size ($fit sectors) is accepted"
	ACCEPTED=0
	try "$fit"
	assert_eq 1 "$ACCEPTED" "suggested region size accepted"
fi
dmsetup remove z0 z1

step "a metadata device that drops writes"
dmsetup create dropper --table "0 $RAM_SECTORS flakey /dev/ram0 0 0 1 1 drop_writes"
expect_create_fail "metadata device $(devnum /dev/mapper/dropper) did not keep what was written: the superblock read back right after the format is all zero" \
	"$(fracture_table $RAM_SECTORS /dev/mapper/dropper 1024 /dev/ram1 /dev/ram2)"
dmsetup remove dropper
