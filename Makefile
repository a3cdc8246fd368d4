# SPDX-License-Identifier: GPL-2.0
#
# dm-fracture. `make` builds dm_fracture.ko against KDIR (default: the cached
# test kernel that `make kernel` builds); `make check` runs every test.
#
#   make [KDIR=/path/to/rust-enabled/kernel/tree] [CLIPPY=1]
#   make setup      install build and test dependencies (Debian 12, root)
#   make kernel     build the cached debug test kernel
#   make fracturectl build the userspace tool (target/release/fracturectl)
#   make demo       show a mirror at work in a VM
#   make check      host unit tests + VM suite on the debug kernel
#   make bench      benchmarks in a VM on the non-debug kernel (not a test)
#   make crash-soak crash consistency with POINTS guest crashes (default 100)
#   make soak       MINUTES (default 10) of load, random faults, suspends,
#                   reloads and crashes in a debug guest (SEED to replay)
#   make report     reliability figures of the last make check
#   make fuzz       fuzz the shared crate's decoders and parsers on the host,
#                   EXECS inputs per target (default 1000000)

KDIR ?= $(shell scripts/kernel.sh path debug)
LLVM ?= 1
export LLVM

.PHONY: all modules fracturectl clean setup kernel check test-host test-vm demo bench crash-soak soak fuzz report

all: modules

modules:
	$(MAKE) -C $(KDIR) M=$(CURDIR) modules

fracturectl:
	cargo build --release --locked -p fracturectl

clean:
	$(MAKE) -C $(KDIR) M=$(CURDIR) clean
	rm -f rust/dm/bindings_generated.rs rust/dm/.bindings_generated.rs.*

setup:
	scripts/setup.sh

kernel:
	scripts/kernel.sh build debug >/dev/null

test-host:
	cargo test --workspace --locked

test-vm: kernel
	$(MAKE) modules
	tests/vm/run.sh

check:
	scripts/check.sh

demo:
	scripts/demo.sh

bench:
	scripts/bench.sh release

POINTS ?= 100
crash-soak: kernel
	$(MAKE) modules
	tests/vm/crash.sh $(POINTS)

MINUTES ?= 10
SEED ?=
soak: kernel
	$(MAKE) modules
	scripts/soak.sh $(MINUTES) $(SEED)

EXECS ?= 1000000
fuzz:
	scripts/fuzz.sh $(EXECS)

report:
	scripts/report.sh
