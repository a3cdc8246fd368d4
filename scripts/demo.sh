#!/usr/bin/env bash
# The dm-fracture demo: sets up what is missing, builds the debug kernel (or
# reuses the cached one) and the module, then boots a virtme-ng guest (TCG)
# that shows a mirror being written, its legs compared, and a leg failing.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
. scripts/vm.sh
scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
KDIR=$(scripts/kernel.sh build debug)
make -s KDIR="$KDIR"
cargo build -q --locked -p fracturectl
out=$(mktemp -d)
echo "demo: booting a guest (about a minute under TCG)..."
vm_timeout 900 vng --run "$KDIR" --disable-kvm --user root --cpus 2 --memory 2G \
	--rwdir "$out" --append "brd.rd_nr=4 brd.rd_size=65536 $VM_ROOT_APPEND" \
	-- "$top/tests/vm/demo-guest.sh" </dev/null
