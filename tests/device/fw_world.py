"""A whole device on fakes, for the App's device tests (both interpreters).

FakeButton and FakeFix stand in for firmware/button.py and firmware/fix.py
(tested on their own) with the same interfaces; FakeReceiver is the
receiving centre: it verifies every uplink frame with
protocol.frame.decode, records it, and answers with an ACK sealed with the
downlink key. make_app wires an App to them; run_until and presses drive it.
"""

from fw_fakes import DEV, KEYS, T0, Position, make_config

from firmware.button_events import EV_CANCEL, EV_DURESS_CANCEL, EV_SOS, EV_TEST
from protocol import frame as F


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
                ev = {3: EV_SOS, 4: EV_TEST}.get(n)
            else:
                ev = {3: EV_CANCEL, 5: EV_DURESS_CANCEL}.get(n)
        return ev

    def set_alert_active(self, on):
        self.active = on

    def next_deadline(self, now):
        if self.t_release is None:
            return None
        return max(0, self.t_release + 1000 - now)

    def pattern_idle(self, now):
        return self.count == 0 and self.last == 1


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


class FakeFix:
    """Fed lines 'FIX <lat> <lon>' and 'NOFIX' (ASCII, any chunking)."""

    # FixTracker's attributes the App reads, as class attributes (no heap
    # per instance: the whole-App tests run in 96 KB on MicroPython)
    spare = 0  # no NMEA here, nothing to ask the module to trim
    unknown = 0  # ... nor unknown sentences (its `reader` is the class itself, below)
    time_ms = None  # no sentence times (a read after a gap is not dated)
    last = last_ms = fix_ms = None
    valid = False

    def __init__(self):
        self.buf = b""
        self.live = None
        self.t_fix = None
        self.utc = None

    def feed(self, data, now, end=-1):
        self.buf += bytes(data[:end] if end >= 0 else data)
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

    def redate(self, now, span, age=0):
        pass  # its lines carry no times

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



FakeFix.reader = FakeFix  # no new class: every name is interned on the device heap

# ---------------------------------------------------------------- receiver


class Decoded:
    """A list of verified uplink frames kept as their raw bytes and decoded
    again on each access (index, slice, iteration): a decoded Frame with
    its Report costs several times its bytes on the test heap."""

    def __init__(self, keys):
        self.keys = keys
        self.raw = []

    def append(self, raw):
        self.raw.append(raw)

    def __len__(self):
        return len(self.raw)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [F.decode(self.keys, r, F.UPLINK) for r in self.raw[i]]
        return F.decode(self.keys, self.raw[i], F.UPLINK)

    def __iter__(self):
        for r in self.raw:
            yield F.decode(self.keys, r, F.UPLINK)


class FakeReceiver:
    """Verifies and records every uplink frame; ACKs each (dedup by seq)."""

    def __init__(self, keys=KEYS):
        self.keys = keys
        self.frames = Decoded(keys)  # every verified frame, in arrival order (dups too)
        self.by_seq = {}  # seq -> raw, to catch a seq reused for other bytes
        self.sms_frames = Decoded(keys)  # frames received as SMS (their binary form)
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
        raw = bytes(raw)
        fr = self._record(raw)
        self.frames.append(raw)
        if self.ack_types is not None and fr.ftype not in self.ack_types:
            return None
        self.down_seq += 1
        cmds, self.commands = self.commands, []
        return F.encode(self.keys, F.Frame(F.ACK, fr.device_id, self.down_seq, T0, F.Ack(fr.seq, cmds)))

    def deliver_sms(self, number, text, now):
        from protocol.sms import from_sms

        raw = from_sms(text)
        F.decode(self.keys, raw, F.UPLINK)  # raises unless it verifies
        self.sms_frames.append(raw)

    def ack_for(self, seq, cmds=None, keys=None, down=None):
        self.down_seq += 1
        return F.encode(keys or self.keys, F.Frame(F.ACK, DEV, down or self.down_seq, T0, F.Ack(seq, cmds or [])))

    def types(self):
        return [f.name for f in self.frames]

    def of(self, ftype, start=0):
        """The frames of ftype from the start-th on, decoded (the others
        only peeked at: a long run's frames do not fit a device heap decoded)."""
        raws = [r for r in self.frames.raw if F.peek(r)[0] == ftype]
        return [F.decode(self.keys, r, F.UPLINK) for r in raws[start:]]

    def count(self, ftype):
        """How many frames of ftype arrived (peeks, keeps nothing decoded)."""
        return len([1 for r in self.frames.raw if F.peek(r)[0] == ftype])


# ---------------------------------------------------------------- a whole device


def make_app(fs, rx, cfg=None, board=None, tr=None, now=0, fix=None):
    from firmware.app import App
    from board_fake import FakeBoard
    from fake_transport import FakeTransport

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
