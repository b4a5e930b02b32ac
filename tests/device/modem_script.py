"""A scripted SIM7600 for the device tests of the modem engine: answers
command lines with the golden transcripts of host_sim/sim7600_answers.py
(the AT manual's sequences), whole or one byte at a time. (The full
emulator, host_sim/modem.py, runs in the host tests, held to the same
transcripts by tests/test_modem_answers.py.)"""

import binascii

from firmware.modem.transport import ModemTransport
from host_sim import sim7600_answers as A
from protocol.stream import pack

REPLY = bytes(range(40, 80))  # any 40 bytes: the engine never interprets frames


class Scripted(A.Registered):
    """Answers command lines like a SIM7600 that is up and registered; its
    far end answers every frame with REPLY at once."""

    def __init__(self):
        A.Registered.__init__(self)
        self.lines = []
        self.payloads = []
        self.alive = True
        self.rdy_due = False

    def answer(self, out):
        if not self.alive:
            return b""
        return A.Registered.answer(self, out)

    def line(self, c):
        self.lines.append(c)
        return A.Registered.line(self, c)

    def sent(self, out):
        self.payloads.append(out)
        r = A.Registered.sent(self, out)
        return r if out.endswith(b"\x1a") else r + A.frame((A.CIPRXGET_NEW,))

    def fetch(self):
        data = pack(REPLY)
        return A.frame((A.CIPRXGET % (3, len(data), 0), binascii.hexlify(data).decode().upper(), A.OK))


class Pins:
    """PWRKEY and STATUS as the T-SIM7600E has them (no supply switch):
    a hold of >= 2.5 s switches a running modem off, STATUS low 26 s later
    (Hardware Design Table 9); a press of >= 100 ms switches an off one on,
    RDY at once here (the host emulator keeps the real 12 s)."""

    def __init__(self, modem, clock):
        self.modem = modem
        self.clock = clock  # fn() -> now
        self.log = []
        self.on = True
        self.off_at = None
        self._down = None

    def modem_pwrkey(self, level):
        now = self.clock()
        self.log.append(("pwrkey", level))
        if level:
            self._down = now
            return
        held = now - (self._down if self._down is not None else now)
        self._down = None
        if self.on and self.off_at is None and held >= 2500:
            self.modem.alive = False
            self.off_at = now + 26000
        elif not self.on and held >= 100:
            self.on = True
            self.modem.alive = True
            self.modem.rdy_due = True

    def modem_status(self):
        if self.off_at is not None and self.clock() >= self.off_at:
            self.on = False
            self.off_at = None
        return 1 if self.on else 0


class Stream:
    def __init__(self, modem, bytewise):
        self.modem = modem
        self.bytewise = bytewise
        self.rx = b""

    def read(self, n):
        if self.modem.rdy_due:
            self.modem.rdy_due = False
            self.rx += A.frame((A.RDY,))
        if not self.rx:
            return None
        k = 1 if self.bytewise else n
        out, self.rx = self.rx[:k], self.rx[k:]
        return out

    def write(self, b):
        self.rx += self.modem.answer(bytes(b))


CFG = {"apn": "internet", "receiver_host": "192.0.2.1", "receiver_port": 5000}


class World:
    def __init__(self, bytewise=False):
        self.modem = Scripted()
        self.pins = Pins(self.modem, lambda: self.now)
        self.stream = Stream(self.modem, bytewise)
        self.t = ModemTransport(self.stream, self.pins, CFG)
        self.now = 0
        self.events = []

    def run(self, until, limit=400000):
        while self.now < limit:
            wait = self.t.poll(self.now)
            self.events.extend(self.t.events())
            if until():
                return True
            self.now += 1 if self.stream.rx else max(1, min(wait, 1000))
        return False


def _bringup(w):
    assert w.run(w.t.data_ready), w.modem.lines
    return w
