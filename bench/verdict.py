"""Verdicts for `make bench`: every figure against its target, one line
each, and the rows bench/run.py gathers into its closing table.

A bench script calls verdict() once per figure that has a target (and
note() for a figure shown without one). Each call prints

    <figure>: <value> <unit> (target <op> <target>): met (1.23x)

and, when bench/run.py started the script, appends one JSON row to the
file named by $PANIC_BENCH_RESULTS. The script's exit status says nothing
about targets: run.py reads the rows and fails the run when any row is
not met (unless --report-only).

Timing helpers: interleave() runs the contenders in turn, N rounds, so a
machine that slows down mid-bench slows every contender alike;
median_spread() gives the median and the spread (min, max) of the rounds.

The ratio is always "how far on the good side of the target": >= 1.0 is
met, whatever the direction (value/target when higher is better,
target/value when lower is better).
"""

import json
import os
import statistics

RESULTS_ENV = "PANIC_BENCH_RESULTS"


def _fmt(v):
    if isinstance(v, float):
        if v == 0 or abs(v) >= 100:
            return "%.0f" % v
        if abs(v) >= 10:
            return "%.1f" % v
        return "%.3g" % v
    return str(v)


def _row(row):
    path = os.environ.get(RESULTS_ENV)
    if not path:
        return
    with open(path, "a") as f:
        f.write(json.dumps(row, sort_keys=True) + "\n")


def verdict(bench, figure, value, target, unit="", higher_is_better=True, spread=None, method=""):
    """Print and record one figure against its target; True when met.

    bench: the script's short name ("nmea"); figure: what was measured;
    spread: optional (low, high) of the rounds; method: how (one line:
    "median of 5 interleaved runs", "callgrind instructions", ...)."""
    value = float(value)
    target = float(target)
    if higher_is_better:
        met = value >= target
        ratio = value / target if target else float("inf")
        op = ">="
    else:
        met = value <= target
        ratio = target / value if value else float("inf")
        op = "<="
    extra = ""
    if spread is not None:
        extra = " [%s..%s]" % (_fmt(float(spread[0])), _fmt(float(spread[1])))
    print("  %s: %s %s%s (target %s %s %s): %s (%.2fx)%s" % (
        figure, _fmt(value), unit, extra, op, _fmt(target), unit, "met" if met else "NOT MET", ratio,
        ("  -- " + method) if method else ""), flush=True)
    _row({"bench": bench, "figure": figure, "value": value, "unit": unit, "target": target, "op": op,
          "ratio": ratio, "met": met, "spread": list(spread) if spread is not None else None, "method": method})
    return met


def note(bench, figure, value, unit="", method=""):
    """A figure shown for information, with no target (never fails)."""
    print("  %s: %s %s%s" % (figure, _fmt(float(value)), unit, ("  -- " + method) if method else ""), flush=True)
    _row({"bench": bench, "figure": figure, "value": float(value), "unit": unit, "target": None, "op": None,
          "ratio": None, "met": None, "spread": None, "method": method})


def median_spread(samples):
    """(median, (min, max)) of a list of numbers."""
    s = sorted(samples)
    return statistics.median(s), (s[0], s[-1])


def interleave(contenders, rounds=5):
    """Run each callable of the dict {name: fn} once per round, in turn,
    for `rounds` rounds; {name: [result of each round]}."""
    out = {k: [] for k in contenders}
    for _ in range(rounds):
        for k, fn in contenders.items():
            out[k].append(fn())
    return out
