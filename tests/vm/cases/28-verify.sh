#!/usr/bin/env bash
# Online verify (`verify [<leg>]`): in-sync secondaries compared with the
# primary region by region. Identical legs: nothing found, nothing changes.
# A leg changed behind the mirror's back, or one that silently drops writes
# (dm-flakey drop_writes: the blind spot of every mirror), is caught: the
# regions that differ are marked out of sync in its fracture log, the leg is
# split, and `rejoin` copies exactly those regions. Host writes racing with
# the comparison cause no false mismatch. Progress and result in status;
# rate-limited like recovery; survives suspend/resume; bad requests refused.
# `verify check [<leg>]` compares the same way and only counts: nothing
# marked, no leg split, no metadata written.
. "$FRACTURE_VM/lib.sh"
py_start

L=$RAM_SECTORS R=1024 # 128 regions of 512 KiB
# Leg 1 through a linear device, to swap dm-flakey in under it.
linear_over v1 /dev/ram2
create vf "$(fracture_table $L /dev/ram0 $R /dev/ram1 /dev/mapper/v1 /dev/ram3)"
dd if=/dev/urandom of=/dev/mapper/vf bs=1M count=64 oflag=direct status=none

# wait_verify <dev>: until the verify field is no longer `verifying:...`
# (or `checking:...`).
wait_verify() {
	local i v
	for ((i = 0; i < 1800; i++)); do
		v=$(verify_of "$1")
		[[ "$v" == verifying:* || "$v" == checking:* ]] || return 0
		sleep 0.1
	done
	fail "$1: verify still running after 180 s: $v"
}

step "status says no verify ran yet"
assert_eq "-" "$(verify_of vf)" "verify field"

step "identical legs: every region compared, nothing found, nothing changes"
ev0=$(event_nr vf)
dmsetup message vf 0 verify
wait_verify vf
assert_eq "verified:1,2:256/256:0:0" "$(verify_of vf)" "verify result"
assert_eq "AAA" "$(health_of vf)" "health"
assert_eq "" "$(logged_regions /dev/ram0 1)$(logged_regions /dev/ram0 2)" "bits"
[ "$(event_nr vf)" -gt "$ev0" ] || fail "no dm event at the end of the verify"
dmesg | grep -q "verify of legs 0x6 done: 256 of 256 leg-regions compared, 0 differed" || fail "no summary in the log"
fracturectl status vf | tee /tmp/fst
grep -q "verify verified (leg 1,2): 256/256 leg-regions compared (100%), 0 differed" /tmp/fst || fail "fracturectl status verify line"

step "verify check: a leg changed behind the mirror's back is counted, nothing marked or split; verify then splits it"
# The initial write's regions must have left the write-intent log first:
# the split by the `verify 1` at the end marks the regions still in it,
# and clearing them writes metadata.
for ((i = 0; i < 600; i++)); do
	[ "$(status_field vf 7)" = 0 ] && break
	sleep 0.1
done
assert_eq 0 "$(status_field vf 7)" "intent regions before the check"
sleep 1 # the commit that cleared them
m0=$(stat_of vf metadata_writes)
dmesg -C
dmsetup message vf 0 verify check
wait_verify vf
assert_eq "checked:1,2:256/256:0:0" "$(verify_of vf)" "check of identical legs"
dmesg | grep -q "verify check of legs 0x6 done: 256 of 256 leg-regions compared, 0 differed, 0 skipped (a check: nothing marked, no leg split)" ||
	fail "no check summary in the log"
dd if=/dev/urandom of=/dev/ram2 bs=512 seek=$((40 * R + 16)) count=8 oflag=direct status=none
dmesg -C
ev0=$(event_nr vf)
dmsetup message vf 0 verify check 1
wait_verify vf
assert_eq "checked:1:128/128:1:0" "$(verify_of vf)" "check of a leg changed behind the mirror"
assert_eq "AAA" "$(health_of vf)" "health: a check splits nothing"
assert_eq "128/128" "$(status_field vf 5)" "in-sync count of leg 1"
assert_eq "" "$(logged_regions /dev/ram0 1)$(logged_regions /dev/ram0 2)" "bits: a check marks nothing"
[ "$(event_nr vf)" -gt "$ev0" ] || fail "no dm event at the end of the check"
dmesg | grep -q "verify check: leg 1 (.*) differs from the primary in region 40 (its first such region; nothing is marked" ||
	fail "no log line for the difference"
dmesg | grep -q "verify check of legs 0x2 done: 128 of 128 leg-regions compared, 1 differed, 0 skipped (a check: nothing marked, no leg split)" ||
	fail "no check summary in the log"
dmesg | grep -q "verify check: the legs differ; if the primary may be the wrong one, do not .verify." || fail "no hint in the log"
# With fracturectl: exit 1 when regions differ, as for a verify.
rc=0
fracturectl verify vf 1 --check --wait >/tmp/fv.out 2>/tmp/fv.err || rc=$?
cat /tmp/fv.out /tmp/fv.err
assert_eq 1 "$rc" "fracturectl verify --check --wait exit code (legs differ)"
grep -q "vf: verify checked (leg 1): 128/128 leg-regions compared, 1 differed, 0 skipped" /tmp/fv.out || fail "fracturectl check result line"
grep -q "nothing was marked or split" /tmp/fv.err || fail "fracturectl check hint"
fracturectl status vf | tee /tmp/fst
grep -q "verify checked (leg 1): 128/128 leg-regions compared (100%), 1 differed (nothing marked" /tmp/fst ||
	fail "fracturectl status check line"
# A running check refuses another verify; `verify check cancel` is refused;
# `verify cancel` stops it.
dmsetup message vf 0 recovery_rate 4096
dmsetup message vf 0 verify check
sleep 1
v=$(verify_of vf)
echo "after 1 s at 4 MiB/s: $v"
[[ "$v" =~ ^checking:1,2:[0-9]+/256:0:0$ ]] || fail "check progress field '$v'"
dmesg -C
dmsetup message vf 0 verify 1 2>/dev/null && fail "a verify started during a check"
dmesg | grep -q "a verify check of legs 0x6 is running: wait for it, or stop it with .verify cancel." || fail "reason for EBUSY"
dmsetup message vf 0 verify check cancel 2>/dev/null && fail "verify check cancel accepted"
dmesg | grep -q "usage: verify check \[<leg>\] (a running check is stopped with .verify cancel.)" || fail "reason for verify check cancel"
dmsetup message vf 0 verify cancel
v=$(verify_of vf)
echo "after cancel: $v"
# Leg 1 still differs in region 40, whose two leg-regions are counted
# together (80 -> 82): it is found only if the check got that far.
[[ "$v" =~ ^cancelled:1,2:([0-9]+)/256:([0-9]+):0$ ]] || fail "after cancel: '$v'"
n=${BASH_REMATCH[1]} d=${BASH_REMATCH[2]}
[ "$n" -lt 256 ] || fail "the check was not cancelled: '$v'"
if [ "$n" -le 80 ]; then
	assert_eq 0 "$d" "differed, cancelled before region 40 ($n/256)"
elif [ "$n" -ge 82 ]; then
	assert_eq 1 "$d" "differed, cancelled after region 40 ($n/256)"
fi
dmesg | grep -q "verify check of legs 0x6 cancelled: .* (nothing was marked)" || fail "no cancel log line"
dmsetup message vf 0 recovery_rate 0
assert_eq "AAA" "$(health_of vf)" "health after the checks"
assert_eq "$m0" "$(stat_of vf metadata_writes)" "metadata writes by the checks"
# A plain verify splits the leg and marks the region, as ever.
dmesg -C
dmsetup message vf 0 verify 1
wait_verify vf
assert_eq "verified:1:128/128:1:0" "$(verify_of vf)" "verify after the check"
assert_eq "AFA" "$(health_of vf)" "health: the verify splits the leg"
assert_eq "40" "$(logged_regions /dev/ram0 1)" "region marked by the verify"
dmesg | grep -q "verify: leg 1 (.*) differs from the primary in region 40: leg split" || fail "no log line for the split"
dmsetup message vf 0 rejoin 1
wait_health vf AAA 60
legs_identical $L /dev/ram1 /dev/ram2 /dev/ram3

step "rate-limited like recovery; progress in status; a second verify is refused; cancel"
dmsetup message vf 0 recovery_rate 4096
dmsetup message vf 0 verify 2
sleep 3
v=$(verify_of vf)
echo "after 3 s at 4 MiB/s: $v"
[[ "$v" =~ ^verifying:2:([0-9]+)/128:0:0$ ]] || fail "progress field '$v'"
n=${BASH_REMATCH[1]}
[ "$n" -gt 0 ] && [ "$n" -lt 128 ] || fail "progress $n/128 after 3 s at 4 MiB/s"
dmesg -C
dmsetup message vf 0 verify 1 2>/dev/null && fail "a second verify started"
dmesg | grep -q "a verify of legs 0x4 is running: wait for it, or stop it with .verify cancel." || fail "reason for EBUSY"
dmsetup message vf 0 verify cancel
v=$(verify_of vf)
[[ "$v" =~ ^cancelled:2:[0-9]+/128:0:0$ ]] || fail "after cancel: '$v'"
dmesg | grep -q "verify of legs 0x4 cancelled" || fail "no cancel log line"
dmsetup message vf 0 verify cancel 2>/dev/null && fail "cancel with no verify running"
dmesg | grep -q "no verify is running" || fail "reason for a cancel with nothing running"

step "suspend and resume in the middle: the verify goes on where it was"
dmsetup message vf 0 verify 2
sleep 2
dmsetup suspend vf
v1=$(verify_of vf)
dmsetup resume vf
echo "at suspend: $v1"
dmsetup message vf 0 recovery_rate 0
wait_verify vf
assert_eq "verified:2:128/128:0:0" "$(verify_of vf)" "verify across suspend/resume"

step "a leg changed behind the mirror's back: caught, split, regions marked, rejoin copies them"
dd if=/dev/urandom of=/dev/ram3 bs=512 seek=$((5 * R + 100)) count=8 oflag=direct status=none
dd if=/dev/urandom of=/dev/ram3 bs=512 seek=$((77 * R)) count=1 oflag=direct status=none
dmesg -C
ev0=$(event_nr vf)
dmsetup message vf 0 verify 2
wait_verify vf
assert_eq "verified:2:128/128:2:0" "$(verify_of vf)" "verify result"
assert_eq "AAF" "$(health_of vf)" "health: the differing leg is split"
assert_eq "5 77" "$(logged_regions /dev/ram0 2)" "regions marked out of sync"
assert_eq "126/128" "$(status_field vf 6)" "in-sync count of leg 2"
[ "$(event_nr vf)" -gt "$ev0" ] || fail "no dm event"
dmesg | grep -q "verify: leg 2 (.*) differs from the primary in region 5: leg split" || fail "no log line for the split"
# Split like by `fracture`: later writes are logged, it is not auto-rejoined.
dd if=/dev/urandom of=/dev/mapper/vf bs=512 seek=$((100 * R)) count=8 oflag=direct status=none
assert_eq "5 77 100" "$(logged_regions /dev/ram0 2)" "a write after the split is logged"
dmsetup suspend vf
dmsetup resume vf
assert_eq "AAF" "$(health_of vf)" "not rejoined by a resume"
c0=$(stat_of vf regions_copied)
dmsetup message vf 0 rejoin 2
wait_health vf AAA 60
assert_eq 3 "$(($(stat_of vf regions_copied) - c0))" "regions copied by the rejoin"
legs_identical $L /dev/ram1 /dev/ram2 /dev/ram3

step "a leg that silently drops writes (dm-flakey drop_writes): invisible to the mirror, caught by verify"
dmsetup suspend v1
dmsetup load v1 --table "0 $L flakey /dev/ram2 0 0 1 1 drop_writes"
dmsetup resume v1
dd if=/dev/urandom of=/dev/mapper/vf bs=512 seek=$((10 * R)) count=$((3 * R)) oflag=direct status=none
sync
assert_eq "AAA" "$(health_of vf)" "the mirror cannot see dropped writes"
repair_dev v1 /dev/ram2
# Until the write-intent log let go of those regions: a split marks the
# regions still in it, and this verify is to find every one by comparing.
for ((i = 0; i < 600; i++)); do
	[ "$(status_field vf 7)" = 0 ] && break
	sleep 0.1
done
assert_eq 0 "$(status_field vf 7)" "intent regions before the verify"
# With fracturectl: exit 1 when regions differ.
rc=0
fracturectl verify vf 1 --wait >/tmp/fv.out 2>/tmp/fv.err || rc=$?
cat /tmp/fv.out /tmp/fv.err
assert_eq 1 "$rc" "fracturectl verify --wait exit code (legs differ)"
grep -q "vf: verify verified (leg 1): 128/128 leg-regions compared, 3 differed, 0 skipped" /tmp/fv.out || fail "fracturectl verify result line"
grep -q "fracturectl rejoin vf <leg>" /tmp/fv.err || fail "fracturectl verify hint"
assert_eq "verified:1:128/128:3:0" "$(verify_of vf)" "verify result"
assert_eq "AFA" "$(health_of vf)" "health"
assert_eq "10 11 12" "$(logged_regions /dev/ram0 1)" "regions the leg dropped"
fracturectl status vf | tee /tmp/fst
grep -q "verify verified (leg 1): 128/128 leg-regions compared (100%), 3 differed (marked out of sync: rejoin the leg)" /tmp/fst ||
	fail "fracturectl status verify line"
dmsetup message vf 0 rejoin 1
wait_health vf AAA 60
legs_identical $L /dev/ram1 /dev/ram2 /dev/ram3
fracturectl verify vf --wait || fail "fracturectl verify after the rejoin: exit $?"

step "host writes racing with the comparison: no false mismatch"
fio --name=race --filename=/dev/mapper/vf --direct=1 --ioengine=libaio --iodepth=8 \
	--rw=randwrite --bs=4k --time_based --runtime=30 --randrepeat=0 --output=/dev/null &
fio_pid=$!
sleep 2
dmsetup message vf 0 verify
wait_verify vf
v=$(verify_of vf)
echo "verify under writes: $v"
[[ "$v" =~ ^verified:1,2:([0-9]+)/256:0:([0-9]+)$ ]] || fail "verify under writes: '$v'"
[ $((BASH_REMATCH[1] + BASH_REMATCH[2])) = 256 ] || fail "compared + skipped != 256: '$v'"
assert_eq "AAA" "$(health_of vf)" "health after a verify under writes"
kill "$fio_pid" 2>/dev/null
wait "$fio_pid" || true
legs_identical $L /dev/ram1 /dev/ram2 /dev/ram3

step "discarded regions are not compared (their contents are undefined), and say so"
blkdiscard -o $((20 * R * 512)) -l $((2 * R * 512)) /dev/mapper/vf
dmsetup message vf 0 verify
wait_verify vf
assert_eq "verified:1,2:252/256:0:4" "$(verify_of vf)" "verify after a discard of regions 20 and 21"
rc=0
fracturectl verify vf 2 --wait >/tmp/fv.out 2>/tmp/fv.err || rc=$?
cat /tmp/fv.out /tmp/fv.err
assert_eq 1 "$rc" "fracturectl verify --wait exit code (regions skipped)"
grep -q "not every region was compared: 2 leg-regions skipped" /tmp/fv.err || fail "fracturectl verify skipped warning"

step "bad requests are refused with a reason"
dmesg -C
dmsetup message vf 0 verify 0 2>/dev/null && fail "verify of the primary"
dmesg | grep -q "cannot verify leg 0: it is the primary" || fail "reason for the primary"
dmsetup message vf 0 verify 3 2>/dev/null && fail "verify of leg 3"
dmesg | grep -q "invalid leg '3': legs are 0..2" || fail "reason for leg 3"
dmsetup message vf 0 verify 1 2 2>/dev/null && fail "verify with two legs"
dmesg | grep -q "usage: verify \[<leg>|cancel\]" || fail "usage"
dmsetup message vf 0 fracture 2
dmsetup message vf 0 verify 2 2>/dev/null && fail "verify of a fractured leg"
dmesg | grep -q "cannot verify leg 2: it is fractured, not in sync" || fail "reason for a fractured leg"
dmsetup message vf 0 fracture 1
dmsetup message vf 0 verify 2>/dev/null && fail "verify with no in-sync secondary"
dmesg | grep -q "cannot verify: no secondary is in sync" || fail "reason for no in-sync secondary"
dmsetup message vf 0 rejoin 1
dmsetup message vf 0 rejoin 2
wait_health vf AAA 60
legs_identical $L /dev/ram1 /dev/ram2 /dev/ram3
dmsetup remove vf
dmsetup remove v1
