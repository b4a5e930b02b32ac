"""The SIM7600 emulator on its own: the manual's answer formats, pins and
timing, driven the way a board drives it."""

import pytest

from host_sim.modem import Sim7600
from host_sim.network import Network
from modem_world import KEYS
from host_sim.endpoint import VerifyingEndpoint


def _at(emu, cmd, now, wait=50):
    emu.read(now)  # URCs due before the command (+CPIN: READY, SMS DONE ...)
    emu.write(cmd + b"\r", now)
    return emu.read(now + wait)


def _booted(**kw):
    emu = Sim7600(VerifyingEndpoint(KEYS), Network(seed=1, jitter_ms=0), **kw)
    emu.pwrkey(1, 0)
    emu.pwrkey(0, 500)
    assert emu.read(11499) == b""
    assert emu.read(11500) == b"\r\nRDY\r\n"
    return emu


def test_power_on_timing_and_echo_until_ate0():
    emu = _booted()
    assert _at(emu, b"AT", 12000) == b"AT\r\r\nOK\r\n"
    assert _at(emu, b"ATE0", 12100) == b"ATE0\r\r\nOK\r\n"
    assert _at(emu, b"AT", 12200) == b"\r\nOK\r\n"
    assert emu.read(12500) == b"\r\n+CPIN: READY\r\n"


def test_short_pwrkey_press_does_nothing_and_long_press_powers_off():
    emu = Sim7600(None, Network(seed=1))
    emu.pwrkey(1, 0)
    emu.pwrkey(0, 50)
    assert emu.next_event_ms() is None or emu.read(20000) == b""
    emu.pwrkey(1, 20000)
    emu.pwrkey(0, 20500)
    assert emu.read(32000) == b"\r\nRDY\r\n"
    emu.pwrkey(1, 40000)
    emu.pwrkey(0, 43000)
    assert not emu.on and _at(emu, b"AT", 44000) == b""


def test_sim_answers():
    assert _at(_booted(sim="missing"), b"AT+CPIN?", 14000).endswith(b"+CME ERROR: 10\r\n")
    emu = _booted(sim="pin")
    assert b"+CPIN: SIM PIN" in emu.read(12600)
    assert _at(emu, b'AT+CPIN="0000"', 14000).endswith(b"+CME ERROR: 16\r\n")
    assert _at(emu, b'AT+CPIN="1234"', 14200).endswith(b"OK\r\n")
    assert b"+CPIN: READY" in emu.read(16000)


def test_tcp_answers_follow_the_manual():
    emu = _booted(echo=False)
    assert _at(emu, b"AT+CIPSEND=0,5", 17000) == b"\r\n+CIPERROR: 4\r\n\r\nERROR\r\n"
    assert _at(emu, b'AT+CIPOPEN=0,"TCP","1.2.3.4",80', 17100) == b"\r\n+CIPOPEN: 0,2\r\n\r\nERROR\r\n"
    assert _at(emu, b"AT+NETOPEN", 17200, 2000) == b"\r\nOK\r\n\r\n+NETOPEN: 0\r\n"
    assert _at(emu, b"AT+NETOPEN", 19300) == b"\r\n+IP ERROR: Network is already opened\r\n\r\nERROR\r\n"
    assert _at(emu, b"AT+CIPRXGET=1", 19400) == b"\r\nOK\r\n"
    assert _at(emu, b"AT+CIPRXGET=3,0", 19500) == b"\r\n+IP ERROR: No data\r\n\r\nERROR\r\n"
    assert _at(emu, b'AT+CIPOPEN=0,"TCP","1.2.3.4",80', 19600, 1000) == b"\r\nOK\r\n\r\n+CIPOPEN: 0,0\r\n"
    assert _at(emu, b"AT+CIPSEND=0,3", 20700) == b"\r\n>"
    emu.write(b"\x00\x01\x02", 20800)
    # three bytes are no frame: the far end drops the stream, the modem says so
    assert emu.read(21000) == b"\r\nOK\r\n\r\n+CIPSEND: 0,3,3\r\n\r\n+IPCLOSE: 0,1\r\n"
    assert _at(emu, b"AT+CIPCLOSE=0", 21100) == b"\r\n+CIPCLOSE: 0,4\r\n\r\nERROR\r\n"
    assert _at(emu, b'AT+CIPOPEN=0,"TCP","1.2.3.4",80', 21200, 1000) == b"\r\nOK\r\n\r\n+CIPOPEN: 0,0\r\n"
    assert _at(emu, b"AT+CIPCLOSE=0", 22300) == b"\r\nOK\r\n\r\n+CIPCLOSE: 0,0\r\n"


def test_registration_sms_and_cell():
    emu = _booted(echo=False)
    assert _at(emu, b"AT+CREG?", 12000) == b"\r\n+CREG: 0,0\r\n\r\nOK\r\n"  # SIM not ready yet
    assert _at(emu, b"AT+CEREG?", 14000) == b"\r\n+CEREG: 0,2\r\n\r\nOK\r\n"  # searching
    assert _at(emu, b"AT+CEREG?", 15600) == b"\r\n+CEREG: 0,1\r\n\r\nOK\r\n"
    assert _at(emu, b"AT+CPSI?", 16000).startswith(b"\r\n+CPSI: LTE,Online,234-15,0x1A2B,30125732,")
    assert _at(emu, b'AT+CMGS="+4477"', 16200).endswith(b"+CMS ERROR: 305\r\n")  # still PDU mode
    assert _at(emu, b"AT+CMGF=1", 16400) == b"\r\nOK\r\n"
    assert _at(emu, b'AT+CMGS="+4477"', 16600) == b"\r\n> "
    emu.write(b"hello\x1a", 16700)
    assert emu.read(19300) == b"\r\n+CMGS: 1\r\n\r\nOK\r\n"
    assert [e[1:] for e in emu.events if e[1] == "sms"] == [("sms", "+4477", "hello")]


def test_unknown_faults_are_refused():
    with pytest.raises(ValueError):
        Sim7600(None, Network(), gremlins=True)
