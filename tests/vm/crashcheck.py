#!/usr/bin/env python3
"""Before a crashed mirror is activated again: every region where a
leg differs from the primary must be set in the write-intent bitmap
or in that secondary's fracture bitmap (read straight from the metadata
device, format v1). One process for what bitmap.py and diffregions.py do,
because starting Python is slow in a TCG guest.

    crashcheck.py <metadata-dev> <sectors> <region-sectors> <leg-0> <leg-1>...

Reads with O_DIRECT: no page cache to drop first.

The primary is the leg the kernel will serve from at activation: the
superblock's primary_leg, unless it has fracture bits or is not in sync at
the current generation (a crash inside a failover's commit), then the
lowest leg that is; if none is, the recorded one, whose bits the kernel
hands to the other legs.

Prints "intent N differing M primary P" (M summed over the secondaries); exits 1,
naming the regions, if a difference is not covered.
"""
import mmap
import os
import struct
import sys

BLOCK = 4096
HEADER = 32
BITS = (BLOCK - HEADER) * 8


_buffers = {}


def pread(fd, size, offset):
    """O_DIRECT read: size and offset multiples of the block size. The
    aligned buffers are kept for the next call (pyserve.py calls main()
    many times; faulting fresh pages in is slow in the guest)."""
    buf = _buffers.get(size)
    if buf is None:
        buf = _buffers[size] = mmap.mmap(-1, size)
    done = 0
    while done < size:
        n = os.preadv(fd, [memoryview(buf)[done:]], offset + done)
        if n <= 0:
            break
        done += n
    return buf[:done]


def bitmap(fd, index, per_leg, nr_regions):
    out = set()
    for idx in range(per_leg):
        payload = pread(fd, BLOCK, (1 + index * per_leg + idx) * BLOCK)[HEADER:]
        for byte_i, b in enumerate(payload):
            if b:
                for bit in range(8):
                    r = idx * BITS + byte_i * 8 + bit
                    if b >> bit & 1 and r < nr_regions:
                        out.add(r)
    return out


def main():
    meta, sectors, region = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    legs = sys.argv[4:]
    fd = os.open(meta, os.O_RDONLY | os.O_DIRECT)
    sb = pread(fd, BLOCK, 0)
    assert sb[32:40] == b"FRACTURE", "no superblock"
    nr_regions, = struct.unpack_from("<Q", sb, 56)
    nr_legs, p, per_leg = struct.unpack_from("<III", sb, 72)
    assert nr_legs == len(legs), "legs given do not match the superblock"
    event, = struct.unpack_from("<Q", sb, 88)
    recs = [struct.unpack_from("<BB6xQ", sb, 104 + 16 * leg) for leg in range(nr_legs)]
    intent = bitmap(fd, nr_legs, per_leg, nr_regions)
    logged = [bitmap(fd, leg, per_leg, nr_regions) for leg in range(nr_legs)]
    os.close(fd)

    def serves(leg):
        return recs[leg][0] == 0 and recs[leg][2] == event and not logged[leg]

    handed = set()
    if not serves(p):
        q = next((leg for leg in range(nr_legs) if serves(leg)), None)
        if q is not None:
            p = q
        else:
            handed = logged[p]
    size = region * 512
    nr = (sectors + region - 1) // region

    def chunks(dev):
        """The device's regions (the whole target length, in one read)."""
        fd = os.open(dev, os.O_RDONLY | os.O_DIRECT)
        data = pread(fd, (nr * size + BLOCK - 1) // BLOCK * BLOCK, 0)
        os.close(fd)
        return [data[r * size:(r + 1) * size] for r in range(nr)]

    differing = 0
    bad = []
    prim = chunks(legs[p])
    for i, dev in enumerate(legs):
        if i == p:
            continue
        for r, chunk in enumerate(chunks(dev)):
            if chunk != prim[r]:
                differing += 1
                if r not in intent and r not in logged[i] and r not in handed:
                    bad.append((i, r))
    print(f"intent {len(intent)} differing {differing} primary {p}")
    if bad:
        print(f"regions differing but not logged (leg, region): {bad[:20]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
