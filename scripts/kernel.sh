#!/usr/bin/env bash
# Build (or find) the cached test kernel.
#
#   scripts/kernel.sh path  [debug|release]   print the cached tree's path
#   scripts/kernel.sh build [debug|release]   build it if not cached, print path
#
# The tree is built from Debian's linux-source-6.12 with `allnoconfig` plus the
# fragments in scripts/kconfig/, and kept under
# ${XDG_CACHE_HOME:-~/.cache}/dm-fracture/ keyed by kernel version, flavour and
# a hash of the fragments and toolchain, so a second run does not rebuild.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cmd=${1:-path}
flavour=${2:-debug}
tarball=${LINUX_TARBALL:-/usr/src/linux-source-6.12.tar.xz}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/dm-fracture

case "$flavour" in
	debug) frags=("$here/kconfig/base.config" "$here/kconfig/debug.config") ;;
	release) frags=("$here/kconfig/base.config" "$here/kconfig/release.config") ;;
	*) echo "kernel.sh: unknown flavour '$flavour' (debug|release)" >&2; exit 2 ;;
esac

version=$(dpkg-query -W -f='${Version}' linux-source-6.12 2>/dev/null || echo unknown)
key=$( { cat "${frags[@]}"; echo "$version";
	rustc --version 2>/dev/null; clang --version 2>/dev/null | head -n1;
	bindgen --version 2>/dev/null; } | sha256sum | cut -c1-12)
dir="$cache/linux-${version//[^A-Za-z0-9.]/_}-$flavour-$key"

if [ "$cmd" = path ]; then
	echo "$dir"
	exit 0
fi
[ "$cmd" = build ] || { echo "kernel.sh: unknown command '$cmd' (path|build)" >&2; exit 2; }

if [ -f "$dir/.fracture-built" ]; then
	echo "kernel.sh: cached kernel $dir" >&2
	echo "$dir"
	exit 0
fi

[ -f "$tarball" ] || { echo "kernel.sh: $tarball missing; run scripts/setup.sh" >&2; exit 1; }
mkdir -p "$cache"
work="$dir.tmp"
# Half-built trees of this or an older key are of no use.
rm -rf "$cache"/linux-*-"$flavour"-*.tmp
mkdir -p "$work"
echo "kernel.sh: unpacking $tarball into $work" >&2
tar -xJf "$tarball" -C "$work" --strip-components=1

mk() { make -C "$work" -s ARCH=x86_64 LLVM=1 "$@"; }
start=$(date +%s)
mk allnoconfig >&2
(cd "$work" && KCONFIG_CONFIG=.config scripts/kconfig/merge_config.sh -m -O . .config "${frags[@]}" >&2)
mk olddefconfig >&2

# Every option a fragment asks for must have survived olddefconfig: a silently
# dropped CONFIG_RUST or CONFIG_KASAN would make the whole suite meaningless.
bad=0
while IFS= read -r line; do
	case "$line" in
		CONFIG_*=*)
			grep -qxF "$line" "$work/.config" || { echo "kernel.sh: not set as asked: $line" >&2; bad=1; } ;;
		"# CONFIG_"*" is not set")
			opt=${line#\# }; opt=${opt%% *}
			! grep -q "^$opt=[ym]" "$work/.config" || { echo "kernel.sh: still set: $opt" >&2; bad=1; } ;;
	esac
done < <(cat "${frags[@]}")
[ "$bad" = 0 ] || { echo "kernel.sh: config fragment not satisfiable (see above)" >&2; exit 1; }

echo "kernel.sh: building $flavour kernel ($(nproc) jobs), this takes a while" >&2
mk -j"$(nproc)" bzImage modules >&2
touch "$work/.fracture-built"
rm -rf "$dir"
mv "$work" "$dir"
echo "kernel.sh: built in $(( $(date +%s) - start ))s: $dir" >&2
echo "$dir"
