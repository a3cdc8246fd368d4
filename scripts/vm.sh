# shellcheck shell=bash
# Sourced by every script that boots a virtme-ng guest.
#
# VM_ROOT_APPEND, for vng's --append: virtme-ng mounts the host's root over
# 9p with no cache (virtiofs needs the Rust virtiofsd, which Debian 12 does
# not ship), so every exec in the guest reads its binary and libraries
# through 9p again: /bin/true took 460 ms, a fio start 6-26 s in the debug
# guest. The kernel takes the last rootflags= given; cache=loose lets the
# guest keep what it read in its page cache (/bin/true 240 ms, python3 3 s
# instead of 8). The host tree must not change while a guest runs (the
# guest would not see it): the scripts copy what they need before booting.
VM_ROOT_APPEND="rootflags=version=9p2000.L,trans=virtio,access=any,msize=524288,cache=loose"

# vm_timeout <seconds> <command...>: runs a guest's command (vng) for at
# most <seconds>. `timeout --foreground` alone signals only vng, which left
# its qemu running after a timeout (busy for the rest of the run); so the
# guest runs in a session of its own, and whatever of it is left when the
# command returns, or when this shell is told to stop, is killed. Returns
# the command's (or timeout's) status. Needs a shell without job control
# (a script), where setsid does not fork, so that $! is the session's id.
vm_timeout() {
	local secs=$1 rc=0
	shift
	setsid timeout --foreground -k 10 "$secs" "$@" &
	VM_SID=$!
	trap 'pkill -KILL -s "$VM_SID" 2>/dev/null; exit 143' TERM HUP
	trap 'pkill -KILL -s "$VM_SID" 2>/dev/null; exit 130' INT
	wait "$VM_SID" || rc=$?
	trap - TERM HUP INT
	# Nothing left is the usual case (pkill then fails; `set -e` callers).
	pkill -KILL -s "$VM_SID" 2>/dev/null || true
	return "$rc"
}
