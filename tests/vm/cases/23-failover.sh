#!/usr/bin/env bash
# Primary failover. A primary that fails writes under a verified fio load
# hands over to an in-sync secondary: fio sees no error, primary_leg
# changes with a dm event, the old primary is fractured with what it missed
# logged, a reload keeps the new primary (reads go there), and the old
# primary rejoins as a secondary copied from the new one. Read errors of
# the primary (dm-dust) are served by a secondary, and fail when no other
# leg is in sync.
. "$FRACTURE_VM/lib.sh"
py_start   # the Python helpers and the status helpers in one process

L=$RAM_SECTORS R=128   # 1024 regions of 64 KiB
linear_over p /dev/ram1
table=$(fracture_table $L /dev/ram0 $R /dev/mapper/p /dev/ram2 /dev/ram3)
create fo "$table"
assert_eq 0 "$(status_field fo 3)" "primary_leg at the start"

step "the primary fails under a verified fio write load"
ev0=$(event_nr fo)
fio --name=verify --filename=/dev/mapper/fo --size=48M --direct=1 \
	--ioengine=libaio --iodepth=16 --rw=randwrite --bsrange=4k-64k \
	--verify=crc32c --verify_fatal=1 --do_verify=1 --randrepeat=0 \
	--output-format=terse --minimal >/tmp/fio.out 2>&1 &
load=$!
sleep 2
kill -0 "$load" 2>/dev/null || fail "fio ended before the failure: make the load longer"
break_dev p
wait "$load" || { cat /tmp/fio.out; fail "fio saw an error across the failover"; }
echo "fio verify ok across the failover"
assert_eq "FAA" "$(health_of fo)" "health after the failover"
assert_eq 1 "$(status_field fo 3)" "primary_leg after the failover"
[ "$(event_nr fo)" -gt "$ev0" ] || fail "no dm event for the failover"
dmesg | grep -q "device-mapper: fracture: primary leg 0 failed a write: leg 1 is the primary now" ||
	fail "no failover log line"
logged=$(logged_regions /dev/ram0 0)
[ -n "$logged" ] || fail "the old primary's bitmap is empty"
differ=$(diff_regions /dev/ram1 /dev/ram2 $L $R)
is_subset "$differ" "$logged" || fail "the old primary differs in regions not logged: $differ / $logged"
echo "old primary: $(count_words "$logged") regions logged, $(count_words "$differ") differ"
legs_identical $L /dev/ram2 /dev/ram3

step "reads and writes go on; a reload keeps leg 1 as the primary"
data=$(random_file 2)
dd if="$data" of=/dev/mapper/fo bs=1M seek=50 oflag=direct status=none || fail "write after the failover"
dmsetup remove fo
create fo "$table"
assert_eq 1 "$(status_field fo 3)" "primary_leg after a reload"
wait_health fo FAA 60
errors0=$(stat_of fo read_errors)
cmp -n $((2 << 20)) "$data" -i 0:50M /dev/mapper/fo || fail "data read back after the reload"
assert_eq "$errors0" "$(stat_of fo read_errors)" "read errors (reads must go to leg 1, not the failed leg 0)"

step "the old primary comes back and rejoins as a secondary"
repair_dev p /dev/ram1
dmsetup message fo 0 rejoin 0
wait_health fo AAA 120
assert_eq 1 "$(status_field fo 3)" "primary_leg after the rejoin"
assert_eq "" "$(logged_regions /dev/ram0 0)" "bits of leg 0 after its recovery"
legs_identical $L /dev/ram2 /dev/ram1 /dev/ram3
dmsetup message fo 0 fracture 1 2>/dev/null && fail "fracturing the new primary"
dmesg | grep -q "cannot fracture leg 1: it is the primary" || fail "reason for refusing the primary"

step "a planned switchover back to leg 0 (the primary message)"
ev0=$(event_nr fo)
dmsetup message fo 0 primary 0
assert_eq 0 "$(status_field fo 3)" "primary_leg after the switchover"
assert_eq "AAA" "$(health_of fo)" "health after the switchover"
[ "$(event_nr fo)" -gt "$ev0" ] || fail "no dm event for the switchover"
dmesg | grep -q "device-mapper: fracture: leg 0 (.*) is the primary now, on request" || fail "no switchover log line"
dmsetup message fo 0 fracture 2
dmsetup message fo 0 primary 2 2>/dev/null && fail "a fractured leg made the primary"
dmesg | grep -q "cannot make leg 2 the primary: it is fractured" || fail "reason for refusing a fractured leg"
dmsetup message fo 0 rejoin 2
wait_health fo AAA 120
dmsetup remove fo
create fo "$table"
assert_eq 0 "$(status_field fo 3)" "primary_leg after the switchover and a reload"
dmsetup remove fo p

step "the primary fails writes (reads still work) while a leg is rebuilt from it"
wipe /dev/ram4 /dev/ram5 /dev/ram6 /dev/ram7
dmsetup create p2 --table "0 $L linear /dev/ram4 0"
create fr "$(fracture_table $L /dev/ram7 $R /dev/mapper/p2 /dev/ram5 /dev/ram6)"
fio_verify /dev/mapper/fr 16M
dmsetup message fr 0 recovery_rate 4096
dmsetup message fr 0 rebuild 2
fio --name=verify --filename=/dev/mapper/fr --offset=20M --size=24M --direct=1 \
	--ioengine=libaio --iodepth=16 --rw=randwrite --bsrange=4k-64k \
	--verify=crc32c --verify_fatal=1 --do_verify=1 --randrepeat=0 \
	--output-format=terse --minimal >/tmp/fio.out 2>&1 &
load=$!
sleep 1
[[ "$(recovery_of fr)" == recovering:2:* ]] || fail "leg 2 is not being rebuilt: $(recovery_of fr)"
dmsetup suspend p2
dmsetup load p2 --table "0 $L flakey /dev/ram4 0 0 1 1 error_writes"
dmsetup resume p2
wait "$load" || { cat /tmp/fio.out; fail "fio saw an error across the failover during the rebuild"; }
assert_eq 1 "$(status_field fr 3)" "primary_leg after the failover during the rebuild"
dmsetup message fr 0 recovery_rate 0
wait_health fr FAA 300
legs_identical $L /dev/ram5 /dev/ram6
dmsetup remove fr p2

step "read errors of the primary (dm-dust) are served by a secondary"
wipe /dev/ram4 /dev/ram5 /dev/ram6
dmsetup create d --table "0 $L dust /dev/ram4 0 512"
create fd "$(fracture_table $L /dev/ram6 $R /dev/mapper/d /dev/ram5)"
data=$(random_file 4)
dd if="$data" of=/dev/mapper/fd bs=1M oflag=direct status=none
for b in 8 2049 8000; do dmsetup message d 0 addbadblock $b; done
dmsetup message d 0 enable
dd if=/dev/mapper/d of=/dev/null bs=512 skip=2049 count=1 iflag=direct status=none 2>/dev/null &&
	fail "dm-dust does not fail the bad block"
fresh
cmp -n $((4 << 20)) "$data" /dev/mapper/fd || fail "data read back over the bad blocks"
n=$(stat_of fd read_errors)
[ "$n" -ge 3 ] || fail "read errors counted: $n (expected at least 3)"
assert_eq "$n" "$(stat_of fd reads_retried)" "reads retried"
assert_eq "AA" "$(health_of fd)" "a read error changes no leg state"
assert_eq 0 "$(status_field fd 3)" "primary_leg after read errors"
dmesg | grep -q "device-mapper: fracture: leg 0 failed a read at sector .*: retried on leg 1" ||
	fail "no read retry log line"

step "with no other leg in sync, the read fails"
dmsetup message fd 0 fracture 1
dd if=/dev/mapper/fd of=/dev/null bs=512 skip=2049 count=1 iflag=direct status=none 2>/dev/null &&
	fail "a read of a bad block succeeded with no leg to retry on"
dmesg | grep -q "leg 0 failed a read at sector 2049 and no other leg in sync has it" ||
	fail "no log line for the failed read"
dmsetup remove fd d
