"""The whole virtual-time simulation (real App, modem engine against the
SIM7600 emulator, network model, receiver core): simulated seconds per wall
second, and press-to-ACK latency per power profile.

Targets (issue 11):
  - every shipped alert scenario (host_sim/scenarios/*.toml with an `sos`
    or `test` action; GNSS on at 1 Hz as shipped) runs >= 10,000x real
    time in process (runner.run, virtual time, start-up not counted);
  - the whole `panic sim run` process runs a 45-minute scenario
    (walk_home_indoor_attack.toml) >= 2,000x real time, start-up counted
    (the wall time of the process, from exec to exit);
  - the 24 h standby day (the modem's GNSS only in its standby sessions, heartbeat every 4 h, one
    SOS with 30 min of TRACKs) >= 10,000x real time in process.
Method: ROUNDS interleaved rounds, each running every scenario once in
turn and the `panic sim run` process once; each figure is the median of
the rounds with their spread. Beside each, callgrind instructions per
simulated second of the same run (deterministic: a run depends only on
its scenario and seed), the figure to compare before and after a change
when the machine is busy.

For information: the 24 h day with the GNSS on all day at 1 Hz (one run),
the standby day's energy per profile, and press latency (release of the
last SOS tap -> frame on air -> authenticated ACK, 7 seeds, SOS 10 min
after boot) for the two profiles:
  ready  modem registered and asleep (UART sleep, DTR)
  saver  modem switched off: the press boots it (RDY, registration, PDP, TCP)

Run from the repository root: .venv/bin/python bench/bench_sim.py
"""

import os
import statistics
import subprocess
import sys
import time

# CPython's default: imports write and read __pycache__. With
# PYTHONDONTWRITEBYTECODE set (some shells and containers) nothing is ever
# cached, and each run recompiles firmware/config.py, which the firmware
# drops after boot to free RAM (firmware/loop.py forget) and imports again
# at the next: about 1.5 ms a run, a sixth of a six-minute scenario. The
# figures are for the default; the child `panic sim run` inherits it too.
sys.dont_write_bytecode = False
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

import callgrind  # noqa: E402
from verdict import NOT_MEASURED, median_spread, note, verdict  # noqa: E402

from host_sim import runner  # noqa: E402
from host_sim import scenario as S  # noqa: E402

B = "sim"
ROUNDS = 5
IN_PROCESS_X = 10_000
PROCESS_X = 2_000
PROCESS_SCENARIO = os.path.join(ROOT, "host_sim", "scenarios", "walk_home_indoor_attack.toml")
PANIC = os.path.join(os.path.dirname(sys.executable), "panic")

DAY = """
[scenario]
name = "device day"
duration = "24h"
seed = %(seed)d
profile = "%(profile)s"
[device]
heartbeat_s = 14400
heartbeat_jitter_s = 600
%(gnss)s
[route]
points = [ { at = 0, lat = 54.3212, lon = -2.7535 }, { at = "14h", lat = 54.3250, lon = -2.7475, sky = "urban" } ]
[[action]]
at = "14h"
kind = "sos"
[[action]]
at = "14h30m"
kind = "cancel"
"""

PRESS = """
[scenario]
name = "press latency"
duration = "%(dur)s"
seed = %(seed)d
profile = "%(profile)s"
[route]
points = [ { at = 0, lat = 54.3212, lon = -2.7535 } ]
[[action]]
at = "%(at)s"
kind = "sos"
"""

# runs one scenario for callgrind: `python - PATH|day run|dry`
ONE = """
import sys
sys.path.insert(0, %r)
from host_sim import runner, scenario as S
path, mode = sys.argv[1], sys.argv[2]
sc = S.loads(open(path).read(), path)
if mode == "run":
    runner.run(sc)
"""


def alert_scenarios():
    out = []
    for p in S.shipped():
        sc = S.load(p)
        if any(a.kind in ("sos", "test") for a in sc.actions):
            out.append((os.path.basename(p)[:-5], p, sc))
    return out


# the GNSS on all day: an external module on UART2, powered at boot (the
# T-SIM7600E's own GNSS runs only when the firmware starts it: standby
# sessions every fix_refresh_s, and alerts)
GNSS_ALL_DAY = 'board = "t-sim7600e-ext-gnss"\n[gnss]\non_at_boot = true'


def day_scenario(gnss, profile="ready"):
    return S.loads(DAY % {"seed": 1, "gnss": GNSS_ALL_DAY if gnss else "", "profile": profile}, "day.toml")


def timed(sc):
    """(x real time by wall clock, results) of one in-process run."""
    t0 = time.perf_counter()
    res = runner.run(sc)
    wall = time.perf_counter() - t0
    bad = runner.failures(res)
    if bad:
        raise SystemExit("%s failed: %s" % (sc.name, bad))
    return sc.duration_ms / 1000.0 / wall, res


def process_x():
    """x real time of the whole `panic sim run` process (start-up counted)."""
    t0 = time.perf_counter()
    p = subprocess.run([PANIC, "sim", "run", PROCESS_SCENARIO], cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode:
        raise SystemExit("panic sim run failed: %s" % (p.stderr or p.stdout))
    return S.load(PROCESS_SCENARIO).duration_ms / 1000.0 / wall


def instr_per_sim_s(paths):
    """Callgrind instructions per simulated second of each scenario file run
    in process (a run less one that only imports and loads), and of the
    whole `panic sim run` process."""
    if not callgrind.available():
        return {k: NOT_MEASURED for k in list(paths) + ["process"]}
    script = os.path.join(ROOT, "build", "bench-sim-one.py")
    os.makedirs(os.path.dirname(script), exist_ok=True)
    with open(script, "w") as f:
        f.write(ONE % ROOT)
    out = {}
    for name, path in paths.items():
        sim_s = S.loads(open(path).read(), path).duration_ms / 1000.0
        out[name] = callgrind.per_op([sys.executable, script, path, "run"], [sys.executable, script, path, "dry"],
                                     sim_s)
    sim_s = S.load(PROCESS_SCENARIO).duration_ms / 1000.0
    out["process"] = callgrind.count([PANIC, "sim", "run", PROCESS_SCENARIO])[0] / sim_s
    return out


def latencies(profile, seeds=range(1, 8)):
    first, ack = [], []
    for seed in seeds:
        res = runner.run(S.loads(PRESS % {"seed": seed, "profile": profile, "at": "10m", "dur": "15m"}, "p.toml"))
        (a,) = [a for a in res["alerts"] if a["kind"] == "sos"]
        if a["first_frame_ms"] is not None:
            first.append((a["first_frame_ms"] - a["press_ms"]) / 1000.0)
        if a["ack_ms"] is not None:
            ack.append((a["ack_ms"] - a["press_ms"]) / 1000.0)
    return first, ack


def main():
    scen = alert_scenarios()
    standby = day_scenario(False)
    runs = {name: [] for name, _, _ in scen}
    runs["standby day"] = []
    runs["process"] = []
    for _ in range(ROUNDS):
        for name, _, sc in scen:
            runs[name].append(timed(sc)[0])
        runs["standby day"].append(timed(standby)[0])
        runs["process"].append(process_x())
    day_path = os.path.join(ROOT, "build", "bench-sim-standby-day.toml")
    os.makedirs(os.path.dirname(day_path), exist_ok=True)
    with open(day_path, "w") as f:
        f.write(DAY % {"seed": 1, "gnss": "", "profile": "ready"})
    paths = {name: p for name, p, _ in scen}
    paths["standby day"] = day_path
    ins = instr_per_sim_s(paths)
    how = "median of %d interleaved rounds" % ROUNDS

    print("== in process (runner.run, virtual time), x real time by wall clock ==")
    for name, _, sc in scen:
        m, spread = median_spread(runs[name])
        verdict(B, "alert scenario %s (%s simulated), in process" % (name, _dur(sc.duration_ms)), m, IN_PROCESS_X,
                "x", spread=spread, method=how)
        if ins[name] == ins[name]:
            note(B, "alert scenario %s, instructions per simulated second" % name, ins[name], "instr", "callgrind")
    m, spread = median_spread(runs["standby day"])
    verdict(B, "24 h standby day (GNSS only in standby sessions), in process", m, IN_PROCESS_X, "x", spread=spread,
            method=how)
    if ins["standby day"] == ins["standby day"]:
        note(B, "24 h standby day, instructions per simulated second", ins["standby day"], "instr", "callgrind")
    print("== the whole `panic sim run` process, start-up counted ==")
    m, spread = median_spread(runs["process"])
    verdict(B, "panic sim run walk_home_indoor_attack (45 min), whole process", m, PROCESS_X, "x", spread=spread,
            method=how)
    if ins["process"] == ins["process"]:
        note(B, "panic sim run walk_home_indoor_attack, instructions per simulated second", ins["process"], "instr",
             "callgrind, whole process")

    print("== for information ==")
    x, _ = timed(day_scenario(True))
    note(B, "24 h day with the GNSS on at 1 Hz all day, in process", x, "x", "one run")
    for profile in ("ready", "saver"):
        _, res = timed(day_scenario(False, profile))
        en = res["energy"]
        note(B, "standby day energy, profile %s (modem %.1f mAh, %.2f mA average)" % (
            profile, en["by_part_mah"].get("modem", 0.0), en["avg_ma"]), en["used_mah"], "mAh/day",
            "virtual time, GNSS off, heartbeat 4 h, one SOS + 30 min of TRACKs")
    for profile in ("ready", "saver"):
        first, ack = latencies(profile)
        note(B, "%s: press -> first frame on air, median of 7 seeds (max %.2f s)" % (profile, max(first)),
             statistics.median(first), "s", "virtual time")
        note(B, "%s: press -> ACK, median of %d seeds (max %.2f s)" % (profile, len(ack), max(ack)),
             statistics.median(ack), "s", "virtual time")


def _dur(ms):
    s = ms // 1000
    return "%dh%02dm" % (s // 3600, s // 60 % 60) if s >= 3600 else "%dm" % (s // 60)


if __name__ == "__main__":
    main()
