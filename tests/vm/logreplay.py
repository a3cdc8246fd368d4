#!/usr/bin/env python3
"""Replay a dm-log-writes log of the one device that holds a mirror's
metadata area and its legs, and check the metadata at every flush and FUA
point of the log (what a crash at that moment would leave on disk):

- the superblock and every bitmap block decode (checksum, type, block
  number, UUID), once a superblock exists;
- every region where a leg differs from the leg that would serve as the
  primary at activation (the recorded one, or the lowest in-sync leg at the
  current generation if the recorded one has fracture bits or is out of
  sync, as the kernel decides) is set in the write-intent bitmap or in that
  leg's fracture bitmap.

    logreplay.py <log-dev> <meta-start> <leg-sectors> <region-sectors> <leg-start>...

Starts and sizes in 512-byte sectors of the logged device, which must have
been all zero when logging began. Prints one summary line; exits 1 naming
the first violation.
"""
import struct
import sys

LOG_MAGIC = 0x6A736677736872
FLUSH, FUA, DISCARD, MARK = 1, 2, 4, 8
BLOCK = 4096
HEADER = 32
BITS = (BLOCK - HEADER) * 8


def crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


TABLE = crc32c_table()


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


class Checker:
    def __init__(self, image, meta, leg_len, region, legs):
        self.image, self.meta, self.region = image, meta * 512, region * 512
        self.legs = [s * 512 for s in legs]
        self.leg_len = leg_len * 512
        self.nr_regions = (leg_len + region - 1) // region
        self.hashes = [[hash(b"")] * self.nr_regions for _ in legs]
        self.touched = set((l, r) for l in range(len(legs)) for r in range(self.nr_regions))
        self.valid = {}  # block bytes -> checksum ok
        self.points = self.formatted = self.differing = 0
        self.primaries, self.states = set(), set()

    def written(self, start, end):
        """Bytes start..end of the device changed."""
        for l, base in enumerate(self.legs):
            lo, hi = max(start, base), min(end, base + self.leg_len)
            if lo < hi:
                for r in range((lo - base) // self.region, (hi - 1 - base) // self.region + 1):
                    self.touched.add((l, r))

    def block(self, nr, kind, uuid, what):
        b = bytes(self.image[self.meta + nr * BLOCK:self.meta + (nr + 1) * BLOCK])
        ok = self.valid.get(b)
        if ok is None:
            ok = struct.unpack_from("<I", b, 0)[0] == crc32c(b[4:])
            self.valid[b] = ok
        if not ok:
            raise AssertionError(f"{what} (block {nr}) fails its checksum")
        btype, bnr = struct.unpack_from("<IQ", b, 4)
        if btype != kind or bnr != nr or (uuid is not None and b[16:32] != uuid):
            raise AssertionError(f"{what} (block {nr}) has type {btype}, number {bnr} or a foreign UUID")
        return b

    def bits(self, block, idx):
        out = set()
        for byte_i, v in enumerate(block[HEADER:]):
            if v:
                for bit in range(8):
                    r = idx * BITS + byte_i * 8 + bit
                    if v >> bit & 1 and r < self.nr_regions:
                        out.add(r)
        return out

    def check(self, where):
        self.points += 1
        for l, r in self.touched:
            base = self.legs[l] + r * self.region
            end = min(base + self.region, self.legs[l] + self.leg_len)
            self.hashes[l][r] = hash(bytes(self.image[base:end]))
        self.touched.clear()
        sb_raw = self.image[self.meta:self.meta + BLOCK]
        if sb_raw[32:40] != b"FRACTURE":
            # Not formatted yet: the legs must be identical.
            for l in range(1, len(self.legs)):
                if self.hashes[l] != self.hashes[0]:
                    raise AssertionError(f"{where}: leg {l} differs and there is no metadata yet")
            return
        self.formatted += 1
        sb = self.block(0, 1, None, "superblock")
        uuid = sb[16:32]
        nr_regions, = struct.unpack_from("<Q", sb, 56)
        nr_legs, primary, per_leg = struct.unpack_from("<III", sb, 72)
        event, = struct.unpack_from("<Q", sb, 88)
        assert nr_regions == self.nr_regions and nr_legs == len(self.legs), "geometry"
        recs = [struct.unpack_from("<BB6xQ", sb, 104 + 16 * l) for l in range(nr_legs)]
        fracture = []
        for l in range(nr_legs + 1):
            s = set()
            for idx in range(per_leg):
                nr = 1 + l * per_leg + idx
                kind, what = (3, "intent bitmap") if l == nr_legs else (2, f"fracture bitmap of leg {l}")
                s |= self.bits(self.block(nr, kind, uuid, what), idx)
            fracture.append(s)
        intent = fracture.pop()
        # The leg the kernel would serve from (Superblock::check_primary).
        def serves(l):
            return recs[l][0] == 0 and recs[l][2] == event and not fracture[l]
        if not serves(primary):
            primary = next((l for l in range(nr_legs) if serves(l)), None)
            if primary is None:
                raise AssertionError(f"{where}: no leg could serve as primary")
        self.primaries.add(primary)
        self.states.update("AFRD"[rec[0]] for rec in recs)
        for l in range(nr_legs):
            if l == primary:
                continue
            for r in range(self.nr_regions):
                if self.hashes[l][r] != self.hashes[primary][r]:
                    self.differing += 1
                    if r not in intent and r not in fracture[l]:
                        raise AssertionError(
                            f"{where}: leg {l} differs from primary leg {primary} in region {r}, "
                            f"which is in neither the intent bitmap {sorted(intent)[:10]} "
                            f"nor its fracture bitmap {sorted(fracture[l])[:10]}")


def main():
    logdev, meta, leg_len, region = sys.argv[1], *map(int, sys.argv[2:5])
    legs = [int(a) for a in sys.argv[5:]]
    size = max(legs) * 512 + leg_len * 512
    image = bytearray(size)
    chk = Checker(image, meta, leg_len, region, legs)
    flushes = fuas = 0
    with open(logdev, "rb") as f:
        magic, version, nr_entries, ss = struct.unpack("<QQQI", f.read(28))
        if magic != LOG_MAGIC or version != 1:
            print("not a dm-log-writes log", file=sys.stderr)
            return 1
        pos = ss
        try:
            for i in range(nr_entries):
                f.seek(pos)
                sector, nr, flags, _ = struct.unpack("<QQQQ", f.read(32))
                pos += ss
                start, end = sector * ss, (sector + nr) * ss
                if flags & MARK:
                    continue
                if flags & DISCARD:
                    image[start:end] = bytes(end - start)
                    chk.written(start, end)
                elif nr:
                    f.seek(pos)
                    image[start:end] = f.read(end - start)
                    pos += end - start
                    chk.written(start, end)
                if flags & (FLUSH | FUA):
                    flushes += bool(flags & FLUSH)
                    fuas += bool(flags & FUA)
                    chk.check(f"entry {i}")
        except AssertionError as e:
            print(f"violation: {e}", file=sys.stderr)
            return 1
    print(f"entries {nr_entries} flushes {flushes} fua {fuas} points {chk.points} "
          f"formatted {chk.formatted} differing {chk.differing} "
          f"primaries {','.join(map(str, sorted(chk.primaries)))} "
          f"states {''.join(sorted(chk.states))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
