"""The diagnostics console as firmware/main.py wires it: the App's provider
(firmware/diagprov.py), the per-pass feeding of the board's console stream,
the TEST round trip through the real outbox, and lock-out kept on flash
across reboots. Host-only (a real directory as flash, the fake board)."""

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "device"))

from fw_fakes import DEV, KEY_HEX  # noqa: E402
from fw_world import FakeButton, FakeFix, FakeReceiver, make_app  # noqa: E402

from firmware import alert as A  # noqa: E402
from firmware import loop as M  # noqa: E402
from board_fake import FakeBoard  # noqa: E402
from firmware.diagprov import DIAG_FILE  # noqa: E402
from fake_transport import FakeTransport  # noqa: E402
from firmware.fs import Fs  # noqa: E402
from firmware.version import VERSION  # noqa: E402
from protocol import frame as F  # noqa: E402
from tools.diaglink import DiagHost  # noqa: E402
from tools.field import check_status  # noqa: E402

EK = bytes(range(100, 132))


def _config(fs, **over):
    cfg = {"device_id": DEV, "key_hex": KEY_HEX, "engineer_key_hex": EK.hex(), "receiver_host": "arc.example.org",
           "receiver_port": 7400, "sms_number": "+447700900001", "listen_number": "+447700900002", "apn": "internet",
           "test_enabled": True}
    cfg.update(over)
    if cfg.get("receiver_host") is None:  # the list form instead (as panic provision writes it)
        for k in ("receiver_host", "receiver_port", "sms_number"):
            cfg.pop(k, None)
    fs.write_atomic("config.json", json.dumps(cfg).encode())


class Loop:
    """main.py's console pass around an App, stepped on the fake board."""

    def __init__(self, tmp_path, **config):
        self.fs = Fs(str(tmp_path / "flash"))
        _config(self.fs, **config)
        from firmware import config as C

        self.rx = FakeReceiver()
        self.board = FakeBoard()
        self.app, _, self.tr = make_app(self.fs, self.rx, cfg=C.load(self.fs), board=self.board,
                                        tr=FakeTransport(FakeReceiver().deliver, None))
        self.tr.deliver = self.rx.deliver
        self.diag = M.make_console(self.app, self.board, self.fs)
        self.lock = self.diag.persist_state()

    def run(self, ms):
        end = self.board.now + ms
        while self.board.now < end:
            now = self.board.now
            wait = self.app.step(now)
            self.lock = M.serve_console(self.diag, self.board, self.fs, now, self.lock)
            self.board.now = now + max(1, min(wait, 50))

    def said(self):
        out = bytes(self.board.console.tx)
        self.board.console.tx = bytearray()
        return out


def _login(loop, host):
    loop.board.console.feed(host.hello())
    loop.run(100)
    host.accept(loop.said())


def _call(loop, host, cmd, **args):
    loop.board.console.feed(host.command(cmd, **args))
    loop.run(100)
    resp = host.response(loop.said())
    assert resp is not None
    return resp


def test_status_has_every_field_the_field_selftest_checks(tmp_path):
    lp = Loop(tmp_path)
    lp.run(3000)  # boot STATUS delivered and ACKed
    host = DiagHost(EK)
    _login(lp, host)
    st = _call(lp, host, "status")["status"]
    assert st["firmware"] == VERSION and st["device_id"] == DEV
    assert st["config"]["receiver"] == "arc.example.org:7400" and st["config"]["test_enabled"] is True
    assert st["button"] == {"level": 1, "pressed": False}
    assert st["outbox"] == 0 and st["alert_active"] is False and st["faults"] == []
    assert st["flash"]["ok"] is True and isinstance(st["flash"]["free_kb"], int)
    assert st["battery"] == {"mv": 4000, "low": False}
    assert "csq" in st["modem"] and "cell" in st["modem"]
    names = {c[0] for c in check_status(st, DEV)}
    assert {"firmware", "device id", "config", "button", "battery", "flash", "outbox", "faults"} <= names
    text = json.dumps(st)
    assert KEY_HEX not in text and EK.hex() not in text
    log = _call(lp, host, "log")
    assert log["events"][0].endswith("boot, reset cause 1") and any("ack STATUS" in e for e in log["events"])


def test_status_names_every_receiver_and_sms_number_in_order(tmp_path):
    lp = Loop(tmp_path, receivers=["arc1.example.org:7400", "arc2.example.org:7401"],
              sms_numbers=["+447700900001", "+447700900003"], receiver_host=None)
    assert lp.app.cfg.errors == [], lp.app.cfg.errors
    lp.run(3000)
    host = DiagHost(EK)
    _login(lp, host)
    cfg = _call(lp, host, "status")["status"]["config"]
    assert cfg["receiver"] == "arc1.example.org:7400 arc2.example.org:7401"
    assert cfg["sms_number"] == "+447700900001 +447700900003"


def test_console_test_goes_through_the_outbox_and_reports_the_ack(tmp_path):
    lp = Loop(tmp_path)
    lp.run(3000)
    host = DiagHost(EK)
    _login(lp, host)
    tok = _call(lp, host, "test")["token"]
    r = _call(lp, host, "result", token=tok)
    lp.run(2000)
    r = _call(lp, host, "result", token=tok)
    assert r["done"] is True and r["result"]["acked"] is True and r["result"]["via"] == "tcp"
    (t,) = lp.rx.of(F.TEST)
    assert t.seq == tok and t.body.test is True
    assert _call(lp, host, "result", token=999)["result"] == {"acked": False, "error": "unknown token"}


def test_console_test_is_refused_during_an_alert_and_the_alert_is_untouched(tmp_path):
    lp = Loop(tmp_path)
    lp.run(3000)
    host = DiagHost(EK)
    _login(lp, host)
    lp.app.ctl.fire(A.SOS, lp.board.now)
    lp.run(1000)
    before = (lp.app.ctl.state, lp.app.ctl.alert_seq)
    r = _call(lp, host, "test")
    assert r["ok"] is False and "alert active" in r["error"]
    assert _call(lp, host, "status")["status"]["alert_active"] is True
    assert (lp.app.ctl.state, lp.app.ctl.alert_seq) == before and not lp.rx.of(F.TEST)
    # covert (duress-cancelled) counts as active too: no TEST can start
    lp.app.ctl.fire(A.DURESS, lp.board.now)
    assert _call(lp, host, "test")["ok"] is False


def _run_device(tmp_path, board, steps):
    fs = Fs(str(tmp_path / "flash"))
    rx = FakeReceiver()
    return M.run(board, fs, transport_factory=lambda b, c: FakeTransport(rx.deliver, rx.deliver_sms), steps=steps,
                 app_kw={"fix": FakeFix(), "button": FakeButton(), "rand": lambda n: n // 2})


def test_main_loop_is_silent_unauthenticated_and_keeps_the_lockout_across_reboots(tmp_path):
    fs = Fs(str(tmp_path / "flash"))
    _config(fs)
    board = FakeBoard()
    junk = b"\r\x03\x03\x01AT\r\nhelp\r\nDIAG1 00 00\r\n" + b"x" * 700 + b"\n"
    board.console.feed(junk)
    _run_device(tmp_path, board, 50)
    assert bytes(board.console.tx) == b""
    assert fs.read(DIAG_FILE) == b"1 1\n"  # the wrong hello counted and kept on flash
    # reboot: the lock-out holds, so even the right hello is dropped unanswered at once
    board2 = FakeBoard()
    board2.console.feed(DiagHost(EK).hello())
    _run_device(tmp_path, board2, 5)
    assert bytes(board2.console.tx) == b""
    assert fs.read(DIAG_FILE) == b"1 1\n"  # a hello dropped during a lock-out is not a new failure
    # a restored lock-out starts at the first attempt after boot (diag.py): that one is
    # dropped, the next after 2 s is answered, and success clears the count
    host = DiagHost(EK)

    class Late(FakeBoard):
        tries = []

        def _wait(self, kind, ms):
            super()._wait(kind, ms if ms < 1000 else 1000)
            if self.now > 3000 and len(self.tries) < 2 and (not self.tries or self.now - self.tries[-1] > 2500):
                self.tries.append(self.now)
                if len(self.tries) == 2:
                    assert bytes(self.console.tx) == b""
                self.console.feed(host.hello())

    board3 = Late()
    _run_device(tmp_path, board3, 400)
    assert len(board3.tries) == 2
    host.accept(bytes(board3.console.tx))
    assert fs.read(DIAG_FILE) == b"0 1\n"


def test_no_console_without_an_engineer_key(tmp_path):
    fs = Fs(str(tmp_path / "flash"))
    cfg = {"device_id": DEV, "key_hex": KEY_HEX, "receiver_host": "a.example", "receiver_port": 1, "apn": "x"}
    fs.write_atomic("config.json", json.dumps(cfg).encode())
    board = FakeBoard()
    board.console.feed(DiagHost(EK).hello())
    _run_device(tmp_path, board, 20)
    assert bytes(board.console.tx) == b"" and fs.read(DIAG_FILE) is None


class _GnssTransport(FakeTransport):
    """The fake transport with the modem-GNSS switch the engine offers."""

    def __init__(self, *a):
        super().__init__(*a)
        self.gnss_calls = []

    def gnss(self, on, every_s=1):
        if not self.gnss_calls or self.gnss_calls[-1] != on:
            self.gnss_calls.append(on)  # (a rate change keeps it on)

    def nmea(self):
        return b""  # a desk indoors: the session answers nothing usable


def test_the_console_keeps_the_modems_gnss_on_only_for_an_authenticated_engineer(tmp_path):
    """T-SIM7600E: GNSS is the modem's and off between standby refreshes.
    A self-test needs it answering, so each authenticated status keeps it
    on for GNSS_HOLD_MS; bytes from a stranger never switch it on."""
    from firmware import config as C
    from firmware.diagprov import GNSS_HOLD_MS

    lp = Loop.__new__(Loop)
    lp.fs = Fs(str(tmp_path / "flash"))
    _config(lp.fs, timings={"fix_refresh_s": 3600})
    lp.rx = FakeReceiver()
    lp.board = FakeBoard()
    lp.board.gnss = None  # no NMEA UART: the modem's GNSS
    tr = _GnssTransport(lp.rx.deliver, None)
    lp.app, _, lp.tr = make_app(lp.fs, lp.rx, cfg=C.load(lp.fs), board=lp.board, tr=tr)
    lp.diag = M.make_console(lp.app, lp.board, lp.fs)
    lp.lock = lp.diag.persist_state()
    assert lp.app.modem_gnss
    lp.run(100000)  # the boot refresh session ran (no fix on the desk: over at its 90 s limit)
    assert tr.gnss_calls == [True, False]
    lp.board.console.feed(b"\r\x03\x03AT\r\nstatus\r\n" + bytes(range(128, 256)) + b"\r\n")
    lp.run(60000)  # (and sits out the lock-out those bad lines earned)
    assert tr.gnss_calls == [True, False] and lp.said() == b""
    host = DiagHost(EK)
    _login(lp, host)
    assert _call(lp, host, "status")["status"]["gnss"]["source"] == "modem"
    assert tr.gnss_calls == [True, False, True]
    lp.run(GNSS_HOLD_MS - 10000)
    assert tr.gnss_calls[-1] is True
    lp.run(20000)
    assert tr.gnss_calls == [True, False, True, False]
