"""`make bench`: run every bench/bench_*.py in turn, then one table of
every figure, its target, ratio and verdict; exit 1 when any target is
missed or any bench crashed.

    python bench/run.py [--report-only] [NAME ...]

NAME picks the benches whose file name contains it (`nmea`, `sim`).
--report-only prints the same and exits 0 (for exploring; `make
bench-report`). Each bench script is standalone (run with the venv's
python from the repository root), prints its own lines as it goes, and
records each figure through bench/verdict.py into a temporary file named
by $PANIC_BENCH_RESULTS, one per run of this script. A bench that exits
non-zero, or that records no figure at all, counts as crashed.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from verdict import RESULTS_ENV, fmt, ratio_text  # noqa: E402


def _value(r):
    s = "%s %s" % (fmt(r["value"]), r["unit"])
    if r.get("spread"):
        s += " [%s..%s]" % (fmt(r["spread"][0]), fmt(r["spread"][1]))
    return s.strip()


def _row_cells(r):
    if r["target"] is None:
        return [r["bench"], r["figure"], _value(r), "-", "-", "note"]
    verdict = "met" if r["met"] else "NOT MET"
    if r.get("instr") is not None:
        verdict += " (instr %s)" % fmt(r["instr"])
    elif r.get("instr_missing"):
        verdict += " (instr not measured)"
    return [r["bench"], r["figure"], _value(r), "%s %s" % (r["op"], fmt(r["target"])),
            ratio_text(r["ratio"]), verdict]


def table(rows, crashed):
    """The closing table as text: one line per figure, then the crashes."""
    head = ["bench", "figure", "value [spread]", "target", "ratio", "verdict"]
    cells = [head] + [_row_cells(r) for r in rows] + [[b, "(bench crashed: %s)" % why, "", "", "", "CRASHED"]
                                                      for b, why in crashed]
    width = [min(max(len(c[i]) for c in cells), 84 if i == 1 else 40) for i in range(len(head))]
    out = []
    for k, c in enumerate(cells):
        out.append("  ".join(c[i][:width[i]].ljust(width[i]) if i < len(c) - 1 else c[i] for i in range(len(c))))
        if k == 0:
            out.append("  ".join("-" * w for w in width))
    return "\n".join(out)


def main(argv):
    report_only = "--report-only" in argv[1:]
    wanted = [a for a in argv[1:] if a != "--report-only"]
    names = sorted(f for f in os.listdir(HERE) if f.startswith("bench_") and f.endswith(".py"))
    names = [n for n in names if not wanted or any(w in n for w in wanted)]
    if not names:
        print("no bench matches %s" % " ".join(wanted))
        return 2
    fd, results = tempfile.mkstemp(prefix="panic-bench-", suffix=".jsonl")
    os.close(fd)
    env = dict(os.environ, **{RESULTS_ENV: results})
    crashed = []
    rows = []
    try:
        for n in names:
            short = n[len("bench_"):-3]
            print("== %s ==" % n[:-3], flush=True)
            before = sum(1 for _ in open(results))
            t0 = time.monotonic()
            p = subprocess.run([sys.executable, os.path.join(HERE, n)], cwd=os.path.dirname(HERE), env=env)
            took = time.monotonic() - t0
            after = sum(1 for _ in open(results))
            if p.returncode:
                crashed.append((short, "exit status %d" % p.returncode))
                print("bench %s failed with exit status %d" % (n, p.returncode), flush=True)
            elif after == before:
                crashed.append((short, "recorded no figure"))
            print("   (%s: %.0f s)" % (short, took), flush=True)
        with open(results) as f:
            rows = [json.loads(line) for line in f if line.strip()]
    finally:
        os.unlink(results)
    missed = [r for r in rows if r["target"] is not None and not r["met"]]
    judged = sum(1 for r in rows if r["target"] is not None)
    print()
    print("== make bench: %d figures, %d with a target: %d met, %d NOT MET; %d bench(es) crashed ==" % (
        len(rows), judged, judged - len(missed), len(missed), len(crashed)))
    print(table(rows, crashed))
    failed = bool(missed or crashed)
    if failed and report_only:
        print("(--report-only: exit status 0 although targets were missed or benches crashed)")
        return 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
