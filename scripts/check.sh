#!/usr/bin/env bash
# Every test dm-fracture has, from a bare Debian 12 machine: installs what is
# missing, builds (or reuses) the cached debug kernel, then runs
#   1. host tests of the shared crate and fracturectl (cargo test), clippy,
#      fuzzing of the shared crate (scripts/fuzz.sh),
#   2. the module build with no warnings, also under clippy (CLIPPY=1),
#   3. the source lint (no raw FFI outside rust/dm/, SAFETY comments),
#   4. the VM suite on the debug kernel (tests/vm/run.sh).
# The last line is "N passed, N failed" over all of them.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

# Each step says when it started (seconds since the check began), and the
# summary how long the whole check took: the CI budget is read from these.
check_start=$(date +%s)
step() { printf '\n=== %s (at %ds)\n' "$*" "$(($(date +%s) - check_start))"; }
die() { echo "check: $*" >&2; echo "0 passed, 1 failed"; exit 1; }

# Every result of this run in one folder (scripts/report.sh reads it).
export FRACTURE_RESULTS=${FRACTURE_RESULTS:-$top/tests/results/check-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$FRACTURE_RESULTS"

step "setup"
scripts/setup.sh || die "setup failed"
export PATH="$HOME/.cargo/bin:$PATH"

step "debug kernel"
KDIR=$(scripts/kernel.sh build debug) || die "kernel build failed"
export KDIR

host_passed=0 host_failed=0
step "host tests: cargo test"
if cargo test --workspace --locked 2>&1 | tee /tmp/fracture-cargo-test.log; then
	host_passed=$(awk '/^test result:/ { n += $4 } END { print n + 0 }' /tmp/fracture-cargo-test.log)
else
	host_failed=1
fi
step "host: clippy of the shared crate and fracturectl (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings || host_failed=$((host_failed + 1))

fuzz_failed=0
# A time budget per target (FUZZ_SECONDS, default 20 s; the corpora kept
# under the cache grow from run to run); FUZZ_EXECS=N for a fixed count.
if [ -n "${FUZZ_EXECS:-}" ]; then
	step "host: fuzzing of the shared crate (scripts/fuzz.sh, $FUZZ_EXECS executions per target)"
	scripts/fuzz.sh "$FUZZ_EXECS" 2>&1 | tee /tmp/fracture-fuzz.log
else
	step "host: fuzzing of the shared crate (scripts/fuzz.sh, ${FUZZ_SECONDS:-20} s per target)"
	FUZZ_SECONDS=${FUZZ_SECONDS:-20} scripts/fuzz.sh 2>&1 | tee /tmp/fracture-fuzz.log
fi
[ "${PIPESTATUS[0]}" = 0 ] || fuzz_failed=1

build_failed=0
step "module build (no warnings allowed), then clippy"
make -s clean >/dev/null 2>&1
if ! make KDIR="$KDIR" 2>&1 | tee /tmp/fracture-build.log; then
	build_failed=1
elif grep -Ei '(^|[^-])warning|error' /tmp/fracture-build.log; then
	echo "check: the module build printed warnings"
	build_failed=1
fi
touch rust/fracture.rs
if ! make KDIR="$KDIR" CLIPPY=1 2>&1 | tee /tmp/fracture-clippy.log; then
	build_failed=1
elif grep -Ei '(^|[^-])warning|error' /tmp/fracture-clippy.log; then
	echo "check: clippy printed warnings"
	build_failed=1
fi

step "source lint"
lint_failed=0
scripts/lint.sh || lint_failed=1

vm_passed=0 vm_failed=0
if [ "$build_failed" = 0 ]; then
	step "VM suite (debug kernel, TCG)"
	tests/vm/run.sh | tee /tmp/fracture-vm.log
	read -r vm_passed _ vm_failed _ < <(tail -n1 /tmp/fracture-vm.log)
	[ "${PIPESTATUS[0]}" = 0 ] || [ "$vm_failed" != 0 ] || vm_failed=1
else
	echo "check: module build failed; VM suite not run"
	vm_failed=1
fi

echo "host_tests $host_passed" >>"$FRACTURE_RESULTS/figures"
passed=$((host_passed + vm_passed))
failed=$((host_failed + fuzz_failed + build_failed + lint_failed + vm_failed))
step "summary"
echo "host tests: $host_passed passed, $host_failed failed"
echo "fuzz: $(tail -n1 /tmp/fracture-fuzz.log)"
echo "build: $([ $build_failed = 0 ] && echo clean || echo FAILED)"
echo "lint: $([ $lint_failed = 0 ] && echo clean || echo FAILED)"
echo "VM cases: $vm_passed passed, $vm_failed failed"
echo "time: $(($(date +%s) - check_start)) s"
echo "figures: scripts/report.sh $FRACTURE_RESULTS"
scripts/report.sh "$FRACTURE_RESULTS" || true
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
