#!/usr/bin/env bash
# Runs inside the test guest (see run.sh): installs the module so that
# `dmsetup create` loads it on demand, runs every case in tests/vm/cases/ in
# order (those matching $2, those listed in file $3), and writes results
# into the shared directory $1.
set -u
results=$1
pattern=${2:-}
# Optional: a file naming the cases to run (one per line, in that order),
# and a directory shared with run.sh's other guests: a case runs here only
# if this guest's mkdir of its name there succeeds (the first guest to get
# to a case takes it).
only=${3:-}
claims=${4:-}
top=$(cd "$(dirname "$0")/../.." && pwd)
# Run from a guest-local copy of the tests: the host tree is a 9p mount,
# and reading a script that changes on the host under bash goes badly.
vm=/tmp/fracture-vm-tests
rm -rf "$vm"
cp -r "$top/tests/vm" "$vm"
export FRACTURE_TOP=$top FRACTURE_VM=$vm FRACTURE_RESULTS=$results
cd /tmp || exit 1

# Install the module where modprobe finds it, so that the "dm-fracture"
# alias autoloads it. virtme-ng links /lib/modules/<release> to the
# read-only kernel tree, so put a writable copy over it first.
release=$(uname -r)
mods=/tmp/fracture-modules/$release
mkdir -p "$mods/extra"
# Only the index files: "build" and "source" point at whole kernel trees.
cp -L "/lib/modules/$release"/modules.* "$mods/" 2>/dev/null
mount --bind "$mods" "/lib/modules/$release" || { echo "cannot bind $mods" >&2; exit 1; }
cp "$top/dm_fracture.ko" "/lib/modules/$release/extra/"
depmod -a || { echo "depmod failed" >&2; exit 1; }

mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null
mount -t configfs none /sys/kernel/config 2>/dev/null
# udev is not running in the guest: dmsetup must create its nodes itself.
export DM_DISABLE_UDEV=1
# fracturectl, built on the host by run.sh.
export PATH="$top/target/debug:$PATH"
command -v fracturectl >/dev/null || { echo "fracturectl not built" >&2; exit 1; }

passed=0 failed=0
: >"$results/cases.log"
if [ -n "$only" ]; then
	order=$(sed "s|^|$vm/cases/|; s|\$|.sh|" "$only")
else
	order=$(ls "$vm"/cases/*.sh)
fi
for case in $order; do
	name=$(basename "$case" .sh)
	[ -f "$case" ] || continue
	[ -z "$pattern" ] || [[ "$name" == *$pattern* ]] || continue
	[ -z "$claims" ] || mkdir "$claims/$name" 2>/dev/null || continue
	log="$results/$name.log"
	dmesg -C
	t0=$(date +%s)
	# A case may ask for more than 10 minutes with a "# vm-timeout: <s>" line.
	limit=$(sed -n 's/^# vm-timeout: \([0-9]*\)$/\1/p' "$case")
	export FRACTURE_METACHECK=/tmp/fracture-metacheck
	rm -f "$FRACTURE_METACHECK" "$FRACTURE_METACHECK.skip"
	timeout -k 5 "${limit:-600}" bash "$case" >"$log" 2>&1
	rc=$?
	# Teardown: remove the mirrors the case left, checking their metadata;
	# then every metadata check of the case must have passed.
	timeout -k 5 120 bash "$vm/teardown.sh" >>"$log" 2>&1
	if [ -s "$FRACTURE_METACHECK" ]; then
		echo "metadata checks: $(grep -c '^ok' "$FRACTURE_METACHECK") clean, $(grep -c '^skip' "$FRACTURE_METACHECK") skipped (broken on purpose), $(grep -c '^FAIL' "$FRACTURE_METACHECK") failed" >>"$log"
		if grep '^FAIL' "$FRACTURE_METACHECK" >>"$log" && [ "$rc" = 0 ]; then
			echo "fracturectl check failed after the case" >>"$log"
			rc=98
		fi
	fi
	secs=$(( $(date +%s) - t0 ))
	dmesg >"$results/$name.dmesg"
	cat "$results/$name.dmesg" >>"$results/dmesg.txt"
	# A splat fails the case that caused it, not only the run.
	if [ "$rc" = 0 ] && grep -qE -f "$vm/splat-patterns" "$results/$name.dmesg"; then
		echo "kernel splat during the case" >>"$log"
		rc=99
	fi
	# Leave nothing behind for the next case.
	bash "$vm/cleanup.sh" >>"$log" 2>&1
	if [ "$rc" = 0 ]; then
		passed=$((passed + 1))
		echo "ok   $name (${secs}s)" | tee -a "$results/cases.log"
	else
		failed=$((failed + 1))
		echo "FAIL $name (${secs}s, exit $rc)" | tee -a "$results/cases.log"
		sed 's/^/    | /' "$log" | tail -n 30 | tee -a "$results/cases.log"
	fi
done
dmesg >>"$results/dmesg.txt"
echo "$passed $failed" >"$results/summary"
echo "$passed passed, $failed failed"
