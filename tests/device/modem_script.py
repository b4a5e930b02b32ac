"""A scripted SIM7600 for the device tests of the modem engine: answers
command lines with the AT manual's sequences, whole or one byte at a time.
(The full emulator, host_sim/modem.py, runs in the host tests.)"""

import binascii

from firmware.modem.transport import ModemTransport
from protocol.stream import pack

REPLY = bytes(range(40, 80))  # any 40 bytes: the engine never interprets frames
CPSI = b"+CPSI: LTE,Online,234-15,0x1A2B,30125732,257,EUTRAN-BAND20,6300,5,5,-94,-971,-545,15"


class Scripted:
    """Answers command lines like a SIM7600 that is up and registered."""

    def __init__(self):
        self.lines = []
        self.payloads = []
        self.alive = True
        self._payload = False
        self.rdy_due = False

    def answer(self, out):
        if not self.alive:
            return b""
        if self._payload:
            self._payload = False
            self.payloads.append(out)
            if out.endswith(b"\x1a"):
                return b"\r\n+CMGS: 46\r\n\r\nOK\r\n"
            return b"\r\nOK\r\n\r\n+CIPSEND: 0,%d,%d\r\n\r\n+CIPRXGET: 1,0\r\n" % (len(out), len(out))
        reply = b""
        for cmd in out.split(b"\r"):
            if not cmd:
                continue
            c = cmd.decode()
            self.lines.append(c)
            reply += self._one(c)
        return reply

    def _one(self, c):
        if c.startswith("AT+CPIN?"):
            return b"\r\n+CPIN: READY\r\n\r\nOK\r\n"
        if c == "AT+CSQ":
            return b"\r\n+CSQ: 22,0\r\n\r\nOK\r\n"
        if c in ("AT+CREG?", "AT+CEREG?", "AT+CGREG?"):
            return b"\r\n%s: 0,1\r\n\r\nOK\r\n" % c[2:-1].encode()
        if c == "AT+NETOPEN":
            return b"\r\nOK\r\n\r\n+NETOPEN: 0\r\n"
        if c == "AT+CPSI?":
            return b"\r\n" + CPSI + b"\r\n\r\nOK\r\n"
        if c.startswith("AT+CIPOPEN="):
            return b"\r\nOK\r\n\r\n+CIPOPEN: 0,0\r\n"
        if c.startswith("AT+CIPSEND="):
            self._payload = True
            return b"\r\n>"
        if c.startswith("AT+CMGS="):
            self._payload = True
            return b"\r\n> "
        if c.startswith("AT+CIPRXGET=3"):
            data = pack(REPLY)
            return b"\r\n+CIPRXGET: 3,0,%d,0\r\n\r\n%s\r\n\r\nOK\r\n" % (len(data), binascii.hexlify(data).upper())
        if c.startswith("ATD"):
            return b"\r\nOK\r\n\r\nVOICE CALL: BEGIN\r\n"
        if c in ("ATH", "AT+CHUP"):
            return b"\r\nVOICE CALL: END: 000017\r\n\r\nOK\r\n"
        if c.startswith("AT+CMUT="):
            return b"\r\nERROR\r\n"  # only during a connected call (manual 5.2.20): never sent now
        return b"\r\nOK\r\n"


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
            self.rx += b"\r\nRDY\r\n"
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
