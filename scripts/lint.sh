#!/usr/bin/env bash
# Source rules the compiler does not check:
#  - raw FFI (bindings, unsafe) only in the abstraction layer rust/dm/ and
#    never in the mirror logic or the shared crate;
#  - every `unsafe` block has a `// SAFETY:` comment just above it, every
#    `unsafe fn` a `# Safety` doc section;
#  - rustfmt: the module's sources in the kernel's style (rust/.rustfmt.toml,
#    a copy of the kernel tree's), the shared crate, fracturectl and the
#    fuzz targets in the default style (cargo fmt).
set -uo pipefail
cd "$(dirname "$0")/.."
bad=0

if grep -rnE '^[[:space:]]*[^[:space:]/].*(\bunsafe\b|bindings::)' rust/mirror rust/fracture-core/src rust/fracture.rs; then
	echo "lint: unsafe code or raw bindings outside rust/dm/ (above)"
	bad=1
fi

# The userspace tool may call libc (poll, mknod): the same comment rules.
for f in $(find rust/dm rust/fracturectl/src -name '*.rs' ! -name 'bindings_generated.rs'); do
	awk -v F="$f" '
		/\/\/ SAFETY:/ { last_safety = NR }
		/# Safety/ { last_doc = NR }
		/^[[:space:]]*\/\// { next }
		/unsafe[[:space:]]*\{/ && $0 !~ /unsafe fn/ {
			if (NR - last_safety > 8) { printf("lint: %s:%d: unsafe block without a SAFETY comment\n", F, NR); bad = 1 }
		}
		/unsafe (extern "C" )?fn / {
			if (NR - last_doc > 12) { printf("lint: %s:%d: unsafe fn without a # Safety section\n", F, NR); bad = 1 }
		}
		/unsafe impl/ {
			if (NR - last_safety > 3) { printf("lint: %s:%d: unsafe impl without a SAFETY comment\n", F, NR); bad = 1 }
		}
		END { exit bad }' "$f" || bad=1
done

export PATH="$HOME/.cargo/bin:$PATH"
# The crate root through stdin: given as a path, rustfmt would follow its
# #[path] modules into the shared crate (formatted by cargo fmt below).
mod_files=$(find rust/dm rust/mirror -name '*.rs' ! -name 'bindings_generated.rs')
if ! rustfmt --check --edition 2021 --config-path rust/.rustfmt.toml $mod_files >/dev/null 2>&1 ||
	! rustfmt --check --edition 2021 --config-path rust/.rustfmt.toml <rust/fracture.rs >/dev/null 2>&1; then
	echo "lint: the module's sources are not rustfmt-clean (rustfmt --edition 2021 --config-path rust/.rustfmt.toml <file>)"
	bad=1
fi
if ! cargo fmt --check -p fracture-core -p fracturectl >/dev/null 2>&1 ||
	! (cd fuzz && cargo fmt --check >/dev/null 2>&1); then
	echo "lint: not rustfmt-clean (cargo fmt -p fracture-core -p fracturectl; cd fuzz && cargo fmt)"
	bad=1
fi

[ "$bad" = 0 ] && echo "lint: clean"
exit "$bad"
