#!/usr/bin/env bash
# Recovery under a verified fio load, across suspend/resume, and across a
# module reload: host I/O sees no error, recovery continues from the durable
# bits (never from scratch), and the legs end identical.
# vm-timeout: 900
. "$FRACTURE_VM/lib.sh"
py_start   # the Python helpers in one process (logged_regions, legs_identical...)

L=$RAM_SECTORS R=128   # 64 KiB regions: 1024 of them
linear_over s /dev/ram2
# 2 MiB/s: slow enough to interrupt (the ~37 MiB to copy take ~18 s, the
# suspend below comes after ~5 s even in a slow guest), fast enough for the test.
table="0 $L fracture /dev/ram0 $R 2 /dev/ram1 /dev/mapper/s 3 nosync recovery_rate 2048"
create ul "$table"

# fail_and_write <seed>: leg 1 fails, ~40% of the regions are written.
fail_and_write() {
	break_dev s
	fio --name=w --filename=/dev/mapper/ul --size=64M --direct=1 --ioengine=libaio \
		--iodepth=8 --rw=randwrite --bs=64k --number_ios=600 --randseed="$1" \
		--output-format=terse --minimal >/dev/null || fail "fio while leg 1 failed"
	assert_eq "AF" "$(health_of ul)" "health"
	repair_dev s /dev/ram2
}

step "recovery with fio verify running on the device the whole time"
fail_and_write 1
n=$(count_words "$(logged_regions /dev/ram0 1)")
echo "logged regions: $n"
dmsetup message ul 0 rejoin 1
assert_match "^recovering:1:[0-9]+/[0-9]+$" "$(recovery_of ul)" "recovery field"
fio --name=v --filename=/dev/mapper/ul --size=16M --direct=1 --ioengine=libaio \
	--iodepth=8 --rw=randwrite --bsrange=4k-64k --verify=crc32c --verify_fatal=1 \
	--do_verify=1 --time_based --runtime=12 --randrepeat=0 \
	--output-format=terse --minimal >/tmp/fio-v.out 2>&1 &
pid=$!
sleep 4
step "suspend/resume in the middle"
before=$(status_field ul 5)
dmsetup suspend ul
assert_match "^recovering:1:" "$(recovery_of ul)" "recovery field while suspended"
s0=$(status_field ul 5)
sleep 1
assert_eq "$s0" "$(status_field ul 5)" "no progress while suspended"
dmsetup resume ul
echo "in_sync of leg 1 at the suspend: $before"
step "quick suspend/resume cycles (as LVM does) while recovering"
for _ in $(seq 10); do
	dmsetup suspend ul
	dmsetup resume ul
done
wait $pid || { cat /tmp/fio-v.out; fail "fio verify failed during recovery"; }
dmsetup message ul 0 recovery_rate 0
wait_health ul AA 60
assert_eq "" "$(logged_regions /dev/ram0 1)" "bits after recovery"
legs_identical $L /dev/ram1 /dev/ram2
redone=$(stat_of ul copies_redone)
echo "copies redone because a host write raced with them: $redone"

step "module reload in the middle: recovery goes on from the durable bits"
dmsetup message ul 0 recovery_rate 2048
fail_and_write 2
dmsetup message ul 0 rejoin 1
sleep 3
dmsetup remove ul
left=$(count_words "$(logged_regions /dev/ram0 1)")
echo "regions left at the remove: $left"
[ "$left" -gt 0 ] || fail "recovery finished before the reload; the test proves nothing"
rmmod dm_fracture
create ul "$table"
assert_match "^A[RA]$" "$(health_of ul)" "health after re-create"
dmsetup message ul 0 recovery_rate 0
wait_health ul AA 60
assert_eq "$left" "$(stat_of ul regions_copied)" "regions copied after the reload (exactly those left)"
legs_identical $L /dev/ram1 /dev/ram2
dmsetup remove ul s

# The two race steps use a 1 MiB mirror: 16 regions, all of them dirty.
S=2048
# race_setup <delay-name> <delay-table> <legs>: mirror "rc" over <legs> (one
# of them the delay device), metadata on /dev/ram0; leg 1 fractured and all
# 16 of its regions written (logged).
race_setup() {
	wipe /dev/ram0 /dev/ram1 /dev/ram2
	dmsetup create "$1" --table "$2"
	create rc "0 $S fracture /dev/ram0 $R 2 $3 1 nosync"
	dmsetup message rc 0 fracture 1
	fio --name=d --filename=/dev/mapper/rc --size=1M --direct=1 --ioengine=libaio --iodepth=16 \
		--rw=write --bs=64k --output-format=terse --minimal >/dev/null || fail "fio dirtying"
	assert_eq 16 "$(count_words "$(logged_regions /dev/ram0 1)")" "regions logged"
}
# race_end <delay-name> <what>: recovery is done; some copy was redone (else
# <what> did not happen: the race is not exercised), the legs are identical,
# the log empty.
race_end() {
	wait_health rc AA 120
	redone=$(stat_of rc copies_redone)
	echo "copies redone: $redone, regions copied: $(stat_of rc regions_copied)"
	[ "$redone" -gt 0 ] || fail "$2: the race is not exercised"
	legs_identical $S /dev/ram1 /dev/ram2
	assert_eq "" "$(logged_regions /dev/ram0 1)" "bits after recovery"
	dmsetup remove rc "$1"
}

step "a host write in flight when a copy starts: the copy is voided and redone, nothing lost"
# Deterministic: the primary's writes take 5 s (dm-delay), one 4 KiB write
# per region (all 16 at once) is in flight when the leg is rejoined, so
# every copy recovery starts then finds its region busy.
race_setup slowp "0 $S delay /dev/ram1 0 0 /dev/ram1 0 5000" "/dev/mapper/slowp /dev/ram2"
h0=$(stat_of rc host_writes)
# rw=write:60k: 4 KiB written, 60 KiB skipped: one write per region.
fio --name=held --filename=/dev/mapper/rc --size=1M --direct=1 --ioengine=libaio \
	--iodepth=16 --iodepth_batch_submit=16 --rw=write:60k --bs=4k --number_ios=16 \
	--verify=crc32c --verify_fatal=1 --do_verify=1 --randrepeat=0 \
	--output-format=terse --minimal >/tmp/fio-held.out 2>&1 &
pid=$!
for _ in $(seq 100); do
	[ "$(stat_of rc host_writes)" -ge $((h0 + 16)) ] && break
	sleep 0.1
done
[ "$(stat_of rc host_writes)" -ge $((h0 + 16)) ] || fail "the 16 held writes did not start"
dmsetup message rc 0 rejoin 1
wait $pid || { cat /tmp/fio-held.out; fail "fio verify failed (writes held during copies)"; }
race_end slowp "no copy found its region busy"

step "a host write starting while a copy is in flight: the copy is voided and redone"
# Deterministic: the secondary's writes take 3 s, so recovery's first 8
# copies stay in flight for 3 s; one write per region, all started at once
# by threads of the running pyserve.py (no fio start-up), lands in that
# window.
race_setup slows "0 $S delay /dev/ram2 0 0 /dev/ram2 0 3000" "/dev/ram1 /dev/mapper/slows"
dmsetup message rc 0 rejoin 1
py_call regionwrite.py write /dev/mapper/rc $((R * 512)) 0 16 17 || fail "$py_out"
echo "$py_out"
left=$(count_words "$(logged_regions /dev/ram0 1)")
echo "regions left after the writes: $left"
[ "$left" -gt 0 ] || fail "recovery was done before the writes: the race is not exercised"
wait_health rc AA 120
py_call regionwrite.py check /dev/mapper/rc $((R * 512)) 0 16 17 || fail "$py_out"
echo "$py_out"
race_end slows "no write started during a copy"
