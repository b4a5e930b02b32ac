"""Simulated seconds per wall second for the world side of the simulator:
the virtual clock plus the GNSS emulator over a 24 h device day, with the
GNSS on all day at 1 Hz and the device UART read at every epoch (the worst
case for the world; a real device powers the GNSS off most of the day).
Also the clock alone with a firmware-like poll pattern, and the energy
model's profile trade-off.

Figures depend on machine load: the CPU-second rate is the steadier one
on a shared machine; each is the median of ROUNDS interleaved rounds (the
three GNSS styles and the clock in turn), with the spread.

No target of its own: these are the parts of bench_sim.py's figures that
the world costs, for information (bench_sim.py judges the whole).
Run from the repository root: .venv/bin/python bench/bench_sim_world.py
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from host_sim import energy  # noqa: E402
from host_sim.clock import Clock  # noqa: E402
from host_sim.gnss import GnssEmulator  # noqa: E402
from host_sim.route import Route  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from verdict import median_spread, note  # noqa: E402

B = "sim_world"
ROUNDS = 5

DAY_MS = 24 * 3600 * 1000
GPX = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "host_sim", "scenarios", "walk_home.gpx")


def gnss_day(style):
    route = Route.from_gpx(GPX)
    route.add_window(20 * 60_000, 8 * 3600_000, "indoor")
    route.add_window(12 * 3600_000, 14 * 3600_000, "urban")
    g = GnssEmulator(route, style=style, start="cold", seed=1)
    c = Clock()
    got = [0]

    def uart_wake():
        got[0] += len(g.read(c.now))
        nxt = g.next_output_ms(c.now)
        # the device reads once per burst: wake 800 ms after the burst starts
        c.at(max(c.now + 1, nxt + 800), uart_wake)

    g.power(True, 0)
    c.at(0, uart_wake)
    t0 = time.perf_counter()
    p0 = time.process_time()
    c.run_until(DAY_MS)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - p0
    return wall, cpu, got[0], g.epochs, c.fired


def clock_day():
    """Firmware-like: poll every 20 ms for 5 min an hour (active), else
    wake once a minute (asleep)."""
    c = Clock()
    n = [0]

    def poll():
        n[0] += 1
        in_hour = c.now % 3_600_000
        c.after(20 if in_hour < 300_000 else 60_000, poll)

    c.at(0, poll)
    t0 = time.perf_counter()
    c.run_until(DAY_MS)
    return time.perf_counter() - t0, n[0]


def main():
    styles = ("ublox-m8", "quectel-l76", "minimal")
    runs = {k: [] for k in styles + ("clock",)}
    for _ in range(ROUNDS):
        for style in styles:
            runs[style].append(gnss_day(style))
        runs["clock"].append(clock_day())
    day_s = DAY_MS / 1000
    how = "median of %d interleaved rounds" % ROUNDS
    for style in styles:
        wall, cpu, nbytes, epochs, fired = runs[style][0]
        m, spread = median_spread([day_s / r[0] for r in runs[style]])
        note(B, "GNSS + clock, 24 h, %s (%d epochs, %.1f MB NMEA, %d events), by wall clock" % (
            style, epochs, nbytes / 1e6, fired), m, "x real time", how, spread=spread)
        m, spread = median_spread([day_s / max(r[1], 1e-9) for r in runs[style]])
        note(B, "GNSS + clock, 24 h, %s, per CPU second" % style, m, "x real time", how, spread=spread)
    polls = runs["clock"][0][1]
    m, spread = median_spread([day_s / r[0] for r in runs["clock"]])
    note(B, "clock alone, 24 h of firmware-like polls (%d polls)" % polls, m, "x real time", how, spread=spread)
    for row in energy.profile_tradeoff():
        note(B, "profile %s: standby current (%.1f days on %d mAh, +%.1f s typical to first frame)" % (
            row["profile"], row["standby_days"], row["capacity_mah"], row["first_frame_extra_s"]["typ"]),
            row["avg_ma"], "mA", "energy model")


if __name__ == "__main__":
    main()
