"""The SIM7600 answer table (host_sim/sim7600_answers.py) against the three
modems that use it: the emulator (host_sim/modem.py), brought into each
row's state, answers each row's command line with the row's lines; the
device tests' scripted modem (tests/device/modem_script.py) and the heap
bench's (bench/mp_firmware.py) answer it byte for byte the same; every
line the modem engine sends in the device tests is in the table."""

import binascii
import os
import re
import sys

import pytest

from host_sim import sim7600_answers as A
from host_sim.endpoint import VerifyingEndpoint
from host_sim.modem import Sim7600
from host_sim.network import Network
from modem_script import REPLY, Scripted
from modem_world import KEYS, alert
from protocol import frame as F
from protocol.stream import Deframer, pack

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench"))
import mp_firmware  # noqa: E402  (on CPython it only defines the harness)

# a command line for each row that takes any arguments, as the engine sends it
ARGS = {
    "AT+CGDCONT=*": '1,"IP","internet"',
    "AT+CIPTIMEOUT=*": "30000,15000,15000",
    "AT+CIPOPEN=*": '0,"TCP","192.0.2.1",5000',
    "AT+CIPSEND=*": "0,40",
    "AT+CIPRXGET=3,*": "0,750",
    "AT+CMGS=*": '"+447700900001"',
    "AT+CLVL=*": "0",
    "ATD*": "+447700900002;",
    "AT+CMUT=*": "1",
    "AT+CVAUXV=*": "2800",
    "AT+CVAUXS=*": "1",
    "AT+CGPSINFOCFG=*": "1,3",
}

FRAME = pack(F.encode(KEYS, alert(seq=7)))  # an ALERT the emulator's far end verifies and ACKs

# the command lines (or payload bytes) that bring a just-booted module into each state
SETUP = {
    "up": [b"AT+CMGF=1\r"],
    "net": [b"AT+CMGF=1\r", b"AT+NETOPEN\r"],
    "socket": [b"AT+CMGF=1\r", b"AT+NETOPEN\r", b"AT+CIPRXGET=1\r", b'AT+CIPOPEN=0,"TCP","192.0.2.1",5000\r'],
    "call": [b"AT+CMGF=1\r", b"AT+CVHU=0\r", b"ATD+447700900002;\r"],
    "gnss": [b"AT+CMGF=1\r", b"AT+CGPS=1\r"],
}
SETUP["data"] = SETUP["socket"] + [b"AT+CIPSEND=0,%d\r" % len(FRAME), FRAME]


def _line(row):
    cmd = row[0]
    return (cmd[:-1] + ARGS[cmd] if cmd.endswith("*") else cmd).encode()


class Emu:
    """The emulator, booted (start_on: echo off, SIM ready, registered),
    past its start-up URCs, brought into a state."""

    def __init__(self, state):
        self.emu = Sim7600(VerifyingEndpoint(KEYS), Network(seed=1, jitter_ms=0), start_on=True)
        self.now = 6000
        assert self.emu.read(self.now) == A.frame(("SMS DONE", "PB DONE"))
        for out in SETUP[state]:
            self.say(out)

    def say(self, out, wait=5000):
        """Bytes to the modem; all it says in the `wait` ms that follow."""
        assert self.emu.read(self.now) == b""
        self.emu.write(out, self.now)
        self.now += wait
        return self.emu.read(self.now)


def _rows(which):
    return [pytest.param(r, id=r[0]) for r in A.ANSWERS if (r[2] is A.READ) == which]


@pytest.mark.parametrize("row", _rows(False))
def test_the_emulator_answers_each_command_as_the_table_says(row):
    cmd, state, answer = row
    assert Emu(state).say(_line(row) + b"\r") == A.frame(answer)


def test_the_emulator_reads_waiting_bytes_as_the_table_says():
    (row,) = [r for r in A.ANSWERS if r[2] is A.READ]
    got = Emu(row[1]).say(_line(row) + b"\r")
    m = re.fullmatch(rb"\r\n(.*)\r\n\r\n([0-9A-F]*)\r\n\r\nOK\r\n", got)
    assert m, got
    data = binascii.unhexlify(m.group(2))
    assert got == A.frame((A.CIPRXGET % (3, len(data), 0), m.group(2).decode(), A.OK))
    (ack,) = Deframer().feed(data)  # the bytes are the far end's ACK of the ALERT
    assert F.decode(KEYS, ack).body.acked_seq == 7


def test_payloads_get_the_same_answers_from_the_emulator_and_the_scripted_modems():
    e = Emu("socket")
    assert e.say(b"AT+CIPSEND=0,%d\r" % len(FRAME)) == A.SEND_PROMPT
    sent = e.say(FRAME)  # then the far end's ACK is waiting: a URC says so
    assert sent == A.frame((A.OK, A.CIPSEND % (len(FRAME), len(FRAME)), A.CIPRXGET_NEW))
    assert sent == A.Registered().sent(FRAME) + A.frame((A.CIPRXGET_NEW,))
    s = Scripted()
    s.answer(b"AT+CIPSEND=0,%d\r" % len(FRAME))
    assert s.answer(FRAME) == sent
    e = Emu("up")
    assert e.say(b'AT+CMGS="+447700900001"\r') == A.SMS_PROMPT
    sms = e.say(b"PNC1 test\x1a")
    assert sms == A.frame((A.CMGS % 1, A.OK)) == A.Registered().sent(b"PNC1 test\x1a")
    s.answer(b'AT+CMGS="+447700900001"\r')
    assert s.answer(b"PNC1 test\x1a") == sms


class _Board:
    now = 0


@pytest.mark.parametrize("make", [Scripted, lambda: mp_firmware.Modem(_Board(), KEYS)], ids=["scripted", "bench"])
def test_the_scripted_modems_answer_each_command_as_the_table_says(make):
    for row in A.ANSWERS:
        m = make()
        got = m.answer(_line(row) + b"\r")
        if row[2] is not A.READ:
            assert got == A.frame(row[2]), row[0]
    # the bytes waiting are each modem's own: the device tests' REPLY, the bench's ACKs (none yet)
    s = Scripted()
    data = pack(REPLY)
    assert s.answer(b"AT+CIPRXGET=3,0,750\r") == A.frame(
        (A.CIPRXGET % (3, len(data), 0), binascii.hexlify(data).decode().upper(), A.OK))
    assert mp_firmware.Modem(_Board(), KEYS).answer(b"AT+CIPRXGET=3,0,750\r") == A.frame(
        (A.IP_ERROR % "No data", A.ERROR)) == Emu("socket").say(b"AT+CIPRXGET=3,0,750\r")
    # a line the table lacks: ERROR, as the module says to a command it does not know
    assert Scripted().answer(b"AT+XYZZY\r") == A.frame((A.ERROR,)) == Emu("up").say(b"AT+XYZZY\r")


def test_every_line_the_engine_sends_in_the_device_tests_is_in_the_table(monkeypatch):
    import test_modem_engine
    import test_modem_services

    seen, missing = [], []
    real = A.answer

    def answer(line):
        seen.append(line)
        a = real(line)
        if a is None:
            missing.append(line)
        return a

    monkeypatch.setattr(A, "answer", answer)
    for mod in (test_modem_engine, test_modem_services):
        for name in sorted(n for n in dir(mod) if n.startswith("test_")):
            getattr(mod, name)()
    assert len(set(seen)) >= 20 and missing == []  # bring-up, frames, SMS, call, sleep, recovery


def test_each_row_cites_its_manual_section_and_names_a_state_the_emulator_reaches():
    with open(A.__file__) as f:
        src = f.read()
    body = src[src.index("ANSWERS = ("):src.index("\n)\n", src.index("ANSWERS = ("))]
    rows = [ln for ln in body.splitlines() if ln.startswith('    ("')]
    assert len(rows) == len(A.ANSWERS)
    for ln in rows:
        assert re.search(r"# \d+\.\d+(\.\d+)?\b", ln), ln
    for cmd, state, answer in A.ANSWERS:
        assert state in SETUP and answer and (not cmd.endswith("*") or cmd in ARGS)
