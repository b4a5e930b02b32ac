"""Small fakes shared by the firmware device tests (both interpreters).

FakeButton and FakeFix stand in for firmware/button.py and firmware/fix.py
(built separately) with the same interfaces; FakeReceiver is the receiving
centre: it verifies every uplink frame with protocol.frame.decode, records
it, and answers with an ACK sealed with the downlink key.
"""

from protocol import frame as F
from protocol.crypto import DeviceKeys
from protocol.sms import from_sms

KEY = bytes(range(32))
KEY_HEX = "".join("%02x" % b for b in KEY)
KEYS = DeviceKeys(KEY)
DEV = 4242
T0 = 1795900000


def _base_config():
    import sys

    from firmware import config as C

    cfg = C.validate({
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
    })
    assert cfg.usable and not cfg.errors, cfg.errors
    d = dict(cfg.__dict__)
    cfg = C = None
    if sys.implementation.name == "micropython":
        # validation is boot-only code; dropping it leaves the 96 KB test
        # heap for the rest of the firmware (test_fw_config covers it)
        import firmware

        sys.modules.pop("firmware.config", None)
        del firmware.config
    return d


_BASE = []


class Cfg:
    """Duck-typed copy of a validated Config: holding the real class would
    keep the whole validator module alive on the 96 KB test heap."""

    def t(self, name):
        return self.timings[name]


def make_config(**over):
    """A copy of the validated BASE config with attributes overridden
    (timings merged)."""
    if not _BASE:
        _BASE.append(_base_config())
    cfg = Cfg()
    for k, v in _BASE[0].items():
        setattr(cfg, k, dict(v) if isinstance(v, dict) else v)
    for k, v in over.items():
        if k == "timings":
            cfg.timings.update(v)
        else:
            setattr(cfg, k, v)
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


# ---------------------------------------------------------------- a whole device


def make_app(fs, rx, cfg=None, board=None, tr=None, now=0, fix=None):
    from firmware.app import App
    from firmware.board_fake import FakeBoard
    from firmware.fake_transport import FakeTransport

    if fix is None:
        fix = FakeFix()
    if board is None:
        board = FakeBoard(now=now)
    board.now = now
    if tr is None:
        tr = FakeTransport(rx.deliver, rx.deliver_sms)
    app = App(board, cfg or make_config(), tr, now, fix=fix, button=FakeButton(), fs=fs,
              rand=lambda n: n // 2)
    return app, board, tr


def run_until(app, board, end, dt=250):
    """Step the app every dt ms (or sooner when it asks) up to `end`."""
    now = board.now
    while now < end:
        board.now = now
        wait = app.step(now)
        now += max(1, min(dt, wait))
    board.now = end
    return end


# ---------------------------------------------------------------- heap


BIG_HEAP_KB = 160


def _small_heap():
    import gc
    import sys

    if sys.implementation.name != "micropython":
        return False
    return gc.mem_free() + gc.mem_alloc() < 128 * 1024


IN_PLACE = not _small_heap()


def fits(kb):
    """True on CPython, or when kb of heap are free right now: a test file
    that needs about that much runs in place, else in a child VM."""
    import gc
    import sys

    if sys.implementation.name != "micropython":
        return True
    gc.collect()
    return gc.mem_free() >= kb * 1024


def delegate(g, modname, in_place=None):
    """Call at the end of a test file that builds controllers or whole Apps.

    The 64-bit unix port holds ~85 KB of loaded bytecode for firmware +
    protocol + fakes (about half that on the 32-bit ESP32, none when the
    modules are frozen into the image), which does not fit the runner's
    96 KB heap next to the other files' modules. So on a MicroPython heap
    under 128 KB every test_* of the file is replaced by a stub; the first
    stub runs the whole file once in a child MicroPython VM (same .mpy
    files, BIG_HEAP_KB of heap) and each stub then reports its own test's
    result. Such files import firmware modules only `if IN_PLACE`. On
    CPython and on a big heap nothing changes. in_place: the file's own
    decision (from fits()), default IN_PLACE."""
    if IN_PLACE if in_place is None else in_place:
        return
    results = {}

    def stub_for(name):
        def stub():
            if not results:
                _run_child(modname, results)
            r = results.get(name)
            assert r == "ok", "%s.%s: %s (in a MicroPython child with %d KB heap)" % (
                modname, name, r or "did not run", BIG_HEAP_KB)

        return stub

    for n in [n for n in g if n.startswith("test_")]:
        g[n] = stub_for(n)


def _run_child(modname, results):
    import os
    import sys

    out = "build/fw_child_%s.txt" % modname
    try:
        os.remove(out)
    except OSError:
        pass
    path = ":".join(p for p in sys.path if p and p != ".frozen")
    code = "import sys; sys.path.pop(0); import fw_fakes; fw_fakes.child_main('%s', '%s')" % (modname, out)
    os.system("MICROPYPATH='%s:.frozen' %s -X heapsize=%dk -c \"%s\"" % (
        path, sys.executable, BIG_HEAP_KB, code))
    try:
        with open(out) as f:
            for line in f:
                name, _, r = line.strip().partition(" ")
                results[name] = r
    except OSError:
        results["?"] = "child did not run"


def child_main(modname, out):
    import gc
    import sys

    mod = __import__(modname)
    with open(out, "w") as f:
        for name in sorted(n for n in dir(mod) if n.startswith("test_")):
            gc.collect()
            try:
                getattr(mod, name)()
                f.write("%s ok\n" % name)
            except Exception as e:
                f.write("%s FAIL %r\n" % (name, e))
                sys.print_exception(e)
