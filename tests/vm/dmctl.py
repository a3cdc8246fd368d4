#!/usr/bin/env python3
"""The few device-mapper ioctls the failure matrix and the soak call over
and over, from the pyserve.py process: starting dmsetup costs about half a
second in the debug guest under TCG, an ioctl from a running Python does
not. Devices are created and removed with dmsetup (device nodes, checks).

    dmctl.py status <name>           the status line, as `dmsetup status`
    dmctl.py events <name>           the event number
    dmctl.py message <name> <word>...  a target message (its answer, if any)
    dmctl.py load <name> <start> <len> <type> <params>...   one-target table
    dmctl.py resume <name>           (suspends first when a table is loaded)
    dmctl.py suspend <name> [noflush]   (noflush: I/O in flight is held,
                                     not completed, as dmsetup --noflush)

Exits 1 with the errno's name on stderr when the kernel refuses.
"""
import errno
import fcntl
import os
import struct
import sys

# struct dm_ioctl (include/uapi/linux/dm-ioctl.h), 312 bytes: version[3],
# data_size, data_start, target_count, open_count, flags, event_nr,
# padding, dev, name[128], uuid[129], data[7].
HDR = struct.Struct("<3IIIIiIIIQ128s129s7s")
SPEC = struct.Struct("<QQiI16s")  # struct dm_target_spec
BUF = 16384

DEV_SUSPEND, DEV_STATUS, TABLE_LOAD, TABLE_STATUS, TARGET_MSG = 6, 7, 9, 12, 14
SUSPEND_FLAG = 1 << 1
NOFLUSH_FLAG = 1 << 11
DATA_OUT_FLAG = 1 << 16


def _ioctl(cmd, name, flags=0, payload=b"", target_count=0):
    req = (3 << 30) | (HDR.size << 16) | (0xFD << 8) | cmd
    buf = bytearray(BUF)
    HDR.pack_into(buf, 0, 4, 0, 0, BUF, HDR.size, target_count, 0, flags, 0, 0, 0,
                  name.encode(), b"", b"")
    buf[HDR.size:HDR.size + len(payload)] = payload
    fd = os.open("/dev/mapper/control", os.O_RDWR)
    try:
        fcntl.ioctl(fd, req, buf, True)
    finally:
        os.close(fd)
    return buf, HDR.unpack_from(buf)


def status(name):
    buf, h = _ioctl(TABLE_STATUS, name)
    data_start, count = h[4], h[5]
    if count == 0:
        return ""
    off = data_start
    start, length, _, _, ttype = SPEC.unpack_from(buf, off)
    params = bytes(buf[off + SPEC.size:]).split(b"\0", 1)[0].decode()
    ttype = ttype.split(b"\0", 1)[0].decode()
    return f"{start} {length} {ttype} {params}".rstrip()


def events(name):
    _, h = _ioctl(DEV_STATUS, name)
    return h[8]


def message(name, words):
    payload = struct.pack("<Q", 0) + " ".join(words).encode() + b"\0"
    buf, h = _ioctl(TARGET_MSG, name, payload=payload)
    if h[7] & DATA_OUT_FLAG:
        return bytes(buf[h[4]:]).split(b"\0", 1)[0].decode()
    return ""


def load(name, start, length, ttype, params):
    p = params.encode() + b"\0"
    p += b"\0" * (-(SPEC.size + len(p)) % 8)
    spec = SPEC.pack(int(start), int(length), 0, 0, ttype.encode())
    _ioctl(TABLE_LOAD, name, payload=spec + p, target_count=1)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv[0] == "status":
            print(status(argv[1]))
        elif argv[0] == "events":
            print(events(argv[1]))
        elif argv[0] == "message":
            out = message(argv[1], argv[2:])
            if out:
                print(out)
        elif argv[0] == "load":
            load(argv[1], argv[2], argv[3], argv[4], " ".join(argv[5:]))
        elif argv[0] == "resume":
            _ioctl(DEV_SUSPEND, argv[1])
        elif argv[0] == "suspend":
            noflush = NOFLUSH_FLAG if argv[2:] == ["noflush"] else 0
            _ioctl(DEV_SUSPEND, argv[1], flags=SUSPEND_FLAG | noflush)
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except OSError as e:
        print(f"dmctl {' '.join(argv)}: {errno.errorcode.get(e.errno, e.errno)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
