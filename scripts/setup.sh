#!/usr/bin/env bash
# Install everything dm-fracture needs to build and test, idempotently.
# Debian 12 host, run as root (or with sudo available).
set -euo pipefail

BINDGEN_VERSION=0.72.1
VNG_VERSION=1.42

SUDO=
[ "$(id -u)" = 0 ] || SUDO=sudo

PKGS=(
	linux-source-6.12
	build-essential bc flex bison libelf-dev libssl-dev cpio kmod xz-utils zstd
	g++ # builds libFuzzer (the libfuzzer-sys crate) for scripts/fuzz.sh
	clang lld llvm libclang-dev
	qemu-system-x86 udev busybox-static
	dmsetup lvm2 mdadm fio e2fsprogs util-linux
	gnuplot-nox # the chart of make bench (tests/bench/report.py)
	linux-perf # scripts/bench.sh ... profile (perf in the bench guest)
	nbd-client qemu-utils
	libdevmapper-dev pkg-config
	python3-pip
)

# Each check captures a tool's output before matching it: under pipefail,
# `grep -q` closing a pipe early would make a present tool look missing.
missing_pkgs() {
	missing=()
	for p in "${PKGS[@]}"; do
		[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || missing+=("$p")
	done
}
# Twice: installing one package can remove another that was there (an
# image with qemu-utils from backports loses it to bookworm's
# qemu-system-x86), and the second pass puts it back at a matching version.
updated=
for pass in 1 2; do
	missing_pkgs
	[ "${#missing[@]}" -gt 0 ] || break
	echo "setup: installing Debian packages: ${missing[*]}"
	[ -n "$updated" ] || $SUDO apt-get update -q
	updated=1
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
done
missing_pkgs
[ "${#missing[@]}" = 0 ] || { echo "setup: still missing: ${missing[*]}" >&2; exit 1; }

# rust-src is needed by the kernel's Rust build (it builds `core` itself).
have=$(rustup component list --installed 2>/dev/null || true)
if ! grep -q '^rust-src' <<<"$have"; then
	echo "setup: rustup component add rust-src"
	rustup component add rust-src
fi

export PATH="$HOME/.cargo/bin:$PATH"
have=$(bindgen --version 2>/dev/null || true)
if [ "$have" != "bindgen $BINDGEN_VERSION" ]; then
	echo "setup: cargo install bindgen-cli $BINDGEN_VERSION"
	cargo install --locked --quiet "bindgen-cli@$BINDGEN_VERSION"
fi

have=$(python3 -m pip show virtme-ng 2>/dev/null || true)
if ! grep -qx "Version: $VNG_VERSION" <<<"$have"; then
	echo "setup: pip install virtme-ng==$VNG_VERSION"
	python3 -m pip install --quiet --disable-pip-version-check "virtme-ng==$VNG_VERSION"
fi

echo "setup: done"
