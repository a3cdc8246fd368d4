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
