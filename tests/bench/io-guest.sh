#!/usr/bin/env bash
# I/O benchmark, inside the guest (see scripts/bench.sh):
#   io-guest.sh <module.ko> <results> <flavour>
# fio (libaio, O_DIRECT, time based, JSON) over a working set of 150 MiB
# (300 regions of 512 KiB) of 256 MiB legs, every peer on the same two legs:
#   linear             dm-linear on leg A alone: the limit
#   mirror-core        dm-mirror, core log (nothing persistent)
#   mirror-disk        dm-mirror, disk log on lg
#   md-bitmap          md raid1, internal write-intent bitmap (on the legs)
#   dm-raid            dm's raid target, raid1 with a metadata device per
#                      leg (md's superblock and bitmap beside the legs)
#   fracture-nointent  dm-fracture without its write-intent log
#   fracture           dm-fracture, write-intent log on lg
# and two leg sets:
#   brd    RAM disks ram1 and ram2: no latency, the (emulated) CPU is the
#          limit;
#   nullb  null_blk devices made through configfs: memory backed,
#          completed by a 200 us timer, 4 tags on one queue: a disk with a
#          latency and limited internal parallelism (about 20000 IOPS,
#          below what the emulated CPU can drive), so that the legs, not
#          the CPU, are the limit and reads spread over both legs show.
#          The log/metadata device is a third such disk (nullb3), and
#          dm-raid's metadata devices sit on the legs' disks after the
#          legs (as LVM places rmeta beside rimage).
# Region size 1024 sectors (512 KiB) everywhere. The legs and the log are
# dm-linear devices (la, lb, lg) so that writes can be counted; on brd lg
# is on ram0 and dm-raid's metadata devices (ma, mb) are 8 MiB of ram3
# each.
# Each peer starts from identical legs (copied) and a zeroed log.
# Workloads, RUNTIME s each, after one unmeasured warm-up of random writes
# over the working set (its regions marked, as on a long-running device):
#   randwrite-qd1, randwrite-qd32  4 KiB random writes
#   randread-qd32                  4 KiB random reads
#   seqwrite-qd8                   128 KiB sequential writes
#   mixed-qd16                     4 KiB random, 70% reads
# REPS repetitions, interleaved: the outer loop is the repetition, the
# inner ones the leg set and the peer, so that a drift of the machine hits
# every peer alike. One JSON line per measurement in io-raw.jsonl;
# tests/bench/report.py makes the tables (median, min-max).
# Metadata writes per 1000 host writes over the two random-write jobs:
# lg's writes for mirror-disk and dm-fracture; for md, whose bitmap lives on
# the legs, leg A's writes beyond the host's; for dm-raid, the writes to leg
# A's metadata device (one copy, like md's count).
# After each dm-fracture run on brd the two legs must be identical: if not,
# the script says so and exits non-zero (a benchmark must not hide
# corruption).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tag=io
# shellcheck source=tests/bench/lib.sh
. "$here/lib.sh"
ko=$1 results=$2 flavour=$3
RUNTIME=${RUNTIME:-3} REPS=${REPS:-3}
META=16384   # dm-raid metadata device: 8 MiB
CFG=/sys/kernel/config
raw=$results/io-raw.jsonl
setups=$results/io-setups.txt
tmp=$(mktemp -d)
: >"$raw"
: >"$setups"
load_module "$ko"

peers=(linear mirror-core mirror-disk md-bitmap dm-raid fracture-nointent fracture)
workloads=(randwrite-qd1 randwrite-qd32 randread-qd32 seqwrite-qd8 mixed-qd16)
# Per leg set: leg A, leg B, the log device, dm-raid's metadata devices
# ("<dev> <offset>").
declare -A leg_a=([brd]=/dev/ram1 [nullb]=/dev/nullb1) leg_b=([brd]=/dev/ram2 [nullb]=/dev/nullb2)
declare -A log_dev=([brd]=/dev/ram0 [nullb]=/dev/nullb3)
declare -A meta_a=([brd]="/dev/ram3 0" [nullb]="/dev/nullb1 $L")
declare -A meta_b=([brd]="/dev/ram3 $META" [nullb]="/dev/nullb2 $L")
NULLB_NS=200000 NULLB_DEPTH=4
A=/dev/mapper/la B=/dev/mapper/lb G=/dev/mapper/lg MDA=/dev/mapper/ma MDB=/dev/mapper/mb

# nullb_up <name> <MiB>: a null_blk disk, /dev/<name>. The attributes
# before `power` configure it; power=1 creates the disk.
nullb_up() {
	local d=$CFG/nullb/$1 kv
	if ! mkdir "$d"; then
		warn "cannot make $d"
		return 1
	fi
	for kv in size="$2" memory_backed=1 blocksize=512 irqmode=2 completion_nsec=$NULLB_NS \
		hw_queue_depth=$NULLB_DEPTH submit_queues=1 power=1; do
		if ! echo "${kv#*=}" >"$d/${kv%%=*}"; then
			warn "null_blk $1: cannot set ${kv%%=*}"
			return 1
		fi
	done
	for _ in $(seq 50); do
		if [ -b "/dev/$1" ]; then
			return 0
		fi
		sleep 0.1
	done
	warn "null_blk $1: /dev/$1 did not appear"
	return 1
}

nullb_down() {
	local n d
	for n in "$@"; do
		d=$CFG/nullb/$n
		[ -d "$d" ] || continue
		echo 0 >"$d/power" 2>/dev/null || true
		rmdir "$d" || warn "cannot remove null_blk $n"
	done
	return 0
}

cleanup() {
	dm_down b || true
	md_down "$A" "$B" 2>/dev/null || true
	dm_down la lb ma mb lg || true
	nullb_down nullb1 nullb2 nullb3
	rm -rf "$tmp"
}
trap cleanup EXIT

# Leg set <legs> under la and lb, its log device under lg, dm-raid's
# metadata devices under ma and mb.
legs_up() {
	dm_up la "0 $L linear ${leg_a[$1]} 0" && dm_up lb "0 $L linear ${leg_b[$1]} 0" &&
		dm_up lg "0 $L linear ${log_dev[$1]} 0" &&
		dm_up ma "0 $META linear ${meta_a[$1]}" && dm_up mb "0 $META linear ${meta_b[$1]}"
}

setup() {
	if ! same_legs "$A" "$B"; then
		warn "cannot copy leg A onto leg B"
		return 1
	fi
	if ! zero_dev "$G" 16; then
		warn "cannot zero the log device"
		return 1
	fi
	case $1 in
	linear) dm_up b "0 $L linear $A 0" ;;
	mirror-core) dm_up b "0 $L mirror core 2 $R nosync 2 $A 0 $B 0" ;;
	mirror-disk) dm_up b "0 $L mirror disk 3 $G $R nosync 2 $A 0 $B 0" ;;
	md-bitmap) md_up "$A" "$B" ;;
	dm-raid)
		# Zeroed metadata devices: a new array (superblocks, bitmap).
		# <#raid_params> counts the words after it: the chunk size (0,
		# unused by raid1), "region_size 1024" and "nosync": 4.
		zero_dev "$MDA" 8 && zero_dev "$MDB" 8 &&
			dm_up b "0 $L raid raid1 4 0 region_size $R nosync 2 $MDA $A $MDB $B"
		;;
	fracture-nointent) dm_up b "0 $L fracture $G $R 2 $A $B 2 nosync nointent" ;;
	fracture) dm_up b "0 $L fracture $G $R 2 $A $B 1 nosync" ;;
	*)
		warn "unknown peer $1"
		return 1
		;;
	esac
}

teardown() { peer_down "$1" "$A" "$B"; }

# The table and status each peer ran with, for the record (first rep).
describe() {
	echo "== $1 $2"
	if [ "$2" = md-bitmap ]; then
		cat /proc/mdstat
	else
		dmsetup table b
		dmsetup status b
	fi
}

# Writes to the device that holds peer <p>'s metadata.
meta_writes() {
	case $1 in
	mirror-disk | fracture*) writes_of lg ;;
	md-bitmap) writes_of la ;;
	dm-raid) writes_of ma ;;
	*) echo 0 ;;
	esac
}

# Sets args to workload <w>'s fio options.
wl_args() {
	case $1 in
	randwrite-qd1) args=(--rw=randwrite --bs=4k --iodepth=1) ;;
	randwrite-qd32) args=(--rw=randwrite --bs=4k --iodepth=32) ;;
	randread-qd32) args=(--rw=randread --bs=4k --iodepth=32) ;;
	seqwrite-qd8) args=(--rw=write --bs=128k --iodepth=8) ;;
	mixed-qd16) args=(--rw=randrw --rwmixread=70 --bs=4k --iodepth=16) ;;
	esac
}

# run_peer <rep> <legs> <peer>: setup, warm-up, the workloads, teardown.
# A failure is recorded as an "error" line and the peer's cells stay
# empty; the run goes on.
run_peer() {
	local rep=$1 legs=$2 p=$3 dev wl out iops wios w0 d n=0 ok=1 meta=n/a health
	local -a args summary=()
	local -a id=(legs="$legs" peer="$p" rep="$rep")
	if ! setup "$p"; then
		warn "rep $rep $legs $p: setup failed, skipped"
		json_line "$raw" "${id[@]}" error="setup failed"
		teardown "$p" || true
		return 0
	fi
	dev=$(dev_of "$p")
	if [ "$rep" = 1 ]; then
		describe "$legs" "$p" >>"$setups" 2>&1 || true
	fi
	wl_args randwrite-qd32
	if ! fio_json "$tmp/fio.json" "$dev" "$RUNTIME" "${args[@]}"; then
		warn "rep $rep $legs $p: warm-up failed, skipped"
		json_line "$raw" "${id[@]}" error="warm-up failed"
		teardown "$p" || true
		return 0
	fi
	w0=$(meta_writes "$p")
	for wl in "${workloads[@]}"; do
		wl_args "$wl"
		if fio_json "$tmp/fio.json" "$dev" "$RUNTIME" "${args[@]}" &&
			out=$(fio_record "$tmp/fio.json" "$raw" "${id[@]}" workload="$wl"); then
			read -r iops wios _ <<<"$out"
			summary+=("$wl $iops")
			case $wl in randwrite-*) n=$((n + wios)) ;; esac
		else
			warn "rep $rep $legs $p: fio $wl failed"
			json_line "$raw" "${id[@]}" workload="$wl" error="fio failed"
			summary+=("$wl failed")
			case $wl in randwrite-*) ok=0 ;; esac
		fi
		if [ "$wl" = randwrite-qd32 ] && [ "$ok" = 1 ] && [ "$n" -gt 0 ]; then
			d=$(($(meta_writes "$p") - w0))
			if [ "$p" = md-bitmap ]; then
				d=$((d - n))
			fi
			meta=$(awk -v d="$d" -v n="$n" 'BEGIN { printf "%.1f", d * 1000 / n }')
			json_line "$raw" "${id[@]}" metadata_per_1000="$meta"
		fi
	done
	health=$(dmsetup status b 2>/dev/null | awk '$3 == "fracture" { print $5 }') || true
	if ! teardown "$p"; then
		warn "rep $rep $legs $p: teardown failed"
	fi
	echo "io: rep $rep/$REPS $legs $p: ${summary[*]} (IOPS); metadata/1000 $meta"
	if [ "$legs" = brd ] && [[ $p == fracture* ]]; then
		if legs_differ "$A" "$B" 150; then
			warn "rep $rep brd $p: THE LEGS DIFFER after the run (health ${health:-?})"
			json_line "$raw" "${id[@]}" legs_identical=false health="${health:-?}"
			corrupt=1
		else
			json_line "$raw" "${id[@]}" legs_identical=true health="${health:-?}"
		fi
	fi
}

# null_blk devices are made through configfs; the kernel command line has
# null_blk.nr_devices=0, so there is no default one.
legsets=(brd)
if ! mountpoint -q "$CFG"; then
	mount -t configfs none "$CFG" || warn "cannot mount configfs"
fi
if [ -e /dev/nullb0 ]; then
	warn "/dev/nullb0 exists: null_blk.nr_devices=0 missing from the kernel command line?"
fi
if nullb_up nullb1 $((MB + 8)) && nullb_up nullb2 $((MB + 8)) && nullb_up nullb3 "$MB"; then
	legsets+=(nullb)
else
	warn "no null_blk leg set: its cells stay empty"
	json_line "$raw" legs=nullb error="null_blk devices could not be made"
	nullb_down nullb1 nullb2 nullb3
fi
# Every leg written once: no peer pays brd's page allocation on first
# write, and reads never hit holes.
for legs in "${legsets[@]}"; do
	for d in "${leg_a[$legs]}" "${leg_b[$legs]}"; do
		dd if=/dev/zero of="$d" bs=1M count="$MB" oflag=direct status=none ||
			warn "cannot fill $d: its first writes may be slower"
	done
done
json_line "$raw" kind=meta flavour="$flavour" runtime_s="$RUNTIME" reps="$REPS" working_set="$WS" \
	region_sectors="$R" nullb_completion_us=$((NULLB_NS / 1000)) nullb_queue_depth=$NULLB_DEPTH legsets="${legsets[*]}"
echo "io: $REPS reps x ${#legsets[@]} leg sets x ${#peers[@]} peers, $((${#workloads[@]} + 1)) fio jobs of ${RUNTIME} s each"

corrupt=0
for ((rep = 1; rep <= REPS; rep++)); do
	for legs in "${legsets[@]}"; do
		if ! legs_up "$legs"; then
			warn "rep $rep: leg set $legs cannot be set up, skipped"
			json_line "$raw" legs="$legs" rep="$rep" error="leg set setup failed"
			dm_down la lb lg ma mb || true
			continue
		fi
		for p in "${peers[@]}"; do
			run_peer "$rep" "$legs" "$p"
		done
		dm_down la lb lg ma mb || warn "rep $rep: leg set $legs left behind"
	done
done

if [ "$corrupt" != 0 ]; then
	warn "dm-fracture's legs differed after a run: see io-raw.jsonl (legs_identical)"
	exit 1
fi
