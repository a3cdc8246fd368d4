#!/usr/bin/env bash
# nointent: no write-intent log. Writes cost no metadata I/O; the
# superblock's clean flag is cleared before the table serves writes and set
# again by a clean suspend (after a flush of the legs); a clean stop
# resyncs nothing, an unclean one resyncs every region, also under a table
# that keeps an intent log.
. "$FRACTURE_VM/lib.sh"
py_start

L=$RAM_SECTORS R=128   # 1024 regions of 64 KiB
intent_of() { dmsetup status "$1" | awk '{ print $(NF - 3) }'; }
w() { dd if=/dev/urandom of="/dev/mapper/$1" bs=4k seek="$2" count="$3" oflag=direct status=none || fail "write at $2"; }
# The superblock's flags word (bit 0: clean), read past the page cache.
clean_flag() {
	dd if=/dev/mapper/m bs=4096 count=1 iflag=direct status=none | od -An -tu4 -j 44 -N 4 | tr -d ' '
}
wipe /dev/ram0 /dev/ram1 /dev/ram2
linear_over m /dev/ram0
line="0 $L fracture /dev/mapper/m $R 2 /dev/ram1 /dev/ram2 2 nosync nointent"

step "table line; intent_delay is refused with nointent"
expect_create_fail "intent_delay with nointent: there is no write-intent log to delay" \
	"0 $L fracture /dev/ram4 $R 2 /dev/ram5 /dev/ram6 3 nointent intent_delay 10"
create ni "$line"
assert_eq "0 $L fracture $(devnum /dev/mapper/m) $R 2 1:1 1:2 2 nosync nointent" "$(dmsetup table ni)" "table line"

step "writes cost no metadata I/O and mark nothing; the table runs 'not clean'"
assert_eq 0 "$(clean_flag)" "clean flag while the table runs"
m0=$(stat_of ni metadata_writes)
for i in $(seq 0 39); do w ni $((i * 400)) 2; done   # 40 regions
assert_eq 0 "$(intent_of ni)" "intent_regions"
assert_eq "$m0" "$(stat_of ni metadata_writes)" "metadata writes for 40 writes to new regions"
assert_eq "" "$(logged_regions /dev/mapper/m intent)" "intent bitmap on disk"
assert_eq "AA" "$(health_of ni)" "health"

step "a clean suspend sets the flag, resume clears it"
dmsetup suspend ni
assert_eq 1 "$(clean_flag)" "clean flag while suspended"
dmsetup resume ni
assert_eq 0 "$(clean_flag)" "clean flag after resume"

step "a clean stop resyncs nothing"
dmsetup remove ni
assert_eq 1 "$(clean_flag)" "clean flag after remove"
create ni "$line"
sleep 1
assert_eq "AA" "$(health_of ni)" "health after re-create"
assert_eq 0 "$(stat_of ni regions_copied)" "regions copied after a clean stop"
legs_identical $L /dev/ram1 /dev/ram2

step "a crash (the metadata device lost while running) resyncs every region"
w ni 1000 16
skip_meta_check /dev/mapper/m   # an error target when ni is removed
break_dev m
dmsetup remove ni 2>/dev/null || dmsetup remove ni
repair_dev m /dev/ram0
assert_eq 0 "$(clean_flag)" "clean flag after the 'crash'"
# A torn write could be anywhere: make the legs differ in two regions.
dd if=/dev/urandom of=/dev/ram2 bs=4k seek=1000 count=1 oflag=direct status=none    # region 62
dd if=/dev/urandom of=/dev/ram2 bs=4k seek=12800 count=1 oflag=direct status=none   # region 800
assert_eq "62 800" "$(diff_regions /dev/ram1 /dev/ram2 $L $R)" "regions where the legs differ"
dmesg -C
# Activated by a table that keeps an intent log: the flag is honoured too.
create il "0 $L fracture /dev/mapper/m $R 2 /dev/ram1 /dev/ram2 1 nosync"
dmesg | grep -q "not shut down cleanly and no write-intent log was kept (nointent): every region is copied" ||
	fail "no unclean-shutdown log line: $(dmesg | tail -n 3)"
wait_health il AA 120
assert_eq 1024 "$(stat_of il regions_copied)" "regions copied after the crash"
assert_eq "" "$(diff_regions /dev/ram1 /dev/ram2 $L $R)" "differences left"
assert_eq 1 "$(clean_flag)" "clean flag under a table with an intent log"
dmsetup remove il

step "a leg fractured by a failure is flushed; if that fails too, every region is marked"
# A leg with a volatile write cache (null_blk) whose writes and flushes
# fail (dm-flakey error_writes), so that the flush means something.
cached=$(nullb_create cached 64)
linear_over s "$cached"
wipe /dev/mapper/m /dev/ram1   # m holds ram0 open
create nf "0 $L fracture /dev/mapper/m $R 2 /dev/ram1 /dev/mapper/s 2 nosync nointent"
w nf 0 4
dmsetup suspend s
dmsetup load s --table "0 $L flakey $cached 0 0 1 1 error_writes"
dmsetup resume s
dmesg -C
w nf 2000 4
assert_eq "AF" "$(health_of nf)" "health after the failure"
dmesg | grep -q "leg 1 fractured with every region out of sync" || fail "no log line for the failed flush"
assert_eq 1024 "$(count_words "$(logged_regions /dev/mapper/m 1)")" "regions marked for the failed leg"
repair_dev s "$cached"
dmsetup message nf 0 rejoin 1
wait_health nf AA 120
dmsetup remove nf
legs_identical $L /dev/ram1 "$cached"
dmsetup remove s m
