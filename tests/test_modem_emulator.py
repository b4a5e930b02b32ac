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
    # RDY 12 s after the press (Hardware Design Table 8, Ton(uart) typ.), on
    # the wire for 7 bytes at 115200 baud (under 1 ms)
    assert emu.read(11999) == b""
    assert emu.read(12001) == b"\r\nRDY\r\n"
    return emu


def test_power_on_timing_and_echo_until_ate0():
    emu = _booted()
    assert _at(emu, b"AT", 12500) == b"AT\r\r\nOK\r\n"
    assert _at(emu, b"ATE0", 12600) == b"ATE0\r\r\nOK\r\n"
    assert _at(emu, b"AT", 12700) == b"\r\nOK\r\n"
    assert emu.read(13010) == b"\r\n+CPIN: READY\r\n"


def test_short_pwrkey_press_does_nothing_and_long_press_powers_off():
    emu = Sim7600(None, Network(seed=1))
    emu.pwrkey(1, 0)
    emu.pwrkey(0, 50)
    assert emu.next_event_ms() is None or emu.read(20500) == b""
    emu.pwrkey(1, 20500)
    emu.pwrkey(0, 21000)
    assert emu.read(32510) == b"\r\nRDY\r\n"
    emu.pwrkey(1, 40500)
    emu.pwrkey(0, 43500)
    # shutting down: no answer, STATUS still high until 26 s after (Table 9)
    assert _at(emu, b"AT", 44500) == b"" and emu.status(44500) == 1
    assert emu.status(43500 + 25999) == 1 and emu.on
    assert emu.status(43500 + 26000) == 0 and not emu.on
    assert _at(emu, b"AT", 70000) == b""


def test_sim_answers():
    assert _at(_booted(sim="missing"), b"AT+CPIN?", 14500).endswith(b"+CME ERROR: 10\r\n")
    emu = _booted(sim="pin")
    assert b"+CPIN: SIM PIN" in emu.read(13100)
    assert _at(emu, b'AT+CPIN="0000"', 14500).endswith(b"+CME ERROR: 16\r\n")
    assert _at(emu, b'AT+CPIN="1234"', 14700).endswith(b"OK\r\n")
    assert b"+CPIN: READY" in emu.read(16500)


def test_tcp_answers_follow_the_manual():
    emu = _booted(echo=False)
    assert _at(emu, b"AT+CIPSEND=0,5", 17500) == b"\r\n+CIPERROR: 4\r\n\r\nERROR\r\n"
    assert _at(emu, b'AT+CIPOPEN=0,"TCP","1.2.3.4",80', 17600) == b"\r\n+CIPOPEN: 0,2\r\n\r\nERROR\r\n"
    assert _at(emu, b"AT+NETOPEN", 17700, 2000) == b"\r\nOK\r\n\r\n+NETOPEN: 0\r\n"
    assert _at(emu, b"AT+NETOPEN", 19800) == b"\r\n+IP ERROR: Network is already opened\r\n\r\nERROR\r\n"
    assert _at(emu, b"AT+CIPRXGET=1", 19900) == b"\r\nOK\r\n"
    assert _at(emu, b"AT+CIPRXGET=3,0", 20000) == b"\r\n+IP ERROR: No data\r\n\r\nERROR\r\n"
    assert _at(emu, b'AT+CIPOPEN=0,"TCP","1.2.3.4",80', 20100, 1000) == b"\r\nOK\r\n\r\n+CIPOPEN: 0,0\r\n"
    assert _at(emu, b"AT+CIPSEND=0,3", 21200) == b"\r\n>"
    emu.write(b"\x00\x01\x02", 21300)
    # three bytes are no frame: the far end drops the stream, the modem says so
    assert emu.read(21500) == b"\r\nOK\r\n\r\n+CIPSEND: 0,3,3\r\n\r\n+IPCLOSE: 0,1\r\n"
    assert _at(emu, b"AT+CIPCLOSE=0", 21600) == b"\r\n+CIPCLOSE: 0,4\r\n\r\nERROR\r\n"
    assert _at(emu, b'AT+CIPOPEN=0,"TCP","1.2.3.4",80', 21700, 1000) == b"\r\nOK\r\n\r\n+CIPOPEN: 0,0\r\n"
    assert _at(emu, b"AT+CIPCLOSE=0", 22800) == b"\r\nOK\r\n\r\n+CIPCLOSE: 0,0\r\n"


def test_registration_sms_and_cell():
    emu = _booted(echo=False)
    assert _at(emu, b"AT+CREG?", 12500) == b"\r\n+CREG: 0,0\r\n\r\nOK\r\n"  # SIM not ready yet
    assert _at(emu, b"AT+CEREG?", 14500) == b"\r\n+CEREG: 0,2\r\n\r\nOK\r\n"  # searching
    assert _at(emu, b"AT+CEREG?", 16100) == b"\r\n+CEREG: 0,1\r\n\r\nOK\r\n"
    assert _at(emu, b"AT+CPSI?", 16500).startswith(b"\r\n+CPSI: LTE,Online,234-15,0x1A2B,30125732,")
    assert _at(emu, b'AT+CMGS="+4477"', 16700).endswith(b"+CMS ERROR: 305\r\n")  # still PDU mode
    assert _at(emu, b"AT+CMGF=1", 16900) == b"\r\nOK\r\n"
    assert _at(emu, b'AT+CMGS="+4477"', 17100) == b"\r\n> "
    emu.write(b"hello\x1a", 17200)
    assert emu.read(19800) == b"\r\n+CMGS: 1\r\n\r\nOK\r\n"
    assert [e[1:] for e in emu.events if e[1] == "sms"] == [("sms", "+4477", "hello")]


def test_unknown_faults_are_refused():
    with pytest.raises(ValueError):
        Sim7600(None, Network(), gremlins=True)
