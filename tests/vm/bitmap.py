#!/usr/bin/env python3
"""Print the regions set in one leg's fracture bitmap (or, with `intent`,
in the write-intent bitmap), read straight from a metadata device (format v1, see Documentation/admin-guide/device-mapper/
dm-fracture.rst). Used by the VM tests to compare the on-disk log with what
was written; fracturectl dump will do this for users.

    bitmap.py <metadata-dev> <leg>|intent

Reads with O_DIRECT: what the kernel wrote (around the page cache) is what
is read, with no cache to drop first.
"""
import mmap
import os
import struct
import sys

BLOCK = 4096
HEADER = 32
BITS = (BLOCK - HEADER) * 8


def main():
    dev, which = sys.argv[1], sys.argv[2]
    fd = os.open(dev, os.O_RDONLY | os.O_DIRECT)
    buf = mmap.mmap(-1, BLOCK)

    def block(nr):
        os.preadv(fd, [buf], nr * BLOCK)
        return bytes(buf)

    try:
        sb = block(0)
        assert sb[32:40] == b"FRACTURE", "no superblock"
        nr_regions, = struct.unpack_from("<Q", sb, 56)
        nr_legs, = struct.unpack_from("<I", sb, 72)
        per_leg, = struct.unpack_from("<I", sb, 80)
        # The intent bitmap follows the legs' fracture bitmaps.
        leg = nr_legs if which == "intent" else int(which)
        assert leg <= nr_legs
        out = []
        for idx in range(per_leg):
            payload = block(1 + leg * per_leg + idx)[HEADER:]
            for byte_i, b in enumerate(payload):
                if not b:
                    continue
                for bit in range(8):
                    if b >> bit & 1:
                        r = idx * BITS + byte_i * 8 + bit
                        if r < nr_regions:
                            out.append(r)
    finally:
        os.close(fd)
    print(" ".join(map(str, out)))


if __name__ == "__main__":
    main()
