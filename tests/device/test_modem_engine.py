"""Modem engine against a scripted SIM7600 that answers with the manual's
sequences (whole or one byte at a time). Runs on CPython and MicroPython;
the full emulator runs in the host tests (tests/test_modem_*.py)."""

import binascii


import sys
from firmware.modem.engine import Engine, J_SEND, J_SMS, J_CALL, J_HANGUP, J_SLEEP
from firmware.modem.sim7600 import Sim7600
from firmware.modem.transport import ModemTransport
from protocol.stream import pack

_NAMES = []


def _release_after(fn):
    """On MicroPython, after the last test of this file (the runner goes in
    name order) drop the modem modules and this file's globals, so the heap
    is free for the files that follow even while the runner still holds the
    last test function. CPython (pytest) gets the test unchanged."""
    if sys.implementation.name != "micropython":
        return fn
    name = fn.__name__
    _NAMES.append(name)

    def run():
        try:
            fn()
        finally:
            if name == max(_NAMES):
                for k in list(sys.modules):
                    if k.startswith("firmware.modem"):
                        del sys.modules[k]
                pkg = sys.modules.get("firmware")
                if pkg is not None and hasattr(pkg, "modem"):
                    delattr(pkg, "modem")
                globals().clear()

    return run


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
        if c == "ATH":
            return b"\r\nVOICE CALL: END: 000017\r\n\r\nOK\r\n"
        return b"\r\nOK\r\n"


class Pins:
    def __init__(self, modem):
        self.modem = modem
        self.log = []

    def modem_pwrkey(self, level):
        self.log.append(("pwrkey", level))
        if not level:
            self.modem.alive = True
            self.modem.rdy_due = True

    def modem_power(self, on):
        self.log.append(("power", on))


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
        self.pins = Pins(self.modem)
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


@_release_after
def test_bringup_runs_the_step_table_then_opens_the_network():
    for bytewise in (False, True):
        w = _bringup(World(bytewise))
        lines = w.modem.lines
        order = ["AT", "ATE0", "AT+CMEE=1", "AT+CPIN?", "AT+CMGF=1", "AT+CSQ", 'AT+CGDCONT=1,"IP","internet"',
                 "AT+CIPRXGET=1", "AT+CREG?", "AT+CEREG?", "AT+NETOPEN"]
        assert lines[: len(order)] == order, lines
        assert ("link", True) in w.events
        assert w.t.sms_ready() and w.t.csq() == 22
        assert w.pins.log == []  # the modem answered AT: no power-on pulse needed


@_release_after
def test_send_frame_and_collect_the_reply_whole_and_bytewise():
    for bytewise in (False, True):
        w = _bringup(World(bytewise))
        raw = bytes(range(100, 150))
        assert w.t.send_frame(raw, w.now)
        assert not w.t.send_frame(raw, w.now)  # busy: refused
        assert w.run(lambda w=w: ("frame", REPLY) in w.events)
        assert ("sent", len(raw)) in w.events
        assert w.modem.payloads[-1] == pack(raw)
        assert 'AT+CIPOPEN=0,"TCP","192.0.2.1",5000' in w.modem.lines
        assert w.t.cell() == (234, 15, 0x1A2B, 30125732, -97)


@_release_after
def test_sms_text_mode_with_prompt_and_ctrl_z():
    w = _bringup(World(True))
    assert not w.t.send_sms("+44 7700", "PNC1 AAAA", w.now)  # not a number
    assert not w.t.send_sms("+447700900999", "bad\x1atext", w.now)  # Ctrl-Z would end the message
    assert w.t.send_sms("+447700900999", "PNC1 AAAA", w.now)
    assert w.run(lambda: ("sms_sent", 46) in w.events)
    assert 'AT+CMGS="+447700900999"' in w.modem.lines
    assert w.modem.payloads[-1] == b"PNC1 AAAA\x1a"


@_release_after
def test_covert_call_mutes_speaker_then_hangs_up():
    w = _bringup(World())
    assert w.t.start_call("112", w.now)
    assert w.run(lambda: ("call", "active") in w.events)
    w.run(lambda: "AT+VMUTE=1" in w.modem.lines)
    lines = w.modem.lines
    assert lines.index("AT+CLVL=0") < lines.index("ATD112;") < lines.index("AT+VMUTE=1")
    assert "AT+CVHU=0" in lines
    w.t.hang_up(w.now)
    assert w.run(lambda: ("call", "ended") in w.events)
    assert "ATH" in w.modem.lines


@_release_after
def test_hung_modem_is_power_cycled_and_comes_back():
    w = _bringup(World())
    w.modem.alive = False
    assert w.t.send_frame(b"x" * 40, w.now)
    assert w.run(lambda: ("send_failed", "modem not answering") in w.events or any(
        e[0] == "send_failed" for e in w.events))
    assert w.run(lambda: ("power", False) in w.pins.log)
    assert w.run(lambda: w.t.data_ready() and w.t.engine.cycles == 1)
    assert ("pwrkey", 1) in w.pins.log
    assert w.t.stats()["power_cycles"] == 1


@_release_after
def test_urc_rdy_out_of_the_blue_reinitialises():
    w = _bringup(World())
    n = len(w.modem.lines)
    w.stream.rx += b"\r\nRDY\r\n"
    w.run(lambda: len(w.modem.lines) > n and "ATE0" in w.modem.lines[n:])
    assert w.run(w.t.data_ready)
    assert w.modem.lines[n:].count("AT+NETOPEN") == 1


@_release_after
def test_sleep_asks_for_uart_sleep():
    w = _bringup(World())
    w.run(lambda: not w.t.busy() and w.t.engine._job is None)
    w.t.sleep(w.now)
    assert w.run(lambda: w.t.engine.asleep)
    assert "AT+CSCLK=1" in w.modem.lines
    assert w.t.send_frame(b"y" * 40, w.now)  # a request wakes it first
    assert w.run(lambda: any(e[0] == "sent" for e in w.events))
    assert not w.t.engine.asleep


@_release_after
def test_engine_requests_are_refused_while_busy():
    e = Engine(Sim7600("h", 1), CFG)
    assert e.request(J_SEND, b"a")
    for k in (J_SMS, J_CALL, J_HANGUP, J_SLEEP):
        assert not e.request(k, None)
