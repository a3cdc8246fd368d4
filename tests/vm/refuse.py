#!/usr/bin/env python3
"""The refusal loops of the bad-input case (29), run in the pyserve.py
process: each input costs a few ioctls here instead of half a dozen
process starts (dmsetup, dmesg, grep...) in the debug guest.

    refuse.py tables <corpus> <var>=<value>...
        every "<reason> TAB <table line>" of <corpus> (comments and blank
        lines skipped; $NAME in either part replaced by the <var> given):
        a device "badtable" loaded with that table must be refused and the
        kernel log must match <reason> (a regex);
    refuse.py messages <corpus> <dev>
        every "<reason> TAB <message words>": the message to <dev> must be
        refused with <reason> logged, and leave its status unchanged;
    refuse.py metadata <corpus> <meta-dev> <clean-image> <table-file>
        every "<reason> TAB <badmeta.py arguments>": <meta-dev> gets the
        clean image back, is damaged by badmeta.py that way, and a device
        created with the table in <table-file> must be refused with
        <reason> logged, <meta-dev> not rewritten.

Prints a line per input ("refused: ..." or "MISS: ...") and a count; exits
1 if an input was not refused as expected.
"""
import errno
import hashlib
import mmap
import os
import re
import sys

import badmeta
import dmctl

DEV_CREATE, DEV_REMOVE = 3, 4


def entries(path, subst):
    """(reason, rest) of each corpus line, $NAME replaced."""
    out = []
    for line in open(path, encoding="utf-8"):
        line = line.rstrip("\n")
        if not line or (line.startswith("#") and not line.startswith("#features")):
            continue
        want, _, rest = line.partition("\t")
        for name, value in sorted(subst.items(), key=lambda kv: -len(kv[0])):
            want = want.replace("$" + name, value)
            rest = rest.replace("$" + name, value)
        out.append((want, rest))
    return out


class Kmsg:
    """New kernel log lines since the last call."""

    def __init__(self):
        self.fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
        os.lseek(self.fd, 0, os.SEEK_END)

    def new(self):
        lines = []
        while True:
            try:
                rec = os.read(self.fd, 8192).decode(errors="replace")
            except BlockingIOError:
                return lines
            except OSError as e:
                if e.errno == errno.EPIPE:  # overwritten: go on
                    continue
                raise
            lines.append(rec.split(";", 1)[-1].split("\n", 1)[0])


def check(kmsg, want, what, refused_by):
    """Records the outcome of one input; True if as expected."""
    if not refused_by:
        print(f"MISS: accepted: {what}")
        return False
    log = [l for l in kmsg.new() if "fracture" in l]
    hit = next((l for l in log if re.search(want, l)), None)
    if hit is None:
        print(f"MISS: '{what}': no /{want}/ in the kernel log: {log}")
        return False
    print(f"refused: {what} -> {hit}")
    return True


def try_create(table):
    """Creates "badtable" with a one-target table line, as dmsetup create
    does; returns the refusal (an OSError) or None if it was accepted (the
    device is then removed again)."""
    words = table.split(None, 3)
    start, length, ttype = (words + ["", "", ""])[:3]
    params = words[3] if len(words) > 3 else ""
    dmctl._ioctl(DEV_CREATE, "badtable")
    try:
        dmctl.load("badtable", start, length, ttype, params)
    except (OSError, ValueError) as e:
        dmctl._ioctl(DEV_REMOVE, "badtable")
        return e
    dmctl._ioctl(DEV_REMOVE, "badtable")
    return None


def each(path, subst, what, one):
    """Runs one(kmsg, reason, input) -> bool over the corpus; prints the
    count; 1 if any input was not refused as expected."""
    kmsg, bad, n = Kmsg(), 0, 0
    for want, rest in entries(path, subst):
        bad += not one(kmsg, want, rest)
        n += 1
    print(f"{n} {what} refused as expected: {n - bad}")
    return 1 if bad else 0


def tables(path, *subst):
    def one(kmsg, want, table):
        return check(kmsg, want, table, try_create(table))

    return each(path, dict(a.split("=", 1) for a in subst), "table lines", one)


def messages(path, dev):
    before = dmctl.status(dev)

    def one(kmsg, want, words):
        try:
            dmctl.message(dev, words.split())
            err = None
        except OSError as e:
            err = e
        ok = check(kmsg, want, f"message {words}", err)
        after = dmctl.status(dev)
        if after != before:
            print(f"MISS: status after 'message {words}': {after} (was {before})")
            ok = False
        return ok

    return each(path, {}, "messages", one)


def md5(dev, size):
    """Of the first <size> bytes of <dev> as on the device (O_DIRECT)."""
    buf = mmap.mmap(-1, size)
    fd = os.open(dev, os.O_RDONLY | os.O_DIRECT)
    try:
        os.preadv(fd, [buf], 0)
        return hashlib.md5(buf).hexdigest()
    finally:
        os.close(fd)


def metadata(path, meta, clean, table_file):
    table = open(table_file, encoding="utf-8").read().strip()
    image = open(clean, "rb").read()

    def one(kmsg, want, args):
        fd = os.open(meta, os.O_WRONLY)
        try:
            os.pwrite(fd, image, 0)
            os.fsync(fd)
        finally:
            os.close(fd)
        sys.argv = ["badmeta.py", meta] + args.split()
        badmeta.main()
        fd = os.open(meta, os.O_RDONLY)
        try:
            os.fsync(fd)  # what badmeta.py wrote, on the device
        finally:
            os.close(fd)
        damaged = md5(meta, len(image))
        ok = check(kmsg, want, f"metadata damaged: {args}", try_create(table))
        if md5(meta, len(image)) != damaged:
            print(f"MISS: metadata rewritten after the refusal of '{args}'")
            ok = False
        return ok

    return each(path, {}, "damaged images", one)


def main():
    cmds = {"tables": tables, "messages": messages, "metadata": metadata}
    if len(sys.argv) < 3 or sys.argv[1] not in cmds:
        print(__doc__, file=sys.stderr)
        return 2
    return cmds[sys.argv[1]](*sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
