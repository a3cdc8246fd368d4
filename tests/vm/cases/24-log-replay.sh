#!/usr/bin/env bash
# Metadata ordering, checked with dm-log-writes. The metadata area and the
# three legs are slices of one device under dm-log-writes, so the log holds
# every write that reached stable storage, in order. Under a random write
# load the mirror goes through a leg failure, a split, rejoins with
# recovery, a primary failover and its rejoin, and a clean shutdown. Then
# the log is replayed (tests/vm/logreplay.py): at every flush and FUA
# point the metadata must decode and the intent and fracture bits must
# cover every region where a leg differs from the leg that would serve as
# the primary.
. "$FRACTURE_VM/lib.sh"
py_start   # the Python helpers and the status helpers in one process

L=4096 R=64 M=64   # 2 MiB legs, 64 regions of 32 KiB; metadata area 32 KiB
total=$((M + 3 * L))
wipe /dev/ram8 /dev/ram9
dmsetup create lwd --table "0 $total log-writes /dev/ram8 /dev/ram9"
starts=($M $((M + L)) $((M + 2 * L)))
dmsetup create cm --table "0 $M linear /dev/mapper/lwd 0"
for i in 0 1 2; do
	dmsetup create "c$i" --table "0 $L linear /dev/mapper/lwd ${starts[i]}"
done
# swap <leg> <table>: a leg slice becomes something else (error, or back).
swap() {
	dmsetup suspend "c$1"
	dmsetup load "c$1" --table "0 $L $2"
	dmsetup resume "c$1"
}
back() { swap "$1" "linear /dev/mapper/lwd ${starts[$1]}"; }
# w <4k-block>: a write of our own besides the load (must succeed).
w() { dd if=/dev/urandom of=/dev/mapper/m bs=4k count=4 seek="$1" oflag=direct status=none || fail "write at $1 failed"; }
alive() { kill -0 "$load" 2>/dev/null || { cat /tmp/fio.out; fail "the write load stopped early"; }; }
create m "0 $L fracture /dev/mapper/cm $R 3 /dev/mapper/c0 /dev/mapper/c1 /dev/mapper/c2 3 nosync intent_delay 200"

step "a random write load through failures, a split, recovery and a failover"
fio --name=load --filename=/dev/mapper/m --direct=1 --ioengine=libaio --iodepth=4 \
	--rw=randwrite --bs=4k --rate_iops=100 --time_based --runtime=25 --randrepeat=0 \
	--output-format=terse --minimal >/tmp/fio.out 2>&1 &
load=$!
sleep 2
alive
swap 2 error                       # leg 2 fails: fractured by the failure
w 10
sleep 1
dmsetup message m 0 fracture 1     # leg 1 split on purpose
w 200
sleep 1
alive
assert_eq "AFF" "$(health_of m)" "health with legs 1 and 2 out"
back 2
dmsetup message m 0 rejoin 2
dmsetup message m 0 rejoin 1
wait_health m AAA 120
alive
swap 0 error                       # the primary fails: leg 1 takes over
w 100
sleep 1
assert_eq 1 "$(status_field m 3)" "primary_leg after the failover"
back 0
dmsetup message m 0 rejoin 0
wait_health m AAA 120
wait "$load" || { cat /tmp/fio.out; fail "the write load saw an error"; }
sleep 1
dmsetup remove m
dmsetup remove cm c0 c1 c2
dmsetup remove lwd

step "replay the log and check every flush and FUA point"
out=$(python3 "$FRACTURE_VM/logreplay.py" /dev/ram9 0 $L $R "${starts[@]}") || fail "log replay: $out"
echo "$out"
read -r _ entries _ _ _ _ _ points _ formatted _ differing _ primaries _ states <<<"$out"
[ "$formatted" -ge 100 ] || fail "only $formatted checked points with metadata (of $points, $entries entries)"
[ "$differing" -gt 0 ] || fail "no leg ever differed: the scenario did not exercise the logs"
assert_eq "0,1" "$primaries" "primaries seen in the log"
assert_eq "AFR" "$states" "leg states seen in the log"
