#!/usr/bin/env bash
# What goes wrong during recovery: the leg fails again (back to F, nothing
# marked in sync wrongly), the primary cannot be read (recovery stalls,
# nothing marked in sync), and the triggers that start recovery by
# themselves: resume with the leg present, and probe_interval.
. "$FRACTURE_VM/lib.sh"
py_start   # the Python helpers in one process (logged_regions, legs_identical...)

L=$RAM_SECTORS R=128   # 64 KiB regions: 1024 of them
w() { dd if=/dev/urandom of="/dev/mapper/$1" bs=64k seek="$2" count="$3" oflag=direct status=none || fail "host write failed"; }

step "the leg fails again during recovery"
linear_over s /dev/ram2
# A short intent_delay: the host's writes leave no intent bit by the time
# the leg fails again (a leg that fails gets the intent regions marked too,
# which would hide the recovery's progress).
create rf "0 $L fracture /dev/ram0 $R 2 /dev/ram1 /dev/mapper/s 5 nosync recovery_rate 1024 intent_delay 100"
break_dev s
w rf 0 400
repair_dev s /dev/ram2
dmsetup message rf 0 rejoin 1
sleep 2
assert_eq "AR" "$(health_of rf)" "health during recovery"
for _ in $(seq 100); do
	[ "$(status_field rf 6)" = 0 ] && break
	sleep 0.1
done
assert_eq 0 "$(status_field rf 6)" "intent bits before the failure"
ev0=$(event_nr rf)
break_dev s
wait_health rf AF 30
[ "$(event_nr rf)" -gt "$ev0" ] || fail "no dm event when recovery failed"
[ "$(stat_of rf copy_write_errors)" -gt 0 ] || fail "copy write error not counted"
logged=$(logged_regions /dev/ram0 1)
n=$(count_words "$logged")
echo "logged after the failure: $n of 400"
[ "$n" -gt 0 ] && [ "$n" -lt 400 ] || fail "expected partial progress, $n regions left"
is_subset "$(diff_regions /dev/ram1 /dev/ram2 $L $R)" "$logged" ||
	fail "a region differs from the primary but is not logged"

step "resume with the leg present starts recovery"
repair_dev s /dev/ram2
dmsetup message rf 0 recovery_rate 0
dmsetup suspend rf
dmsetup resume rf
wait_health rf AA 60
dmesg | grep -q "resume: legs 0x2, fractured by a failure, start recovery" || fail "no resume log line"
legs_identical $L /dev/ram1 /dev/ram2
dmsetup remove rf

step "probe_interval: a failed leg that works again is resynced by itself"
create pb "0 $L fracture /dev/ram0 $R 2 /dev/ram1 /dev/mapper/s 3 nosync probe_interval 1"
break_dev s
w pb 100 50
assert_eq "AF" "$(health_of pb)" "health after the failure"
sleep 3
assert_eq "AF" "$(health_of pb)" "health while the leg is still broken"
[ "$(stat_of pb probes)" -gt 0 ] || fail "no probe while the leg was broken"
assert_eq 0 "$(stat_of pb probes_ok)" "probes that worked on a broken leg"
repair_dev s /dev/ram2
wait_health pb AA 30
[ "$(stat_of pb probes_ok)" -ge 1 ] || fail "no successful probe counted"
dmesg | grep -q "probe: leg 1 (.*) takes writes again; recovery started" || fail "no probe log line"
assert_eq 50 "$(stat_of pb regions_copied)" "regions copied"
legs_identical $L /dev/ram1 /dev/ram2
assert_eq "0 $L fracture 1:0 $R 2 1:1 $(devnum /dev/mapper/s) 3 nosync probe_interval 1" \
	"$(dmsetup table pb)" "table line"
dmsetup remove pb s

step "a primary read error stalls recovery; nothing is marked in sync"
dmsetup create p --table "0 $L dust /dev/ram1 0 512"
create rd "0 $L fracture /dev/ram0 $R 2 /dev/mapper/p /dev/ram2 1 nosync"
dmsetup message rd 0 fracture 1
w rd 10 4                    # regions 10..13
dmsetup message p 0 addbadblock $((12 * R + 5))
dmsetup message p 0 enable
dmesg -C
dmsetup message rd 0 rejoin 1
for _ in $(seq 50); do
	[[ "$(recovery_of rd)" == stalled:* ]] && break
	sleep 0.1
done
assert_match "^stalled:1:[0-9]+/4$" "$(recovery_of rd)" "recovery field"
assert_eq "AR" "$(health_of rd)" "health while stalled"
dmesg | grep -q "recovery: primary read error in region 12" || fail "no read error log line"
[ "$(stat_of rd copy_read_errors)" -ge 1 ] || fail "read error not counted"
sleep 1
assert_eq "12" "$(logged_regions /dev/ram0 1)" "only the unreadable region stays"
dmsetup message p 0 removebadblock $((12 * R + 5))
dmsetup message rd 0 rejoin 1
wait_health rd AA 30
fresh
cmp -n $((L * 512)) /dev/ram1 /dev/ram2 || fail "legs differ after the stalled recovery finished"
dmsetup remove rd p
