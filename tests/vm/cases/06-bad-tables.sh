#!/usr/bin/env bash
# Every malformed table line is refused with a one-line reason in dmesg
# ("device-mapper: fracture: ..."), leaves no device and no splat.
. "$FRACTURE_VM/lib.sh"
modprobe dm_fracture

L=$RAM_SECTORS
M=/dev/ram0 A=/dev/ram1 B=/dev/ram2
dmsetup create small --table "0 100 linear /dev/ram3 0"
dmsetup create tinymeta --table "0 4 linear /dev/ram4 0"

expect_create_fail "too few arguments (2)" "0 $L fracture $M 1024"
expect_create_fail "invalid region_size 1000: is not a power of two" "0 $L fracture $M 1000 2 $A $B"
expect_create_fail "invalid region_size 4: is below the minimum of 8 sectors" "0 $L fracture $M 4 2 $A $B"
expect_create_fail "invalid region_size 4194304: is above the maximum" "0 $L fracture $M 4194304 2 $A $B"
expect_create_fail "invalid region_size '-1024': not an unsigned decimal number" "0 $L fracture $M -1024 2 $A $B"
expect_create_fail "invalid region_size '1k': not an unsigned decimal number" "0 $L fracture $M 1k 2 $A $B"
expect_create_fail "invalid region_size '99999999999999999999999': too large" "0 $L fracture $M 99999999999999999999999 2 $A $B"
expect_create_fail "invalid nr_legs 1: must be 2..9" "0 $L fracture $M 1024 1 $A"
expect_create_fail "invalid nr_legs 10: must be 2..9" "0 $L fracture $M 1024 10 $A $B"
expect_create_fail "invalid nr_legs 18446744073709551615" "0 $L fracture $M 1024 18446744073709551615 $A $B"
expect_create_fail "invalid nr_legs '2x'" "0 $L fracture $M 1024 2x $A $B"
expect_create_fail "nr_legs is 3 but only 2 leg devices follow" "0 $L fracture $M 1024 3 $A $B"
expect_create_fail "unknown feature 'frobnicate'" "0 $L fracture $M 1024 2 $A $B 1 frobnicate"
expect_create_fail "#features is 2 but 1 feature words follow" "0 $L fracture $M 1024 2 $A $B 2 nosync"
expect_create_fail "invalid #features 'x'" "0 $L fracture $M 1024 2 $A $B x"
expect_create_fail "feature nosync given twice" "0 $L fracture $M 1024 2 $A $B 2 nosync nosync"
expect_create_fail "feature recovery_rate needs a value" "0 $L fracture $M 1024 2 $A $B 1 recovery_rate"
expect_create_fail "invalid recovery_rate '-1'" "0 $L fracture $M 1024 2 $A $B 2 recovery_rate -1"
expect_create_fail "invalid recovery_rate '18446744073709551616': too large" "0 $L fracture $M 1024 2 $A $B 2 recovery_rate 18446744073709551616"
expect_create_fail "invalid recovery_rate 1073741825: must be 0..1073741824" "0 $L fracture $M 1024 2 $A $B 2 recovery_rate 1073741825"
expect_create_fail "invalid probe_interval 86401: must be 0..86400" "0 $L fracture $M 1024 2 $A $B 2 probe_interval 86401"
expect_create_fail "unknown feature 'nosync=1'" "0 $L fracture $M 1024 2 $A $B 1 nosync=1"
expect_create_fail "legs 0 and 1 are the same device" "0 $L fracture $M 1024 2 $A $A"
expect_create_fail "legs 0 and 1 are the same device" "0 $L fracture $M 1024 2 $A $(devnum $A)"
expect_create_fail "leg 1 is the metadata device" "0 $L fracture $M 1024 2 $A $M"
expect_create_fail "leg 1 (" "0 $L fracture $M 1024 2 $A /dev/mapper/small"
expect_create_fail "cannot open leg 1 device '/dev/nonexistent'" "0 $L fracture $M 1024 2 $A /dev/nonexistent"
expect_create_fail "cannot open metadata device '/dev/nonexistent'" "0 $L fracture /dev/nonexistent 1024 2 $A $B"
expect_create_fail "metadata device" "0 $L fracture /dev/mapper/tinymeta 1024 2 $A $B"
expect_create_fail "leg 0 (" "0 $((L + 8)) fracture $M 1024 2 $A $B"

step "nothing was written to the legs"
fresh
cmp -n $((L * 512)) $A /dev/zero || fail "leg $A was written"
cmp -n $((L * 512)) $B /dev/zero || fail "leg $B was written"
dmsetup remove small tinymeta
