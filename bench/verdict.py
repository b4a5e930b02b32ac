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

Speed targets measured in wall time: the value is the median of >= 5
interleaved rounds. On a shared machine that can swing either way, so a
figure that compares two things (ours against a peer, or against a
yardstick such as one sha256) also passes `instr`: the same figure
computed from callgrind instruction counts (bench/callgrind.py). Such a
target is met only when both the median and the instruction figure meet
it; when they disagree the line says so and the verdict is NOT MET.
`instr=NOT_MEASURED` (valgrind missing) also fails: the target cannot be
confirmed.
"""

import json
import os
import statistics

RESULTS_ENV = "PANIC_BENCH_RESULTS"
NOT_MEASURED = float("nan")


def fmt(v):
    if isinstance(v, float):
        if v != v:
            return "n/a"
        if v == 0 or abs(v) >= 100 or (v.is_integer() and abs(v) < 1e15):
            return "%.0f" % v
        if abs(v) >= 10:
            return "%.1f" % v
        return "%.3g" % v
    return str(v)


def ratio_text(r):
    return "%.2fx" % r if r != float("inf") else "inf"


def _row(row):
    path = os.environ.get(RESULTS_ENV)
    if not path:
        return
    with open(path, "a") as f:
        f.write(json.dumps(row, sort_keys=True) + "\n")


def _meets(value, target, higher_is_better):
    if value != value:  # NaN: not measured
        return False
    return value >= target if higher_is_better else value <= target


def verdict(bench, figure, value, target, unit="", higher_is_better=True, spread=None, method="", instr=None):
    """Print and record one figure against its target; True when met.

    bench: the script's short name ("nmea"); figure: what was measured;
    spread: optional (low, high) of the rounds; method: how (one line:
    "median of 5 interleaved runs", "callgrind instructions", ...);
    instr: the same figure from instruction counts, which must meet the
    target too (see the module header)."""
    value = float(value)
    target = float(target)
    met = _meets(value, target, higher_is_better)
    if higher_is_better:
        ratio = value / target if target else float("inf")
        op = ">="
    else:
        ratio = target / value if value else (float("inf") if target >= 0 else 0.0)
        op = "<="
    extra = ""
    if spread is not None:
        extra = " [%s..%s]" % (fmt(float(spread[0])), fmt(float(spread[1])))
    confirm = ""
    if instr is not None:
        instr = float(instr)
        if instr != instr:
            confirm = "; instructions: not measured (valgrind not found)"
        else:
            ok = _meets(instr, target, higher_is_better)
            confirm = "; instructions: %s %s, %s" % (fmt(instr), unit, "agree" if ok == met else "DISAGREE")
        met = met and _meets(instr, target, higher_is_better)
    print("  %s: %s %s%s (target %s %s %s%s): %s (%s)%s" % (
        figure, fmt(value), unit, extra, op, fmt(target), unit, confirm, "met" if met else "NOT MET", ratio_text(ratio),
        ("  -- " + method) if method else ""), flush=True)
    _row({"bench": bench, "figure": figure, "value": value, "unit": unit, "target": target, "op": op,
          "ratio": ratio, "met": met, "spread": list(spread) if spread is not None else None, "method": method,
          "instr": None if instr is None or instr != instr else instr,
          "instr_missing": instr is not None and instr != instr})
    return met


def note(bench, figure, value, unit="", method="", spread=None):
    """A figure shown for information, with no target (never fails)."""
    extra = ""
    if spread is not None:
        extra = " [%s..%s]" % (fmt(float(spread[0])), fmt(float(spread[1])))
    print("  %s: %s %s%s%s" % (figure, fmt(float(value)), unit, extra, ("  -- " + method) if method else ""),
          flush=True)
    _row({"bench": bench, "figure": figure, "value": float(value), "unit": unit, "target": None, "op": None,
          "ratio": None, "met": None, "spread": list(spread) if spread is not None else None, "method": method,
          "instr": None, "instr_missing": False})


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
