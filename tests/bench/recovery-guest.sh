#!/usr/bin/env bash
# Recovery benchmark, inside the guest (see scripts/bench.sh): 256 MiB RAM
# disks, 512 KiB regions (512 of them). Each figure is the median of 3 runs.
# dm-fracture's resync times come from the kernel log's timestamps (from the
# line that starts a recovery to "is in sync again"), so that the cost of
# starting dmsetup under TCG is not counted; dm-mirror has no such line and
# is timed by polling its status every 20 ms, the raw copy by the clock
# around dd.
set -euo pipefail
export DM_DISABLE_UDEV=1
ko=$1 results=$2 flavour=$3
lsmod | grep -q dm_fracture || insmod "$ko"
L=524288 R=1024 N=512 MB=256
now() { date +%s.%N; }
secs() { echo "$2 - $1" | bc -l; }
median() { printf '%s\n' "$@" | sort -g | sed -n 2p; }
fresh() { sync; echo 3 >/proc/sys/vm/drop_caches; }
quiet() { "$@" 2> >(grep -v "^Udev is running" >&2); }
# wait_until <cmd...>: poll every 20 ms.
wait_until() { while ! "$@"; do sleep 0.02; done; }
health() { dmsetup status "$1" | awk '{ print $5 }'; }
is_health() { [ "$(health "$1")" = "$2" ]; }
mirror_synced() { dmsetup status mm | grep -q " $N/$N "; }
# kt <text>: kernel timestamp (s) of the last log line containing <text>.
kt() { dmesg | grep -F "$1" | tail -n1 | sed -E 's/^\[ *([0-9.]+)\].*/\1/'; }
synced="is in sync again"

head -c $((MB << 20)) /dev/urandom >/dev/ram1

# brd allocates a page on the first write after a discard: copies into a
# discarded disk (initial syncs) and into a written one (rebuilds) are
# compared with raw copies of the same kind.
raw=() over=() fr=() dmm=() one=() full=()
for i in 1 2 3; do
	blkdiscard /dev/ram2
	t0=$(now); dd if=/dev/ram1 of=/dev/ram2 bs=1M iflag=direct oflag=direct status=none; t1=$(now)
	raw+=("$(secs "$t0" "$t1")")
	t0=$(now); dd if=/dev/ram1 of=/dev/ram2 bs=1M iflag=direct oflag=direct status=none; t1=$(now)
	over+=("$(secs "$t0" "$t1")")

	blkdiscard /dev/ram0; blkdiscard /dev/ram2
	dmesg -C
	quiet dmsetup create fr --table "0 $L fracture /dev/ram0 $R 2 /dev/ram1 /dev/ram2"
	wait_until is_health fr AA
	fr+=("$(secs "$(kt "formatted metadata device")" "$(kt "$synced")")")

	# 1% of the regions dirty (5 of 512, spread out), then rejoin.
	quiet dmsetup message fr 0 fracture 1
	for r in 7 100 250 333 480; do
		dd if=/dev/urandom of=/dev/mapper/fr bs=512k seek=$r count=1 oflag=direct status=none
	done
	dmesg -C
	quiet dmsetup message fr 0 rejoin 1; wait_until is_health fr AA
	one+=("$(secs "$(kt "rejoined: 5 regions")" "$(kt "$synced")")")
	# 100%: rebuild.
	dmesg -C
	quiet dmsetup message fr 0 rebuild 1; wait_until is_health fr AA
	full+=("$(secs "$(kt "full rebuild from the primary started")" "$(kt "$synced")")")
	quiet dmsetup remove fr
	fresh
	cmp -n $((MB << 20)) /dev/ram1 /dev/ram2 || { echo "legs differ after the benchmark" >&2; exit 1; }

	blkdiscard /dev/ram2
	t0=$(now)
	quiet dmsetup create mm --table "0 $L mirror core 1 $R 2 /dev/ram1 0 /dev/ram2 0"
	wait_until mirror_synced
	t1=$(now)
	dmm+=("$(secs "$t0" "$t1")")
	quiet dmsetup remove mm
done

# Host write latency (4 KiB random writes, QD1, 2 s) without and with
# rebuilds running back to back (no rate limit; recovery drops to 2 copies
# in flight while host writes come in).
quiet dmsetup create fr --table "0 $L fracture /dev/ram0 $R 2 /dev/ram1 /dev/ram2 1 nosync"
lat() {
	fio --name=l --filename=/dev/mapper/fr --direct=1 --ioengine=psync --rw=randwrite \
		--bs=4k --size=$((MB / 2))M --time_based --runtime=2 --output-format=json |
		python3 -c 'import json, sys; j = json.load(sys.stdin); print("%.1f" % (j["jobs"][0]["write"]["clat_ns"]["mean"] / 1000))'
}
lat_idle=$(lat)
# Rebuilds back to back for the whole measurement.
touch /tmp/rebuilding
(
	while [ -e /tmp/rebuilding ]; do
		quiet dmsetup message fr 0 rebuild 1
		wait_until is_health fr AA
	done
) &
loop=$!
lat_busy=$(lat)
rm /tmp/rebuilding
wait $loop
c_busy=$(dmsetup message fr 0 stats | tr ' ' '\n' | sed -n 's/^regions_copied=//p')
quiet dmsetup remove fr

over_s=$(median "${over[@]}")
raw_s=$(median "${raw[@]}") fr_s=$(median "${fr[@]}") dmm_s=$(median "${dmm[@]}")
one_s=$(median "${one[@]}") full_s=$(median "${full[@]}")
bw() { echo "scale=1; $MB / $1" | bc -l; }
ratio() { echo "scale=2; $1 / $2" | bc -l; }
{
	echo "Recovery benchmark, $MB MiB RAM disks (brd), 512 KiB regions, $flavour kernel under TCG, median of 3."
	echo
	echo "Into a discarded disk (brd allocates pages):"
	echo
	echo "| copy | time (s) | MiB/s | dm-fracture initial sync bandwidth, ratio to it |"
	echo "|---|---|---|---|"
	echo "| raw dd (1 MiB direct I/O) | $raw_s | $(bw "$raw_s") | $(ratio "$raw_s" "$fr_s") |"
	echo "| dm-mirror initial recovery (core log) | $dmm_s | $(bw "$dmm_s") | $(ratio "$dmm_s" "$fr_s") |"
	echo "| dm-fracture initial sync | $fr_s | $(bw "$fr_s") | 1 |"
	echo
	echo "Into a written disk:"
	echo
	echo "| copy | time (s) | MiB/s | dm-fracture rebuild bandwidth, ratio to it |"
	echo "|---|---|---|---|"
	echo "| raw dd (1 MiB direct I/O) | $over_s | $(bw "$over_s") | $(ratio "$over_s" "$full_s") |"
	echo "| dm-fracture rebuild (100% dirty) | $full_s | $(bw "$full_s") | 1 |"
	echo
	echo "| dm-fracture resync | time (s) | regions copied |"
	echo "|---|---|---|"
	echo "| 1% dirty (5 of 512 regions, rejoin) | $one_s | 5 |"
	echo "| 100% dirty (rebuild) | $full_s | 512 |"
	echo
	echo "1% / 100% time: $(ratio "$one_s" "$full_s") (proportional would be 0.01)."
	echo
	echo "Host 4 KiB random write latency, QD1, 2 s: $lat_idle us idle, $lat_busy us with rebuilds running"
	echo "(ratio $(ratio "$lat_busy" "$lat_idle"); rebuilds back to back meanwhile: $c_busy regions copied)."
	echo "Goal: dm-fracture >= 0.9x raw copy bandwidth: $(ratio "$raw_s" "$fr_s")x (initial sync), $(ratio "$over_s" "$full_s")x (rebuild)."
} >"$results/recovery.md"
echo "raw: ${raw[*]}; raw over: ${over[*]}; fracture: ${fr[*]}; dm-mirror: ${dmm[*]}; 1%: ${one[*]}; 100%: ${full[*]}" >"$results/recovery-raw.txt"
