#!/usr/bin/env bash
# The failure matrix (Documentation/reliability.rst, "Failure matrix"):
# one device role (primary leg, secondary leg, metadata) under every fault
# (dm error, dm-flakey error_writes and drop_writes, dm-dust bad blocks,
# dm-delay of 3 s, the device removed, an NBD link cut) in every phase
# (idle, under a write load, during recovery, injected while suspended).
# Sourced by cases 30-32, one per role: `matrix_role <primary|secondary|metadata>`.
#
# One two-leg mirror per role serves every cell (a new one per cell costs
# too much under TCG): it starts each cell healthy and in sync, as the
# previous one left it. Its legs and metadata are dm-linear "slots" (mxp,
# mxs, mxm) over null_blk disks with a volatile write cache, or over an
# NBD device for the link cut. A cell injects the fault by reloading the
# slot of the role (or powering its null_blk off, or stopping the NBD
# proxy), makes one 32 KiB write to a region nothing else writes (region
# 110) and checks what reliability.rst says for that cell: the write's
# result, the health and primary fields, the metadata field, the regions
# logged, the dm event, the acknowledged writes on every leg shown in
# sync. Then it repairs the device and takes the documented way back, and
# checks that the legs are identical and every acknowledged write is on
# both. The mirror's metadata gets `fracturectl check` at its removal.

# Legs of 4 MiB, 32 KiB regions: 128 regions.
MX_LEN=8192
MX_REGION=64
# The write of every cell, and the region a dust bad block goes into
# (outside the load's range: the load writes the first 3 MiB, regions
# 0-95).
MX_W=110
MX_BAD=100
MX_LOAD_LEN=6144
MX_TABLE="0 $MX_LEN fracture /dev/mapper/mxm $MX_REGION 2 /dev/mapper/mxp /dev/mapper/mxs 5 nosync io_timeout 2000 intent_delay 1000"
MX_NBD_SERVED=/dev/ram8
MX_NBD_PORT=10811
MX_PROXY_PORT=10812

# Device-mapper control through dmctl.py in the pyserve process: a dmsetup
# start costs about half a second here, and a cell makes dozens of calls.
# lib.sh's status helpers (wait_health, status_field, stat_of, event_nr...)
# go through it too once py_start has run. Devices are created and removed
# with dmsetup.
dmc() {
	py_call dmctl.py "$@" || fail "$py_out"
	[ -z "$py_out" ] || echo "$py_out"
}

mx_slot_of() {
	case $1 in
		primary) echo mxp ;;
		secondary) echo mxs ;;
		metadata) echo mxm ;;
	esac
}

mx_base_of() {
	case $1 in
		mxp) echo /dev/np ;;
		mxs) echo /dev/ns ;;
		mxm) echo /dev/nm ;;
	esac
}

# mx_swap <slot> <table>: a slot's table, swapped (dm-delay releases what
# it holds on the suspend).
mx_swap() {
	local t
	read -r -a t <<<"$2"
	case ${t[2]} in
		error | flakey | dust | delay) figure faults 1 ;;
	esac
	dmc load "$1" "${t[@]}"
	dmc resume "$1"
}

# mx_drop <slot>: the slot lets go of a dead device (an error table for a
# moment: not counted as a fault injected).
mx_drop() {
	dmc load "$1" 0 $MX_LEN error
	dmc resume "$1"
}

# NBD: qemu-nbd serves a RAM disk through nbdproxy.py (no delay): stopping
# the proxy cuts the link with the connection open. nbd-client's timeout
# (-t 3) fails the I/O after 3 s (the primary and the metadata are not
# timed by the target: without it their I/O would wait for the link).
# qemu-nbd serves one client at a time by default: the dead connection's
# server side may still be open through the proxy when nbd-client
# reconnects, and the new handshake then waits for it (a CI run failed a
# cell with "nbd0 did not connect" after 50 tries); -e 4 lets it in.
mx_nbd_start() {
	ip link set lo up
	qemu-nbd -f raw --cache=none -t -e 4 -b 127.0.0.1 -p $MX_NBD_PORT -x leg "$MX_NBD_SERVED" &
	MX_SERVER=$!
	"$PYTHON" "$FRACTURE_VM/nbdproxy.py" $MX_PROXY_PORT $MX_NBD_PORT 0 >/tmp/mxproxy.out 2>&1 &
	MX_PROXY=$!
	for _ in $(seq 150); do
		grep -q ready /tmp/mxproxy.out && return 0
		sleep 0.2
	done
	fail "the proxy did not start: $(cat /tmp/mxproxy.out)"
}

mx_nbd_connect() {
	for _ in $(seq 50); do
		# (The handshake blocks if qemu-nbd is not listening yet.)
		timeout 10 nbd-client -N leg 127.0.0.1 $MX_PROXY_PORT /dev/nbd0 -b 4096 -t 3 >/dev/null 2>&1 && break
		sleep 0.2
	done
	[ "$(sectors /dev/nbd0)" -ge $MX_LEN ] || fail "nbd0 did not connect"
}

mx_nbd_stop() {
	[ -n "${MX_PROXY:-}" ] || return 0
	kill -CONT "$MX_PROXY" 2>/dev/null
	nbd-client -d /dev/nbd0 >/dev/null 2>&1
	kill "$MX_PROXY" "$MX_SERVER" 2>/dev/null
	wait "$MX_PROXY" "$MX_SERVER" 2>/dev/null
	MX_PROXY=
}

# After a failed cell: the link back, and the device stacked on the mirror
# gone (the teardown then removes the mirror and checks its metadata).
mx_cleanup() {
	set +e
	[ -z "${MX_LOAD:-}" ] || py_call kill "$MX_LOAD"
	mx_nbd_stop
	command dmsetup remove --retry mxa >/dev/null 2>&1
	return 0
}

# mx_setup: the slots over fresh (zero) null_blk disks, and the mirror.
mx_setup() {
	local s base
	for s in mxp mxs mxm; do
		base=$(mx_base_of $s)
		nullb_create "${base#/dev/}" 4 >/dev/null
		dmsetup create $s --table "0 $MX_LEN linear $base 0"
	done
	create mx "$MX_TABLE"
	# What the load writes: the first 96 regions.
	dmsetup create mxa --table "0 $MX_LOAD_LEN linear /dev/mapper/mx 0"
	MX_ON_NBD=
}

# mx_to_nbd <slot>: the slot moves onto the NBD device, with its contents
# (the mirror is quiet between cells).
mx_to_nbd() {
	[ "$MX_ON_NBD" != "$1" ] || return 0
	dmc suspend mx
	dd if="/dev/mapper/$1" of=/dev/nbd0 bs=1M count=4 iflag=direct oflag=direct status=none
	mx_swap "$1" "0 $MX_LEN linear /dev/nbd0 0"
	dmc resume mx
	MX_ON_NBD=$1
}

# mx_inject <slot> <fault>
mx_inject() {
	local slot=$1 base
	base=$(mx_base_of "$slot")
	case $2 in
		error) mx_swap "$slot" "0 $MX_LEN error" ;;
		error_writes | drop_writes) mx_swap "$slot" "0 $MX_LEN flakey $base 0 0 1 1 $2" ;;
		dust)
			mx_swap "$slot" "0 $MX_LEN dust $base 0 4096"
			dmc message "$slot" addbadblock "$MX_DUST_BLOCK"
			dmc message "$slot" enable
			;;
		delay) mx_swap "$slot" "0 $MX_LEN delay $base 0 3000" ;;
		removed)
			echo 0 >"/sys/kernel/config/nullb/${base#/dev/}/power"
			figure faults 1
			;;
		nbd)
			kill -STOP "$MX_PROXY"
			figure faults 1
			;;
	esac
}

# mx_restore <slot> <fault>: the device works again, under the same slot.
mx_restore() {
	local slot=$1 base
	base=$(mx_base_of "$slot")
	[ "$MX_ON_NBD" != "$slot" ] || base=/dev/nbd0
	case $2 in
		removed)
			# Power back (the data is kept; what was in the volatile
			# cache is lost, as in a power cut). The slot drops the dead
			# disk first: dm would reuse its open handle.
			echo 1 >"/sys/kernel/config/nullb/${base#/dev/}/power"
			mx_drop "$slot"
			;;
		nbd)
			# The link is back; nbd-client reconnects once nothing
			# holds the dead connection's device open.
			mx_drop "$slot"
			kill -CONT "$MX_PROXY"
			nbd-client -d /dev/nbd0 >/dev/null 2>&1
			mx_nbd_connect
			base=/dev/nbd0
			;;
	esac
	mx_swap "$slot" "0 $MX_LEN linear $base 0"
}

# The write of the cell: 32 KiB of $MX_PAT at region $MX_W; its exit
# status in $w_rc, its time in $w_ms.
mx_write() {
	local t0
	t0=$(date +%s%N)
	w_rc=0
	dd if="$MX_PAT" of=/dev/mapper/mx bs=32k seek=$MX_W count=1 oflag=direct status=none 2>/dev/null || w_rc=$?
	w_ms=$((($(date +%s%N) - t0) / 1000000))
}

# mx_wait_field <n> <regex> <seconds>: until status field n matches.
mx_wait_field() {
	local i
	for ((i = 0; i < $3 * 10; i++)); do
		[[ "$(status_field mx "$1")" =~ $2 ]] && return 0
		sleep 0.1
	done
	fail "status field $1 '$(status_field mx "$1")' does not match /$2/ after $3 s (status: $(status_of mx))"
}

# mx_verify <leg>: runs a verify of the leg to its end; the result field
# into $v.
mx_verify() {
	mx_wait_field 6 '^0$' 30   # no intent bit: no write in flight
	dmc message mx verify "$1"
	mx_wait_field 9 '^(verified|cancelled)' 120
	v=$(verify_of mx)
}

# mx_acked <dev> [expect-fail]: the load's acknowledged writes are on the
# device (or, for a blind-spot leg, some are not).
mx_acked() {
	[ "$MX_PHASE" = load ] || return 0
	[ -s /tmp/mx.acks ] || fail "the load had no write acknowledged"
	local rc=0
	py_call ackload.py check "$1" /tmp/mx.acks || rc=$?
	if [ "${2:-}" = expect-fail ]; then
		[[ "$rc" != 0 && "$py_out" =~ mismatches\ [1-9] ]] ||
			fail "$1 has every acknowledged write, expected some lost (blind spot): $py_out"
		echo "$1: acknowledged writes missing, as expected: $py_out" | head -n 3
	else
		[ "$rc" = 0 ] || fail "acknowledged writes lost on $1: $py_out"
		echo "$1: $py_out"
		figure acked_checked "$(awk '/^checked/ { print $2 }' <<<"$py_out")"
	fi
}

# mx_heal: the documented way back once the device works: rejoin what is
# shown F, clear a D primary with `rejoin`, recovery at full speed, then
# the primary back to leg 0.
mx_heal() {
	local i st l
	wait_no_late mx
	dmc message mx recovery_rate 0
	for ((i = 0; i < 600; i++)); do
		status_words mx
		[ "${st[4]}" = AA ] && break
		# (A message may race with a state change: the loop looks again.)
		[ "${st[4]:${st[5]}:1}" != D ] || py_call dmctl.py message mx rejoin "${st[5]}" || true
		[ "${st[4]:0:1}" != F ] || py_call dmctl.py message mx rejoin 0 || true
		[ "${st[4]:1:1}" != F ] || py_call dmctl.py message mx rejoin 1 || true
		if [[ "${st[9]}" == stalled:* ]]; then
			for l in $(cut -d: -f2 <<<"${st[9]}" | tr , ' '); do
				py_call dmctl.py message mx rejoin "$l" || true
			done
		fi
		sleep 0.2
	done
	wait_health mx AA 60
	[ "${st[5]}" = 0 ] || dmc message mx primary 0
	assert_eq 0 "$(status_field mx 3)" "primary after the repair"
}

# mx_reload: the same table again (re-reads the metadata).
mx_reload() {
	dmc suspend mx
	dmc load mx $MX_TABLE
	dmc resume mx
}

# A checksum of the metadata blocks on disk (superblock, bitmaps).
mx_meta_sum() {
	dd if=/dev/mapper/mxm bs=4k count=4 iflag=direct status=none | md5sum
}

# Regions set in leg <n>'s fracture bitmap on disk (O_DIRECT).
mx_logged() {
	py_call bitmap.py /dev/mapper/mxm "$1" || fail "$py_out"
	echo "$py_out"
}

# The legs compared (O_DIRECT, one pass).
mx_identical() {
	py_call legscmp.py $((MX_LEN * 512)) /dev/mapper/mxp /dev/mapper/mxs || fail "the legs differ: $py_out"
	echo "legs identical"
}

# The kernel log since the cell began (not cleared: the case's splat check
# reads the whole log at its end).
mx_dmesg() {
	dmesg | sed -n "/matrix: cell $MX_CELL_NO begins/,\$p"
}

# mx_t <what>: the time since the cell began, in the log.
mx_t() {
	local now=${EPOCHREALTIME/[.,]/}
	echo "  [$(((now - MX_T0) / 1000)) ms] $*"
}

# mx_cell <role> <fault> <phase>
mx_cell() {
	local role=$1 fault=$2 phase=$3 slot ev0 ev1 h p meta logged load= st
	slot=$(mx_slot_of "$role")
	step "$role / $fault / $phase"
	MX_CELL_NO=$((MX_CELL_NO + 1)) MX_PHASE=$phase
	echo "matrix: cell $MX_CELL_NO begins: $role / $fault / $phase" >/dev/kmsg
	MX_T0=${EPOCHREALTIME/[.,]/}
	[ "$fault" != nbd ] || mx_to_nbd "$slot"
	rm -f /tmp/mx.acks
	# New data every cell: a write dropped must leave a difference.
	head -c 32768 /dev/urandom >"$MX_PAT"
	# The dust bad block: in region 100 (nothing writes it), for the
	# metadata in leg 0's fracture bitmap (block 1, read at every load,
	# written only if leg 0 gets a bit), for the primary during recovery
	# in region 30 (one of those to copy).
	MX_DUST_BLOCK=$((MX_BAD * MX_REGION / 8))
	[ "$role" != metadata ] || MX_DUST_BLOCK=1
	[ "$role/$phase" != primary/recovery ] || MX_DUST_BLOCK=$((30 * MX_REGION / 8))

	case $phase in
		idle)
			mx_wait_field 6 '^0$' 30
			;;
		load)
			# Generations grow with the cell: a block an earlier cell
			# wrote never passes for this one's. It runs until killed
			# 3 s after the cell's write (below); 60 s is only a bound
			# (with 5 s it once ended before a slow injection, and a
			# drop_writes cell then saw no write lost).
			py_call ackload.py write /dev/mapper/mxa /tmp/mx.acks "$MX_CELL_NO" 60 "$RANDOM" || fail "ackload: $py_out"
			load=$py_out MX_LOAD=$py_out
			sleep 1
			;;
		recovery)
			dmc message mx fracture 1
			dd if=/dev/urandom of=/dev/mapper/mx bs=32k seek=10 count=32 oflag=direct status=none
			dmc message mx recovery_rate 64
			dmc message mx rejoin 1
			assert_match '^recovering:1:' "$(status_field mx 7)" "recovery before the fault"
			;;
		suspend)
			dd if=/dev/urandom of=/dev/mapper/mx bs=32k seek=2 count=1 oflag=direct status=none
			dmc suspend mx
			;;
	esac
	mx_t "$phase phase"
	ev0=$(event_nr mx)
	MX_TIMEOUTS0=$(stat_of mx io_timeouts)
	mx_inject "$slot" "$fault"
	if [ "$role/$fault" = metadata/drop_writes ]; then
		MX_META_SUM=$(mx_meta_sum) MX_META_WRITES=$(stat_of mx metadata_writes)
	fi
	mx_t injected
	[ "$phase" != suspend ] || dmc resume mx
	mx_write
	if [ -n "$load" ]; then
		sleep 3
		py_call kill "$load"
		MX_LOAD=
	fi
	# Give a recovery time to meet the fault (or to stop on it).
	if [ "$phase" = recovery ]; then
		case $role/$fault in
			secondary/drop_writes | secondary/dust | primary/drop_writes | metadata/drop_writes | metadata/dust)
				dmc message mx recovery_rate 0
				wait_health mx AA 60
				;;
			primary/dust)
				dmc message mx recovery_rate 0
				mx_wait_field 7 '^stalled:1:' 60
				;;
		esac
	fi
	status_words mx
	h=${st[4]} p=${st[5]} meta=${st[10]}
	ev1=$(event_nr mx)
	echo "after the fault: write rc $w_rc in $w_ms ms; status ${st[*]:3}; events $ev0 -> $ev1"

	mx_expect_"$role" "$fault" "$phase"
	mx_t checked

	# Back to a working device, the documented way.
	case $role/$fault in
		secondary/drop_writes | secondary/dust)
			# The leg looks in sync: only verify finds what it lost (or
			# cannot read: before the repair), and splits it.
			[ "$fault" = dust ] || mx_restore "$slot" "$fault"
			mx_verify 1
			[ "$fault" != dust ] || mx_restore "$slot" "$fault"
			assert_match '^verified:1:128/128:[1-9][0-9]*:0$' "$v" "verify of the leg that $fault"
			assert_eq AF "$(health_of mx)" "health after the verify"
			logged=$(mx_logged 1)
			if [ "$fault" = dust ]; then
				is_subset $MX_BAD "$logged" || fail "the unreadable region is not logged: $logged"
			else
				is_subset $MX_W "$logged" || fail "the dropped write's region is not logged: $logged"
			fi
			;;
		primary/drop_writes)
			mx_restore "$slot" "$fault"
			# The blind spot: the primary lost the write, the secondary
			# has it. The way out: make the secondary the primary, then
			# verify the old one against it.
			[ "$(diff_regions /dev/mapper/mxp /dev/mapper/mxs $MX_LEN $MX_REGION)" != "" ] ||
				fail "the legs do not differ: the primary did not drop the write"
			# `verify check` sees the difference and changes nothing
			# (a plain verify would split the good secondary).
			mx_wait_field 6 '^0$' 30
			dmc message mx verify check 1
			mx_wait_field 9 '^(checked|cancelled)' 120
			assert_match '^checked:1:128/128:[1-9][0-9]*:0$' "$(verify_of mx)" "verify check"
			assert_eq AA "$(health_of mx)" "health after the check"
			dmc message mx primary 1
			mx_verify 0
			assert_match '^verified:0:128/128:[1-9][0-9]*:0$' "$v" "verify of the old primary"
			assert_eq FA "$(health_of mx)" "health after the verify"
			;;
		metadata/dust)
			# Read only when a table is loaded: a new table is refused
			# (the running one goes on) until the block reads again.
			if py_call dmctl.py load mx $MX_TABLE; then
				fail "a table loaded over an unreadable metadata block"
			fi
			mx_dmesg | grep -q "device-mapper: fracture: cannot read metadata block $MX_DUST_BLOCK of" ||
				fail "no reason for the refused table in dmesg: $(mx_dmesg | tail -n 5)"
			dd if=/dev/urandom of=/dev/mapper/mx bs=32k seek=$((MX_W + 1)) count=1 oflag=direct status=none ||
				fail "the running table stopped after the refused load"
			mx_restore "$slot" "$fault"
			mx_reload
			;;
		metadata/*)
			mx_restore "$slot" "$fault"
			# A failed metadata device is used again only by a new table.
			mx_reload
			assert_eq rw "$(status_field mx 8)" "metadata after the reload"
			;;
		*) mx_restore "$slot" "$fault" ;;
	esac
	mx_t restored
	mx_heal
	mx_t healed
	if [ "$w_rc" = 0 ]; then
		cmp "$MX_PAT" <(dd if=/dev/mapper/mx bs=32k skip=$MX_W count=1 iflag=direct status=none) ||
			fail "the acknowledged write is not on the mirror"
	fi
	mx_acked /dev/mapper/mxp
	mx_acked /dev/mapper/mxs
	mx_identical
	mx_t compared
	figure matrix_cells 1
}

# Checks right after the fault, shared by the roles: $h $p $meta $w_rc
# $w_ms $ev0 $ev1 are set.
mx_changed() { [ "$ev1" -gt "$ev0" ] || fail "no dm event for the change (event $ev0 -> $ev1)"; }
mx_unchanged() { [ "$ev1" = "$ev0" ] || fail "a dm event with no change (event $ev0 -> $ev1)"; }
mx_ok() { assert_eq 0 "$w_rc" "the write's exit status"; }
mx_eio() { [ "$w_rc" != 0 ] || fail "the write succeeded"; }
mx_slow() { [ "$w_ms" -ge 2500 ] || fail "the write took $w_ms ms, not the delay"; }

mx_expect_secondary() {
	local fault=$1 phase=$2 logged
	assert_eq 0 "$p" "primary"
	assert_eq rw "$meta" "metadata"
	mx_ok
	case $fault in
		error | error_writes | removed | nbd | delay)
			# Fractured (a failed write, flush or copy, or a timeout);
			# the write is on the primary and logged for the leg.
			assert_eq AF "$h" "health"
			mx_changed
			logged=$(mx_logged 1)
			is_subset $MX_W "$logged" || fail "the write's region is not logged for the leg: $logged"
			if [[ "$fault" == @(delay|nbd) ]]; then
				# Fractured by io_timeout (2 s), not by the device
				# failing the I/O (nbd's own timeout is 3 s).
				[ "$(stat_of mx io_timeouts)" -gt "$MX_TIMEOUTS0" ] || fail "no io_timeout counted"
				[ "$w_ms" -ge 1500 ] || fail "the write did not wait for io_timeout ($w_ms ms)"
			fi
			mx_acked /dev/mapper/mxp
			;;
		drop_writes | dust)
			# Silent: reads go to the primary, writes "succeed".
			assert_eq AA "$h" "health"
			[ "$phase" = recovery ] || mx_unchanged
			mx_acked /dev/mapper/mxp
			[ "$fault" != dust ] || mx_acked /dev/mapper/mxs
			;;
	esac
}

mx_expect_primary() {
	local fault=$1 phase=$2 logged r0
	assert_eq rw "$meta" "metadata"
	case $fault/$phase in
		error/recovery | error_writes/recovery | removed/recovery | nbd/recovery)
			# No in-sync leg to take over: D, the write fails (nothing
			# acknowledged that is not on an in-sync leg).
			assert_match '^D[RA]$' "$h" "health"
			assert_eq 0 "$p" "primary"
			mx_eio
			mx_changed
			;;
		error/* | error_writes/* | removed/* | nbd/*)
			# Failover: leg 1 is the primary, leg 0 fractured with the
			# write logged.
			assert_eq FA "$h" "health"
			assert_eq 1 "$p" "primary"
			mx_ok
			mx_changed
			logged=$(mx_logged 0)
			is_subset $MX_W "$logged" || fail "the write's region is not logged for leg 0: $logged"
			mx_acked /dev/mapper/mxs
			;;
		drop_writes/*)
			# The blind spot: nothing notices; the secondary has the
			# data, the primary (which reads are served from) not.
			assert_eq AA "$h" "health"
			assert_eq 0 "$p" "primary"
			mx_ok
			[ "$phase" = recovery ] || mx_unchanged
			mx_acked /dev/mapper/mxs
			mx_acked /dev/mapper/mxp expect-fail
			;;
		dust/recovery)
			# A copy cannot read the primary: recovery stops, nothing
			# marked in sync.
			assert_eq AR "$h" "health"
			assert_eq 0 "$p" "primary"
			mx_ok
			mx_changed
			;;
		dust/*)
			# A read of the bad block is retried on the secondary.
			assert_eq AA "$h" "health"
			mx_ok
			r0=$(stat_of mx reads_retried)
			dd if=/dev/mapper/mx of=/dev/null bs=4k skip="$MX_DUST_BLOCK" count=1 iflag=direct status=none ||
				fail "a read of the primary's bad block failed (no retry on the secondary)"
			[ "$(stat_of mx reads_retried)" -gt "$r0" ] || fail "the read was not retried: $(dmc message mx stats)"
			assert_eq AA "$(health_of mx)" "health after the retried read"
			ev1=$(event_nr mx)
			mx_unchanged
			mx_acked /dev/mapper/mxp
			mx_acked /dev/mapper/mxs
			;;
		delay/*)
			# The primary is not timed: slow, nothing else.
			if [ "$phase" = recovery ]; then
				assert_eq AR "$h" "health"
			else
				assert_eq AA "$h" "health"
				mx_unchanged
			fi
			assert_eq 0 "$p" "primary"
			mx_ok
			mx_slow
			# (Reading the delayed primary block by block would take
			# minutes: it is checked after the repair.)
			mx_acked /dev/mapper/mxs
			;;
	esac
}

mx_expect_metadata() {
	local fault=$1 phase=$2 leg
	assert_eq 0 "$p" "primary"
	case $fault in
		error | error_writes | removed | nbd)
			# A write that needs a new log bit fails once the bit cannot
			# be made durable; the metadata shows fail.
			mx_eio
			assert_eq fail "$meta" "metadata"
			mx_changed
			[ "$phase" = recovery ] || assert_eq AA "$h" "health"
			mx_dmesg | grep -q 'device-mapper: fracture: metadata device .* failed a write' ||
				fail "no metadata failure in dmesg"
			# Never sent unlogged: the failed write is on no leg.
			for leg in mxp mxs; do
				! cmp -s "$MX_PAT" <(dd if=/dev/mapper/$leg bs=32k skip=$MX_W count=1 iflag=direct status=none) ||
					fail "the write that failed reached $leg"
			done
			mx_acked /dev/mapper/mxp
			mx_acked /dev/mapper/mxs
			;;
		drop_writes | dust | delay)
			# dust: the metadata is read only at a load (below);
			# drop_writes: invisible until the next load (below);
			# delay: slower commits only.
			mx_ok
			assert_eq rw "$meta" "metadata"
			[ "$phase" = recovery ] || { assert_eq AA "$h" "health"; mx_unchanged; }
			[ "$fault" != delay ] || [ "$phase" = recovery ] || mx_slow
			if [ "$fault" = drop_writes ] && [ "$phase" = idle ]; then
				# What is on disk stops changing although the target
				# wrote (the write's intent bit, at least).
				[ "$(mx_meta_sum)" = "$MX_META_SUM" ] || fail "the metadata on disk changed"
				[ "$(stat_of mx metadata_writes)" -gt "$MX_META_WRITES" ] || fail "no metadata write"
			fi
			mx_acked /dev/mapper/mxp
			mx_acked /dev/mapper/mxs
			;;
	esac
}

# matrix_role <role>: every fault in every phase.
matrix_role() {
	local role=$1 fault phase
	py_start
	MX_PAT=/tmp/mx.pattern MX_CELL_NO=0 MX_LOAD=
	trap mx_cleanup EXIT
	mx_setup
	mx_nbd_start
	mx_nbd_connect
	for fault in ${MX_FAULTS:-error error_writes drop_writes dust delay removed nbd}; do
		for phase in ${MX_PHASES:-idle load recovery suspend}; do
			mx_cell "$role" "$fault" "$phase"
		done
	done
	dmsetup remove mxa
	dmsetup remove mx
}
