"""Firmware figures: peak heap of the whole device (App with a fake board,
fake transport and fake receiver) through a scripted alert on MicroPython,
and flash writes per alert.

    .venv/bin/python bench/bench_firmware.py

Heap: bench/mp_util.min_heap finds the smallest -X heapsize at which the
scenario still completes (fragmentation included). The unix port is 64-bit
(8-byte words), so its figure overstates a 32-bit ESP32; and the modules
are loaded as .mpy into the heap, which a production image avoids by
freezing them. Both parts are printed: loaded code, and the rest.
Uses firmware/button.py and firmware/fix.py when present, else small
stand-ins (said in the output).
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

import mp_util  # noqa: E402

SCENARIO = r'''
import gc, sys
from protocol import frame as F
from protocol.crypto import DeviceKeys
from firmware.app import App
from firmware.board_fake import FakeBoard
from firmware.fake_transport import FakeTransport
from firmware.fs import MemFs
try:
    from firmware.button import ButtonDetector, ButtonConfig
    from firmware.fix import FixTracker
    REAL = True
except ImportError:
    REAL = False

class Cfg:
    def t(self, n):
        return self.timings[n]

def config():
    c = Cfg()
    c.usable = True; c.errors = []; c.device_id = 4242; c.key = bytes(range(32)); c.engineer_key = None
    c.receiver_host = "arc"; c.receiver_port = 7400; c.sms_number = "+447700900001"
    c.listen_number = "+447700900002"; c.apn = "internet"; c.button = {}; c.pins = {}
    c.power_profile = "ready"; c.wifi_scan = True; c.test_enabled = False
    c.timings = {"track_interval_s": 10, "sms_fallback_s": 20, "heartbeat_s": 3600, "heartbeat_jitter_s": 60,
                 "backoff_base_ms": 4000, "backoff_max_ms": 32000, "sms_track_s": 300, "wifi_rescan_s": 120,
                 "low_battery_mv": 3500}
    return c

class Btn:
    def __init__(self): self.q = []; self.active = False
    def update(self, level, now): return self.q.pop(0) if self.q else None
    def set_alert_active(self, on): self.active = on
    def next_deadline(self, now): return None

class Pos:
    source = 1; lat = 515007292; lon = -1246254; accuracy_m = 4; age_s = 0
    alt_m = 35; speed_cms = 120; course_cdeg = 9000; sats = 7; hdop_x10 = 12

class Fix:
    def feed(self, data, now): pass
    def position(self, now): return Pos
    def utc_seconds(self, now): return None

KEYS = DeviceKeys(bytes(range(32)))
down = [100]
def deliver(raw, now):
    seq = int.from_bytes(raw[6:10], "big")
    down[0] += 1
    return F.encode_raw(KEYS, F.ACK, 4242, down[0], 1795900000, seq.to_bytes(4, "big"))

gc.collect()
code = gc.mem_alloc()
board = FakeBoard()
board.scan = [(bytes([i] * 6), -60 - i) for i in range(5)]
fs = MemFs()
tr = FakeTransport(deliver)
btn = Btn()
if REAL:
    app = App(board, config(), tr, 0, fs=fs, button=ButtonDetector(ButtonConfig.from_dict({})), fix=FixTracker(), rand=lambda n: n // 2)
else:
    app = App(board, config(), tr, 0, fs=fs, button=btn, fix=Fix(), rand=lambda n: n // 2)
peak = 0
now = 0
for i in range(400):
    if i == 10:
        btn.q.append(1)            # SOS (stand-in button)
        tr.drop_acks = 12          # lost ACKs: retries and the SMS fallback run
    if i == 300:
        btn.q.append(3)            # duress cancel (stand-in button)
    if REAL:                       # the real detector gets levels: 3 presses, later 5
        board.level = 0 if (10 <= i < 16 or 300 <= i < 310) and i % 2 == 0 else 1
    if REAL and i < 100:
        board.gnss.feed(b"$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A\r\n")
    app.step(now)
    gc.collect()
    a = gc.mem_alloc()
    if a > peak:
        peak = a
    now += 250
gc.collect()
print("REAL" if REAL else "STANDIN", code, peak, tr.sent and len(tr.sent), len(tr.sms))
'''


def flash_per_alert():
    """Flash operations (atomic writes, removes) for one boot and one alert
    with 30 minutes of tracking, on CPython with the RAM filesystem."""
    sys.path.insert(0, os.path.join(ROOT, "tests", "device"))
    from fw_fakes import FakeReceiver, make_app, presses, run_until

    from firmware.fs import MemFs

    fs = MemFs()
    rx = FakeReceiver()
    app, board, tr = make_app(fs, rx)
    run_until(app, board, 900)
    boot = (fs.writes, fs.removes)
    t = presses(app, board, 3, 1000)
    run_until(app, board, t + 30 * 60 * 1000, dt=1000)
    t = presses(app, board, 3, board.now)
    run_until(app, board, t + 5000)
    frames = len(rx.frames)
    return boot, (fs.writes - boot[0], fs.removes - boot[1]), frames


def main():
    mp_util.compile_device_code()
    script = os.path.join(mp_util.BUILD, "bench_fw_scenario.py")
    with open(script, "w") as f:
        f.write(SCENARIO)
    rc, out, err = mp_util.run_mp(script, "512k")
    if rc != 0:
        raise SystemExit("scenario failed: %s" % (err or out))
    kind, code, peak, sent, sms = out.split()
    kb = mp_util.min_heap(script)
    print("firmware heap (MicroPython unix, 64-bit, %s button/fix): min heap %d KB "
          "(target <= 64 KB on ESP32); loaded code %.1f KB, peak live after a step %.1f KB, "
          "so %.1f KB of runtime data; %s frames, %s SMS in the scenario"
          % ("real" if kind == "REAL" else "stand-in", kb, int(code) / 1024, int(peak) / 1024,
             (int(peak) - int(code)) / 1024, sent, sms))
    mods = ["firmware/%s.mpy" % m for m in ("fs", "store", "outbox", "alert", "board", "app")]
    mods += ["protocol/%s.mpy" % m for m in ("errors", "crypto", "frame", "sms")]
    size = sum(os.path.getsize(os.path.join(mp_util.BUILD, m)) for m in mods)
    print("device code as .mpy (firmware core + protocol, what an image would freeze): %.1f KB" % (size / 1024))
    boot, alert, frames = flash_per_alert()
    print("flash per boot: %d atomic writes, %d removes" % boot)
    print("flash per alert (30 min tracking at 30 s, %d frames): %d atomic writes, %d removes"
          % (frames, alert[0], alert[1]))


if __name__ == "__main__":
    main()
