#!/usr/bin/env bash
# Metadata that is corrupt, foreign, too small or for another geometry is
# refused with a reason, and never reformatted.
. "$FRACTURE_VM/lib.sh"
modprobe dm_fracture

L=$RAM_SECTORS
good=$(fracture_table $L /dev/ram0 1024 /dev/ram1 /dev/ram2)
create g "$good"
dmsetup remove g
fresh
sb=$(md5sum </dev/ram0)

step "other geometry"
expect_create_fail "metadata device 1:0: metadata has region_size 1024, the table says 2048" \
	"$(fracture_table $L /dev/ram0 2048 /dev/ram1 /dev/ram2)"
expect_create_fail "metadata device 1:0: metadata has 2 legs, the table says 3" \
	"$(fracture_table $L /dev/ram0 1024 /dev/ram1 /dev/ram2 /dev/ram3)"
expect_create_fail "metadata device 1:0: metadata is for a target of $L sectors, the table says 65536" \
	"$(fracture_table 65536 /dev/ram0 1024 /dev/ram1 /dev/ram2)"

step "too small"
dmsetup create tiny --table "0 24 linear /dev/ram5 0"
expect_create_fail "metadata device $(devnum /dev/mapper/tiny) has 24 sectors; this table needs at least 32" \
	"$(fracture_table $L /dev/mapper/tiny 1024 /dev/ram1 /dev/ram2)"
dmsetup remove tiny

step "corrupt superblock"
printf '\xff' | dd of=/dev/ram0 bs=1 seek=200 conv=notrunc status=none
expect_create_fail "metadata device 1:0: superblock block 0 fails its checksum; refusing it (never reformatted)" "$good"
printf '\x00' | dd of=/dev/ram0 bs=1 seek=200 conv=notrunc status=none
fresh
assert_eq "$sb" "$(md5sum </dev/ram0)" "metadata restored byte for byte"
create g "$good"
dmsetup remove g

step "corrupt fracture bitmap block"
printf '\x01' | dd of=/dev/ram0 bs=1 seek=$((2 * 4096 + 100)) conv=notrunc status=none
expect_create_fail "metadata device 1:0: fracture bitmap block 2 fails its checksum" "$good"
printf '\x00' | dd of=/dev/ram0 bs=1 seek=$((2 * 4096 + 100)) conv=notrunc status=none

step "foreign data"
dd if=/dev/urandom of=/dev/ram4 bs=4k count=1 status=none
expect_create_fail "metadata device 1:4: no dm-fracture superblock (bad magic) and not all zero" \
	"$(fracture_table $L /dev/ram4 1024 /dev/ram1 /dev/ram2)"
fresh
[ "$(head -c 4096 /dev/ram4 | md5sum)" != "$(head -c 4096 /dev/zero | md5sum)" ] || fail "foreign data overwritten"
