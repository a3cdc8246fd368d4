#!/usr/bin/env bash
# A failed secondary comes back and is rejoined: the recovery thread copies
# exactly the logged regions (not the whole leg), clears the bits, the leg
# is in sync again, byte-identical to the primary, with a dm event.
. "$FRACTURE_VM/lib.sh"
py_start   # the Python helpers in one process (logged_regions, legs_identical...)

L=$RAM_SECTORS R=128   # 64 KiB regions: 1024 of them
linear_over s /dev/ram2
create rj "$(fracture_table $L /dev/ram0 $R /dev/ram1 /dev/mapper/s /dev/ram3)"

step "leg 1 fails; a known pattern and a short fio run are written"
break_dev s
w() { dd if=/dev/urandom of=/dev/mapper/rj bs=512 seek="$1" count="$2" oflag=direct status=none || fail "host write at $1 failed"; }
w 1280 8          # region 10
w 2600 128        # regions 20..21
w 16384 2048      # regions 128..143
w 130944 128      # region 1023
fio --name=f --filename=/dev/mapper/rj --offset=32M --size=8M --direct=1 --ioengine=libaio \
	--iodepth=8 --rw=randwrite --bs=4k --number_ios=200 --randrepeat=0 \
	--output-format=terse --minimal >/dev/null || fail "fio during the failure"
assert_eq "AFA" "$(health_of rj)" "health while failed"
logged=$(logged_regions /dev/ram0 1)
n=$(count_words "$logged")
echo "logged regions: $n"
[ "$n" -gt 21 ] && [ "$n" -lt 1024 ] || fail "unexpected number of logged regions: $n"
copied0=$(stat_of rj regions_copied)

step "the leg is repaired and rejoined"
repair_dev s /dev/ram2
ev0=$(event_nr rj)
dmsetup message rj 0 rejoin 1
dmesg | grep -q "device-mapper: fracture: leg 1 (.*) rejoined: $n regions to copy" || fail "no rejoin log line"
wait_health rj AAA 60
[ "$(event_nr rj)" -gt "$ev0" ] || fail "no dm event for the recovery"
assert_eq "$n" "$(( $(stat_of rj regions_copied) - copied0 ))" "regions copied (must equal regions logged)"
assert_eq "" "$(logged_regions /dev/ram0 1)" "bits after recovery"
assert_eq "1024/1024" "$(status_field rj 5)" "in_sync of leg 1"
assert_eq "idle" "$(recovery_of rj)" "recovery field"
dmesg | grep -q "device-mapper: fracture: leg 1 (.*) is in sync again" || fail "no in-sync log line"
legs_identical $L /dev/ram1 /dev/ram2 /dev/ram3

step "writes reach the recovered leg again"
w 4096 64
legs_identical $L /dev/ram1 /dev/ram2 /dev/ram3
assert_eq "" "$(logged_regions /dev/ram0 1)" "no new bits"

step "rejoin of an in-sync leg is refused"
dmesg -C
dmsetup message rj 0 rejoin 1 2>/dev/null && fail "rejoin of an in-sync leg"
dmesg | grep -q "leg 1 is already in sync" || fail "reason for refused rejoin"

step "a split leg with no writes since rejoins at once"
dmsetup message rj 0 fracture 2
dmsetup message rj 0 rejoin 2
wait_health rj AAA 10
dmsetup remove rj s
