"""Small fakes shared by the firmware device tests (both interpreters).

FakeButton and FakeFix stand in for firmware/button.py and firmware/fix.py
(built separately) with the same interfaces; FakeReceiver is the receiving
centre: it verifies every uplink frame with protocol.frame.decode, records
it, and answers with an ACK sealed with the downlink key.
"""

from protocol import frame as F
from protocol.crypto import DeviceKeys
from protocol.sms import from_sms

from firmware import config as C

KEY = bytes(range(32))
KEY_HEX = "".join("%02x" % b for b in KEY)
KEYS = DeviceKeys(KEY)
DEV = 4242
T0 = 1795900000


def make_config(**over):
    d = {
        "device_id": DEV,
        "key_hex": KEY_HEX,
        "receiver_host": "arc.example.org",
        "receiver_port": 7400,
        "sms_number": "+447700900001",
        "listen_number": "+447700900002",
        "apn": "internet",
        "timings": {"backoff_base_ms": 4000, "backoff_max_ms": 32000, "heartbeat_jitter_s": 60},
        "wifi_scan": True,
        "test_enabled": True,
    }
    for k, v in over.items():
        if v is None:
            d.pop(k, None)
        elif k == "timings":
            t = dict(d["timings"])
            t.update(v)
            d["timings"] = t
        else:
            d[k] = v
    cfg = C.validate(d)
    assert cfg.usable, cfg.errors
    return cfg


# ---------------------------------------------------------------- button


class FakeButton:
    """Active-low. Counts presses; 1 s after the last release it decides:
    3 presses -> SOS (idle) or CANCEL (alert active), 5 presses -> DURESS
    (alert active), 4 presses -> TEST (idle)."""

    def __init__(self):
        self.active = False
        self.count = 0
        self.last = 1
        self.t_release = None

    def update(self, level, now):
        ev = None
        if level != self.last:
            if level == 0:
                self.count += 1
                self.t_release = None
            else:
                self.t_release = now
            self.last = level
        elif level == 1 and self.t_release is not None and now - self.t_release >= 1000:
            n = self.count
            self.count = 0
            self.t_release = None
            if not self.active:
                ev = {3: 1, 4: 4}.get(n)
            else:
                ev = {3: 2, 5: 3}.get(n)
        return ev

    def set_alert_active(self, on):
        self.active = on

    def next_deadline(self, now):
        if self.t_release is None:
            return None
        return max(0, self.t_release + 1000 - now)


def presses(app, board, n, start):
    """Press n times (100 ms down, 100 ms up), stepping the app; returns now."""
    now = start
    for _ in range(n):
        board.level = 0
        board.now = now
        app.step(now)
        now += 100
        board.level = 1
        board.now = now
        app.step(now)
        now += 100
    return now


# ---------------------------------------------------------------- GNSS


class Position:
    def __init__(self, source, lat, lon, acc=5, age=0, alt=None, speed=None, course=None, sats=None, hdop=None):
        self.source = source
        self.lat = lat
        self.lon = lon
        self.accuracy_m = acc
        self.age_s = age
        self.alt_m = alt
        self.speed_cms = speed
        self.course_cdeg = course
        self.sats = sats
        self.hdop_x10 = hdop


class FakeFix:
    """Fed lines 'FIX <lat> <lon>' and 'NOFIX' (ASCII, any chunking)."""

    def __init__(self):
        self.buf = b""
        self.live = None
        self.t_fix = None
        self.utc = None

    def feed(self, data, now):
        self.buf += bytes(data)
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            parts = line.split()
            if parts and parts[0] == b"FIX":
                self.live = (int(parts[1]), int(parts[2]))
                self.last_pos = self.live
                self.t_fix = now
            elif parts and parts[0] == b"NOFIX":
                self.live = None
            elif parts and parts[0] == b"TIME":
                self.utc = (int(parts[1]), now)

    def last(self):
        return self.t_fix

    def position(self, now):
        if self.t_fix is None:
            return None
        if self.live is not None:
            return Position(F.SRC_GNSS, self.live[0], self.live[1], 4, 0, 35, 120, 9000, 7, 12)
        lat, lon = self.last_pos
        return Position(F.SRC_LAST_FIX, lat, lon, 4, (now - self.t_fix) // 1000)

    def utc_seconds(self, now):
        if self.utc is None:
            return None
        return self.utc[0] + (now - self.utc[1]) // 1000


# ---------------------------------------------------------------- receiver


class FakeReceiver:
    """Verifies and records every uplink frame; ACKs each (dedup by seq)."""

    def __init__(self, keys=KEYS):
        self.keys = keys
        self.frames = []  # every decoded frame, in arrival order (dups too)
        self.by_seq = {}  # seq -> raw, to catch a seq reused for other bytes
        self.sms_frames = []
        self.reused = []
        self.down_seq = 100
        self.commands = []  # commands for the next ACK
        self.ack_types = None  # None: ACK every type; else a tuple of types

    def _record(self, raw):
        fr = F.decode(self.keys, raw, F.UPLINK)
        prev = self.by_seq.get(fr.seq)
        if prev is not None and prev != raw:
            self.reused.append(fr.seq)
        self.by_seq[fr.seq] = raw
        return fr

    def deliver(self, raw, now):
        fr = self._record(raw)
        self.frames.append(fr)
        if self.ack_types is not None and fr.ftype not in self.ack_types:
            return None
        self.down_seq += 1
        cmds, self.commands = self.commands, []
        return F.encode(self.keys, F.Frame(F.ACK, fr.device_id, self.down_seq, T0, F.Ack(fr.seq, cmds)))

    def deliver_sms(self, number, text, now):
        raw = from_sms(text)
        fr = F.decode(self.keys, raw, F.UPLINK)
        self.sms_frames.append(fr)

    def ack_for(self, seq, cmds=None, keys=None, down=None):
        self.down_seq += 1
        return F.encode(keys or self.keys, F.Frame(F.ACK, DEV, down or self.down_seq, T0, F.Ack(seq, cmds or [])))

    def types(self):
        return [f.name for f in self.frames]

    def of(self, ftype):
        return [f for f in self.frames if f.ftype == ftype]
