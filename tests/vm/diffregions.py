#!/usr/bin/env python3
"""Print the regions (of <region_sectors> sectors) in which two devices
differ over <sectors> sectors.

    diffregions.py <dev-a> <dev-b> <sectors> <region_sectors>
"""
import sys


def main():
    a, b = sys.argv[1], sys.argv[2]
    sectors, region = int(sys.argv[3]), int(sys.argv[4])
    size = region * 512
    out = []
    with open(a, "rb") as fa, open(b, "rb") as fb:
        for r in range((sectors + region - 1) // region):
            if fa.read(size) != fb.read(size):
                out.append(r)
    print(" ".join(map(str, out)))


if __name__ == "__main__":
    main()
