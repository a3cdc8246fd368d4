#!/usr/bin/env bash
# io_timeout: a secondary that stops answering is fractured after the
# timeout and the host's I/O completes from the other legs; its late I/Os
# are dealt with when they come (KASAN watches for a use-after-free, the
# late count for a double completion); recovery and removal wait for them.
# The "link" of a local leg is cut by suspending the dm-linear device under
# it (its I/O then waits in dm core). Then a real remote leg: an NBD device
# served by qemu-nbd through a TCP proxy that adds 5 ms each way, cut by
# stopping the proxy.
# vm-timeout: 900
. "$FRACTURE_VM/lib.sh"
py_start

L=$RAM_SECTORS R=128   # 1024 regions of 64 KiB
w() { dd if=/dev/urandom of="/dev/mapper/$1" bs=64k seek="$2" count="$3" oflag=direct status=none || fail "host write failed"; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
# timed_w <dev> <seek> <count> <what>: w, timed into $t (ms), and said.
timed_w() {
	local t0
	t0=$(now_ms)
	w "$1" "$2" "$3"
	t=$(($(now_ms) - t0))
	echo "$3 writes $4 took ${t} ms"
}

step "table line: io_timeout is kept, and its range checked"
linear_over s /dev/ram2
create it "0 $L fracture /dev/ram0 $R 2 /dev/ram1 /dev/mapper/s 3 nosync io_timeout 400"
assert_eq "0 $L fracture 1:0 $R 2 1:1 $(devnum /dev/mapper/s) 3 nosync io_timeout 400" \
	"$(dmsetup table it)" "table line"
expect_create_fail "invalid io_timeout 60001: must be 0..60000" \
	"0 $L fracture /dev/ram4 $R 2 /dev/ram5 /dev/ram6 2 io_timeout 60001"

step "a leg that stops answering is fractured after io_timeout; host writes go on"
w it 0 8
assert_eq "AA" "$(health_of it)" "health before the cut"
dmsetup suspend s   # the link is cut: I/O to the leg waits
timed_w it 100 16 "with the leg cut"   # regions 100..115
[ "$t" -ge 350 ] || fail "the writes did not wait for io_timeout (${t} ms)"
[ "$t" -lt 10000 ] || fail "the writes waited for the cut leg (${t} ms)"
assert_eq "AF" "$(health_of it)" "health after the timeout"
dmesg | grep -q "device-mapper: fracture: leg 1 failed a write within io_timeout: fractured" ||
	fail "no timeout log line"
[ "$(stat_of it io_timeouts)" -ge 1 ] || fail "io_timeouts not counted"
[ "$(stat_of it late_ios)" -ge 1 ] || fail "the late write is not counted"
logged=$(logged_regions /dev/ram0 1)
is_subset "$(seq -s ' ' 100 115)" "$logged" || fail "regions written while cut are not all logged: $logged"

step "while the late writes are outstanding: no rejoin, not even by a table reload"
dmesg -C
dmsetup message it 0 rejoin 1 2>/dev/null && fail "rejoin accepted with late I/O outstanding"
dmesg | grep -q "leg 1 has [0-9]* late I/Os" || fail "no log line for the refused rejoin"
dmsetup load it --table "$(dmsetup table it)"
dmsetup resume it &   # swaps the tables, then waits for the old one's late I/O
resumer=$!
sleep 3
kill -0 "$resumer" 2>/dev/null || fail "the old table went away with a late I/O outstanding"
assert_eq "AF" "$(health_of it)" "health under the new table"
dmesg | grep -q "resume: legs 0x2 still have late I/Os: not rejoined" || fail "the new table rejoined the leg"
[ "$(stat_of it late_ios)" -ge 1 ] || fail "the new table does not see the late I/O"
assert_eq 0 "$(stat_of it regions_copied)" "regions copied with late I/O outstanding"
dmsetup resume s    # the link is back: the late writes complete
wait "$resumer" || fail "resume failed"
wait_no_late it
dmsetup message it 0 rejoin 1
wait_health it AA 30
dmsetup remove it
legs_identical $L /dev/ram1 /dev/ram2
dmsetup remove s

# Flushes reach a leg only if it has a volatile write cache: from here the
# cut leg is a null_blk device with one, under dm-linear.
cached=$(nullb_create cached 64)
linear_over s "$cached"
wipe /dev/ram0 /dev/ram1   # identical to the new (zero) leg, fresh metadata

step "a host flush that times out marks the regions with writes in flight, not the whole leg"
dmesg -C
create fl "0 $L fracture /dev/ram0 $R 2 /dev/ram1 /dev/mapper/s 5 nosync io_timeout 300 intent_delay 60000"
w fl 200 4          # intent bits for regions 200..203 stay (intent_delay)
dmsetup suspend s
python3 -c 'import os; fd = os.open("/dev/mapper/fl", os.O_WRONLY); os.fsync(fd)' ||
	fail "the host flush failed"
assert_eq "AF" "$(health_of fl)" "health after the flush timed out"
dmesg | grep -q "leg 1 failed a flush within io_timeout: fractured" || fail "no flush timeout log line"
logged=$(logged_regions /dev/ram0 1)
assert_eq "200 201 202 203" "$logged" "regions logged by the timed-out flush"
dmsetup resume s
wait_no_late fl
dmsetup message fl 0 rejoin 1
wait_health fl AA 30
dmsetup remove fl
legs_identical $L /dev/ram1 "$cached"

step "a write-intent settle whose flush times out fractures the leg first"
dmesg -C
create st "0 $L fracture /dev/ram0 $R 2 /dev/ram1 /dev/mapper/s 5 nosync io_timeout 300 intent_delay 2000"
w st 300 2
dmsetup suspend s
wait_health st AF 30
dmesg | grep -q "leg 1 failed a flush within io_timeout: fractured" || fail "no settle flush timeout log line"
logged=$(logged_regions /dev/ram0 1)
is_subset "300 301" "$logged" || fail "regions not logged when the settle flush timed out: $logged"
dmsetup resume s
wait_no_late st
dmsetup message st 0 rejoin 1
wait_health st AA 30
dmsetup remove st
legs_identical $L /dev/ram1 "$cached"

step "a timed copy that cannot be allocated at once comes from the leg's reserves: the leg stays in sync"
# failslab fails every slab allocation that cannot sleep, of the tasks
# marked make-it-fail: the mirror's thread (it sends the writes that wait
# for an intent bit) and the writers (a write to a marked region is sent
# from the writer's task). A copy's bio and vector table come from slabs;
# the leg's reserves must stand in, not a fracture.
fs=/sys/kernel/debug/failslab
[ -d "$fs" ] || mount -t debugfs none /sys/kernel/debug
fs_set() { echo "$2" >"$fs/$1"; }
fs_off() { fs_set probability 0; }
fs_set task-filter Y; fs_set ignore-gfp-wait Y; fs_set verbose 0
fs_set interval 1; fs_set times 100000
# failing_w <dev> <seek> <count>: w from a task whose slab allocations fail.
failing_w() {
	# shellcheck disable=SC2016 # $0..$2 belong to the inner shell
	sh -c 'echo 1 >/proc/self/make-it-fail; exec dd if=/dev/urandom of="/dev/mapper/$0" bs=64k seek="$1" count="$2" oflag=direct status=none' \
		"$1" "$2" "$3" || { fs_off; fail "host write at $2 with failslab"; }
}
# io_timeout 5000: the three writers of the next step start well within it.
create na "0 $L fracture /dev/ram0 $R 2 /dev/ram1 /dev/mapper/s 5 nosync io_timeout 5000 intent_delay 60000"
echo 1 >"/proc/$(pgrep -n -x kfracture)/make-it-fail"
fs_set probability 100
failing_w na 400 8   # regions 400..407: sent by the thread once their intent bits are set
failing_w na 400 8   # the same regions, marked: sent from the writer's task
fs_off
failed=$((100000 - $(cat "$fs/times")))
echo "failslab: $failed allocations failed"
[ "$failed" -ge 1 ] || fail "failslab failed no allocation"
assert_eq "AA" "$(health_of na)" "health after writes whose slab allocations failed"

step "with the reserves held by copies to a leg that stopped answering, a third copy counts as timed out"
w na 600 3          # regions 600..602 marked
dmsetup suspend s   # the two copies of the reserve wait there
dmesg -C
fs_set times 100000; fs_set probability 100
pids=()
for k in 0 1 2; do
	failing_w na $((600 + k)) 1 &
	pids+=($!)
done
for p in "${pids[@]}"; do
	wait "$p" || { fs_off; fail "a host write failed"; }
done
fs_off
dmesg | grep -q "no memory for a timed I/O of 65536 bytes in time" || fail "no log line for the copy that found no memory"
assert_eq "AF" "$(health_of na)" "health"
dmsetup resume s
wait_no_late na
dmsetup message na 0 rejoin 1
wait_health na AA 30
dmsetup remove na
legs_identical $L /dev/ram1 "$cached"

step "removing the table waits for late I/Os"
create rm "0 $L fracture /dev/ram0 $R 2 /dev/ram1 /dev/mapper/s 3 nosync io_timeout 300"
dmsetup suspend s
w rm 10 1
assert_eq "AF" "$(health_of rm)" "health after the timeout"
dmsetup remove rm &
remover=$!
# The remover logs once it waits (it may take a while to get there on a
# busy host); it must still be waiting 2 s after that.
for _ in $(seq 60); do
	dmesg | grep -q "waiting for 1 timed-out I/Os to complete" && break
	kill -0 "$remover" 2>/dev/null || break
	sleep 0.5
done
dmesg | grep -q "waiting for 1 timed-out I/Os to complete" || fail "no log line while waiting"
sleep 2
kill -0 "$remover" 2>/dev/null || fail "the table went away with a late I/O outstanding"
dmsetup resume s
wait "$remover" || fail "remove failed"
dmsetup remove s

step "an NBD leg over a 5 ms link: writes complete; a cut fractures it; back, it resyncs"
ip link set lo up
qemu-nbd -f raw --cache=none -t -b 127.0.0.1 -p 10809 -x leg /dev/ram3 &
server=$!
"$PYTHON" "$FRACTURE_VM/nbdproxy.py" 10810 10809 5 >/tmp/proxy.out 2>&1 &
proxy=$!
for _ in $(seq 150); do
	grep -q ready /tmp/proxy.out && break
	sleep 0.2
done
grep -q ready /tmp/proxy.out || fail "the proxy did not start: $(cat /tmp/proxy.out)"
cleanup_nbd() {
	kill -CONT "$proxy" 2>/dev/null
	nbd-client -d /dev/nbd0 >/dev/null 2>&1
	kill "$proxy" "$server" 2>/dev/null
}
trap cleanup_nbd EXIT
for _ in $(seq 50); do
	nbd-client -N leg 127.0.0.1 10810 /dev/nbd0 -b 4096 >/dev/null 2>&1 && break
	sleep 0.2
done
[ "$(sectors /dev/nbd0)" = "$L" ] || fail "nbd0 has $(sectors /dev/nbd0) sectors, not $L"
create nb "0 $L fracture /dev/ram4 $R 2 /dev/ram5 /dev/nbd0 3 nosync io_timeout 1000"
timed_w nb 0 50 "over the 5 ms link"
[ "$t" -ge 500 ] || fail "the link has no delay (${t} ms for 50 synchronous writes)"
assert_eq "AA" "$(health_of nb)" "health over the slow link"
assert_eq 0 "$(stat_of nb io_timeouts)" "timeouts over the slow link"
legs_identical $L /dev/ram5 /dev/nbd0
kill -STOP "$proxy"   # the link is cut
figure faults 1
timed_w nb 500 20 "with the link cut"
[ "$t" -lt 15000 ] || fail "the writes waited for the cut link (${t} ms)"
assert_eq "AF" "$(health_of nb)" "health with the link cut"
[ "$(stat_of nb late_ios)" -ge 1 ] || fail "no late I/O with the link cut"
kill -CONT "$proxy"   # the link is back
wait_no_late nb
dmsetup message nb 0 rejoin 1
wait_health nb AA 60
dmsetup remove nb
legs_identical $L /dev/ram5 /dev/nbd0
