"""`panic sim`: run simulated scenarios.

    panic sim run FILE [--json OUT] [--report OUT.html] [--seed N] [--strict]
        one scenario in virtual time; exit 0 when every invariant and the
        scenario's [expect] hold, else 1 with the failures on stderr
    panic sim demo [--json OUT] [--report OUT.html]
        the default scenario (walk home, then an indoor attack) and a short
        summary of the alert as the receiver saw it

Owns: argument handling and the human summary. Never does: decide pass or
fail itself (host_sim/runner.failures does), print keys (results hold none).
Exit codes (tools/errors.py): 0 every invariant and expectation holds,
1 one failed, 2 the scenario file or an option is wrong, 3 a file cannot be
read or written (the message names it).
`--faithful` hands the run to host_sim/faithful.py (the MicroPython VM
mode) when that module is present.

Must stay in sync with: host_sim/runner.py, host_sim/report.py,
docs/scenarios.md ("How to run"), tools/cli.py COMMANDS.
"""

import importlib
import os
import sys
import time

from host_sim import report, scenario
from panic.errors import Unavailable, UsageError

DEFAULT_SCENARIO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scenarios", "walk_home_indoor_attack.toml")


def _load(path):
    if os.path.isdir(path):
        inside = sorted(f for f in os.listdir(path) if f.endswith(".toml"))
        raise UsageError("%s is a folder: give one scenario file%s" % (
            path, " (it holds %s)" % ", ".join(inside[:4] + (["..."] if len(inside) > 4 else [])) if inside else ""))
    try:
        with open(path, "rb"):
            pass
    except OSError as e:
        raise Unavailable("cannot read scenario %s: %s" % (path, e.strerror or e)) from None
    try:
        return scenario.load(path)
    except scenario.ScenarioError as e:
        raise UsageError(str(e)) from None
    except OSError as e:
        raise Unavailable("cannot read scenario %s: %s" % (path, e.strerror or e)) from None


def _run(args, path):
    from host_sim import runner

    sc = _load(path)
    if getattr(args, "faithful", False):
        try:
            mod = importlib.import_module("host_sim.faithful")
        except ImportError:
            raise Unavailable("faithful mode is not available in this build") from None
        return mod.run(sc, args), runner
    try:
        res = runner.run(sc, seed=args.seed, strict=getattr(args, "strict", False))
    except ValueError as e:  # a [device] or fault setting the firmware/emulator does not know
        raise UsageError("%s: %s" % (path, e)) from None
    return res, runner


def _check_outputs(args):
    """Say before the run, not after it, that --json or --report cannot be
    written (a missing folder, one we may not write to, a folder given as
    the file)."""
    for opt, path in (("--json", args.json), ("--report", args.report)):
        if not path:
            continue
        if os.path.isdir(path):
            raise UsageError("%s %s is a folder: give a file name" % (opt, path))
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise Unavailable("cannot write %s: folder %s does not exist" % (path, folder))
        if not os.access(folder, os.W_OK):
            raise Unavailable("cannot write %s: folder %s is not writable" % (path, folder))


def _write(res, args):
    for path, write in ((args.json, report.write_json), (args.report, report.write_html)):
        if not path:
            continue
        try:
            write(res, path)
        except OSError as e:
            raise Unavailable("cannot write %s: %s" % (path, e.strerror or e)) from None


def cmd_run(args):
    _check_outputs(args)
    t0 = time.monotonic()
    res, runner = _run(args, args.file)
    wall = time.monotonic() - t0
    _write(res, args)
    fails = runner.failures(res)
    sc = res["scenario"]
    print("%s: %s simulated in %.1f s wall" % (sc["name"], _dur(sc["duration_ms"]), wall))
    if fails:
        for f in fails:
            print("FAIL " + f, file=sys.stderr)
        print("%d failure(s)" % len(fails), file=sys.stderr)
        return 1
    n_inv = len(res.get("invariants", []))
    print("ok: %d invariants and %d expectations hold" % (n_inv, len(res.get("expect", []))))
    return 0


def _dur(ms):
    s = ms // 1000
    return "%dh%02dm%02ds" % (s // 3600, s // 60 % 60, s % 60) if s >= 3600 else "%dm%02ds" % (s // 60, s % 60)


def summary_lines(res):
    """The human summary of a run: the first alert as the receiver raised
    it, its latencies, the TRACKs and the energy."""
    out = []
    sc = res["scenario"]
    out.append("scenario: %s (%s simulated)" % (sc["name"], _dur(sc["duration_ms"])))
    evs = (res.get("receiver") or {}).get("events") or []
    alert = next((e for e in evs if e.get("kind") in ("alert", "test_alert")), None)
    a = next((x for x in res.get("alerts", []) if x["kind"] in ("sos", "test")), None)
    if alert is None:
        out.append("NO ALERT reached the receiver")
    else:
        fr = alert.get("frame") or {}
        out.append("VERIFIED %s from device %s (%s), seq %s, by %s" % (
            alert.get("label", "ALERT"), alert.get("device_id"), alert.get("person_ref"), fr.get("seq"),
            (fr.get("transport") or "?").upper()))
        pos = alert.get("position")
        if pos:
            out.append("  position: lat %.7f lon %.7f, source %s, accuracy %s m, fix age %s s" % (
                pos["lat"], pos["lon"], pos.get("source"), pos.get("accuracy_m"), pos.get("age_s")))
            out.append("  map: %s" % pos.get("map", ""))
            p = next((p for p in res.get("positions", []) if a and p["seq"] == a["seq"]), None)
            if p and p.get("error_m") is not None:
                out.append("  true position was %.1f m away (claimed accuracy %s m)" % (p["error_m"], p["accuracy_m"]))
        else:
            out.append("  position: unknown")
    if a is not None:
        def lat(k):
            return "%.2f s" % ((a[k] - a["press_ms"]) / 1000.0) if a.get(k) is not None else "never"

        out.append("  latency: press -> first frame on air %s, press -> ACK %s" % (lat("first_frame_ms"), lat("ack_ms")))
    tracks = sum(1 for r in (res.get("receiver") or {}).get("raised", []) if r["type"] == "TRACK")
    out.append("TRACKs received: %d" % tracks)
    en = res.get("energy") or {}
    if en.get("used_mah") is not None:
        out.append("energy: %.1f mAh used (%.1f mA average), battery %s%% at the end; %s days at this average" % (
            en["used_mah"], en.get("avg_ma", 0.0), en.get("soc_pct_end", "?"), en.get("projected_days_at_avg", "?")))
    bad = [i["name"] for i in res.get("invariants", []) if not i["ok"]]
    out.append("invariants: %s" % ("all hold" if not bad else "FAILED " + ", ".join(bad)))
    return out


def cmd_demo(args):
    _check_outputs(args)
    args.file = DEFAULT_SCENARIO
    res, runner = _run(args, DEFAULT_SCENARIO)
    _write(res, args)
    for line in summary_lines(res):
        print(line)
    fails = runner.failures(res)
    for f in fails:
        print("FAIL " + f, file=sys.stderr)
    return 1 if fails else 0


def register(sub):
    p = sub.add_parser("sim", help="run simulated scenarios (virtual time)")
    ss = p.add_subparsers(dest="sim_cmd", metavar="ACTION")
    ss.required = True
    r = ss.add_parser("run", help="run one scenario file; exit 1 if an invariant or expectation fails")
    r.add_argument("file", help="scenario TOML (docs/scenarios.md)")
    r.add_argument("--json", metavar="OUT", help="write the results as JSON")
    r.add_argument("--report", metavar="OUT.html", help="write the HTML report")
    r.add_argument("--seed", type=int, help="override the scenario's seed")
    r.add_argument("--strict", action="store_true", help="an alert still queued at the end counts as lost")
    r.add_argument("--faithful", action="store_true", help="run the firmware in the MicroPython VM, in real time")
    r.set_defaults(func=cmd_run)
    d = ss.add_parser("demo", help="run the default scenario and summarise the alert")
    d.add_argument("--json", metavar="OUT")
    d.add_argument("--report", metavar="OUT.html")
    d.add_argument("--seed", type=int)
    d.set_defaults(func=cmd_demo)
