#!/usr/bin/env bash
# Helpers for VM test cases. A case is a bash script that exits 0 on pass;
# `set -e` is on, so any failing command fails the case.
set -euo pipefail
export DM_DISABLE_UDEV=1

# The Python interpreter (FRACTURE_PYTHON: another one, if wanted).
PYTHON=${FRACTURE_PYTHON:-python3}

# Sectors of the 64 MiB RAM disks (brd.rd_size=65536 KiB).
RAM_SECTORS=131072

# udev in the guest may still hold a device open (blkid after a write)
# when a case removes it: retry removals like LVM's tests do. A removed
# dm-fracture device has its metadata device checked with `fracturectl
# check` at once (see meta_check), as the dm test suite runs thin_check
# after every test.
dmsetup() {
	if [ "${1:-}" = remove ]; then
		shift
		# Mirrors first, one at a time, each checked before the devices
		# under it (often named in the same command) go away.
		local a meta opts=() others=()
		for a in "$@"; do
			[[ $a == -* ]] && opts+=("$a")
		done
		for a in "$@"; do
			[[ $a == -* ]] && continue
			meta=$(fracture_meta_of "$a")
			if [ -z "$meta" ]; then
				others+=("$a")
				continue
			fi
			command dmsetup remove --retry "${opts[@]}" "$a" || return
			meta_check "$meta"
		done
		[ "${#others[@]}" = 0 ] || command dmsetup remove --retry "${opts[@]}" "${others[@]}"
	else
		command dmsetup "$@" || return
		case "${1:-}" in
			create | load) count_fault "$@" ;;
		esac
	fi
}

# figure <name> <n>: adds n to a figure of the run (scripts/report.sh
# prints their sums).
figure() {
	echo "$1 $2" >>"${FRACTURE_RESULTS:-/tmp}/figures"
}

# count_fault <dmsetup create|load args>: a table of a fault-injecting
# target (error, dm-flakey, dm-dust, dm-delay) counts as a fault injected.
count_fault() {
	local next=0 a
	for a in "$@"; do
		if [ "$next" = 1 ]; then
			read -r _ _ a _ <<<"$a"
			case $a in
				error | flakey | dust | delay) figure faults 1 ;;
			esac
			return 0
		fi
		[ "$a" != --table ] || next=1
	done
}

# fracture_meta_of <dm name>: the metadata device (major:minor) of a
# dm-fracture device, nothing for any other device.
fracture_meta_of() {
	command dmsetup table "$1" 2>/dev/null | awk '$3 == "fracture" { print $4; exit }'
}

# meta_check <major:minor>: `fracturectl check` of a metadata device no
# table uses any more; the result goes to $FRACTURE_METACHECK, which the
# guest runner reads after the case (a failed check fails the case).
meta_check() {
	local devt=$1 out rc=0
	[ -n "${FRACTURE_METACHECK:-}" ] || return 0
	if grep -qx "$devt" "$FRACTURE_METACHECK.skip" 2>/dev/null; then
		echo "skip $devt" >>"$FRACTURE_METACHECK"
		sed -i "\|^$devt\$|d" "$FRACTURE_METACHECK.skip"
		return 0
	fi
	out=$(fracturectl check -q "$devt" 2>&1) || rc=$?
	if [ "$rc" = 0 ]; then
		echo "ok $devt" >>"$FRACTURE_METACHECK"
	else
		echo "FAIL $devt (exit $rc): $(tr '\n' ' ' <<<"$out")" >>"$FRACTURE_METACHECK"
	fi
}

# skip_meta_check <dev>: the case breaks this metadata device on purpose
# (cut, erroring, corrupted): do not check it at the next removal of a
# mirror on it (later mirrors on it are checked again).
skip_meta_check() {
	[ -n "${FRACTURE_METACHECK:-}" ] || return 0
	devnum "$1" >>"$FRACTURE_METACHECK.skip"
}

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

step() {
	echo "--- [${SECONDS}s] $*"
}

# assert_eq <expected> <actual> <what>
assert_eq() {
	[ "$1" = "$2" ] || fail "$3: expected '$1', got '$2'"
}

# assert_match <regex> <actual> <what>
assert_match() {
	[[ "$2" =~ $1 ]] || fail "$3: '$2' does not match /$1/"
}

devnum() {
	printf '%d:%d' "$((16#$(stat -L -c %t "$1")))" "$((16#$(stat -L -c %T "$1")))"
}

sectors() {
	blockdev --getsz "$1"
}

# fracture_table <len> <meta> <region> <leg>... : prints a table line with
# `nosync`: every case starts on wiped (all-zero, so identical) legs. Cases
# about the initial sync write their own lines.
fracture_table() {
	local len=$1 meta=$2 region=$3
	shift 3
	echo "0 $len fracture $meta $region $# $* 1 nosync"
}

# wait_health <dev> <health> [seconds]: poll until the health field is
# <health> (fails after the timeout, default 120 s).
wait_health() {
	local dev=$1 want=$2 limit=${3:-120} i st
	for ((i = 0; i < limit * 10; i++)); do
		status_words "$dev"
		[ "${st[4]:-}" = "$want" ] && return 0
		sleep 0.1
	done
	fail "$dev: health '$(health_of "$dev")' after ${limit}s, expected '$want' (status: $(status_of "$dev"))"
}

# stat_of <dev> <name>: a counter from the `stats` message.
stat_of() {
	local out w
	if [ -n "${PYSERVE_PID:-}" ]; then
		py_call dmctl.py message "$1" stats || fail "$py_out"
		out=$py_out
	else
		out=$(command dmsetup message "$1" 0 stats)
	fi
	for w in $out; do
		[[ "$w" != "$2="* ]] || echo "${w#*=}"
	done
}

# wait_no_late <dev>: until no late I/O (timed out, not completed by its
# device yet) is left, in any table of the device.
wait_no_late() {
	for _ in $(seq 150); do
		[ "$(stat_of "$1" late_ios)" = 0 ] && return 0
		sleep 0.2
	done
	fail "$1: late I/Os left: $(stat_of "$1" late_ios)"
}

# count_words "<a b c>": number of words.
count_words() {
	wc -w <<<"$1" | tr -d ' '
}

# create <name> <table line>
create() {
	dmsetup create "$1" --table "$2"
	[ -b "/dev/mapper/$1" ] || fail "/dev/mapper/$1 missing after create"
}

# The status words of a device, into the array `st` (start, length, target
# type, then the target's own words). Parsed in the shell: every process
# started costs in the debug guest (a dmsetup about half a second), and these
# are polled; with py_start, an ioctl from the running pyserve.py instead.
status_words() {
	local out
	if [ -n "${PYSERVE_PID:-}" ]; then
		py_call dmctl.py status "$1" || py_out=
		out=$py_out
	else
		out=$(command dmsetup status "$1") || out=
	fi
	read -r -a st <<<"$out"
}

status_of() {
	local st
	status_words "$1"
	echo "${st[*]:3}"
}

# The health field of the status line: one character per leg.
health_of() {
	local st
	status_words "$1"
	echo "${st[4]:-}"
}

# Field <n> (1-based) of the target's own status words.
status_field() {
	local st
	status_words "$1"
	echo "${st[$2 + 2]:-}"
}

# The recovery field of the status line (after the legs' in-sync counts
# and the intent count).
recovery_of() {
	local st
	status_words "$1"
	[ "${#st[@]}" -lt 4 ] || echo "${st[${st[3]} + 7]:-}"
}

# The verify field of the status line (the last).
verify_of() {
	local st
	status_words "$1"
	[ "${#st[@]}" -lt 4 ] || echo "${st[${st[3]} + 9]:-}"
}

table_of() {
	dmsetup table "$1" | cut -d' ' -f4-
}

# Reading a leg directly goes through that leg's own page cache, which
# writes through the dm device do not update: drop it before every look.
# fresh: see fresh.sh.
. "$(dirname "${BASH_SOURCE[0]}")/fresh.sh"

# legs_identical <len-sectors> <primary> <secondary>... : cmp every leg
# against the primary over the target's length.
legs_identical() {
	local len=$1 primary=$2
	shift 2
	local bytes=$((len * 512)) leg
	if [ -n "${PYSERVE_PID:-}" ]; then
		# The same comparison in the coproc, with O_DIRECT reads (nothing
		# to drop), each device read once.
		sync
		py_call legscmp.py "$bytes" "$primary" "$@" ||
			fail "legs differ from primary $primary: $py_out"
	else
		fresh
		for leg in "$@"; do
			cmp -n "$bytes" "$primary" "$leg" || fail "leg $leg differs from primary $primary"
		done
	fi
	echo "legs identical over $len sectors: $primary $*"
}

# expect_create_fail <dmesg-substring> <table line>: the create must fail,
# leave no device, and log the reason as "device-mapper: fracture: ...".
expect_create_fail() {
	local want=$1 table=$2 out
	dmesg -C
	if dmsetup create badtable --table "$table" 2>/dev/null; then
		dmsetup remove badtable || true
		fail "create succeeded with: $table"
	fi
	dmsetup info badtable >/dev/null 2>&1 && dmsetup remove badtable && fail "device left behind"
	out=$(dmesg)
	grep -qF "device-mapper: fracture: $want" <<<"$out" ||
		fail "no 'device-mapper: fracture: $want' in dmesg for '$table'; dmesg: $out"
	echo "refused as expected: $table -> $(grep -F "device-mapper: fracture: $want" <<<"$out" | head -n1)"
}

# A null_blk device with a volatile write cache (so flush and FUA mean
# something): nullb_create <name> <size MiB> [<attribute>=<value>...]
# (more configfs attributes, set before power-on); prints the /dev path.
nullb_create() {
	local d=/sys/kernel/config/nullb/$1 kv
	mkdir "$d"
	echo 1 >"$d/memory_backed"
	echo "$2" >"$d/size"
	echo 4 >"$d/cache_size"
	echo 1 >"$d/discard"
	for kv in "${@:3}"; do
		echo "${kv#*=}" >"$d/${kv%%=*}"
	done
	echo 1 >"$d/power"
	echo "/dev/$1"
}

# Random data file of <MiB> MiB.
random_file() {
	local f
	f=$(mktemp /tmp/data.XXXXXX)
	head -c "$(($1 * 1024 * 1024))" /dev/urandom >"$f"
	echo "$f"
}

# fio write-and-verify against a device: fio_verify <dev> <size> [extra]...
fio_verify() {
	local dev=$1 size=$2
	shift 2
	fio --name=verify --filename="$dev" --size="$size" --direct=1 \
		--ioengine=libaio --iodepth=16 --rw=randwrite --bsrange=4k-64k \
		--verify=crc32c --verify_fatal=1 --do_verify=1 --randrepeat=0 \
		--output-format=terse --minimal "$@" >/tmp/fio.out ||
		{ cat /tmp/fio.out; fail "fio verify on $dev"; }
	echo "fio verify ok on $dev ($size)"
}

# The kernel name (dm-N) of a dm device, for /sys/block.
dm_sysname() {
	echo "dm-$(dmsetup info -c --noheadings -o minor "$1" | tr -d ' ')"
}

# Zero RAM disks (discard frees brd's pages, which then read as zeroes).
wipe() {
	local d
	for d in "$@"; do
		blkdiscard "$d" 2>/dev/null || dd if=/dev/zero of="$d" bs=1M status=none
	done
}

# A dm-linear device over a whole RAM disk, so that a test can swap in the
# error target under it (the way LVM's tests inject faults).
# linear_over <name> <ram-dev>
linear_over() {
	dmsetup create "$1" --table "0 $(sectors "$2") linear $2 0"
}

# break_dev <name>: make every I/O to a linear_over device fail.
break_dev() {
	local len
	len=$(sectors "/dev/mapper/$1")
	dmsetup suspend "$1"
	dmsetup load "$1" --table "0 $len error"
	dmsetup resume "$1"
}

# repair_dev <name> <ram-dev>: back to the RAM disk.
repair_dev() {
	dmsetup suspend "$1"
	dmsetup load "$1" --table "0 $(sectors "$2") linear $2 0"
	dmsetup resume "$1"
}

# py_run <helper.py> <args>...: runs a Python helper, in the case's
# pyserve.py coproc if it started one (py_start), else in a new Python.
py_run() {
	if [ -n "${PYSERVE_PID:-}" ]; then
		local rc=0
		py_call "$@" || rc=$?
		[ -z "$py_out" ] || echo "$py_out"
		return "$rc"
	fi
	"$PYTHON" "$FRACTURE_VM/$1" "${@:2}"
}

# Regions set in a leg's fracture bitmap on disk: logged_regions <meta> <leg>
logged_regions() {
	py_run bitmap.py "$1" "$2"
}

# Regions where two devices differ: diff_regions <a> <b> <sectors> <region>
diff_regions() {
	py_run diffregions.py "$@"
}

# Event number of a dm device (moves on every dm event).
event_nr() {
	if [ -n "${PYSERVE_PID:-}" ]; then
		py_call dmctl.py events "$1" || fail "$py_out"
		echo "$py_out"
	else
		dmsetup info -c --noheadings -o events "$1" | tr -d ' '
	fi
}

# is_subset "<a b c>" "<a b c d>": every word of the first in the second.
is_subset() {
	local w
	for w in $1; do
		[[ " $2 " == *" $w "* ]] || return 1
	done
}

# py_start: starts tests/vm/pyserve.py as a coproc, for a case that calls
# the Python helpers many times (a Python start costs seconds here). The
# status helpers (status_words and those over it, stat_of, event_nr) then go
# through its dmctl.py too. Once per case; not from a background job that
# runs beside the case's own calls (one request at a time on the pipe).
py_start() {
	[ -z "${PYSERVE_PID:-}" ] || return 0
	coproc PYSERVE { exec "$PYTHON" "$FRACTURE_VM/pyserve.py"; }
}

# py_call <helper.py> <args>...: runs a helper in the coproc (see
# pyserve.py); its output goes into $py_out, its exit status is returned.
py_out=
py_call() {
	local line
	py_out=
	echo "$*" >&"${PYSERVE[1]}"
	while IFS= read -r line <&"${PYSERVE[0]}"; do
		if [[ "$line" == "rc "* ]]; then
			return "${line#rc }"
		fi
		py_out+=${py_out:+$'\n'}$line
	done
	fail "pyserve.py died (request: $*)"
}
