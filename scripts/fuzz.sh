#!/usr/bin/env bash
# Coverage-guided fuzzing of the shared crate (rust/fracture-core) with
# libFuzzer, on stable Rust and without cargo-fuzz: fuzz/ is built with the
# SanitizerCoverage flags cargo-fuzz passes, plus debug assertions and
# overflow checks (as in the debug kernel), and each target in
# fuzz/fuzz_targets/ runs for EXECS inputs from its seeds (fuzz/seeds/) and
# a working corpus kept outside the repository.
#
#   scripts/fuzz.sh [EXECS] [TARGET...]     (default: 1000000, every target)
#
# Environment:
#   FUZZ_SECONDS   a time budget instead of a count: each target runs for
#                  that many seconds, however many inputs that is (make
#                  check: 20); the executions reached are printed
#   FUZZ_MAX_TIME  cap on each target's run, in seconds (default 240)
#   FUZZ_JOBS      targets run at once (default: the number of CPUs)
#   FUZZ_WORK      corpora, crash inputs and logs
#                  (default ${XDG_CACHE_HOME:-~/.cache}/dm-fracture/fuzz)
#
# Prints "fuzz <target>: N executions, C crashes" per target and last
# "fuzz: T targets, E executions, C crashes"; exits non-zero on any crash.
# A crash input is left in $FUZZ_WORK/artifacts/<target>/: once fixed,
# copy it to fuzz/regressions/<target>/, where `cargo test` replays it.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
export PATH="$HOME/.cargo/bin:$PATH"

execs=${1:-1000000}
[ "$#" -gt 0 ] && shift
case $execs in '' | *[!0-9]*) echo "usage: $0 [EXECS] [TARGET...]" >&2; exit 2 ;; esac
targets=("$@")
if [ "${#targets[@]}" = 0 ]; then
	for f in fuzz/fuzz_targets/*.rs; do targets+=("$(basename "$f" .rs)"); done
fi
for t in "${targets[@]}"; do
	[ -f "fuzz/fuzz_targets/$t.rs" ] || { echo "fuzz: no target $t (fuzz/fuzz_targets/)" >&2; exit 2; }
done
max_time=${FUZZ_MAX_TIME:-240}
budget=${FUZZ_SECONDS:-}
case $budget in *[!0-9]*) echo "fuzz: FUZZ_SECONDS must be a number of seconds" >&2; exit 2 ;; esac
if [ -n "$budget" ]; then
	# libFuzzer: -runs=-1 is no limit; the time is the budget.
	execs=-1 max_time=$budget
fi
jobs=${FUZZ_JOBS:-$(nproc)}
work=${FUZZ_WORK:-${XDG_CACHE_HOME:-$HOME/.cache}/dm-fracture/fuzz}
target_dir=$top/target/fuzz
triple=$(rustc -vV | sed -n 's/^host: //p')

# As cargo-fuzz builds with `-s none`; `--target` keeps them off build scripts.
flags=(
	-Cpasses=sancov-module
	-Cllvm-args=-sanitizer-coverage-level=4
	-Cllvm-args=-sanitizer-coverage-inline-8bit-counters
	-Cllvm-args=-sanitizer-coverage-pc-table
	-Cllvm-args=-sanitizer-coverage-trace-compares
	--cfg fuzzing
	-Cdebug-assertions
	-Coverflow-checks
)
echo "fuzz: building fuzz/ (release, instrumented)"
t0=$(date +%s)
if ! RUSTFLAGS="${flags[*]}" cargo build --release --locked --quiet \
	--manifest-path fuzz/Cargo.toml --target "$triple" --target-dir "$target_dir" --bins; then
	echo "fuzz: build failed" >&2
	exit 2
fi
echo "fuzz: built in $(($(date +%s) - t0)) s"

# Longest input per target: a metadata block and its fields; a table line
# or message; the fixed fields of `region`; enough operations otherwise.
max_len() {
	case $1 in
	superblock | bitmap) echo 4400 ;;
	region) echo 64 ;;
	*) echo 512 ;;
	esac
}

mkdir -p "$work/logs"
run() {
	local t=$1 corpus=$work/corpus/$1 artifacts=$work/artifacts/$1 log=$work/logs/$1.log
	mkdir -p "$corpus" "$artifacts"
	local s=$(date +%s) dict=()
	# Words the parsers compare strings with (not traced without a
	# sanitizer runtime).
	[ -f "fuzz/dict/$t.dict" ] && dict=(-dict="fuzz/dict/$t.dict")
	# New inputs go to the first folder only: the seeds stay as they are.
	"$target_dir/$triple/release/$t" -runs="$execs" -max_total_time="$max_time" \
		-max_len="$(max_len "$t")" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
		"${dict[@]}" -artifact_prefix="$artifacts/" "$corpus" "fuzz/seeds/$t" >"$log" 2>&1
	echo "$? $(($(date +%s) - s))" >"$work/logs/$t.rc"
}

running=0
for t in "${targets[@]}"; do
	if [ "$running" -ge "$jobs" ]; then
		wait -n
		running=$((running - 1))
	fi
	run "$t" &
	running=$((running + 1))
done
wait

total=0 crashes=0
for t in "${targets[@]}"; do
	log=$work/logs/$t.log
	read -r rc secs <"$work/logs/$t.rc"
	n=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
	[ -n "$n" ] || n=$(grep -oE '^#[0-9]+' "$log" | tail -n1 | tr -d '#')
	n=${n:-0}
	total=$((total + n))
	if [ "$rc" = 0 ]; then
		note=
		if [ -n "$budget" ]; then
			note=" (time budget FUZZ_SECONDS=$budget)"
		elif [ "$n" -lt "$execs" ]; then
			note=" (stopped by FUZZ_MAX_TIME=$max_time before $execs)"
		fi
		echo "fuzz $t: $n executions, 0 crashes (${secs} s)$note"
	else
		crashes=$((crashes + 1))
		echo "fuzz $t: $n executions, 1 crashes (${secs} s, libFuzzer exit $rc); log $log:"
		# The panic and its message, and where the input was saved.
		awk '/panicked at/ { n = 4 } n-- > 0 || /Test unit written|ERROR: libFuzzer/' "$log" |
			head -n 20 | sed 's/^/    /'
	fi
done
echo "fuzz: ${#targets[@]} targets, $total executions, $crashes crashes"
# For scripts/report.sh, when run by make check.
if [ -n "${FRACTURE_RESULTS:-}" ]; then
	mkdir -p "$FRACTURE_RESULTS"
	{
		echo "fuzz_targets ${#targets[@]}"
		echo "fuzz_executions $total"
		echo "fuzz_crashes $crashes"
	} >>"$FRACTURE_RESULTS/figures"
fi
[ "$crashes" = 0 ]
