#!/usr/bin/env bash
# The bad-input corpus: every malformed table line of corpus/tables.txt and
# every malformed message of corpus/messages.txt is refused with its reason
# in the kernel log and changes nothing; metadata damaged in each way
# badmeta.py knows (random blocks, valid checksums over insane or
# contradictory fields, misdirected and foreign blocks, a truncated device)
# is refused with a reason and never rewritten. Nothing is written to any
# leg throughout. (The suite fails the case on any splat.)
. "$FRACTURE_VM/lib.sh"
py_start
modprobe dm_fracture

L=$RAM_SECTORS
M=/dev/ram0 A=/dev/ram1 B=/dev/ram2 C=/dev/ram3
BIG=18446744073709551616
HUGE=99999999999999999999999
dmsetup create small --table "0 100 linear /dev/ram4 0"
dmsetup create tinymeta --table "0 8 linear /dev/ram5 0"
# Legs and metadata hold data, so that a write of any kind shows.
for d in $M $A $B $C; do
	dd if=/dev/urandom of=$d bs=1M count=2 oflag=direct status=none
done
fresh
sums() { md5sum $M $A $B $C | awk '{ print $1 }' | tr '\n' ' '; }
before=$(sums)

# refused <reason-regex> <what> <command>...: the command fails and the
# kernel log says why. A miss is recorded (all are reported at the end of
# the case, which then fails), so that one run shows every one.
misses=()
refused() {
	local want=$1 what=$2 out
	shift 2
	dmesg -C
	if "$@" 2>/dev/null; then
		misses+=("accepted: $what")
		echo "MISS: accepted: $what"
		return
	fi
	out=$(dmesg | grep -E "fracture" | sed 's/^\[[^]]*\] //' || true)
	if ! grep -qE -- "$want" <<<"$out"; then
		misses+=("'$what': no /$want/ in the kernel log: $out")
		echo "MISS: '$what': no /$want/ in the kernel log: $out"
		return
	fi
	echo "refused: $what -> $(grep -E -- "$want" <<<"$out" | head -n1)"
}

step "table lines (corpus/tables.txt)"
# The corpus loops run in pyserve.py (refuse.py): a few ioctls an input
# instead of half a dozen process starts.
py_call refuse.py tables "$FRACTURE_VM/corpus/tables.txt" L=$L L2=$((L * 2)) M=$M A=$A B=$B C=$C \
	BIG=$BIG HUGE=$HUGE || misses+=("table lines (above)")
echo "$py_out"
n=$(sed -n 's/^\([0-9]*\) table lines refused.*/\1/p' <<<"$py_out")
[ "${n:-0}" -ge 50 ] || fail "only ${n:-0} table lines in the corpus"
fresh
assert_eq "$before" "$(sums)" "metadata and legs after the refused tables"

step "messages (corpus/messages.txt) to a running mirror"
wipe $M $A $B $C
create bm "$(fracture_table $L $M 1024 $A $B $C)"
st0=$(status_of bm)
py_call refuse.py messages "$FRACTURE_VM/corpus/messages.txt" bm || misses+=("messages (above)")
echo "$py_out"
n=$(sed -n 's/^\([0-9]*\) messages refused.*/\1/p' <<<"$py_out")
[ "${n:-0}" -ge 25 ] || fail "only ${n:-0} messages in the corpus"
assert_eq "$st0" "$(status_of bm)" "status after the messages"
dmsetup remove bm
legs_identical $L $A $B $C

step "damaged metadata images: each refused with a reason, never rewritten"
good=$(fracture_table $L $M 1024 $A $B)
wipe $M
create g "$good"
dmsetup remove g
fresh
clean=$(mktemp /tmp/meta.XXXXXX)
dd if=$M of="$clean" bs=1M count=1 status=none
legsum=$(md5sum $A $B | awk '{ print $1 }' | tr '\n' ' ')
echo "$good" >/tmp/good.table
py_call refuse.py metadata "$FRACTURE_VM/corpus/metadata.txt" $M "$clean" /tmp/good.table ||
	misses+=("damaged metadata (above)")
echo "$py_out"
n=$(sed -n 's/^\([0-9]*\) damaged images refused.*/\1/p' <<<"$py_out")
[ "${n:-0}" -ge 30 ] || fail "only ${n:-0} damaged images in the corpus"
# The same geometry over the whole device, but the table says otherwise.
dd if="$clean" of=$M bs=1M conv=notrunc oflag=direct status=none
refused "metadata has 2 legs, the table says 3" "a table for other metadata" \
	dmsetup create badtable --table "$(fracture_table $L $M 1024 $A $B $C)"
# Truncated: the metadata device ends before the bitmaps do.
dmsetup create trunc --table "0 16 linear $M 0"
refused "has 16 sectors; this table needs at least" "truncated metadata" \
	dmsetup create badtable --table "$(fracture_table $L /dev/mapper/trunc 1024 $A $B)"
dmsetup remove trunc
fresh
assert_eq "$legsum" "$(md5sum $A $B | awk '{ print $1 }' | tr '\n' ' ')" "legs after the damaged metadata"
rm -f "$clean"
dmsetup remove small tinymeta
if [ "${#misses[@]}" != 0 ]; then
	printf 'MISS: %s\n' "${misses[@]}"
	fail "${#misses[@]} inputs not refused as expected"
fi
