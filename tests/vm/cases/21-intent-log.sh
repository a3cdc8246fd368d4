#!/usr/bin/env bash
# The write-intent log: regions are marked on disk before a write goes to
# the legs, hot regions cost no metadata I/O, quiet regions are cleared
# after intent_delay, a clean suspend leaves the log empty, an unclean stop
# resyncs exactly the marked regions, and a fracture takes the marked
# regions into the leg's log.
. "$FRACTURE_VM/lib.sh"
py_start   # the Python helpers in one process (logged_regions, legs_identical...)

L=$RAM_SECTORS R=128   # 64 KiB regions: 1024 of them
intent_of() { dmsetup status "$1" | awk '{ print $(NF - 3) }'; }
w() { dd if=/dev/urandom of="/dev/mapper/$1" bs=512 seek="$2" count="$3" oflag=direct status=none || fail "write at $2"; }
wipe /dev/ram0 /dev/ram1 /dev/ram2
linear_over m /dev/ram0
line() { echo "0 $L fracture /dev/mapper/m $R 2 /dev/ram1 /dev/ram2 3 nosync intent_delay $1"; }

step "writes mark their regions on disk first; marked regions cost no metadata I/O"
create il "$(line 60000)"
assert_eq 0 "$(intent_of il)" "intent_regions at start"
assert_match "intent_delay 60000" "$(table_of il)" "table line"
w il 1280 8          # region 10
w il 2600 128        # regions 20, 21
assert_eq 3 "$(intent_of il)" "intent_regions after writes to 3 regions"
assert_eq "10 20 21" "$(logged_regions /dev/mapper/m intent)" "intent bitmap on disk"
m0=$(stat_of il metadata_writes)
for i in $(seq 1 40); do w il $((1280 + i % 8)) 1; w il $((2600 + i)) 4; done
assert_eq "$m0" "$(stat_of il metadata_writes)" "metadata writes for 80 writes to marked regions"

step "a clean suspend leaves the log empty"
# 4 s: long enough that two writes and a status read fit in it even when
# the TCG guest is slow (1.5 s was not, once in a while).
dmsetup load il --table "$(line 4000)"
dmsetup suspend il
assert_eq "" "$(logged_regions /dev/mapper/m intent)" "intent bitmap after a suspend"
dmsetup resume il

step "regions gone quiet are cleared after intent_delay (4 s, at most twice that)"
w il 1280 8; w il 2600 128
assert_eq 3 "$(intent_of il)" "intent_regions after writes to 3 regions"
sleep 8.5
assert_eq 0 "$(intent_of il)" "intent_regions after 8.5 s idle"
assert_eq "" "$(logged_regions /dev/mapper/m intent)" "intent bitmap on disk"

step "a region written continuously stays marked"
touch /tmp/hot
( while [ -e /tmp/hot ]; do w il 6400 8; sleep 0.05; done ) &
writer=$!
sleep 4
assert_eq 1 "$(intent_of il)" "intent_regions while region 50 is hot"
rm /tmp/hot
wait $writer

step "a crash (the metadata device lost with writes marked) resyncs exactly those regions"
dmsetup load il --table "$(line 60000)"
dmsetup suspend il
dmsetup resume il
w il 12800 8          # region 100
w il 25600 256        # regions 200, 201
before=$(logged_regions /dev/mapper/m intent)
assert_eq "100 200 201" "$before" "marked regions"
# The metadata device dies: nothing more reaches it, as in a power cut.
skip_meta_check /dev/mapper/m   # an error target when il is removed
break_dev m
dmsetup remove il 2>/dev/null || dmsetup remove il
repair_dev m /dev/ram0
assert_eq "100 200 201" "$(logged_regions /dev/mapper/m intent)" "marked regions after the 'crash'"
# Make the legs differ where a write could have been torn (marked) and,
# as a control, in a region nobody marked (not the log's business).
dd if=/dev/urandom of=/dev/ram2 bs=512 seek=25700 count=8 oflag=direct status=none
dd if=/dev/urandom of=/dev/ram2 bs=512 seek=51200 count=8 oflag=direct status=none   # region 400
diff=$(diff_regions /dev/ram1 /dev/ram2 $L $R)
assert_eq "200 400" "$diff" "regions where the legs differ before activation"
dmesg -C
create il "$(line 400)"
dmesg | grep -q "not shut down cleanly; 3 regions" || fail "no unclean-shutdown log line: $(dmesg | tail -n 3)"
wait_health il AA 30
assert_eq 3 "$(stat_of il regions_copied)" "regions copied after the crash"
assert_eq "" "$(logged_regions /dev/mapper/m 1)" "fracture bits after recovery"
assert_eq "400" "$(diff_regions /dev/ram1 /dev/ram2 $L $R)" "differences left (only the unmarked control region)"
dd if=/dev/ram1 of=/dev/ram2 bs=512 skip=51200 seek=51200 count=128 oflag=direct status=none
dmsetup remove il

step "a split takes only the regions with writes in flight, a failure the marked ones"
create il "$(line 60000)"
w il 128 8            # region 1, marked for a minute
dmsetup message il 0 fracture 1
assert_eq "" "$(logged_regions /dev/mapper/m 1)" "leg 1's log right after the split (flushed, nothing in flight)"
w il 640 8            # region 5
assert_eq "5" "$(logged_regions /dev/mapper/m 1)" "leg 1's log after a write"
dmsetup message il 0 rejoin 1
wait_health il AA 30
legs_identical $L /dev/ram1 /dev/ram2
dmsetup remove il
# A write in flight at the split (held 1 s by dm-delay on the leg) is marked.
dmsetup create d2 --table "0 $L delay /dev/ram2 0 0 /dev/ram2 0 1000"
create il "0 $L fracture /dev/mapper/m $R 2 /dev/ram1 /dev/mapper/d2 3 nosync intent_delay 60000"
w il 128 8            # region 1: marked, done
w il 1152 8 &         # region 9: in flight on leg 1 for a second
inflight=$!
sleep 0.5
dmsetup message il 0 fracture 1
wait "$inflight"      # (not a bare wait: the Python helper runs in the background too)
regions=$(logged_regions /dev/mapper/m 1)
# 9 and the regions sharing its in-flight counter (none of 1024); not 1.
assert_eq "9" "$regions" "leg 1's log: the write in flight at the split"
dmsetup message il 0 rejoin 1
wait_health il AA 30
legs_identical $L /dev/ram1 /dev/mapper/d2
# A leg that fails a write gets the marked regions: it may hold writes it
# acknowledged without making them durable (no flush to try).
dmsetup suspend d2
dmsetup load d2 --table "0 $L error"
dmsetup resume d2
w il 1664 8           # region 13: fails on leg 1
assert_eq "AF" "$(health_of il)" "health after the failure"
assert_eq "1 9 13" "$(logged_regions /dev/mapper/m 1)" "leg 1's log: the marked regions and the failed write"
dmsetup remove il d2 m
