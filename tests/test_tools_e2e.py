"""Issue 7's must-show, end to end without hardware: flash and provision a
simulated board (the MicroPython unix port behind socket://), boot the real
firmware on it in faithful mode (host_sim/faithful.py), then
`panic field selftest` passes and the receiver shows the TEST alert
labelled as test."""

import json
import socket
import threading
import time

import pytest

from host_sim.faithful import Rig
from host_sim.mpboard import MpBoard
from host_sim import scenario as SC
from receiver import masterkey
from receiver import store as S
from tools import cli
from tools import flash as FL

SCENARIO = """
[scenario]
name = "bench unit on a desk"
duration = "20m"
time_scale = 10

[gnss]
start = "hot"  # the modem's own receiver, as on the T-SIM7600E provisioned by default

[route]
points = [ { at = "0s", lat = 51.50330, lon = -0.11960 } ]
"""


def _wait(pred, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.1)
    return False


ROM = 256 * 1024


@pytest.mark.parametrize("romfs", [False, True], ids=["files", "romfs"])
def test_flash_provision_boot_then_field_selftest_and_receiver_shows_test(tmp_path, capsys, romfs):
    """Once with the release copied as files, once in the ROM partition
    (`panic flash --romfs`): the firmware then runs from /rom."""
    t_start = time.monotonic()
    root = str(tmp_path / "board")
    db = str(tmp_path / "receiver.db")
    mk = tmp_path / "master.key"
    mk.write_text(masterkey.generate_hex() + "\n")
    mk.chmod(0o600)  # a master key file others can read is refused
    ekf = tmp_path / "keys" / "dev42.key"
    # 1. flash and provision over the board's serial URL, registering with a real receiver store
    with MpBoard(root, rom=ROM if romfs else None) as b:
        assert cli.main(["flash", "--port", b.url, "--march", "", "--quiet"] + (["--romfs"] if romfs else [])) == 0
        assert cli.main(["provision", "--port", b.url, "--device-id", "42", "--receiver", "203.0.113.5:5000",
                         "--sms-number", "+447700900123", "--listen-number", "+447700900456", "--apn", "internet",
                         "--person-ref", "urn:arc:case:E2E-1", "--db", db, "--master-key-file", str(mk),
                         "--engineer-key-out", str(ekf)]) == 0
    out = capsys.readouterr().out
    assert "device id  42" in out and FL.release_version() in out
    cfg = json.loads((tmp_path / "board" / "data" / "config.json").read_text())
    assert cfg["key_hex"] not in out and cfg["engineer_key_hex"] not in out
    st = S.open_store(db, None)
    assert st.get_device(42)["person_ref"] == "urn:arc:case:E2E-1"
    st.close()
    # 2. power the board up with the real firmware, its world and the receiver on that store
    sc = SC.loads(SCENARIO, str(tmp_path / "desk.toml"))
    rig = Rig(sc, root=root, db=db, master=masterkey.load(str(mk)), start_utc_ms=int(time.time() * 1000),
              rom=ROM if romfs else None)
    stop = threading.Event()
    rig.start()

    def loop():
        while not stop.is_set() and rig.pacer.clock.now < sc.duration_ms:
            rig.pump()

    th = threading.Thread(target=loop, daemon=True)
    th.start()
    try:
        def booted():  # the boot STATUS reached the receiver and the outbox had time to see its ACK
            s = S.open_store(db, None)
            try:
                return any(r["type"] == "STATUS" for r in s.frames(42))
            finally:
                s.close()

        assert _wait(booted, 30), "the firmware never delivered its boot STATUS"
        time.sleep(0.5)
        # 3. without the key the console says nothing at all
        with socket.create_connection(("127.0.0.1", rig.board.port)) as s:
            s.sendall(b"\r\x03\x03\r\x01print('hi')\x04\r\nAT\r\nhelp\r\n")
            s.settimeout(1.0)
            try:
                got = s.recv(100)
            except socket.timeout:
                got = b""
            assert got == b""
        capsys.readouterr()
        # 4. the field self-test, end to end
        rc = cli.main(["field", "selftest", "--port", rig.console_url, "--engineer-key", str(ekf), "--device-id", "42",
                       "--receiver-db", db, "--report", str(tmp_path / "rep"), "--test-timeout", "20"])
        text = capsys.readouterr().out
        assert rc == 0, text
        assert "RESULT: PASS" in text and "acknowledged by the receiver via tcp" in text
        assert "labelled test" in text
        rep = json.loads((tmp_path / "rep.json").read_text())
        assert rep["passed"] and rep["status"]["firmware"] == FL.release_version()
        m = json.loads((tmp_path / "board" / "manifest.json").read_text())
        copies = [p.name for p in (tmp_path / "board").iterdir() if p.name.startswith("app-")]
        if romfs:  # no copy of the code on the filesystem: the firmware that answered ran from /rom
            assert m["app"] == "rom" and copies == []
        else:
            assert copies == [m["app"]]
        assert rep["status"]["device_id"] == 42 and rep["status"]["modem"]["sim"] == "READY"
        for secret in (cfg["key_hex"], cfg["engineer_key_hex"]):
            assert secret not in text and secret not in (tmp_path / "rep.json").read_text()
        # 5. the receiver: one TEST frame in a *test* incident, no emergency opened
        s = S.open_store(db, None)
        try:
            tests = s.test_frames(42)
            assert [r["type"] for r in tests] == ["TEST"] and tests[0]["incident_kind"] == "test"
            kinds = {i["kind"] for i in s.incidents()}
            assert kinds == {"test"}
        finally:
            s.close()
    finally:
        stop.set()
        th.join(5)
        res = rig.finish()
        rig.stop()
    assert res["faithful"]["console_bytes_unauth"] == 0
    assert [i["name"] for i in res["invariants"] if not i["ok"]] == []
    assert time.monotonic() - t_start < 60
