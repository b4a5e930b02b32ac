"""Every shipped scenario, whole, in faithful mode (`make test-full`).

Run from the repo root: .venv/bin/python tests/faithful_full.py [NAME ...]
Each scenario runs at its own time_scale, or, when it has none (1.0), at
the scale that fits it into FAITHFUL_WALL_S wall seconds (default 600),
never below 10x and never above FAITHFUL_MAX_SCALE (default 30: faster, a
300 ms button press lasts under 10 ms of the VM's time and a firmware
step can miss it). Once a device is dead for good (flat_battery's
brown-out, heartbeat_silent's cut) the rest of its run is paced to end in
~10 s (host_sim/faithful.py DEAD_WALL_S), so the 16 h flat-battery day
takes under 2 min. Prints one line per scenario and the failures in full;
exits 1 if any invariant or expectation fails.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from host_sim import scenario as SC  # noqa: E402
from host_sim.faithful import run_faithful  # noqa: E402


def scale_for(sc, wall_s, max_scale):
    if sc.time_scale and sc.time_scale != 1.0:
        return sc.time_scale
    return min(max_scale, max(10.0, sc.duration_ms / 1000.0 / wall_s))


def main(argv):
    wall_s = float(os.environ.get("FAITHFUL_WALL_S", "600"))
    max_scale = float(os.environ.get("FAITHFUL_MAX_SCALE", "30"))
    failed = 0
    t_all = time.monotonic()
    for path in SC.shipped():
        name = os.path.splitext(os.path.basename(path))[0]
        if argv and name not in argv:
            continue
        sc = SC.load(path)
        scale = scale_for(sc, wall_s, max_scale)
        t0 = time.monotonic()
        res = run_faithful(path, time_scale=scale)
        bad = [i for i in res["invariants"] if not i["ok"]] + [e for e in res["expect"] if not e["ok"]]
        f = res["faithful"]
        print("%-28s %s  x%-6g wall %6.1f s  boots %d  lag %d ms" % (
            name, "FAIL" if bad else "ok  ", scale, time.monotonic() - t0, f["boots"], f["max_lag_ms"]), flush=True)
        for b in bad:
            print("    %s: %s" % (b["name"], b.get("violations") or "expected %r, got %r" % (b.get("expected"), b.get("actual"))))
        for n in f["notes"]:
            print("    note: %s" % n)
        failed += bool(bad)
    print("%d failed; total wall %.1f s" % (failed, time.monotonic() - t_all), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
