#!/usr/bin/env bash
# suspend/resume and table reloads under a write load: no hang, no lost or
# torn write (fio verifies), legs identical at the end.
. "$FRACTURE_VM/lib.sh"

table=$(fracture_table $RAM_SECTORS /dev/ram0 512 /dev/ram1 /dev/ram2)
create sr "$table"
fio --name=load --filename=/dev/mapper/sr --size=48M --direct=1 --ioengine=libaio \
	--iodepth=32 --rw=randwrite --bsrange=4k-128k --verify=crc32c --verify_fatal=1 \
	--do_verify=1 --verify_backlog=256 --time_based --runtime=25 \
	--output-format=terse --minimal >/tmp/fio-sr.out 2>&1 &
fio_pid=$!
sleep 3
for i in 1 2 3 4 5 6; do
	step "cycle $i: suspend, resume, reload"
	timeout 60 dmsetup suspend sr || fail "suspend $i hung or failed"
	sleep 0.5
	timeout 60 dmsetup resume sr || fail "resume $i"
	timeout 60 dmsetup load sr --table "$table" || fail "load $i"
	timeout 60 dmsetup resume sr || fail "resume after load $i"
	sleep 1
done
wait $fio_pid || { cat /tmp/fio-sr.out; fail "fio under suspend/resume"; }
echo "fio finished cleanly"
assert_eq "AA" "$(health_of sr)" "status"
legs_identical $RAM_SECTORS /dev/ram1 /dev/ram2
dmsetup remove sr
