#!/usr/bin/env python3
"""Tables, goals and a chart from the raw results of make bench.

    tests/bench/report.py <results>

Reads <results>/io-raw.jsonl (tests/bench/io-guest.sh) and
<results>/slow-raw.jsonl (tests/bench/slow-guest.sh), one JSON object a
line, and writes <results>/bench.md: per leg set and workload a table of
the peers (median, min-max over the repetitions, median p99, and the ratio
"dm-fracture / peer" of the medians), the metadata writes, the slow-leg
latencies and the goals of issue 9 with **met** / **missed**. Also
chart.dat and chart.gp, and chart.png if gnuplot is installed: the ratios
as bars from 1.0, one group per workload, one panel per leg set.

Missing files, peers whose setup failed and partial runs give "n/a" cells,
not a crash. Python 3.11, standard library only.
"""

import json
import math
import os
import shutil
import statistics
import subprocess
import sys

PEERS = {
    "linear": "dm-linear, leg A alone",
    "mirror-core": "dm-mirror, core log",
    "mirror-disk": "dm-mirror, disk log",
    "md-bitmap": "md raid1, internal bitmap",
    "dm-raid": "dm-raid raid1, bitmap",
    "fracture-nointent": "dm-fracture, nointent",
    "fracture": "dm-fracture",
}
# workload: (title, bandwidth rather than IOPS)
WORKLOADS = {
    "randwrite-qd1": ("4 KiB random writes, QD1", False),
    "randwrite-qd32": ("4 KiB random writes, QD32", False),
    "randread-qd32": ("4 KiB random reads, QD32", False),
    "seqwrite-qd8": ("128 KiB sequential writes, QD8", True),
    "mixed-qd16": ("4 KiB random, 70% reads / 30% writes, QD16", False),
}
LEGSETS = {
    "brd": "brd (RAM disks)",
    "nullb": "null_blk (200 us completions, 4 tags on one queue per disk; metadata on a third such disk)",
}
SLOW_PEERS = {
    "linear": "dm-linear on the delayed leg alone",
    "fracture": "dm-fracture, A + delayed B",
    "mirror-disk": "dm-mirror disk log, A + delayed B",
    "md-bitmap": "md raid1 bitmap, A + delayed B",
}
COLOURS = {
    "linear": "#4d4d4d",
    "mirror-core": "#9ecae1",
    "mirror-disk": "#3182bd",
    "md-bitmap": "#e6550d",
    "dm-raid": "#fdae6b",
    "fracture-nointent": "#31a354",
}
NA = "n/a"


def load(path):
    """The JSON objects of a .jsonl file ([] if absent) and the number of
    lines that were not JSON objects."""
    rows, bad = [], 0
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    obj = json.loads(line)
                except ValueError:
                    bad += 1
                    continue
                if isinstance(obj, dict):
                    rows.append(obj)
                else:
                    bad += 1
    except OSError:
        return None, 0
    return rows, bad


def num(x):
    """x as a finite float, or None."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def values(rows, key, scale=1.0):
    out = []
    for r in rows:
        v = num(r.get(key))
        if v is not None:
            out.append(v * scale)
    return out


def median(vs):
    return statistics.median(vs) if vs else None


def ratio(a, b):
    if a is None or b is None or b <= 0:
        return None
    return a / b


def fmt(v, digits=0):
    if v is None:
        return NA
    return f"{v:.{digits}f}"


def fmt_ratio(r):
    return NA if r is None else f"{r:.2f}x"


def spread(vs, digits=0):
    if not vs:
        return NA
    return f"{min(vs):.{digits}f}–{max(vs):.{digits}f}"


def ordered(known, found):
    """Known names in their order, then any others found, sorted."""
    return list(known) + sorted(set(found) - set(known))


class Io:
    """The io benchmark's lines, by kind."""

    def __init__(self, rows):
        self.meta = {}
        self.results = {}  # (legs, peer, workload) -> [row]
        self.metadata = {}  # (legs, peer) -> [row]
        self.errors = []
        self.identical = []
        for r in rows:
            if r.get("kind") == "meta":
                self.meta = r
            elif "error" in r:
                self.errors.append(r)
            elif "legs_identical" in r:
                self.identical.append(r)
            elif "metadata_per_1000" in r:
                self.metadata.setdefault((r.get("legs"), r.get("peer")), []).append(r)
            elif "workload" in r:
                key = (r.get("legs"), r.get("peer"), r.get("workload"))
                self.results.setdefault(key, []).append(r)
        found = {k[0] for k in self.results} | {e.get("legs") for e in self.errors}
        self.legsets = ordered(LEGSETS, {x for x in found if isinstance(x, str)})
        self.peers = ordered(PEERS, {k[1] for k in self.results if isinstance(k[1], str)})
        self.workloads = ordered(WORKLOADS, {k[2] for k in self.results if isinstance(k[2], str)})

    def perf(self, legs, peer, workload):
        """Per-run figures of merit: MiB/s for bandwidth workloads, else IOPS."""
        rows = self.results.get((legs, peer, workload), [])
        if WORKLOADS.get(workload, ("", False))[1]:
            return values(rows, "bw_kib", 1 / 1024)
        return values(rows, "iops")

    def med(self, legs, peer, workload):
        return median(self.perf(legs, peer, workload))

    def vs(self, legs, workload, peer):
        """dm-fracture / peer, ratio of the medians."""
        return ratio(self.med(legs, "fracture", workload), self.med(legs, peer, workload))

    def meta_med(self, legs, peer):
        return median(values(self.metadata.get((legs, peer), []), "metadata_per_1000"))


def io_tables(io, out):
    m = io.meta
    runtime = m.get("runtime_s", "?")
    out.append("## I/O benchmark")
    out.append("")
    out.append(
        f"fio (libaio, O_DIRECT) over a {m.get('working_set', '150M')} working set of 256 MiB legs, "
        f"{runtime} s per job after a warm-up, {m.get('reps', '?')} interleaved repetitions, "
        f"{m.get('flavour', '?')} kernel under TCG. Median, min–max over the repetitions; "
        "\"dm-fracture / peer\" is the ratio of the medians (above 1: dm-fracture faster). "
        "p99: completion latency (of the writes for the mixed job)."
    )
    for legs in io.legsets:
        out.append("")
        out.append(f"### Legs: {LEGSETS.get(legs, legs)}")
        for wl in io.workloads:
            title, bw = WORKLOADS.get(wl, (wl, False))
            unit = "MiB/s" if bw else "IOPS"
            out.append("")
            out.append(f"{title} (`{wl}`):")
            out.append("")
            out.append(f"| peer | {unit} | min–max | p99 (us) | dm-fracture / peer | runs |")
            out.append("|---|---:|---:|---:|---:|---:|")
            for p in io.peers:
                vs = io.perf(legs, p, wl)
                p99 = median(values(io.results.get((legs, p, wl), []), "p99_us"))
                r = 1.0 if p == "fracture" and vs else io.vs(legs, wl, p)
                out.append(
                    f"| {PEERS.get(p, p)} | {fmt(median(vs), 1 if bw else 0)} | {spread(vs, 1 if bw else 0)} "
                    f"| {fmt(p99, 1)} | {fmt_ratio(r)} | {len(vs)} |"
                )
    out.append("")
    out.append("### Metadata writes per 1000 host writes")
    out.append("")
    out.append(
        "Over the two random-write jobs: writes to the log device (dm-mirror disk log, "
        "dm-fracture), to leg A beyond the host's (md: its bitmap is on the legs), "
        "to leg A's metadata device (dm-raid). Median (min–max)."
    )
    out.append("")
    out.append("| peer | " + " | ".join(LEGSETS.get(l, l) for l in io.legsets) + " |")
    out.append("|---|" + "---:|" * len(io.legsets))
    for p in io.peers:
        cells = []
        for legs in io.legsets:
            vs = values(io.metadata.get((legs, p), []), "metadata_per_1000")
            cells.append(f"{fmt(median(vs), 1)} ({spread(vs, 1)})" if vs else NA)
        out.append(f"| {PEERS.get(p, p)} | " + " | ".join(cells) + " |")


def slow_table(slow, out):
    out.append("## One slow leg")
    out.append("")
    by_peer = {}
    delay = fast = None
    for r in slow:
        if "error" in r:
            continue
        by_peer.setdefault(r.get("peer"), []).append(r)
        delay = delay or num(r.get("delay_ms"))
        fast = fast or num(r.get("fast_ms"))
    out.append(
        f"Leg B behind dm-delay, D = {fmt(delay)} ms per write, leg A behind {fmt(fast)} ms "
        "(written one after the other: the sum; at once: the slower); 4 KiB random writes, QD1, "
        "about 5 s after a warm-up. Median, min–max over the repetitions."
    )
    out.append("")
    out.append("| device | mean latency (ms) | min–max | p99 (ms) | mean / D | runs |")
    out.append("|---|---:|---:|---:|---:|---:|")
    for p in ordered(SLOW_PEERS, {k for k in by_peer if isinstance(k, str)}):
        rows = by_peer.get(p, [])
        lat = values(rows, "lat_mean_us", 1e-3)
        p99 = median(values(rows, "p99_us", 1e-3))
        mean = median(lat)
        out.append(
            f"| {SLOW_PEERS.get(p, p)} | {fmt(mean, 1)} | {spread(lat, 1)} | {fmt(p99, 1)} "
            f"| {fmt_ratio(ratio(mean, delay))} | {len(lat)} |"
        )
    return by_peer, delay


def verdict(checks):
    """checks: [(value, ok?)]. met if every value is there and ok, missed if
    a value there is not ok, else n/a."""
    if any(v is not None and not ok for v, ok in checks):
        return "**missed**"
    if checks and all(v is not None for v, _ in checks):
        return "**met**"
    return NA


def goals(io, slow_by_peer, delay, out):
    rows = []
    legsets = io.legsets if io else list(LEGSETS)

    def vs(legs, wl, peer):
        return io.vs(legs, wl, peer) if io else None

    for legs in legsets:
        for wl, qd in (("randwrite-qd1", "QD1"), ("randwrite-qd32", "QD32")):
            checks = [(vs(legs, wl, p), t, p) for p, t in (("mirror-disk", 1.3), ("md-bitmap", 1.0), ("mirror-core", 0.9))]
            rows.append((
                f"(a) 4 KiB random writes {qd}, {legs}: dm-fracture / mirror-disk, md-bitmap, mirror-core",
                ", ".join(f"{fmt_ratio(r)} {p}" for r, _, p in checks),
                "≥ 1.3x, ≥ 1.0x, ≥ 0.9x",
                verdict([(r, r is not None and r >= t) for r, t, _ in checks]),
            ))
    r = vs("brd", "seqwrite-qd8", "linear")
    rows.append(("(b) 128 KiB sequential writes, brd: dm-fracture / linear", fmt_ratio(r), "≥ 0.9x",
                 verdict([(r, r is not None and r >= 0.9)])))
    for legs in legsets:
        r = vs(legs, "randread-qd32", "linear")
        rows.append((f"(c) 4 KiB random reads QD32, {legs}: dm-fracture / linear", fmt_ratio(r), "≥ 1.0x",
                     verdict([(r, r is not None and r >= 1.0)])))
    # d is what the delayed leg takes on its own (dm-linear on it, same
    # run): dm-delay's timer granularity and the emulated CPU add to the
    # nominal D, for every device alike.
    lat = median(values(slow_by_peer.get("fracture", []), "lat_mean_us", 1e-3))
    d = median(values(slow_by_peer.get("linear", []), "lat_mean_us", 1e-3))
    limit = 1.1 * d if d else None
    rows.append(("(d) one slow leg: dm-fracture's mean write latency against the slow leg alone (d)",
                 NA if lat is None else f"{fmt(lat, 1)} ms = {fmt_ratio(ratio(lat, d))} d "
                 f"(d = {fmt(d, 1)} ms, D = {fmt(delay)} ms nominal)",
                 "≤ 1.1 x d" if limit is None else f"≤ 1.1 x d = {fmt(limit, 1)} ms",
                 verdict([(lat if limit else None, lat is not None and limit is not None and lat <= limit)])))
    for legs in legsets:
        f = io.meta_med(legs, "fracture") if io else None
        m = io.meta_med(legs, "mirror-disk") if io else None
        rows.append((f"(e) metadata writes per 1000, {legs}: dm-fracture against mirror-disk",
                     f"{fmt(f, 1)} against {fmt(m, 1)}", "fewer",
                     verdict([(f if m is not None else None, f is not None and m is not None and f < m)])))
    for legs in legsets:
        checks = [(vs(legs, wl, "fracture-nointent"), qd) for wl, qd in (("randwrite-qd1", "QD1"), ("randwrite-qd32", "QD32"))]
        rows.append((f"(f) write-intent log cost, random writes, {legs}: dm-fracture / fracture-nointent",
                     ", ".join(f"{fmt_ratio(r)} {qd}" for r, qd in checks), "≥ 0.9x",
                     verdict([(r, r is not None and r >= 0.9) for r, _ in checks])))
    out.append("## Goals")
    out.append("")
    out.append("| goal | measured | target | result |")
    out.append("|---|---|---|---|")
    for g in rows:
        out.append("| " + " | ".join(g) + " |")


def chart(io, results):
    """chart.dat, chart.gp and, with gnuplot, chart.png."""
    legsets = [l for l in io.legsets if any(io.results.get((l, "fracture", w)) for w in io.workloads)]
    peers = [p for p in io.peers if p != "fracture"]
    wls = io.workloads
    width = 0.8 / max(len(peers), 1)
    lines = ["# dm-fracture / peer (ratio of medians), bars from 1.0; one block per leg set and peer",
             "# x ratio xlow xhigh ylow yhigh"]
    blocks = {}  # (legs, peer) -> index in chart.dat
    ratios = []
    idx = 0
    for legs in legsets:
        for j, p in enumerate(peers):
            pts = []
            for i, wl in enumerate(wls):
                r = io.vs(legs, wl, p)
                if r is None or r <= 0:
                    continue
                x = i - 0.4 + width * (j + 0.5)
                pts.append(f"{x:.4f} {r:.4f} {x - width * 0.45:.4f} {x + width * 0.45:.4f} {min(r, 1):.4f} {max(r, 1):.4f}")
                ratios.append(r)
            if not pts:
                continue
            lines.append(f"# {legs} {p}")
            lines.extend(pts)
            lines.extend(["", ""])
            blocks[(legs, p)] = idx
            idx += 1
    with open(os.path.join(results, "chart.dat"), "w") as f:
        f.write("\n".join(lines) + "\n")

    lo = min([0.5] + [r / 1.3 for r in ratios])
    hi = max([2.0] + [r * 1.3 for r in ratios])
    term = "png"
    gnuplot = shutil.which("gnuplot")
    if gnuplot:
        try:
            t = subprocess.run([gnuplot, "-e", "set terminal pngcairo"], capture_output=True, text=True, timeout=30)
            if t.returncode == 0 and not t.stderr.strip():
                term = "pngcairo"
        except (OSError, subprocess.SubprocessError):
            pass
    font = ' noenhanced font ",10"' if term == "pngcairo" else " noenhanced"
    n = max(len(legsets), 1)
    gp = [
        "# Made by tests/bench/report.py: dm-fracture / peer per workload, bars from 1.0.",
        f"set terminal {term} size 1200,{450 * n}{font}",
        'set output "chart.png"',
        "set logscale y 2",
        f"set yrange [{lo:.3f}:{hi:.3f}]",
        'set format y "%gx"',
        "set ytics 2",
        f"set xrange [-0.6:{len(wls) - 0.4}]",
        "set xtics (" + ", ".join(f'"{w}" {i}' for i, w in enumerate(wls)) + ")",
        "set grid ytics",
        "set key outside right top vertical",
        'set ylabel "dm-fracture / peer (above 1: dm-fracture faster)"',
        "set style fill solid 0.85 border -1",
        f'set multiplot layout {n},1 title "make bench: dm-fracture against each peer (ratio of medians)"',
    ]
    for legs in legsets or ["none"]:
        gp.append(f'set title "legs: {LEGSETS.get(legs, legs)}"')
        clauses = [
            f'"chart.dat" index {blocks[(legs, p)]} using 1:2:3:4:5:6 with boxxyerror lc rgb "{COLOURS.get(p, "#999999")}" title "{p}"'
            for p in peers if (legs, p) in blocks
        ]
        clauses.append('1 with lines lc rgb "black" lw 2 dt 2 notitle')
        gp.append("plot " + ", \\\n\t".join(clauses))
    gp.append("unset multiplot")
    with open(os.path.join(results, "chart.gp"), "w") as f:
        f.write("\n".join(gp) + "\n")
    if not gnuplot:
        return "chart.png not made: no gnuplot (apt-get install gnuplot-nox)"
    try:
        g = subprocess.run([gnuplot, "chart.gp"], cwd=results, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as e:
        return f"chart.png not made: {e}"
    if g.returncode != 0:
        return "chart.png not made: gnuplot: " + " ".join(g.stderr.split())[:300]
    return None


def main():
    if len(sys.argv) != 2:
        print("usage: report.py <results>", file=sys.stderr)
        return 2
    results = sys.argv[1]
    io_rows, io_bad = load(os.path.join(results, "io-raw.jsonl"))
    slow_rows, slow_bad = load(os.path.join(results, "slow-raw.jsonl"))
    if io_rows is None and slow_rows is None:
        print(f"report: no io-raw.jsonl or slow-raw.jsonl in {results}: nothing to report")
        return 0
    io = Io(io_rows) if io_rows is not None else None
    out = ["# make bench: I/O and slow-leg benchmarks", ""]
    notes = []
    if io:
        bad = [r for r in io.identical if r.get("legs_identical") is False]
        for r in bad:
            notes.append(
                f"**CORRUPTION: dm-fracture's legs differed after rep {r.get('rep')} "
                f"({r.get('legs')}, {r.get('peer')}, health {r.get('health', '?')}).**"
            )
        good = [r for r in io.identical if r.get("legs_identical") is True]
        if good and not bad:
            notes.append(f"dm-fracture's legs were identical after each of its {len(good)} brd runs.")
    for name, rows, nbad in (("io-raw.jsonl", io_rows, io_bad), ("slow-raw.jsonl", slow_rows, slow_bad)):
        if rows is None:
            notes.append(f"{name} is missing: that benchmark did not run (n/a below).")
        elif nbad:
            notes.append(f"{name}: skipped {nbad} line(s) that are not JSON objects.")
    errors = (io.errors if io else []) + [dict(r, bench="slow") for r in (slow_rows or []) if "error" in r]
    if notes:
        out.extend(notes)
        out.append("")
    if io:
        io_tables(io, out)
        out.append("")
    slow_by_peer, delay = slow_table(slow_rows or [], out)
    out.append("")
    goals(io, slow_by_peer, delay, out)
    if errors:
        out.append("")
        out.append("## Failures (their cells are n/a)")
        out.append("")
        for e in errors:
            what = ", ".join(f"{k} {e[k]}" for k in ("bench", "rep", "legs", "peer", "workload") if k in e)
            out.append(f"- {what}: {e.get('error')}")
    if io:
        note = chart(io, results)
        out.append("")
        out.append(note if note else "Chart: chart.png (from chart.dat and chart.gp).")
    with open(os.path.join(results, "bench.md"), "w") as f:
        f.write("\n".join(out) + "\n")
    print(f"report: {os.path.join(results, 'bench.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
