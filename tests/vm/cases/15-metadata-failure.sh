#!/usr/bin/env bash
# A failing metadata device: reported (status fail + event); writes that
# need a new log bit fail instead of being acknowledged unlogged; writes that
# need none go on.
. "$FRACTURE_VM/lib.sh"

L=$RAM_SECTORS R=1024
linear_over meta /dev/ram0
linear_over s /dev/ram2
create fz "$(fracture_table $L /dev/mapper/meta $R /dev/ram1 /dev/mapper/s)"

step "metadata fails while in sync: writes need no log and succeed"
break_dev meta
dd if=/dev/urandom of=/dev/mapper/fz bs=4k count=16 oflag=direct status=none || fail "in-sync write"
assert_eq "rw" "$(status_field fz 8)" "metadata state before any log write"

step "then a secondary fails: its write cannot be logged and must fail"
break_dev s
ev0=$(event_nr fz)
if dd if=/dev/urandom of=/dev/mapper/fz bs=4k count=1 seek=1000 oflag=direct status=none 2>/dev/null; then
	fail "write acknowledged although its log bit could not be written"
fi
assert_eq "fail" "$(status_field fz 8)" "metadata state"
[ "$(event_nr fz)" -gt "$ev0" ] || fail "no event for the metadata failure"
dmesg | grep -q "device-mapper: fracture: metadata device .* failed a write" || fail "no log line"
if dd if=/dev/urandom of=/dev/mapper/fz bs=4k count=1 seek=5000 oflag=direct status=none 2>/dev/null; then
	fail "a write needing a new bit succeeded on failed metadata"
fi
dd if=/dev/mapper/fz of=/dev/null bs=4k count=16 iflag=direct status=none || fail "reads still work"
dmsetup remove fz
repair_dev meta /dev/ram0
dmsetup remove meta s
