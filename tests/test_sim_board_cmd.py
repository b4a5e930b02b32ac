"""`panic sim board`: a provisioned simulated board (the MicroPython unix
port running the release, the faithful rig's board) whose console URL it
prints, so the field tools work on it as on hardware: `panic field
selftest` passes every check over socket://, `panic field console`
answers the engineer, and the wrong key gets silence."""

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from receiver import store as S

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def panic(*args, stdin=None, timeout=120):
    p = subprocess.run([sys.executable, "-m", "tools", *args], cwd=ROOT, capture_output=True, text=True, input=stdin,
                       timeout=timeout)
    return p.returncode, p.stdout, p.stderr


class Board:
    """`panic sim board` in a subprocess; its stdout lines as they come."""

    def __init__(self, *args):
        self.proc = subprocess.Popen([sys.executable, "-m", "tools", "sim", "board", *args], cwd=ROOT,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines = []
        self._q = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self._q.put(line.rstrip("\n"))
        self._q.put(None)

    def wait_for(self, prefix, timeout=60):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                line = self._q.get(timeout=0.2)
            except queue.Empty:
                continue
            if line is None:
                break
            self.lines.append(line)
            if line.startswith(prefix):
                return line
        raise AssertionError("no %r from sim board; it said:\n%s\n%s" % (
            prefix, "\n".join(self.lines), self.proc.stderr.read() if self.proc.poll() is not None else ""))

    def stop(self):
        """SIGTERM, as a service manager (or Ctrl-C) powers it off: exit 0."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(20)
        self.wait_for("powered off", timeout=5)
        return rc


@pytest.fixture
def board(tmp_path):
    b = Board("--dir", str(tmp_path / "unit"), "--time-scale", "10", "--for", "1h")
    yield b
    if b.proc.poll() is None:
        b.proc.kill()
        b.proc.wait(10)


def test_field_selftest_passes_every_check_on_a_simulated_board(board, tmp_path):
    unit = tmp_path / "unit"
    head = board.wait_for("simulated board:")
    assert "device 4242" in head and "newly provisioned" in head
    url = board.wait_for("  console").split()[-1]
    assert re.match(r"^socket://127\.0\.0\.1:\d+$", url)
    ekey = board.wait_for("  engineer").split()[-1]
    assert ekey == str(unit / "engineer.key") and os.stat(ekey).st_mode & 0o077 == 0
    board.wait_for("ready:")
    rc, out, err = panic("field", "selftest", "--port", url, "--engineer-key", ekey, "--device-id", "4242",
                         "--receiver-db", str(unit / "receiver.db"), "--report", str(tmp_path / "unit-4242"),
                         "--test-timeout", "30")
    assert rc == 0, out + err
    assert "RESULT: PASS" in out
    rep = json.loads((tmp_path / "unit-4242.json").read_text())
    assert rep["passed"] and len(rep["checks"]) >= 18
    assert [c["name"] for c in rep["checks"] if c["result"] != "pass"] == []
    names = {c["name"] for c in rep["checks"]}
    assert {"console", "gnss", "sim", "network", "test alert", "receiver"} <= names
    # the console, interactively: every response verified before it is shown
    rc, out, err = panic("field", "console", "--port", url, "--engineer-key", ekey, stdin="status\nbye\n")
    assert rc == 0, err
    assert out.startswith("authenticated.") and '"device_id": 4242' in out
    # no key on any line the board command or the tools printed
    cfg = json.loads((unit / "board" / "data" / "config.json").read_text())
    printed = "\n".join(board.lines) + out
    assert cfg["key_hex"] not in printed and cfg["engineer_key_hex"] not in printed
    # a wrong engineer key hears nothing, as on hardware
    wrong = tmp_path / "wrong.key"
    wrong.write_text(os.urandom(32).hex() + "\n")
    rc, out, err = panic("field", "selftest", "--port", url, "--engineer-key", str(wrong))
    assert rc == 1 and "no answer from the console: wrong engineer key" in out
    assert board.stop() == 0
    # the receiver it reported to holds the TEST in a test incident, never an emergency
    st = S.open_store(str(unit / "receiver.db"), None, create=False)
    try:
        assert [r["type"] for r in st.test_frames(4242)] == ["TEST"]
        assert {i["kind"] for i in st.incidents()} == {"test"}
    finally:
        st.close()


def test_a_board_folder_boots_again_as_it_was(tmp_path):
    unit = tmp_path / "unit"
    b = Board("--dir", str(unit), "--time-scale", "10", "--for", "40s")
    b.wait_for("ready:")
    assert b.proc.wait(30) == 0 and b.wait_for("powered off after 0m40s")
    key = (unit / "engineer.key").read_text()
    b = Board("--dir", str(unit), "--time-scale", "10", "--for", "40s")
    assert "provisioned before" in b.wait_for("simulated board:")
    b.wait_for("ready:")  # the same device, its seq reservation and store kept: the new boot STATUS is ACKed
    assert b.proc.wait(30) == 0
    assert (unit / "engineer.key").read_text() == key
    rc, out, err = panic("sim", "board", "--dir", str(unit), "--device-id", "7")
    assert rc == 2 and "already provisioned as device 4242" in err
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("x")
    rc, out, err = panic("sim", "board", "--dir", str(tmp_path / "junk"))
    assert rc == 1 and "not an empty folder nor a simulated board" in err


def test_a_board_in_a_scenario_knows_its_towers(tmp_path):
    # the receiver it reports to resolves the towers the scenario places, as every simulated run's does
    unit = tmp_path / "unit"
    b = Board("--dir", str(unit), "--scenario", os.path.join(ROOT, "host_sim", "scenarios", "walk_home_indoor_attack.toml"),
              "--time-scale", "20", "--for", "30s")
    b.wait_for("ready:")
    assert b.proc.wait(30) == 0
    rc, out, err = panic("receiver", "locations", "lookup", "--db", str(unit / "receiver.db"), "--cell", "234-15-6699-30125801")
    assert rc == 0 and out.startswith("54.3300000, -2.7420000 cell (resolved) +/-1000 m"), out + err
    rc, out, err = panic("receiver", "locations", "lookup", "--db", str(unit / "receiver.db"), "--cell", "234-15-6699-1")
    assert "not in database" in out + err
