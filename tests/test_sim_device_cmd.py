"""`panic sim device`: the firmware sending to a real `panic receiver
serve` subprocess, as docs/receiver.md walks through it: master key,
device add, serve, the simulated device, then the receiver's own view.
In the MicroPython VM (--faithful) and in virtual time, the device's TCP
frames and, in an SMS-only gap, its SMS (posted to serve's HTTP endpoint)
are stored by that receiver under the device it registered; a second run
is the same device going on, so its new alert is raised, not taken for a
duplicate of the first run's."""

import json
import os
import re
import subprocess
import sys
import time

import pytest

from receiver import store as S

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# 2m30s at 20x: ~8 s of wall time. SOS by TCP, then the data path goes and
# the CANCEL can only leave by SMS.
SCENARIO = """
[scenario]
name = "sim device against a real receiver"
duration = "2m30s"
time_scale = 20

[gnss]
start = "hot"

[route]
points = [ { at = "0s", lat = 51.50330, lon = -0.11960 } ]

[[coverage]]
from = 0
mode = "data+sms"

[[coverage]]
from = "1m"
mode = "sms-only"
sms_latency_ms = 2000

[[action]]
at = "30s"
kind = "sos"

[[action]]
at = "1m15s"
kind = "cancel"

[expect]
alerts = 1
cancels = 1
sms_used = true
"""

QUIET = """
[scenario]
name = "a device that only boots"
duration = "40s"
time_scale = 20

[route]
points = [ { at = "0s", lat = 51.50330, lon = -0.11960 } ]
"""


def panic(*args, timeout=120):
    p = subprocess.run([sys.executable, "-m", "tools", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


class Serve:
    """`panic receiver serve` in a subprocess, on ports the OS picks."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.db = str(tmp / "rx.db")
        self.mk = str(tmp / "master.key")
        self.log = str(tmp / "serve.log")
        self.proc = None

    def __enter__(self):
        self.logf = open(self.log, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "tools", "receiver", "serve", "--db", self.db,
                                      "--master-key-file", self.mk, "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"],
                                     cwd=ROOT, stdout=self.logf, stderr=subprocess.STDOUT)
        end = time.monotonic() + 15
        self.tcp = self.http = None
        while time.monotonic() < end and not (self.tcp and self.http):
            with open(self.log) as f:
                for line in f:
                    if "listening tcp" in line:
                        self.tcp = line.rsplit(" ", 1)[1].strip()
                    elif "listening http" in line:
                        self.http = line.rsplit(" ", 1)[1].strip()
            assert self.proc.poll() is None, open(self.log).read()
            time.sleep(0.05)
        assert self.tcp and self.http, open(self.log).read()
        return self

    def __exit__(self, *a):
        self.proc.terminate()
        self.proc.wait(10)
        self.logf.close()


def stored(db):
    """What the receiver's store holds for device 1001: (frames, incidents)."""
    st = S.open_store(db, None, create=False)
    try:
        return st.frames(1001), st.incidents()
    finally:
        st.close()


@pytest.fixture
def registered(tmp_path):
    """The operator's first steps: a master key, a device registered with a new key."""
    rc, out, err = panic("receiver", "master-key", "--out", str(tmp_path / "master.key"))
    assert rc == 0, err
    rc, out, err = panic("receiver", "device", "add", "--db", str(tmp_path / "rx.db"), "--master-key-file",
                         str(tmp_path / "master.key"), "--device-id", "1001", "--generate-key",
                         str(tmp_path / "dev1001.key"), "--person-ref", "URN 01/1234/26")
    assert rc == 0, err
    return tmp_path


def test_sim_device_in_the_vm_alerts_a_real_serve_by_tcp_then_cancels_by_sms(registered):
    tmp = registered
    (tmp / "scenario.toml").write_text(SCENARIO)
    with Serve(tmp) as rx:
        rc, out, err = panic("sim", "device", str(tmp / "scenario.toml"), "--faithful", "--receiver", rx.tcp,
                             "--sms-http", rx.http, "--device-id", "1001", "--key-file", str(tmp / "dev1001.key"),
                             "--json", str(tmp / "r.json"))
        assert rc == 0, out + err
        # the receiver's own view, while it still runs: what an operator sees
        rc2, watched, err2 = panic("receiver", "watch", "--db", rx.db, "--once", "--from-start")
        assert rc2 == 0, err2
    assert "simulated device 1001 -> receiver %s (TCP), SMS to http://%s/sms" % (rx.tcp, rx.http) in out
    # each alert's latencies, press -> first frame on air and press -> ACK
    assert re.search(r"^  SOS at 0:3\d, seq \d+: press -> first frame on air \d+\.\d\d s, press -> ACK \d+\.\d\d s$",
                     out, re.M), out
    # the CANCEL left by SMS: the receiver's ACK is its answer to the gateway, not a frame back to the device
    assert re.search(r"^  CANCEL at 1:\d\d, seq \d+: press -> first frame on air \d+\.\d\d s, press -> ACK never",
                     out, re.M), out
    assert "ok: " in out and "FAIL" not in err
    assert "simulated" not in err  # no progress line when stderr is not a terminal
    assert "ALERT" in watched and "CANCELLED" in watched and "person URN 01/1234/26" in watched
    # the store of the real receiver: the SOS came by TCP, the CANCEL by SMS, under device 1001
    frames, incidents = stored(rx.db)
    by_type = {}
    for r in frames:
        by_type.setdefault(r["type"], set()).add(r["transport"])
    assert by_type["ALERT"] == {"tcp"} and "sms" in by_type["CANCEL"], by_type
    assert [(i["kind"], i["state"]) for i in incidents] == [("alert", "cancelled")]
    # the results agree with the store: every stored frame was proven by an ACK the device verified
    res = json.loads((tmp / "r.json").read_text())
    proven = {f["seq"] for f in res["frames"] if f["event"] == "committed"}
    assert proven == {r["seq"] for r in frames}
    sos, cancel = sorted(res["alerts"], key=lambda a: a["press_ms"])
    assert sos["ack_ms"] - sos["press_ms"] < 5000  # ready profile, data coverage: BS 8484's 5 s
    assert cancel["committed_ms"] is not None


def test_sim_device_in_virtual_time_twice_is_one_device_going_on(registered):
    tmp = registered
    (tmp / "scenario.toml").write_text(SCENARIO)
    runs = []
    with Serve(tmp) as rx:
        for n in (1, 2):
            rc, out, err = panic("sim", "device", str(tmp / "scenario.toml"), "--receiver", rx.tcp, "--sms-http",
                                 rx.http, "--device-id", "1001", "--key-file", str(tmp / "dev1001.key"),
                                 "--json", str(tmp / ("r%d.json" % n)))
            assert rc == 0, out + err
            assert "in virtual time" in out and ("(new)" if n == 1 else "kept from its last run") in out
            runs.append(json.loads((tmp / ("r%d.json" % n)).read_text()))
    first, second = ({a["kind"]: a["seq"] for a in r["alerts"]} for r in runs)
    assert second["sos"] > first["cancel"]  # the flash kept its seq reservation: no seq is used twice
    frames, incidents = stored(rx.db)
    # both runs' alerts raised and cancelled (the second is not a duplicate of the first), each CANCEL by SMS
    assert [(i["kind"], i["state"], i["opened_seq"]) for i in incidents] == [
        ("alert", "cancelled", first["sos"]), ("alert", "cancelled", second["sos"])]
    cancels = {r["seq"]: r["transport"] for r in frames if r["type"] == "CANCEL"}
    assert cancels == {first["cancel"]: "sms", second["cancel"]: "sms"}
    assert len({r["seq"] for r in frames}) == len(frames)
    assert os.stat(tmp / "dev1001.flash").st_mode & 0o077 == 0


def test_sim_device_says_what_is_wrong(registered, tmp_path):
    tmp = registered
    key = str(tmp / "dev1001.key")
    rc, out, err = panic("sim", "device", "--receiver", "nowhere", "--device-id", "1001", "--key-file", key)
    assert rc == 2 and "--receiver must be HOST:PORT" in err
    rc, out, err = panic("sim", "device", "--receiver", "127.0.0.1:1", "--device-id", "1001", "--key-file", key)
    assert rc == 3 and "no receiver at 127.0.0.1:1" in err and "Traceback" not in err
    rc, out, err = panic("sim", "device", "--receiver", "127.0.0.1:7", "--device-id", "1001",
                         "--key-file", str(tmp / "missing.key"))
    assert rc == 3 and "cannot read key file" in err
    rc, out, err = panic("sim", "device", "--receiver", "127.0.0.1:7", "--device-id", "1001", "--key-file", key,
                         "--time-scale", "10")
    assert rc == 2 and "--time-scale paces a --faithful run" in err
    (tmp / "quiet.toml").write_text(QUIET)
    other = tmp / "other.key"
    other.write_text(os.urandom(32).hex() + "\n")
    with Serve(tmp) as rx:
        rc, out, err = panic("sim", "device", "--receiver", rx.tcp, "--sms-http", "127.0.0.1:1", "--device-id", "1001",
                             "--key-file", key)
        assert rc == 3 and "no SMS endpoint at http://127.0.0.1:1" in err
        # a key the receiver does not hold for this device: nothing is stored, and the run says why
        rc, out, err = panic("sim", "device", str(tmp / "quiet.toml"), "--faithful", "--receiver", rx.tcp,
                             "--device-id", "1001", "--key-file", str(other))
    assert rc == 1, out + err
    assert "no frame was acknowledged: is device 1001 registered at %s with this key?" % rx.tcp in err
    assert stored(rx.db)[0] == []
