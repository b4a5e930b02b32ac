"""The whole virtual-time simulation (real App, modem engine against the
SIM7600 emulator, network model, receiver core): simulated seconds per wall
second over a 24 h device day, and press-to-ACK latency per power profile.

Day figures:
  standby day  GNSS off between alerts (as the power profiles assume),
               heartbeat every 4 h, one SOS with 30 min of TRACKs
  GNSS-on day  the same with the GNSS on all day at 1 Hz: the device is
               woken by every NMEA burst (the worst case for the simulator)
Latency (release of the last SOS tap -> frame on air -> authenticated
ACK), over several seeds, SOS 10 min after boot:
  ready  modem registered and asleep (UART sleep, DTR)
  saver  modem switched off: the press boots it (RDY, registration, PDP, TCP)
Plus the standby day's energy per profile (GNSS off, heartbeat every 4 h).

Run from the repository root: .venv/bin/python bench/bench_sim.py
"""

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from host_sim import runner  # noqa: E402
from host_sim import scenario as S  # noqa: E402

DAY = """
[scenario]
name = "device day"
duration = "24h"
seed = %(seed)d
profile = "%(profile)s"
[device]
heartbeat_s = 14400
heartbeat_jitter_s = 600
[gnss]
on_at_boot = %(gnss)s
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


def day(gnss, profile="ready"):
    sc = S.loads(DAY % {"seed": 1, "gnss": "true" if gnss else "false", "profile": profile}, "day.toml")
    t0 = time.perf_counter()
    c0 = time.process_time()
    r = runner.Runner(sc)
    res = r.run()
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    bad = runner.failures(res)
    return sc.duration_ms / 1000.0, wall, cpu, r.steps, bad, res["energy"]


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
    print("== whole simulation, 24 h device day ==")
    for name, gnss in (("standby day (GNSS off between alerts)", False), ("GNSS-on day (1 Hz all day)", True)):
        sim_s, wall, cpu, steps, bad, _ = day(gnss)
        print("%-40s %8.0f x real time (wall %.2f s, cpu %.2f s, %d App steps)%s" % (
            name, sim_s / wall, wall, cpu, steps, "" if not bad else "  FAILURES: %s" % bad))
    print("target: >= 10,000x for the standby day")
    print()
    print("== standby day energy per profile (GNSS off, heartbeat 4 h, one SOS + 30 min of TRACKs) ==")
    for profile in ("ready", "saver"):
        _, _, _, _, bad, en = day(False, profile)
        print("%-6s %.1f mAh/day (%.2f mA average; modem %.1f mAh)%s" % (
            profile, en["used_mah"], en["avg_ma"], en["by_part_mah"].get("modem", 0.0), "" if not bad else "  FAILURES: %s" % bad))
    print()
    print("== press -> first frame on air / -> ACK (s), 7 seeds ==")
    for profile in ("ready", "saver"):
        first, ack = latencies(profile)
        print("%-6s first frame: median %.2f max %.2f | ACK: median %.2f max %.2f (n=%d)" % (
            profile, statistics.median(first), max(first), statistics.median(ack), max(ack), len(ack)))


if __name__ == "__main__":
    main()
