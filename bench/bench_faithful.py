"""Faithful mode figures: the smallest MicroPython heap the firmware runs
in (unix port), and press-to-ACK latency through the VM, the emulated
modem and the real receiver.

Each try boots the real firmware (host_sim/faithful.py) on a one-point
route, opens an authenticated console session once the boot STATUS is
acknowledged and asks for status and the event log, presses SOS at 60 s
simulated and runs to 100 s at 10x. A heap passes when the console
answered, no fault was left on flash and the ALERT was acknowledged (a
heap too fragmented to load the console's modules at its first byte
fails: host_sim/faithful.py DEFAULT_HEAP). Heaps are tried from large to
small until one fails. Figures are for the 64-bit unix port: objects
there are about twice their ESP32 size.

No target: these figures are shown for information (the device's heap
target is judged by bench_firmware.py on the release as the ESP32 runs it;
press-to-ACK latency per power profile by bench_sim.py).
"""

import os
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from host_sim import scenario as SC  # noqa: E402
from host_sim.faithful import Rig  # noqa: E402
from tools.diaglink import SerialConsole  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from verdict import note  # noqa: E402

B = "faithful"

SCENARIO = """
[scenario]
name = "bench"
seed = 1
duration = "100s"
time_scale = 10
[gnss]
start = "hot"
[route]
points = [ { at = "0s", lat = 54.32120, lon = -2.75350 } ]
[[action]]
at = "60s"
kind = "sos"
"""
HEAPS_KB = (512, 448, 384, 352, 336, 320, 256)


def one(heap_kb):
    d = tempfile.mkdtemp()
    path = os.path.join(d, "bench.toml")
    with open(path, "w") as f:
        f.write(SCENARIO)
    rig = Rig(SC.load(path), heap="%dk" % heap_kb).start()
    stop = threading.Event()

    def loop():
        while not stop.is_set() and rig.pacer.clock.now < rig.sc.duration_ms:
            rig.pump()

    th = threading.Thread(target=loop, daemon=True)
    th.start()
    # the console is tried once the boot STATUS is acknowledged (the
    # firmware up, the modem registered), as `panic sim board` says "ready"
    t_end = time.monotonic() + 8
    while not rig.progress()["acks"] and time.monotonic() < t_end:
        time.sleep(0.1)
    console = False
    try:
        with SerialConsole(rig.console_url, rig.ekey, timeout=5) as c:
            c.login()
            console = bool(c.call("status").get("ok")) and bool(c.call("log").get("ok"))
    except Exception:  # noqa: BLE001 - a heap too small shows here
        pass
    th.join()
    res = rig.finish()
    fault = os.path.exists(os.path.join(rig.root, "data", "fault"))
    rig.stop()
    a = res["alerts"][0] if res["alerts"] else {}
    ok = console and not fault and a.get("ack_ms") is not None
    return ok, a, res


def main():
    last_ok = None
    fig = None
    for kb in HEAPS_KB:
        t0 = time.monotonic()
        ok, a, res = one(kb)
        print("heap %4d KB: %s (%.1f s wall)" % (kb, "runs" if ok else "FAILS", time.monotonic() - t0), flush=True)
        if not ok:
            break
        last_ok = kb
        if fig is None:
            fig = a
    if last_ok is None:
        print("the firmware did not run at any heap tried")
        return 1
    note(B, "smallest heap the firmware runs in, VM + emulated modem + real receiver (unix port, 64-bit)", last_ok,
         "KB", "heaps tried %s KB" % "/".join(str(k) for k in HEAPS_KB))
    note(B, "press -> first frame on air, through the VM (10x, modem registered)",
         fig["first_frame_ms"] - fig["press_ms"], "ms", "simulated time, one run")
    note(B, "press -> ACK, through the VM (10x, modem registered)", fig["ack_ms"] - fig["press_ms"], "ms",
         "simulated time, one run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
