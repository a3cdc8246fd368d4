# shellcheck shell=bash disable=SC2034  # constants used by the sourcing scripts
# Helpers shared by io-guest.sh and slow-guest.sh, inside the bench guest
# (sourced, not run). Device names used by both:
#   lg       log / metadata device (dm-linear on ram0)
#   la, lb   the two legs (dm-linear, over RAM disks or null_blk devices)
#   b        the device under test (dm), or /dev/md0 for md raid1
# Every device is a dm device so that its writes can be counted from
# /sys/block/dm-N/stat (brd and null_blk keep no I/O statistics).
#
# Functions that can fail return non-zero with a message on stderr instead
# of exiting: one peer's failed setup must not stop the whole benchmark.
# The caller tests them (`if ! ...`), and under `set -e` they must not end
# on a test like `[ x ] && y` (a false test would be their status).

export DM_DISABLE_UDEV=1
L=524288     # target and leg length in sectors: 256 MiB
MB=256       # the same in MiB
R=1024       # region (dm-mirror, dm-fracture), md bitmap chunk: 512 KiB
WS=150M      # working set of every fio job: 300 regions
tag=${tag:-bench}

quiet() { "$@" 2> >(grep -v "^Udev is running" >&2); }
warn() { echo "$tag: $*" >&2; }

# Loads the module once (guest.sh runs several benchmarks in one boot).
load_module() {
	if [ ! -d /sys/module/dm_fracture ]; then
		insmod "$1" || return 1
	fi
	return 0
}

# dm_up <name> <table>: creates a dm device; on failure shows the kernel's
# reason (the target's ti->error ends up in the kernel log).
dm_up() {
	if quiet dmsetup create "$1" --table "$2"; then
		return 0
	fi
	warn "dmsetup create $1 failed, table: $2"
	dmesg | grep -E "device-mapper|md/raid1|md: " | tail -n 4 >&2 || true
	return 1
}

# dm_down <name>...: removes those of the devices that exist; non-zero if
# one stays.
dm_down() {
	local n bad=0
	for n in "$@"; do
		dmsetup info "$n" >/dev/null 2>&1 || continue
		if ! quiet dmsetup remove --retry "$n"; then
			warn "cannot remove dm device $n"
			bad=1
		fi
	done
	return "$bad"
}

# Minor of dm device <name>, and writes completed on it (field 5 of its
# stat file).
dm_minor() { dmsetup info -c --noheadings -o minor "$1" | tr -d ' '; }
writes_of() { awk '{ print $5 }' "/sys/block/dm-$(dm_minor "$1")/stat"; }

md_active() { grep -qs '^md0 :' /proc/mdstat; }

# md_up <legA> <legB>: md raid1 with an internal write-intent bitmap of
# 512 KiB chunks (the region size of the others), no initial resync.
md_up() {
	local out
	if out=$(mdadm --create /dev/md0 --quiet --run --level=1 --raid-devices=2 --metadata=1.2 \
		--bitmap=internal --bitmap-chunk=512K --assume-clean "$1" "$2" 2>&1); then
		return 0
	fi
	warn "mdadm --create failed: $out"
	return 1
}

# md_down <legA> <legB>: stops md0 (retrying: a just-closed array can be
# busy for a moment) and wipes the superblocks so the legs are plain again.
md_down() {
	local i
	for i in 1 2 3 4 5; do
		md_active || break
		mdadm --stop /dev/md0 >/dev/null 2>&1 || sleep "$i"
	done
	mdadm --zero-superblock "$1" "$2" >/dev/null 2>&1 || true
	if md_active; then
		warn "cannot stop /dev/md0"
		return 1
	fi
	return 0
}

# The device under test of peer <p>: md's array or the dm device b.
dev_of() {
	if [ "$1" = md-bitmap ]; then
		echo /dev/md0
	else
		echo /dev/mapper/b
	fi
}

# peer_down <p> <leg A> <leg B>: removes peer <p>'s device (md: stops the
# array and clears the legs' superblocks).
peer_down() {
	case $1 in
	md-bitmap) md_down "$2" "$3" ;;
	*) dm_down b ;;
	esac
}

# zero_dev <dev> <MiB>: all zero. A discard on brd frees its pages (reads
# then return zeros); dd for devices that do not take discards.
zero_dev() {
	blkdiscard "$1" 2>/dev/null && return 0
	dd if=/dev/zero of="$1" bs=1M count="$2" oflag=direct status=none
}

# same_legs <A> <B>: copy all of leg A onto leg B. Every peer is created
# with nosync (or --assume-clean), which promises identical legs; the peers
# before it (dm-linear writes one leg only, md writes a superblock per leg)
# leave them different.
same_legs() {
	dd if="$1" of="$2" bs=1M count="$MB" iflag=direct oflag=direct status=none
}

# legs_differ <A> <B> <MiB>: compares the first <MiB> of both legs with
# direct reads (the page cache of la/lb would be stale: the mirror writes
# below it).
legs_differ() {
	! cmp -s <(dd if="$1" bs=1M count="$3" iflag=direct status=none) \
		<(dd if="$2" bs=1M count="$3" iflag=direct status=none)
}

# fio_json <out.json> <dev> <seconds> <fio args...>: one time-based job over
# the working set, JSON report to <out.json>.
fio_json() {
	local out=$1 dev=$2 t=$3
	shift 3
	fio --name=b --filename="$dev" --direct=1 --ioengine=libaio --size="$WS" \
		--time_based --runtime="$t" --randrepeat=0 \
		--output-format=json --output="$out" "$@" >/dev/null
}

# fio_record <out.json> <jsonl> <key=value>...: appends one line to
# <jsonl>: the keys given, then iops (reads + writes), bw_kib, lat_mean_us
# (mean completion latency over all I/Os), p99_us (completion latency; of
# the writes for a mixed job, which then also has p99_read_us and
# p99_write_us). Prints "<iops> <write ios> <lat_mean_us> <p99_us>".
fio_record() {
	python3 - "$@" <<'EOF'
import json, sys
src, dst, *kv = sys.argv[1:]
job = json.load(open(src))["jobs"][0]
rd, wr = job["read"], job["write"]
def p99(d):
    return d["clat_ns"].get("percentile", {}).get("99.000000", 0) / 1000
line = {}
for item in kv:
    k, v = item.split("=", 1)
    line[k] = int(v) if v.isdigit() else v
ios = rd["total_ios"] + wr["total_ios"]
lat = (rd["clat_ns"]["mean"] * rd["total_ios"] + wr["clat_ns"]["mean"] * wr["total_ios"]) / max(ios, 1)
line["iops"] = round(rd["iops"] + wr["iops"], 1)
line["bw_kib"] = rd["bw"] + wr["bw"]
line["lat_mean_us"] = round(lat / 1000, 2)
if wr["total_ios"] and rd["total_ios"]:
    line["p99_us"] = round(p99(wr), 2)
    line["p99_read_us"] = round(p99(rd), 2)
    line["p99_write_us"] = round(p99(wr), 2)
elif rd["total_ios"]:
    line["p99_us"] = round(p99(rd), 2)
else:
    line["p99_us"] = round(p99(wr), 2)
with open(dst, "a") as f:
    f.write(json.dumps(line) + "\n")
print("%.0f %d %.1f %.1f" % (line["iops"], wr["total_ios"], line["lat_mean_us"], line["p99_us"]))
EOF
}

# json_line <jsonl> <key=value>...: appends a line of plain keys (numbers
# stay numbers, true/false stay booleans).
json_line() {
	python3 - "$@" <<'EOF'
import json, re, sys
dst, *kv = sys.argv[1:]
line = {}
for item in kv:
    k, v = item.split("=", 1)
    if re.fullmatch(r"-?[0-9]+", v):
        v = int(v)
    elif re.fullmatch(r"-?[0-9]*\.[0-9]+", v):
        v = float(v)
    elif v in ("true", "false"):
        v = v == "true"
    line[k] = v
with open(dst, "a") as f:
    f.write(json.dumps(line) + "\n")
EOF
}
