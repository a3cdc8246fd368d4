#!/usr/bin/env bash
# Write benchmark, inside the guest (see scripts/bench.sh): 4 KiB random
# writes over a working set of 300 regions of 512 KiB (150 MiB) on 256 MiB
# RAM disks, two legs, QD1 and QD32, 4 s each, median of 3 runs. Peers in
# the same run: dm-linear on one leg (the limit), dm-mirror with a core log
# (no persistence) and with a disk log, md raid1 with an internal
# write-intent bitmap (512 KiB chunks, like the regions), dm-fracture
# without its write-intent log (nointent) and with it.
# Also: metadata writes per 1000 host writes. brd keeps no I/O statistics,
# so every peer runs on dm-linear devices over the RAM disks (lg: log or
# metadata, la and lb: legs) and writes are counted from their
# /sys/block/dm-N/stat: the log device's for dm-mirror and dm-fracture; for
# md, whose bitmap lives on the legs, a leg's writes beyond the host's.
set -euo pipefail
export DM_DISABLE_UDEV=1
ko=$1 results=$2 flavour=$3
lsmod | grep -q dm_fracture || insmod "$ko"
L=524288 R=1024 WS=150M RUNTIME=4
quiet() { "$@" 2> >(grep -v "^Udev is running" >&2); }
median() { printf '%s\n' "$@" | sort -g | sed -n 2p; }
ratio() { echo "scale=2; $1 / $2" | bc -l; }
# Writes completed on a dm device (field 5 of its stat file).
writes_of() { awk '{ print $5 }' "/sys/block/dm-$(dmsetup info -c --noheadings -o minor "$1" | tr -d ' ')/stat"; }
quiet dmsetup create lg --table "0 $L linear /dev/ram0 0"
quiet dmsetup create la --table "0 $L linear /dev/ram1 0"
quiet dmsetup create lb --table "0 $L linear /dev/ram2 0"
G=/dev/mapper/lg A=/dev/mapper/la B=/dev/mapper/lb

# fio_run <dev> <iodepth>: prints "iops p99_us writes"
fio_run() {
	fio --name=w --filename="$1" --direct=1 --ioengine=libaio --iodepth="$2" \
		--rw=randwrite --bs=4k --size=$WS --time_based --runtime=$RUNTIME \
		--randrepeat=0 --output-format=json |
		python3 -c '
import json, sys
w = json.load(sys.stdin)["jobs"][0]["write"]
print("%.0f %.0f %d" % (w["iops"], w["clat_ns"]["percentile"]["99.000000"] / 1000, w["total_ios"]))'
}

setup() {
	blkdiscard $G 2>/dev/null || true
	case $1 in
	linear) quiet dmsetup create b --table "0 $L linear $A 0" ;;
	mirror-core) quiet dmsetup create b --table "0 $L mirror core 2 $R nosync 2 $A 0 $B 0" ;;
	mirror-disk) quiet dmsetup create b --table "0 $L mirror disk 3 $G $R nosync 2 $A 0 $B 0" ;;
	md-bitmap)
		mdadm --create /dev/md0 --quiet --run --level=1 --raid-devices=2 --metadata=1.2 \
			--bitmap=internal --bitmap-chunk=512K --assume-clean $A $B >/dev/null 2>&1
		;;
	fracture-nointent) quiet dmsetup create b --table "0 $L fracture $G $R 2 $A $B 2 nosync nointent" ;;
	fracture) quiet dmsetup create b --table "0 $L fracture $G $R 2 $A $B 1 nosync" ;;
	esac
}

teardown() {
	case $1 in
	md-bitmap) mdadm --stop /dev/md0 >/dev/null 2>&1; mdadm --zero-superblock $A $B 2>/dev/null || true ;;
	*) quiet dmsetup remove b ;;
	esac
}

dev_of() { [ "$1" = md-bitmap ] && echo /dev/md0 || echo /dev/mapper/b; }

peers=(linear mirror-core mirror-disk md-bitmap fracture-nointent fracture)
declare -A iops1 p99_1 iops32 p99_32 meta
for p in "${peers[@]}"; do
	a1=() b1=() a32=() b32=() m=()
	for i in 1 2 3; do
		setup "$p"
		dev=$(dev_of "$p")
		# Warm-up: the working set's regions get marked once (what a
		# long-running device is like); not measured.
		fio_run "$dev" 32 >/dev/null
		w0=$(writes_of lg) l0=$(writes_of la)
		read -r x y n1 < <(fio_run "$dev" 1)
		a1+=("$x") b1+=("$y")
		read -r x y n32 < <(fio_run "$dev" 32)
		a32+=("$x") b32+=("$y")
		n=$((n1 + n32))
		case $p in
		mirror-disk | fracture*) m+=("$(( ($(writes_of lg) - w0) * 1000 / n ))") ;;
		md-bitmap) m+=("$(( ($(writes_of la) - l0 - n) * 1000 / n ))") ;;
		*) m+=(0) ;;
		esac
		teardown "$p"
	done
	iops1[$p]=$(median "${a1[@]}") p99_1[$p]=$(median "${b1[@]}")
	iops32[$p]=$(median "${a32[@]}") p99_32[$p]=$(median "${b32[@]}")
	meta[$p]=$(median "${m[@]}")
	echo "$p: QD1 ${a1[*]} (p99 ${b1[*]}), QD32 ${a32[*]} (p99 ${b32[*]}), metadata/1000 ${m[*]}" >>"$results/write-raw.txt"
done

f1=${iops1[fracture]} f32=${iops32[fracture]}
{
	echo "Write benchmark: 4 KiB random writes over 150 MiB (300 regions of 512 KiB), 2 legs on brd,"
	echo "$flavour kernel under TCG, ${RUNTIME} s per run after a warm-up, median of 3."
	echo
	echo "| device | QD1 IOPS | QD1 p99 (us) | QD32 IOPS | QD32 p99 (us) | metadata writes / 1000 writes | dm-fracture QD1 / it | dm-fracture QD32 / it |"
	echo "|---|---|---|---|---|---|---|---|"
	for p in "${peers[@]}"; do
		echo "| $p | ${iops1[$p]} | ${p99_1[$p]} | ${iops32[$p]} | ${p99_32[$p]} | ${meta[$p]} | $(ratio "$f1" "${iops1[$p]}") | $(ratio "$f32" "${iops32[$p]}") |"
	done
	echo
	echo "Goals (issue 6): dm-fracture >= 1.3x dm-mirror disk log: QD1 $(ratio "$f1" "${iops1[mirror-disk]}")x, QD32 $(ratio "$f32" "${iops32[mirror-disk]}")x;"
	echo "write-intent log cost <= 10% (dm-fracture with the log against without, nointent): QD1 $(ratio "$f1" "${iops1[fracture-nointent]}")x, QD32 $(ratio "$f32" "${iops32[fracture-nointent]}")x;"
	echo "p99 with the log against without: QD1 $(ratio "${p99_1[fracture]}" "${p99_1[fracture-nointent]}")x, QD32 $(ratio "${p99_32[fracture]}" "${p99_32[fracture-nointent]}")x."
} >"$results/write.md"
quiet dmsetup remove lg la lb
cat "$results/write.md"
