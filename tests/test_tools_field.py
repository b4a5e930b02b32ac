"""panic field selftest / console against firmware/diag.py served on socket://."""

import io
import json
import os
import socket
import time

import pytest

from host_sim.diagserve import DiagServer, FakeProvider, healthy_status
from tools import cli, field
from tools.diaglink import DiagError, SerialConsole
from tools.registry import MemoryRegistry

EK = os.urandom(32)


def _keyfile(tmp_path, key=EK):
    p = tmp_path / "eng.key"
    p.write_text(key.hex() + "\n")
    os.chmod(p, 0o600)
    return str(p)


@pytest.fixture
def served():
    reg = MemoryRegistry()
    prov = FakeProvider(ack_after_ms=200, sink=reg.record_alert)
    with DiagServer(EK, prov) as srv:
        yield srv, prov, reg


def test_selftest_passes_end_to_end_and_receiver_saw_test(served, tmp_path, capsys):
    srv, prov, reg = served
    rep = field.selftest(srv.url, EK, registry=reg, expect_id=42, test_timeout=10)
    assert rep["passed"], field.report_text(rep)
    names = [c["name"] for c in rep["checks"]]
    for n in ("console", "firmware", "button", "gnss", "sim", "network", "signal", "battery", "flash", "outbox",
              "faults", "test alert", "receiver"):
        assert n in names
    assert reg.test_alerts(42, 0)[0]["test"] is True
    # the CLI writes the report as text and JSON and exits 0
    out = tmp_path / "unit42"
    rc = cli.main(["field", "selftest", "--port", srv.url, "--engineer-key", _keyfile(tmp_path),
                   "--report", str(out), "--test-timeout", "10"])
    assert rc == 0
    assert "RESULT: PASS" in (tmp_path / "unit42.txt").read_text()
    data = json.loads((tmp_path / "unit42.json").read_text())
    assert data["passed"] is True and data["status"]["device_id"] == 42
    printed = capsys.readouterr().out
    assert EK.hex() not in printed and EK.hex() not in (tmp_path / "unit42.json").read_text()


def test_selftest_reports_each_failure_with_why(tmp_path):
    st = healthy_status()
    st["gnss"] = {"fix": False, "sats": 2}
    st["modem"]["csq"] = 4
    st["battery"] = {"mv": 3400, "low": True}
    st["button"] = {"level": 0, "pressed": True}
    st["outbox"] = 3
    prov = FakeProvider(status=st, acked=False, ack_after_ms=0)
    with DiagServer(EK, prov) as srv:
        rep = field.selftest(srv.url, EK, test_timeout=5)
    assert not rep["passed"]
    res = {c["name"]: c for c in rep["checks"]}
    assert res["gnss"]["result"] == "fail" and "sky" in res["gnss"]["why"]
    assert res["signal"]["result"] == "fail" and "CSQ 4" in res["signal"]["why"]
    assert res["battery"]["result"] == "fail" and "3400" in res["battery"]["why"]
    assert res["button"]["result"] == "fail" and "PRESSED" in res["button"]["why"]
    assert res["outbox"]["result"] == "fail" and "3 frame" in res["outbox"]["why"]
    assert res["test alert"]["result"] == "fail" and "no ACK" in res["test alert"]["why"]
    assert res["sim"]["result"] == "pass"
    assert "RESULT: FAIL" in field.report_text(rep)


def test_selftest_does_not_test_during_a_real_alert():
    st = healthy_status()
    st["alert_active"] = True
    prov = FakeProvider(status=st)
    prov.alert = True
    with DiagServer(EK, prov) as srv:
        rep = field.selftest(srv.url, EK, test_timeout=5)
    res = {c["name"]: c for c in rep["checks"]}
    assert res["test alert"]["result"] == "fail" and "real alert" in res["test alert"]["why"]
    assert prov.tests == {}


def test_wrong_key_gets_silence_and_a_clear_failure(served, tmp_path, capsys):
    srv, prov, reg = served
    rc = cli.main(["field", "selftest", "--port", srv.url, "--engineer-key", _keyfile(tmp_path, os.urandom(32)),
                   "--test-timeout", "5"])
    assert rc == 1
    out = capsys.readouterr().out
    assert "FAIL  console" in out and "no answer" in out
    assert srv.sent == b""  # the console wrote nothing at all
    assert srv.diag.counters()["auth_fail"] == 1
    # a second wrong try locks the console for 4 s: even the right key is dropped
    with SerialConsole(srv.url, os.urandom(32), timeout=0.5) as con:
        with pytest.raises(DiagError):
            con.login()
    with SerialConsole(srv.url, EK, timeout=1) as con:
        with pytest.raises(DiagError):
            con.login()
    assert srv.diag.counters()["locked_drop"] == 1
    assert srv.sent == b""


def test_unauthenticated_probe_reads_nothing(served):
    srv, prov, reg = served
    with socket.create_connection(("127.0.0.1", srv.port)) as s:
        s.sendall(b"\r\n\x03\x03\x01AT\r\nhelp\r\nstatus\r\n\x04" + os.urandom(300) + b"\n")
        s.settimeout(1.0)
        with pytest.raises(socket.timeout):
            s.recv(100)
    assert srv.sent == b""


def test_console_interactive(served, tmp_path):
    srv, prov, reg = served
    with SerialConsole(srv.url, EK) as con:
        con.login()
        out = io.StringIO()
        field.console_loop(con, io.StringIO("status\nlog\nnonsense\nresult\nbye\n"), out)
    text = out.getvalue()
    assert '"operator": "Test Net"' in text and '"modem registered"' in text
    assert "commands: status" in text and "usage: result TOKEN" in text
    assert not srv.diag.active()


def test_tampered_responses_are_not_believed(served):
    """A man in the middle flipping response bytes: the host rejects them."""
    srv, prov, reg = served
    with SerialConsole(srv.url, EK, timeout=1) as con:
        con.login()
        real = con.host.response
        calls = []

        def tampered(line):
            calls.append(line)
            return real(line.replace(b"READY", b"ERROR"))

        con.host.response = tampered
        with pytest.raises(DiagError):
            con.call("status")
        assert calls and con.rejected == 1


def test_bad_port_and_bad_key_file_are_one_line_errors(tmp_path, capsys):
    kf = _keyfile(tmp_path)
    assert cli.main(["field", "selftest", "--port", "socket://127.0.0.1:1", "--engineer-key", kf]) == 3
    err = capsys.readouterr().err
    assert err.startswith("panic: cannot open port socket://127.0.0.1:1") and err.count("\n") == 1
    bad = tmp_path / "bad.key"
    bad.write_text("zz")
    assert cli.main(["field", "console", "--port", "socket://127.0.0.1:1", "--engineer-key", str(bad)]) == 2
    assert "does not hold hex" in capsys.readouterr().err
    assert cli.main(["field", "console", "--port", "x", "--engineer-key", str(tmp_path / "none")]) == 3
    assert "cannot read engineer key file" in capsys.readouterr().err


def test_session_timeout_is_seen_by_the_host(served):
    srv, prov, reg = served
    with SerialConsole(srv.url, EK, timeout=1) as con:
        con.login()
        assert con.call("status")["ok"]
        srv.diag._idle_at = 0  # idle long ago: the next poll ends the session
        time.sleep(0.3)
        assert not srv.diag.active()
        with pytest.raises(DiagError):
            con.call("status")


def test_board_checks_catch_a_lit_led_a_modem_whose_status_disagrees_no_ri_and_a_silent_gnss():
    from host_sim.diagserve import healthy_status
    from tools.field import check_status

    def verdicts(st):
        return {name: res for name, res, _ in check_status(st)}

    ok = verdicts(healthy_status())
    assert ok["led"] == ok["modem status"] == ok["ri"] == ok["gnss answers"] == "pass"
    st = healthy_status()
    st["board"] = {"led": 1, "status_pin": 0}  # the LED lit; STATUS low while the engine has the modem on
    st["modem"] = dict(st["modem"], ri_urc=False, nmea=0)
    bad = verdicts(st)
    assert bad["led"] == bad["modem status"] == bad["ri"] == bad["gnss answers"] == "fail"


def test_a_board_at_the_repl_is_told_apart_from_a_wrong_engineer_key(tmp_path, capsys):
    # a board whose firmware is not running answers the hello as the
    # MicroPython REPL does; the engineer must hear that, not "wrong key"
    from host_sim.mpboard import MpBoard

    with MpBoard(str(tmp_path / "root")) as b:
        rc = cli.main(["field", "selftest", "--port", b.url, "--engineer-key", _keyfile(tmp_path),
                       "--test-timeout", "5"])
    out = capsys.readouterr().out
    assert rc == 1, out
    assert "MicroPython REPL" in out and "firmware is not running" in out
    assert "wrong engineer key" not in out
