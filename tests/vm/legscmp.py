#!/usr/bin/env python3
"""Whether every leg holds what the primary holds over the first <bytes>
bytes, as `cmp -n` against the primary once per leg would say, in one
process and one pass: each device is read once, with O_DIRECT (nothing to
drop from the page cache first, no page cache filled).

    legscmp.py <bytes> <primary> <leg>...

Exits 1, naming the first differing byte of each differing leg, if any leg
differs.
"""
import mmap
import os
import sys

CHUNK = 4 << 20


def main():
    total, primary, legs = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    fds = [os.open(d, os.O_RDONLY | os.O_DIRECT) for d in [primary] + legs]
    bufs = [mmap.mmap(-1, CHUNK) for _ in fds]
    differ = {}
    off = 0
    while off < total:
        want = min(CHUNK, total - off)
        # O_DIRECT reads whole blocks: round up, compare only `want`.
        size = (want + 4095) // 4096 * 4096
        data = []
        for fd, buf in zip(fds, bufs):
            n = os.preadv(fd, [memoryview(buf)[:size]], off)
            # bytes, not memoryview: comparing those is a memcmp.
            data.append(buf[:min(n, want)])
        for i, d in enumerate(data[1:]):
            if i not in differ and d != data[0]:
                a = data[0]
                k = next((j for j in range(min(len(a), len(d))) if a[j] != d[j]), min(len(a), len(d)))
                differ[i] = off + k
        off += want
    for fd in fds:
        os.close(fd)
    for i, at in sorted(differ.items()):
        print(f"{primary} {legs[i]} differ: byte {at + 1}", file=sys.stderr)
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
