#!/usr/bin/env bash
# A secondary that fails writes is fractured: exactly the regions written
# from then on are logged, durably, and the host sees no error.
. "$FRACTURE_VM/lib.sh"
py_start   # the Python helpers in one process (logged_regions, legs_identical...)

L=$RAM_SECTORS R=128   # 64 KiB regions: 1024 of them
linear_over s /dev/ram2
create fx "$(fracture_table $L /dev/ram0 $R /dev/ram1 /dev/mapper/s)"
assert_eq "2 AA 0 1024/1024 1024/1024 0 idle rw -" "$(status_of fx)" "fresh status"
ev0=$(event_nr fx)

step "secondary fails; writes at known places"
break_dev s
w() { dd if=/dev/urandom of=/dev/mapper/fx bs=512 seek="$1" count="$2" oflag=direct status=none || fail "host write at $1 failed"; }
w 1280 8          # region 10
w 2600 128        # regions 20..21 (unaligned 64 KiB)
w 16384 2048      # regions 128..143
w 130944 128      # region 1023, the last
expected="10 20 21 $(seq -s ' ' 128 143) 1023"
assert_eq "AF" "$(health_of fx)" "health"
assert_eq "$((1024 - 20))/1024" "$(status_field fx 5)" "in_sync of leg 1"
assert_eq "1024/1024" "$(status_field fx 4)" "in_sync of leg 0"
[ "$(event_nr fx)" -gt "$ev0" ] || fail "no dm event for the fracture"
assert_eq "$expected" "$(logged_regions /dev/ram0 1)" "regions logged on disk"
assert_eq "" "$(logged_regions /dev/ram0 0)" "primary bitmap"

step "rewriting logged regions costs no new bits"
w 1280 8
assert_eq "$expected" "$(logged_regions /dev/ram0 1)" "regions logged after rewrite"

step "the fractured leg gets nothing even when it works again"
repair_dev s /dev/ram2
w 40000 8         # region 312
expected="$expected"
expected="10 20 21 $(seq -s ' ' 128 143) 312 1023"
assert_eq "$expected" "$(logged_regions /dev/ram0 1)" "new region logged"
is_subset "$(diff_regions /dev/ram1 /dev/ram2 $L $R)" "$expected" ||
	fail "legs differ outside the logged regions"
dmsetup remove fx s

step "failure in the middle of a verified fio run"
wipe /dev/ram0 /dev/ram1 /dev/ram2
linear_over s /dev/ram2
create fy "$(fracture_table $L /dev/ram0 $R /dev/ram1 /dev/mapper/s)"
fio --name=mid --filename=/dev/mapper/fy --size=48M --direct=1 --ioengine=libaio \
	--iodepth=16 --rw=randwrite --bsrange=4k-128k --verify=crc32c --verify_fatal=1 \
	--do_verify=1 --time_based --runtime=15 --output-format=terse --minimal \
	>/tmp/fio-mid.out 2>&1 &
pid=$!
sleep 5
break_dev s
wait $pid || { cat /tmp/fio-mid.out; fail "fio saw an error"; }
assert_eq "AF" "$(health_of fy)" "health after mid-run failure"
logged=$(logged_regions /dev/ram0 1)
differ=$(diff_regions /dev/ram1 /dev/ram2 $L $R)
echo "logged: $(wc -w <<<"$logged") regions, differing: $(wc -w <<<"$differ")"
[ -n "$logged" ] || fail "nothing logged"
# The leg is broken, so read what it holds through the RAM disk below it:
# every region where it differs from the primary must be logged.
is_subset "$differ" "$logged" || fail "a region differs but is not logged"
dmsetup remove fy s
