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
# shellcheck disable=SC2034 # both used by the corpus lines, through eval
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
n=0
while IFS=$'\t' read -r want line; do
	[[ -z "$want" || "$want" == "#"* && "$want" != "#features"* ]] && continue
	eval "line=\"$line\" want=\"$want\""
	refused "$want" "$line" dmsetup create badtable --table "$line"
	dmsetup info badtable >/dev/null 2>&1 && fail "device left behind by: $line"
	n=$((n + 1))
done <"$FRACTURE_VM/corpus/tables.txt"
echo "$n table lines refused"
[ "$n" -ge 50 ] || fail "only $n table lines in the corpus"
fresh
assert_eq "$before" "$(sums)" "metadata and legs after the refused tables"

step "messages (corpus/messages.txt) to a running mirror"
wipe $M $A $B $C
create bm "$(fracture_table $L $M 1024 $A $B $C)"
st0=$(status_of bm)
n=0
while IFS=$'\t' read -r want words; do
	[[ -z "$want" || "$want" == "#"* ]] && continue
	# shellcheck disable=SC2086 # the words are the message
	# `--`: words like "-1" are the message's, not dmsetup options.
	refused "$want" "message $words" dmsetup message bm 0 -- $words
	assert_eq "$st0" "$(status_of bm)" "status after 'message $words'"
	n=$((n + 1))
done <"$FRACTURE_VM/corpus/messages.txt"
echo "$n messages refused"
[ "$n" -ge 25 ] || fail "only $n messages in the corpus"
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
n=0
# The metadata's first MiB (its whole layout here: 4 blocks), read past
# the page cache.
meta_sum() { dd if=$M bs=1M count=1 iflag=direct status=none | md5sum; }
# damaged <reason-regex> <badmeta.py args>...
damaged() {
	local want=$1 after
	shift
	dd if="$clean" of=$M bs=1M conv=notrunc oflag=direct status=none
	py_run badmeta.py $M "$@"
	after=$(meta_sum)
	refused "$want" "metadata damaged: $*" dmsetup create badtable --table "$good"
	assert_eq "$after" "$(meta_sum)" "metadata after the refusal of '$*' (never rewritten)"
	n=$((n + 1))
}
damaged "superblock block 0 fails its checksum|bad magic" random 0
damaged "superblock block 0 fails its checksum|bad magic" ones 0
damaged "fracture bitmap block 1 fails its checksum" random 1
damaged "bad magic" sb magic NOTOURS!
damaged "unsupported metadata format version 2" sb version 2
damaged "unsupported metadata format version 4294967295" sb version 0xffffffff
damaged "inconsistent superblock: invalid region size" sb region_sectors 0
damaged "inconsistent superblock: invalid region size" sb region_sectors 3
damaged "inconsistent superblock: invalid region size" sb region_sectors 0x8000000000000000
damaged "inconsistent superblock: region count" sb nr_regions 0xffffffffffffffff
damaged "inconsistent superblock" sb target_sectors 0
damaged "inconsistent superblock" sb target_sectors 0xffffffffffffffff
damaged "inconsistent superblock: number of legs out of range" sb nr_legs 0
damaged "inconsistent superblock: number of legs out of range" sb nr_legs 10
damaged "inconsistent superblock: number of legs out of range" sb nr_legs 0xffffffff
damaged "inconsistent superblock: primary leg out of range" sb primary 2
damaged "inconsistent superblock: primary leg out of range" sb primary 0xffffffff
damaged "inconsistent superblock: bitmap size" sb bitmap_blocks 0xffffffff
damaged "inconsistent superblock: bitmap size" sb intent_blocks 0
damaged "leg 0 has unknown state 200" sb leg0_state 200
damaged "unknown leg record flags" sb leg1_flags 0x80
damaged "unknown leg record flags" sb leg1_pad 1
damaged "a leg generation is above the event count" sb leg1_generation 0xffffffffffffffff
damaged "inconsistent superblock: event or commit count out of range" sb event 0xffffffffffffffff
damaged "inconsistent superblock: event or commit count out of range" sb commit 0x8000000000000000
damaged "block 0 should be a superblock block but has type 2" header 0 type 2
damaged "superblock block 0 carries block number 7 \(misdirected write\)" header 0 blocknr 7
damaged "fracture bitmap block 1 carries block number 0" header 1 blocknr 0
damaged "fracture bitmap block 2 belongs to another mirror" header 2 uuid0 0x1234
damaged "superblock|inconsistent|unknown" garbage-sealed
# The same geometry over the whole device, but the table says otherwise.
dd if="$clean" of=$M bs=1M conv=notrunc oflag=direct status=none
refused "metadata has 2 legs, the table says 3" "a table for other metadata" \
	dmsetup create badtable --table "$(fracture_table $L $M 1024 $A $B $C)"
# Truncated: the metadata device ends before the bitmaps do.
dmsetup create trunc --table "0 16 linear $M 0"
refused "has 16 sectors; this table needs at least" "truncated metadata" \
	dmsetup create badtable --table "$(fracture_table $L /dev/mapper/trunc 1024 $A $B)"
dmsetup remove trunc
echo "$n damaged images refused"
fresh
assert_eq "$legsum" "$(md5sum $A $B | awk '{ print $1 }' | tr '\n' ' ')" "legs after the damaged metadata"
rm -f "$clean"
dmsetup remove small tinymeta
if [ "${#misses[@]}" != 0 ]; then
	printf 'MISS: %s\n' "${misses[@]}"
	fail "${#misses[@]} inputs not refused as expected"
fi
