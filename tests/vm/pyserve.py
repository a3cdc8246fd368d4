#!/usr/bin/env python3
"""Runs the Python test helpers in one long-lived process, for a case that
calls them over and over: starting Python takes seconds in the debug guest
under TCG, calling a function in a running one does not.

    pyserve.py        (as a bash coproc; one request a line on stdin)

Requests, the words of a helper's command line:

    ackload.py write <dev> <ack-file> <boot> <seconds> <seed>
        forks a child that runs the load generator (as `ackload.py write`
        would) and answers with its pid, at once;
    kill <pid>
        SIGKILLs that child and reaps it (as `kill -9; wait` would);
    <helper.py> <args>...
        runs helper.main() with those arguments (ackload.py check,
        bitmap.py, crashcheck.py, diffregions.py, dmctl.py, legscmp.py,
        refuse.py, regionwrite.py).

Every answer is the helper's output, stdout and stderr in that order, then
a line "rc <exit status>".
"""
import contextlib
import io
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import ackload  # noqa: E402
import badmeta  # noqa: E402
import bitmap  # noqa: E402
import crashcheck  # noqa: E402
import diffregions  # noqa: E402
import dmctl  # noqa: E402
import legscmp  # noqa: E402
import refuse  # noqa: E402
import regionwrite  # noqa: E402

HELPERS = {
    "ackload.py": ackload,
    "badmeta.py": badmeta,
    "bitmap.py": bitmap,
    "crashcheck.py": crashcheck,
    "diffregions.py": diffregions,
    "dmctl.py": dmctl,
    "legscmp.py": legscmp,
    "refuse.py": refuse,
    "regionwrite.py": regionwrite,
}


def answer(text, rc):
    if text and not text.endswith("\n"):
        text += "\n"
    sys.stdout.write(f"{text}rc {rc}\n")
    sys.stdout.flush()


def run(argv):
    if argv[0] == "kill":
        pid = int(argv[1])
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)
        return "", 0
    if argv[:2] == ["ackload.py", "write"]:
        pid = os.fork()
        if pid == 0:
            # The child: the load generator, nothing else, never back here.
            code = 1
            try:
                devnull = os.open(os.devnull, os.O_RDWR)
                os.dup2(devnull, 0)
                os.dup2(devnull, 1)
                ackload.write(argv[2], argv[3], int(argv[4]), float(argv[5]), int(argv[6]))
                code = 0
            finally:
                os._exit(code)
        return str(pid), 0
    mod = HELPERS.get(argv[0])
    if mod is None:
        return f"pyserve.py: no helper {argv[0]}", 2
    out, err = io.StringIO(), io.StringIO()
    sys.argv = argv
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = mod.main()
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else 1
        except Exception as e:  # a helper's crash fails the request, not the server
            print(f"{argv[0]}: {type(e).__name__}: {e}", file=sys.stderr)
            rc = 1
    return out.getvalue() + err.getvalue(), rc or 0


def main():
    for line in sys.stdin:
        argv = line.split()
        if argv:
            answer(*run(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
