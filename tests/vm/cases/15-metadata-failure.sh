#!/usr/bin/env bash
# A failing metadata device: reported (status fail + event); a write that
# needs a new intent mark or a new fracture-log bit fails instead of being
# sent unmarked or acknowledged unlogged; writes to regions already marked
# go on while every leg is in sync.
. "$FRACTURE_VM/lib.sh"
py_start   # the Python helpers and the status helpers in one process

L=$RAM_SECTORS R=1024
linear_over meta /dev/ram0
linear_over s /dev/ram2
create fz "$(fracture_table $L /dev/mapper/meta $R /dev/ram1 /dev/mapper/s | sed 's/1 nosync$/3 nosync intent_delay 600000/')"
dd if=/dev/urandom of=/dev/mapper/fz bs=4k count=16 oflag=direct status=none || fail "first write"

step "metadata fails while in sync: writes to marked regions go on, others fail"
skip_meta_check /dev/mapper/meta   # an error target when fz is removed
break_dev meta
ev0=$(event_nr fz)
dd if=/dev/urandom of=/dev/mapper/fz bs=4k count=16 oflag=direct status=none || fail "write to a marked region"
assert_eq "rw" "$(status_field fz 8)" "metadata state (nothing written to it yet)"
if dd if=/dev/urandom of=/dev/mapper/fz bs=4k count=1 seek=3000 oflag=direct status=none 2>/dev/null; then
	fail "a write sent although its region could not be marked in the intent log"
fi
assert_eq "fail" "$(status_field fz 8)" "metadata state"
[ "$(event_nr fz)" -gt "$ev0" ] || fail "no event for the metadata failure"
dmesg | grep -q "device-mapper: fracture: metadata device .* failed a write" || fail "no log line"
dd if=/dev/urandom of=/dev/mapper/fz bs=4k count=16 oflag=direct status=none || fail "write to a marked region after the failure"
legs_identical $L /dev/ram1 /dev/ram2

step "then a secondary fails: its write cannot be logged and must fail"
break_dev s
if dd if=/dev/urandom of=/dev/mapper/fz bs=4k count=1 oflag=direct status=none 2>/dev/null; then
	fail "write acknowledged although its log bit could not be written"
fi
if dd if=/dev/urandom of=/dev/mapper/fz bs=4k count=1 seek=5000 oflag=direct status=none 2>/dev/null; then
	fail "a write needing a new bit succeeded on failed metadata"
fi
dd if=/dev/mapper/fz of=/dev/null bs=4k count=16 iflag=direct status=none || fail "reads still work"
dmsetup remove fz
repair_dev meta /dev/ram0
dmsetup remove meta s
