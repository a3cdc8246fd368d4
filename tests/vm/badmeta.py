#!/usr/bin/env python3
"""Damage dm-fracture metadata on a device in one chosen way, for the
bad-input corpus (case 29). Fields are rewritten and the block resealed
with a valid CRC-32C, so the damage reaches the decoder's consistency
checks, not only the checksum (format v1, see
Documentation/admin-guide/device-mapper/dm-fracture.rst, Metadata).

    badmeta.py <dev> random <block>          random bytes (bad checksum)
    badmeta.py <dev> ones <block>            all 0xff
    badmeta.py <dev> sb <field> <value>      a superblock field, resealed
    badmeta.py <dev> header <block> <field> <value>
                                             a header field, resealed
    badmeta.py <dev> garbage-sealed          superblock: magic and version
                                             kept, every other byte random,
                                             resealed
"""
import os
import struct
import sys

from logreplay import crc32c  # the one CRC-32C of the Python helpers

BLOCK = 4096

# name: (offset, struct format)
HEADER = {"type": (4, "<I"), "blocknr": (8, "<Q"), "uuid0": (16, "<Q")}
SB = {
    "magic": (32, "<Q"),
    "version": (40, "<I"),
    "flags": (44, "<I"),
    "region_sectors": (48, "<Q"),
    "nr_regions": (56, "<Q"),
    "target_sectors": (64, "<Q"),
    "nr_legs": (72, "<I"),
    "primary": (76, "<I"),
    "bitmap_blocks": (80, "<I"),
    "intent_blocks": (84, "<I"),
    "event": (88, "<Q"),
    "commit": (96, "<Q"),
    # Leg records: 16 bytes from 104: state, flags, 6 zero bytes, generation.
    "leg0_state": (104, "<B"),
    "leg1_flags": (104 + 16 + 1, "<B"),
    "leg1_pad": (104 + 16 + 2, "<B"),
    "leg1_generation": (104 + 16 + 8, "<Q"),
}


def seal(block):
    struct.pack_into("<I", block, 0, crc32c(bytes(block[4:])))


def main():
    dev, kind = sys.argv[1], sys.argv[2]
    args = sys.argv[3:]
    fd = os.open(dev, os.O_RDWR)
    try:
        if kind in ("random", "ones"):
            nr = int(args[0])
            data = os.urandom(BLOCK) if kind == "random" else b"\xff" * BLOCK
            os.pwrite(fd, data, nr * BLOCK)
            return
        nr = int(args[0]) if kind == "header" else 0
        block = bytearray(os.pread(fd, BLOCK, nr * BLOCK))
        if kind == "sb":
            off, fmt = SB[args[0]]
            value = args[1]
            if args[0] == "magic":
                block[off:off + 8] = value.encode()[:8].ljust(8, b"\0")
            else:
                struct.pack_into(fmt, block, off, int(value, 0))
        elif kind == "header":
            off, fmt = HEADER[args[1]]
            struct.pack_into(fmt, block, off, int(args[2], 0))
        elif kind == "garbage-sealed":
            rnd = bytearray(os.urandom(BLOCK))
            rnd[0:32] = block[0:32]
            rnd[32:44] = block[32:44]
            block = rnd
        else:
            sys.exit(f"badmeta.py: unknown kind {kind}")
        seal(block)
        os.pwrite(fd, bytes(block), nr * BLOCK)
    finally:
        os.fsync(fd)
        os.close(fd)


if __name__ == "__main__":
    main()
