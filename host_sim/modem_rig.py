"""Wiring for virtual-time runs of the modem engine against the emulator.

Owns: a discrete-event loop (Rig) that plugs firmware/modem/transport.py's
ModemTransport into host_sim/modem.py's Sim7600 through a UART-like stream
and the board's modem pins, and a small delivery driver (AlertDriver) that
behaves like the outbox does for one frame: TCP while the data path is up,
retry on failure, SMS after a deadline, done on an authenticated ACK.
The scenario runner of the simulator has its own Board; this rig is for
tests and benches of the modem alone.
"""

from firmware.modem.transport import ModemTransport
from protocol import frame as F
from protocol import sms as S
from protocol.errors import ProtocolError


class Clock:
    def __init__(self, now=0):
        self.now = now


class EmuStream:
    """The device's UART as seen by the firmware: non-blocking read(n)."""

    def __init__(self, emu, clock):
        self.emu = emu
        self.clock = clock
        self._buf = b""

    def read(self, n):
        if not self._buf:
            self._buf = self.emu.read(self.clock.now)
        if not self._buf:
            return None
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def write(self, data):
        self.emu.write(data, self.clock.now)
        return len(data)


class EmuPins:
    """The board's modem lines as the T-SIM7600E has them: PWRKEY and DTR
    out, STATUS in; no supply switch (firmware/boards/t_sim7600e.py)."""

    def __init__(self, emu, clock):
        self.emu = emu
        self.clock = clock
        self.pwrkey_log = []  # (t, level)

    def modem_pwrkey(self, level):
        self.pwrkey_log.append((self.clock.now, level))
        self.emu.pwrkey(level, self.clock.now)

    def modem_dtr(self, level):
        self.emu.dtr(level, self.clock.now)

    def modem_status(self):
        return self.emu.status(self.clock.now)


class Rig:
    def __init__(self, emu, cfg):
        self.emu = emu
        self.clock = Clock()
        self.pins = EmuPins(emu, self.clock)
        self.transport = ModemTransport(EmuStream(emu, self.clock), self.pins, cfg)
        self.events = []  # (now, event)
        self.polls = 0
        self.listeners = []

    @property
    def now(self):
        return self.clock.now

    def pwrkey_presses(self):
        """[(pressed at, released at)] of PWRKEY."""
        out = []
        down = None
        for t, lv in self.pins.pwrkey_log:
            if lv and down is None:
                down = t
            elif not lv and down is not None:
                out.append((down, t))
                down = None
        return out

    def step(self, limit_ms=None):
        now = self.clock.now
        wait = self.transport.poll(now)
        self.polls += 1
        evs = self.transport.events()
        for ev in evs:
            self.events.append((now, ev))
            for fn in self.listeners:
                fn(now, ev)
        if evs:
            return  # let the caller act on them at this same instant, as the main loop does
        t_emu = self.emu.next_event_ms()
        nxt = now + max(wait, 0)
        if t_emu is not None and t_emu < nxt:
            nxt = t_emu
        if limit_ms is not None and nxt > limit_ms + 1:
            nxt = limit_ms + 1  # run_until stops at its limit, not at the engine's next deadline past it
        self.clock.now = max(now + 1, int(nxt) if nxt == int(nxt) else int(nxt) + 1)

    def run_until(self, pred, limit_ms):
        """Advance virtual time until pred() or limit_ms; True if pred held."""
        while self.clock.now <= limit_ms:
            if pred():
                return True
            self.step(limit_ms)
        return pred()


class AlertDriver:
    """Delivers one frame the way the outbox will: TCP whenever the data path
    is up (retry on failure), SMS once `sms_after_ms` passed without an ACK
    (then keep trying TCP as well). Done when an ACK for the frame's seq
    verifies with the device keys."""

    def __init__(self, rig, keys, frame, sms_number="+447700900999", sms_after_ms=90000, retry_ms=5000):
        self.rig = rig
        self.keys = keys
        self.frame = frame
        self.raw = F.encode(keys, frame)
        self.sms_number = sms_number
        self.sms_after_ms = sms_after_ms
        self.retry_ms = retry_ms
        self.start = rig.now
        self.acked_at = None
        self.sent_at = None
        self.sms_sent_at = None
        self.failures = []
        self.bad_downlink = 0
        self._next_try = rig.now
        self._in_flight = False
        self._sms_in_flight = False
        self._next_sms = rig.now
        rig.listeners.append(self._event)

    def _event(self, now, ev):
        kind = ev[0]
        if kind == "frame":
            try:
                fr = F.decode(self.keys, ev[1], F.DOWNLINK)
            except ProtocolError:
                self.bad_downlink += 1
                return
            if fr.ftype == F.ACK and isinstance(fr.body, F.Ack) and fr.body.acked_seq == self.frame.seq and self.acked_at is None:
                self.acked_at = now
        elif kind == "sent":
            self._in_flight = False
            self.sent_at = now
            self._next_try = now + self.retry_ms * 3  # give the ACK time
        elif kind == "send_failed":
            self._in_flight = False
            self.failures.append((now, ev[1]))
            self._next_try = now + 1000
        elif kind == "sms_sent":
            self._sms_in_flight = False
            self.sms_sent_at = now
        elif kind == "sms_failed":
            self._sms_in_flight = False
            self.failures.append((now, ev[1]))
            self._next_sms = now + self.retry_ms

    def tick(self):
        t = self.rig.transport
        now = self.rig.now
        if self.acked_at is not None or t.busy():
            return
        if (self.sms_sent_at is None and not self._sms_in_flight and now - self.start >= self.sms_after_ms
                and now >= self._next_sms and t.sms_ready()):
            text, _ = S.to_sms(self.keys, self.frame)
            if t.send_sms(self.sms_number, text, now):
                self._sms_in_flight = True
                return
        if not self._in_flight and now >= self._next_try and t.data_ready():
            if t.send_frame(self.raw, now):
                self._in_flight = True

    def run(self, limit_ms, until_sms=False):
        def done():
            self.tick()
            if until_sms:
                return self.sms_sent_at is not None
            return self.acked_at is not None

        return self.rig.run_until(done, limit_ms)
