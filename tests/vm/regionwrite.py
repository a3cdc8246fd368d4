#!/usr/bin/env python3
"""Writes one 4 KiB block at the start of each of a run of regions, all at
once (one thread a region, O_DIRECT), and checks them: for tests that need
a write to every region in flight at the same moment (a fio start takes
seconds in the debug guest; threads of a running pyserve.py do not).

    regionwrite.py write <dev> <region-bytes> <first> <count> <seed>
    regionwrite.py check <dev> <region-bytes> <first> <count> <seed>

`write` returns when every write has completed (exit 1 if one failed);
`check` reads the blocks back and exits 1 if one differs. A block's
content depends on the seed and the region.
"""
import hashlib
import mmap
import os
import sys
import threading

BLOCK = 4096


def content(seed, region):
    out = b""
    h = f"{seed}:{region}".encode()
    while len(out) < BLOCK:
        h = hashlib.sha256(h).digest()
        out += h
    return out[:BLOCK]


def write(dev, region_bytes, first, count, seed):
    fd = os.open(dev, os.O_WRONLY | os.O_DIRECT)
    errors = []

    def one(region):
        buf = mmap.mmap(-1, BLOCK)  # page-aligned, as O_DIRECT wants
        buf.write(content(seed, region))
        try:
            os.pwrite(fd, buf, region * region_bytes)
        except OSError as e:
            errors.append(f"region {region}: {e}")

    threads = [threading.Thread(target=one, args=(r,)) for r in range(first, first + count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    os.close(fd)
    for e in errors:
        print(f"write failed: {e}", file=sys.stderr)
    print(f"wrote {count - len(errors)} regions")
    return 1 if errors else 0


def check(dev, region_bytes, first, count, seed):
    fd = os.open(dev, os.O_RDONLY | os.O_DIRECT)
    buf = mmap.mmap(-1, BLOCK)
    bad = 0
    for region in range(first, first + count):
        os.preadv(fd, [buf], region * region_bytes)
        if buf[:] != content(seed, region):
            print(f"region {region}: not what was written", file=sys.stderr)
            bad += 1
    os.close(fd)
    print(f"checked {count} regions, {bad} differ")
    return 1 if bad else 0


def main():
    if len(sys.argv) != 7 or sys.argv[1] not in ("write", "check"):
        print(__doc__, file=sys.stderr)
        return 2
    dev = sys.argv[2]
    region_bytes, first, count, seed = (int(a) for a in sys.argv[3:7])
    fn = write if sys.argv[1] == "write" else check
    return fn(dev, region_bytes, first, count, seed)


if __name__ == "__main__":
    sys.exit(main())
