"""Press -> ACK from a sleeping modem, the whole firmware, against the
modelled floor (issue 12).

The device has idled in the ready profile: the ESP32 light-sleeps, the
modem sleeps registered with its socket open (AT+CSCLK=1, DTR high). The
wearer completes the SOS pattern; the firmware wakes the modem, sends the
ALERT and reads the receiver's ACK. Everything runs in virtual time: the
real firmware (firmware/loop.py over firmware/board_esp32.py on the
simulator's model of the ESP32 port), the SIM7600 emulator, the network
model with its jitter switched off, the real receiver core. The figure is
exact and the same on every run.

The floor is the least the modelled hardware allows, part by part (each
part and its source in bench/README.md "bench_wake"):

  dtr      DTR low, then wait before the first command: 20 ms
           (SIM7600 UART AppNote V2.00 3.1.4; the emulator drops bytes
           that come sooner)
  at       "AT\\r" out, the modem's answer time, "\\r\\nOK\\r\\n" back
  prompt   "AT+CIPSEND=0,<n>\\r" out, answer time, "\\r\\n>" back
           (AT manual 11.2.x AT+CIPSEND)
  payload  the framed ALERT out at the UART rate, answer time, "OK"
  network  the round trip: up + down one-way latency (no jitter), the
           receiver's work taking no virtual time
  urc      "\\r\\n+CIPRXGET: 1,0\\r\\n" back (AT manual 11.2.6, mode 1)
  read     "AT+CIPRXGET=3,0,300\\r" out, answer time, the reply
           "+CIPRXGET: 3,0,<m>,0", the ACK in hex, "OK" back

UART time is the emulator's (10 bits a byte at 115200, rounded up per
chunk); the answer time is the emulator's cmd_latency_ms (20 ms). Target:
press -> ACK within 5 % of the floor, at a typical LTE one-way latency
(50 ms) and at the scenario default (300 ms); the verdict is the worse.

"Press" is the moment the pattern is complete (the button detector's
event), as the rest of the simulator counts it.

Run from the repository root: .venv/bin/python bench/bench_wake.py
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

import floor  # noqa: E402
from verdict import note, verdict  # noqa: E402

from host_sim import runner  # noqa: E402
from host_sim import scenario as S  # noqa: E402

B = "wake"
TARGET_PCT = 5.0

SCENARIO = """
[scenario]
name = "press from a sleeping modem"
seed = 71
duration = "22m"
profile = "ready"

[route]
points = [ { at = "0s", lat = 54.32280, lon = -2.74610, sky = "urban" } ]

[[coverage]]
from = 0
mode = "data+sms"
latency_ms = %(latency)d
csq = 17

[[action]]
at = "20m"
kind = "sos"
"""


def run(latency_ms):
    sc = S.loads(SCENARIO % {"latency": latency_ms}, "wake.toml")
    r = runner.Runner(sc)
    r.net.jitter_ms = 0  # the floor's network is its latency; jitter is not the firmware's doing
    asleep = []
    emu = r.emu
    orig = r.rec.press

    def press(kind, t_ms, *a, **kw):
        asleep.append((kind, emu.asleep(), r.chip.state))
        return orig(kind, t_ms, *a, **kw)

    r.rec.press = press
    res = r.run()
    sos = [a for a in res["alerts"] if a["kind"] == "sos"]
    if len(sos) != 1 or sos[0]["ack_ms"] is None:
        raise SystemExit("bench_wake: the SOS was not acknowledged: %r" % sos)
    a = sos[0]
    up = [f for f in res["frames"] if f["dir"] == "up" and f["event"] == "built" and f["seq"] == a["seq"]]
    down = [f for f in res["frames"] if f["dir"] == "down" and f["event"] == "built" and f.get("acked_seq") == a["seq"]]
    return a, up[0]["size"], down[0]["size"], asleep, emu


def main():
    print("wake: press -> ACK from a sleeping modem, the whole firmware in virtual time, against the modelled floor")
    worst = None
    for latency in (50, 300):
        a, n_up, n_down, asleep, emu = run(latency)
        kind, modem_asleep, _ = asleep[0]
        if not modem_asleep:
            raise SystemExit("bench_wake: the modem was awake at the press: the bench measures nothing it means to")
        parts = floor.parts(emu, n_up, n_down, latency, wake=True)
        fl = sum(ms for _, ms in parts)
        took = a["ack_ms"] - a["press_ms"]
        over = (took - fl) / fl * 100
        worst = over if worst is None or over > worst else worst
        note(B, "one-way %d ms: floor %d ms = %s" % (latency, fl, floor.text(parts)), fl, "ms")
        note(B, "one-way %d ms: press -> first frame on air" % latency, a["first_frame_ms"] - a["press_ms"], "ms",
             "virtual time (exact)")
        note(B, "one-way %d ms: press -> ACK %d ms over the %d ms floor" % (latency, took, fl), over, "%",
             "virtual time (exact)")
    verdict(B, "press -> ACK from a sleeping modem over the modelled floor (worse of 50 and 300 ms one-way)",
            worst, TARGET_PCT, "%", higher_is_better=False, method="virtual time (exact)")


if __name__ == "__main__":
    main()
