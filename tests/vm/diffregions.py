#!/usr/bin/env python3
"""Print the regions (of <region_sectors> sectors) in which two devices
differ over <sectors> sectors.

    diffregions.py <dev-a> <dev-b> <sectors> <region_sectors>

Reads with O_DIRECT (what is on the devices, not what the page cache
holds: nothing to drop first).
"""
import mmap
import os
import sys


def main():
    a, b = sys.argv[1], sys.argv[2]
    sectors, region = int(sys.argv[3]), int(sys.argv[4])
    size = region * 512
    total = sectors * 512
    # Whole regions per read, about 1 MiB (O_DIRECT: sector multiples, an
    # aligned buffer).
    chunk = size * max(1, (1 << 20) // size)
    fds = [os.open(d, os.O_RDONLY | os.O_DIRECT) for d in (a, b)]
    bufs = [mmap.mmap(-1, chunk) for _ in fds]
    out = []
    try:
        off = 0
        while off < total:
            want = min(chunk, total - off)
            data = []
            for fd, buf in zip(fds, bufs):
                n = os.preadv(fd, [memoryview(buf)[:want]], off)
                data.append(buf[:n])
            for k in range(0, want, size):
                if data[0][k:k + size] != data[1][k:k + size]:
                    out.append((off + k) // size)
            off += want
    finally:
        for fd in fds:
            os.close(fd)
    print(" ".join(map(str, out)))


if __name__ == "__main__":
    main()
