#!/usr/bin/env python3
"""Before a crashed mirror is activated again: every region where a
leg differs from the primary (the superblock's primary_leg) must be set in the write-intent bitmap
or in that secondary's fracture bitmap (read straight from the metadata
device, format v1). One process for what bitmap.py and diffregions.py do,
because starting Python is slow in a TCG guest.

    crashcheck.py <metadata-dev> <sectors> <region-sectors> <leg-0> <leg-1>...

Prints "intent N differing M" (M summed over the secondaries); exits 1,
naming the regions, if a difference is not covered.
"""
import struct
import sys

BLOCK = 4096
HEADER = 32
BITS = (BLOCK - HEADER) * 8


def bitmap(f, index, per_leg, nr_regions):
    out = set()
    for idx in range(per_leg):
        f.seek((1 + index * per_leg + idx) * BLOCK)
        payload = f.read(BLOCK)[HEADER:]
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
    with open(meta, "rb", buffering=0) as f:
        sb = f.read(BLOCK)
        assert sb[32:40] == b"FRACTURE", "no superblock"
        nr_regions, = struct.unpack_from("<Q", sb, 56)
        nr_legs, p, per_leg = struct.unpack_from("<III", sb, 72)
        assert nr_legs == len(legs), "legs given do not match the superblock"
        intent = bitmap(f, nr_legs, per_leg, nr_regions)
        logged = [bitmap(f, leg, per_leg, nr_regions) for leg in range(nr_legs)]
    size = region * 512
    differing = 0
    bad = []
    with open(legs[p], "rb") as fp:
        prim = [fp.read(size) for _ in range((sectors + region - 1) // region)]
    for i, dev in enumerate(legs):
        if i == p:
            continue
        with open(dev, "rb") as fs:
            for r, chunk in enumerate(prim):
                if fs.read(size) != chunk:
                    differing += 1
                    if r not in intent and r not in logged[i]:
                        bad.append((i, r))
    print(f"intent {len(intent)} differing {differing}")
    if bad:
        print(f"regions differing but not logged (leg, region): {bad[:20]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
