#!/usr/bin/env python3
"""Load generator that records what was acknowledged, and its checker, for
the crash tests (tests/vm/crash-guest.sh).

    ackload.py write <dev> <ack-file> <boot> <seconds> <seed>
    ackload.py check <dev> <ack-file>[:<cutoff>]...
    ackload.py now

`write` runs four threads of 4 KiB O_DIRECT|O_DSYNC writes (FUA: durable
when acknowledged) to random blocks of <dev>, for <seconds> or until the
machine dies. Thread t owns the blocks b with b % 4 == t, so a block has at
most one write in flight. Every block written carries its number, a
generation (boot * 10^9 + a per-thread counter, so later boots write higher
generations) and a checksum. After each acknowledged write, "block gen t"
is appended to <ack-file> (t: the time in ns since the epoch when the
write returned, as `date +%s%N` prints it); for a real crash the file lives on the host and survives the
guest.

`check` reads <dev> and, for the last acknowledged generation of each block
over all the ack files, checks that the block holds that generation or a
later one, intact. With a cutoff (a time in ns since the epoch, as `now`
and `date +%s%N` print it), only writes acknowledged before it count: for a crash simulated by
cutting the devices off while the load generator keeps running. It prints
"checked N mismatches M" and exits 1 on any mismatch.
"""
import mmap
import os
import random
import struct
import sys
import threading
import time
import zlib

BS = 4096
MAGIC = b"ACKLOAD1"
HDR = struct.Struct("<8sQQI")  # magic, block, generation, crc32 of the rest


def block_image(block, gen):
    seed = struct.pack("<QQ", block, gen)
    body = (seed * (BS // len(seed)))[: BS - HDR.size]
    crc = zlib.crc32(body)
    return HDR.pack(MAGIC, block, gen, crc) + body


def decode(buf):
    magic, block, gen, crc = HDR.unpack_from(buf)
    if magic != MAGIC:
        return None
    if zlib.crc32(buf[HDR.size:]) != crc:
        return ("torn", block, gen)
    return ("ok", block, gen)


def write(dev, ack_file, boot, seconds, seed):
    fd = os.open(dev, os.O_RDWR | os.O_DIRECT | os.O_DSYNC)
    nblocks = os.lseek(fd, 0, os.SEEK_END) // BS
    ack = os.open(ack_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    deadline = time.monotonic() + seconds
    lock = threading.Lock()

    def worker(t):
        rnd = random.Random(seed * 31 + t)
        buf = mmap.mmap(-1, BS)
        gen = boot * 10**9
        # A hot window that moves now and then, so that intent bits are
        # both kept (hot) and cleared (regions left behind).
        window = rnd.randrange(nblocks)
        while time.monotonic() < deadline:
            if rnd.random() < 0.02:
                window = rnd.randrange(nblocks)
            b = (window + rnd.randrange(256)) % nblocks
            b -= b % 4
            b += t
            if b >= nblocks:
                continue
            gen += 1
            buf.seek(0)
            buf.write(block_image(b, gen))
            os.pwrite(fd, buf, b * BS)
            t_ns = time.time_ns()
            with lock:
                os.write(ack, b"%d %d %d\n" % (b, gen, t_ns))

    threads = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()


def check(dev, ack_files):
    acked = {}
    for spec in ack_files:
        f, _, cut = spec.partition(":")
        cutoff = int(cut) if cut else None
        try:
            data = open(f).read()
        except FileNotFoundError:
            continue
        for line in data.splitlines():
            parts = line.split()
            # The last line may be cut short by the crash.
            if len(parts) != 3 or not all(p.isdigit() for p in parts):
                continue
            b, g, t = int(parts[0]), int(parts[1]), int(parts[2])
            if cutoff is not None and t >= cutoff:
                continue
            if g > acked.get(b, -1):
                acked[b] = g
    fd = os.open(dev, os.O_RDONLY | os.O_DIRECT)
    buf = mmap.mmap(-1, BS)
    mismatches = 0
    for b, g in sorted(acked.items()):
        os.preadv(fd, [buf], b * BS)
        got = decode(bytes(buf))
        if got is None or got[0] != "ok" or got[1] != b or got[2] < g:
            mismatches += 1
            if mismatches <= 10:
                print(f"block {b}: acknowledged generation {g}, found {got}", file=sys.stderr)
    os.close(fd)
    print(f"checked {len(acked)} mismatches {mismatches}")
    return 1 if mismatches else 0


def main():
    if sys.argv[1] == "write":
        write(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6]))
        return 0
    if sys.argv[1] == "check":
        return check(sys.argv[2], sys.argv[3:])
    if sys.argv[1] == "now":
        print(time.time_ns())
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
