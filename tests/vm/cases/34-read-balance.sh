#!/usr/bin/env bash
# Read balancing: reads go to the in-sync leg with the fewest reads in
# flight (the primary on a tie), never to a leg that may miss an
# acknowledged write (fractured, recovering), never to a secondary for a
# region discarded since the table was loaded, and only to the primary with
# `read_primary` or `io_timeout`. Every read returns the last data written,
# whichever leg served it. The legs are null_blk devices that complete after 200 us (a
# timer), so that reads stay in flight and the choice is exercised; brd
# completes in the submitter's context. `stats` counts reads per leg
# (`reads=<leg 0>,<leg 1>`). Polled I/O (io_uring with polling) over legs
# with poll queues completes.
. "$FRACTURE_VM/lib.sh"
py_start   # the Python helpers and the status helpers in one process

MB=8
R=128   # 64 KiB regions: 128 of them in the data written
# A null_blk leg with a 200 us completion delay: slow_nullb <name>.
slow_nullb() {
	local d=/sys/kernel/config/nullb/$1
	mkdir "$d"
	echo 1 >"$d/memory_backed"
	echo 64 >"$d/size"
	echo 2 >"$d/irqmode"
	echo 200000 >"$d/completion_nsec"
	echo 1 >"$d/discard"
	echo 1 >"$d/power"
	echo "/dev/$1"
}
l0=$(slow_nullb rb0)
l1=$(slow_nullb rb1)
wipe /dev/ram0
line="0 $RAM_SECTORS fracture /dev/ram0 $R 2 $l0 $l1 1 nosync"
create rb "$line"

# reads_of <leg>: host reads sent to the leg by this table.
reads_of() {
	local r
	r=$(stat_of rb reads)
	cut -d, -f"$(($1 + 1))" <<<"$r"
}
# par_sum: md5 of the first $MB MiB of the mirror, read by 8 readers at
# once (direct I/O, 4 KiB reads), so that reads overlap on the legs.
# (Each wait names its jobs: a bare wait would wait for the pyserve coproc.)
par_sum() {
	local i pids=()
	for i in $(seq 0 7); do
		dd if=/dev/mapper/rb of=/tmp/part.$i bs=4k skip=$((i * MB * 32)) count=$((MB * 32)) \
			iflag=direct status=none &
		pids+=($!)
	done
	wait "${pids[@]}"
	for i in $(seq 0 7); do cat /tmp/part.$i; done | md5sum | cut -d' ' -f1
	rm -f /tmp/part.*
}
# write_data: new random data over the first $MB MiB; prints its md5.
# Then waits for udev, which may probe the device after the write (reads
# that would blur the counts).
write_data() {
	local f
	f=$(random_file $MB)
	dd if="$f" of=/dev/mapper/rb bs=1M oflag=direct status=none || fail "write"
	md5sum <"$f" | cut -d' ' -f1
	rm -f "$f"
	udevadm settle 2>/dev/null || true
}

step "reads at queue depth 1 all go to the primary (a tie)"
sum=$(write_data)
r0=$(reads_of 0) r1=$(reads_of 1)
dd if=/dev/mapper/rb of=/dev/null bs=4k count=256 iflag=direct status=none
assert_eq $((r0 + 256)) "$(reads_of 0)" "reads on leg 0"
assert_eq "$r1" "$(reads_of 1)" "reads on leg 1"

step "overlapping reads are spread over both in-sync legs and return the data written"
assert_eq "$sum" "$(par_sum)" "data read back"
s0=$(reads_of 0) s1=$(reads_of 1)
echo "reads by 8 readers: leg 0 $((s0 - r0 - 256)), leg 1 $((s1 - r1))"
[ "$s1" -gt "$r1" ] || fail "no read went to the in-sync secondary"
[ "$s0" -gt $((r0 + 256)) ] || fail "no read went to the primary"

step "a fractured leg gets no read; reads return what was written since"
dmsetup message rb 0 fracture 1
assert_eq "AF" "$(health_of rb)" "health"
sum=$(write_data)
r1=$(reads_of 1)
assert_eq "$sum" "$(par_sum)" "data read back with leg 1 fractured"
assert_eq "$r1" "$(reads_of 1)" "reads on the fractured leg"

step "a recovering leg gets no read until it is in sync"
# Leg 1 still holds the data from before the fracture in the regions not
# copied yet: a read served by it would not match.
dmsetup message rb 0 recovery_rate 64   # 128 regions of 64 KiB: about 2 min
dmsetup message rb 0 rejoin 1
assert_eq "AR" "$(health_of rb)" "health while recovering"
assert_eq "$sum" "$(par_sum)" "data read back while leg 1 recovers"
assert_eq "AR" "$(health_of rb)" "health (still recovering)"
assert_eq "$r1" "$(reads_of 1)" "reads on the recovering leg"
dmsetup message rb 0 recovery_rate 0
wait_health rb AA 60
assert_eq "$sum" "$(par_sum)" "data read back once in sync"
[ "$(reads_of 1)" -gt "$r1" ] || fail "no read went to leg 1 once in sync again"
legs_identical $((MB * 2048)) "$l0" "$l1"

step "a region discarded since the table was loaded is read from the primary"
# region_reads <region>: 8 readers read the 64 KiB region 4 times each.
region_reads() {
	local i pids=()
	for i in $(seq 8); do
		for _ in 1 2 3 4; do
			dd if=/dev/mapper/rb of=/dev/null bs=4k skip=$(($1 * 16)) count=16 iflag=direct status=none
		done &
		pids+=($!)
	done
	wait "${pids[@]}"
}
blkdiscard -o 0 -l 65536 /dev/mapper/rb
r1=$(reads_of 1)
region_reads 1   # the control: region 1 was not discarded
[ "$(reads_of 1)" -gt "$r1" ] || fail "the control: no read of region 1 went to leg 1"
r1=$(reads_of 1)
region_reads 0
assert_eq "$r1" "$(reads_of 1)" "reads of the discarded region on leg 1"

step "read_primary: every read goes to the primary"
dmsetup remove rb
create rb "0 $RAM_SECTORS fracture /dev/ram0 $R 2 $l0 $l1 2 nosync read_primary"
assert_match "read_primary" "$(table_of rb)" "table line"
sum=$(write_data)   # the discard above zeroed region 0
assert_eq "$sum" "$(par_sum)" "data read back"
assert_eq 0 "$(reads_of 1)" "reads on leg 1 with read_primary"
[ "$(reads_of 0)" -ge $((MB * 256)) ] || fail "reads on leg 0 with read_primary: $(reads_of 0)"
dmsetup remove rb

step "io_timeout: reads are not timed, so they stay on the primary"
create rb "0 $RAM_SECTORS fracture /dev/ram0 $R 2 $l0 $l1 3 nosync io_timeout 5000"
assert_eq "$sum" "$(par_sum)" "data read back"
assert_eq 0 "$(reads_of 1)" "reads on leg 1 with io_timeout"
dmsetup remove rb

step "polled I/O (io_uring, hipri) over legs with poll queues: every write and read completes"
# A submitter that polls (io_uring IOPOLL) polls only the bio dm core made:
# a remapped read is that bio, but the clones of a write (and timed copies)
# must complete by interrupt: one left on a leg's poll queue would never
# complete (the case would hang and hung_task_panic end it).
p0=$(nullb_create pq0 64 poll_queues=1)
p1=$(nullb_create pq1 64 poll_queues=1)
# polled_io <feature words>: fio writes and verifies through io_uring with
# polling on a fresh mirror over the two legs.
polled_io() {
	local dm
	wipe /dev/ram0
	create pq "0 $RAM_SECTORS fracture /dev/ram0 $R 2 $p0 $p1 $# $*"
	dm=dm-$(dmsetup info -c --noheadings -o minor pq | tr -d ' ')
	assert_eq 1 "$(cat "/sys/block/$dm/queue/io_poll")" "io_poll of the mirror (every leg has poll queues)"
	timeout 300 fio --name=p --filename=/dev/mapper/pq --size=4M --direct=1 --ioengine=io_uring --hipri=1 \
		--iodepth=8 --rw=randwrite --bs=4k --verify=crc32c --verify_fatal=1 --do_verify=1 --randrepeat=0 \
		--output-format=terse --minimal >/tmp/fio-poll.out 2>&1 || { cat /tmp/fio-poll.out; fail "polled I/O ($*)"; }
	legs_identical 8192 "$p0" "$p1"
	dmsetup remove pq
}
polled_io nosync
polled_io nosync io_timeout 5000
for n in rb0 rb1 pq0 pq1; do
	echo 0 >/sys/kernel/config/nullb/$n/power
	rmdir /sys/kernel/config/nullb/$n
done
