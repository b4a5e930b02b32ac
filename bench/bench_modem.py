"""Modem engine benchmarks (run from the repository root with the venv python).

1. Time from "send this frame" to a verified ACK, engine against the SIM7600
   emulator in virtual time with its default timings (no jitter, no loss),
   against the floor of the modelled latencies: per AT command the
   emulator's command latency, per TCP round trip the network's up + down
   latency. Target: the engine adds <= 5 % over that floor (virtual time:
   the figure is exact, the same on every run). Measured with the
   socket already open (a TRACK after the ALERT) and closed (first frame:
   AT+CIPOPEN first), polled when the engine and emulator ask (event-driven)
   and from a main loop that polls every 7 or 25 ms.
2. CPU: host CPython time per delivery (median of 5 runs of 200), and
   MicroPython unix-port time per send/ACK cycle of the engine against a
   scripted modem (median of 5 runs).
3. RAM on MicroPython (.mpy, unix port, 64-bit: an ESP32 needs less):
   heap taken by importing the engine (protocol modules already loaded),
   by one ModemTransport, and the smallest heap that runs bring-up plus 20
   deliveries.
"""

import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

from bench import floor, mp_util  # noqa: E402
from bench.verdict import median_spread, note, verdict  # noqa: E402
from host_sim.modem import DEFAULTS  # noqa: E402
from host_sim.network import DOWN, UP, Network  # noqa: E402
from modem_world import KEYS, World, alert  # noqa: E402
from protocol import frame as F  # noqa: E402


def floor_ms(emu, net, frame, sock_open, wake=False):
    """The modelled floor (bench/floor.py): UART bytes, answer times, round trips."""
    n_up = len(F.encode(KEYS, frame))
    n_down = len(F.encode(KEYS, F.Frame(F.ACK, frame.device_id, 1, frame.time, F.Ack(frame.seq))))
    return floor.parts(emu, n_up, n_down, net.floor(UP), wake=wake, sock_open=sock_open)


def one(sock_open, tick_ms=None, seq=2, asleep=False):
    net = Network(seed=1, jitter_ms=0, loss=0.0)
    w = World(net=net, start_on=True)
    w.rig.run_until(w.t.data_ready, 60000)
    if sock_open:
        w.assert_delivered(w.deliver(alert(1)))
    # let status polls and the like finish, then start at a quiet moment
    w.rig.run_until(lambda: w.t.engine._job is None and not w.t.busy(), w.rig.now + 5000)
    if asleep:
        w.t.sleep(w.rig.now)
        w.rig.run_until(lambda: w.emu.asleep() and w.t.engine._job is None, w.rig.now + 60000)
        assert w.emu.asleep()
        w.t.wake(w.rig.now)
    assert w.t.engine.sock == sock_open
    if tick_ms:
        # a main loop that polls every tick_ms instead of when asked
        rig = w.rig
        orig = rig.step

        def step(limit_ms=None):
            now = rig.clock.now
            orig(limit_ms)
            nxt = now + tick_ms
            rig.clock.now = max(nxt - (nxt % tick_ms), now + 1) if rig.clock.now > now else now

        rig.step = step
    fr = alert(seq)
    d = w.deliver(fr)
    parts = floor_ms(w.emu, net, fr, sock_open, wake=asleep)
    return w.assert_delivered(d), sum(ms for _, ms in parts), parts


def cpu_per_delivery(n=200):
    t0 = time.process_time()
    for i in range(n):
        w = World(start_on=True, seed=i)
        w.assert_delivered(w.deliver(alert(1)))
    return (time.process_time() - t0) / n * 1000


MP_SCRIPT = r'''
import gc, sys, time
sys.path.insert(0, "tests/device")
gc.collect()
import protocol.stream
gc.collect(); a = gc.mem_free()
import firmware.modem.transport
gc.collect(); b = gc.mem_free()
from modem_script import World, REPLY
gc.collect(); c = gc.mem_free()
w = World()
gc.collect(); d = gc.mem_free()
assert w.run(w.t.data_ready)
N = 20
t0 = time.ticks_us()
for i in range(N):
    w.events = []
    w.t.send_frame(bytes(range(100, 150)), w.now)
    assert w.run(lambda: ("frame", REPLY) in w.events)
    w.modem.lines = []
    w.modem.payloads = []
us = time.ticks_diff(time.ticks_us(), t0)
print("import_engine", a - b)
print("transport_obj", c - d)
print("cycle_us", us // N)
'''


def mp_figures():
    mp_util.compile_device_code()
    # the scripted modem lives with the device tests and answers from the
    # SIM7600 answer table; compile them too
    from tools.mpy_compile import compile_all

    compile_all(["tests/device", "host_sim/sim7600_answers.py"], mp_util.BUILD, march="")
    path = os.path.join(mp_util.BUILD, "bench_modem_mp.py")
    with open(path, "w") as f:
        f.write(MP_SCRIPT)
    runs = []
    for _ in range(5):
        rc, out, err = mp_util.run_mp(path, "256k")
        if rc:
            raise SystemExit("MicroPython bench failed:\n" + (err or out))
        runs.append(dict(line.split() for line in out.strip().splitlines()))
    heap = mp_util.min_heap(path)
    return runs, heap


B = "modem"


def main():
    print("modem: send -> verified ACK, virtual time, default emulator timings (cmd %d ms, net %d+%d ms)"
          % (DEFAULTS["cmd_latency_ms"], Network().floor(UP), Network().floor(DOWN)))
    worst = 0.0
    for sock_open, asleep in ((True, False), (False, False), (True, True)):
        for tick in (None, 7, 25):
            took, fl, parts = one(sock_open, tick, asleep=asleep)
            over = (took - fl) / fl * 100
            if tick is None:
                worst = max(worst, over)
                note(B, "%ssocket %s: floor %d ms = %s" % ("modem asleep, " if asleep else "",
                                                        "open" if sock_open else "closed", fl, floor.text(parts)),
                     fl, "ms")
            note(B, "%ssocket %s, poll %s: send -> ACK %.1f ms over a %d ms floor" % (
                "modem asleep, " if asleep else "", "open" if sock_open else "closed",
                "when asked" if tick is None else "every %d ms" % tick, took, fl),
                over, "%", "virtual time")
    verdict(B, "engine's share over the floor, event-driven (worst of open, closed, and asleep)", worst, 5, "%",
            higher_is_better=False, method="virtual time (exact)")
    m, spread = median_spread([cpu_per_delivery() for _ in range(5)])
    note(B, "CPython CPU per full delivery incl. bring-up and emulator", m, "ms", "median of 5 runs of 200",
         spread=spread)
    runs, heap = mp_figures()
    cycle, spread = median_spread([int(r["cycle_us"]) / 1000 for r in runs])
    note(B, "MicroPython engine import (.mpy, after protocol)", int(runs[0]["import_engine"]) / 1024, "KB")
    note(B, "MicroPython one ModemTransport", int(runs[0]["transport_obj"]) / 1024, "KB")
    note(B, "MicroPython send/ACK cycle CPU (unix port)", cycle, "ms", "median of 5 runs of 20", spread=spread)
    note(B, "MicroPython smallest heap for bring-up + 20 deliveries", heap, "KB", "smallest -X heapsize that works")
    open_floor = one(True)[1]
    note(B, "engine CPU per send/ACK cycle as a share of the open-socket floor (unix port; an ESP32 at 240 MHz "
         "is roughly 10-20x slower)", cycle / open_floor * 100, "%")


if __name__ == "__main__":
    main()
