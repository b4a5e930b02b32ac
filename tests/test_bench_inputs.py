"""The benches' own inputs stay valid as the simulator's rules move.

`make bench` is not part of `make test`, so a bench whose scenario the
stricter scenario loader now refuses, or whose stand-in main loop no longer
fits the modem rig, would go unnoticed until someone judged speed with it
(both happened: bench_faithful's external-module style on the T-SIM7600E's
own GNSS, bench_modem's polling loop calling the rig's step without its
limit). These load every scenario a bench builds, and drive the modem
bench's polling main loop once, without timing anything.
"""

import importlib
import os
import sys

from host_sim import scenario as S

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))


def _bench(name):
    """A bench module, imported as its own script would be (some read
    their command line at import)."""
    argv = sys.argv
    sys.argv = [name + ".py"]
    try:
        return importlib.import_module(name)
    finally:
        sys.argv = argv


bench_failover = _bench("bench_failover")
bench_faithful = _bench("bench_faithful")
bench_modem = _bench("bench_modem")
bench_sim = _bench("bench_sim")
bench_wake = _bench("bench_wake")


def test_every_scenario_a_bench_builds_loads():
    built = [
        S.loads(bench_faithful.SCENARIO, "bench.toml"),
        bench_sim.day_scenario(False),
        bench_sim.day_scenario(True),
        bench_sim.day_scenario(False, profile="saver"),
        S.loads(bench_wake.SCENARIO % {"latency": 300}, "wake.toml"),
        bench_failover._scenario(1, 60.0, ""),
    ]
    for profile in ("ready", "saver"):
        built.append(S.loads(bench_sim.PRESS % {"seed": 1, "profile": profile, "at": "10m", "dur": "15m"}, "p.toml"))
    assert all(sc.duration_ms > 0 and sc.actions for sc in built)
    # the faithful bench runs the board as it is built: the modem's own GNSS
    faithful = built[0]
    assert faithful.board == "t-sim7600e" and faithful.gnss.style == "sim7600"


def test_the_modem_bench_polling_loop_delivers_and_never_beats_the_floor():
    # a main loop that polls every 25 ms, over an open socket and a closed one
    for sock_open in (True, False):
        took, floor_ms, parts = bench_modem.one(sock_open, 25)
        assert parts and floor_ms == sum(ms for _, ms in parts)
        assert floor_ms - 1 <= took <= floor_ms + 100, (sock_open, took, floor_ms)
