"""Crash safety: kill -9 the receiver at random moments while devices send
frames. After every restart, every frame that was ACKed is in the store,
and retries (including re-sends of frames already ACKed) never raise an
alert twice or open a second incident."""

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time

from protocol import frame as F
from protocol import stream
from receiver import masterkey
from receiver import store as S
from recv_helpers import T0, Dev, send_recv, store_path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPISODES = 4
TRACKS = 30
KILLS = 8
BUDGET_S = 60.0  # a bound for a badly loaded machine; about 10 s normally


def script_for(d):
    out = []
    for _ in range(EPISODES):
        out.append(d.frame(F.ALERT, t=T0))
        out.extend(d.frame(F.TRACK, t=T0) for _ in range(TRACKS))
        out.append(d.frame(F.CANCEL, t=T0, source=F.SRC_NONE))
    return out


class Receiver:
    def __init__(self, db, mk_file, log_dir):
        self.db, self.mk_file, self.log_dir = db, mk_file, log_dir
        self.proc = None
        self.port = None
        self.starts = 0

    def start(self):
        self.starts += 1
        log = os.path.join(self.log_dir, "serve-%d.log" % self.starts)
        self.logf = open(log, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tools.cli", "receiver", "serve", "--db", self.db, "--listen", "127.0.0.1:0",
             "--master-key-file", self.mk_file, "--supervise-every", "0"],
            cwd=ROOT, stdout=self.logf, stderr=subprocess.STDOUT)
        t_end = time.monotonic() + 15
        while time.monotonic() < t_end:
            with open(log) as f:
                for line in f:
                    if "listening tcp" in line:
                        self.port = int(line.rsplit(":", 1)[1])
                        return
            if self.proc.poll() is not None:
                raise AssertionError("receiver exited: " + open(log).read())
            time.sleep(0.02)
        raise AssertionError("receiver did not start")

    def kill9(self):
        self.port = None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.logf.close()


def test_kill_9_at_random_points_loses_no_acked_frame_and_raises_nothing_twice(tmp_path):
    rng = random.Random(int(os.environ.get("RECEIVER_CRASH_SEED", "5")))
    devs = [Dev(500 + i) for i in range(6)]
    scripts = {d.id: script_for(d) for d in devs}
    mk_hex = masterkey.generate_hex()
    mk_file = str(tmp_path / "master.key")
    with open(os.open(mk_file, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
        f.write(mk_hex)
    db = store_path(tmp_path, "crash.db")
    st = S.open_store(db, masterkey.load(mk_file))
    for d in devs:
        st.add_device(d.id, d.key, "URN %d" % d.id)
    st.close()

    rx = Receiver(db, mk_file, str(tmp_path))
    acked = set()
    lock = threading.Lock()
    done = {}
    failures = []
    deadline = time.monotonic() + BUDGET_S

    def device(d):
        frames = scripts[d.id]
        r = random.Random(d.id)
        i = 0
        while i < len(frames) and time.monotonic() < deadline:
            port = rx.port
            if port is None:
                time.sleep(0.02)
                continue
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                    de = stream.Deframer()
                    if i and r.random() < 0.5:  # the ACK may have been lost: send the last one again
                        ack = send_recv(s, frames[i - 1], de, timeout=2)
                        if ack is None:
                            continue
                        assert d.ack(ack).body.acked_seq == i
                    while i < len(frames):
                        ack = send_recv(s, frames[i], de, timeout=2)
                        if ack is None:
                            break
                        fr = d.ack(ack)
                        if fr.body.acked_seq != i + 1:
                            failures.append("device %d: ACK for %d, expected %d" % (d.id, fr.body.acked_seq, i + 1))
                            return
                        with lock:
                            acked.add((d.id, i + 1))
                        i += 1
                        time.sleep(r.uniform(0, 0.01))
            except (OSError, socket.timeout):
                time.sleep(0.02)
        done[d.id] = i

    threads = [threading.Thread(target=device, args=(d,)) for d in devs]
    rx.start()
    for t in threads:
        t.start()
    kills = busy_kills = 0
    for _ in range(KILLS):
        # kill at a random point of the traffic: after a random number of
        # further ACKs (so devices are always sending), plus a random instant
        with lock:
            target = len(acked) + rng.randint(10, 60)
        while time.monotonic() < deadline and any(t.is_alive() for t in threads):
            with lock:
                if len(acked) >= target:
                    break
            time.sleep(0.002)
        time.sleep(rng.uniform(0, 0.02))
        busy_kills += any(t.is_alive() for t in threads)
        rx.kill9()
        kills += 1
        # check after every crash: everything ACKed so far is stored
        with lock:
            snapshot = set(acked)
        st = S.open_store(db, masterkey.load(mk_file))
        stored = {(f["device_id"], f["seq"]) for f in st.frames()}
        st.close()
        missing = snapshot - stored
        assert not missing, "ACKed but lost after kill %d: %r" % (kills, sorted(missing)[:5])
        rx.start()
    for t in threads:
        t.join(max(1.0, deadline - time.monotonic()))
    rx.kill9()

    assert failures == []
    assert busy_kills == KILLS, "only %d of %d kills hit a receiver with devices sending" % (busy_kills, kills)
    assert all(done.get(d.id) == len(scripts[d.id]) for d in devs), "devices stalled: %r" % done
    st = S.open_store(db, masterkey.load(mk_file))
    stored = {(f["device_id"], f["seq"]) for f in st.frames()}
    assert acked <= stored and len(stored) == sum(len(s) for s in scripts.values())
    for d in devs:
        incs = [i for i in st.incidents() if i["device_id"] == d.id]
        assert len(incs) == EPISODES and all(i["state"] == S.CANCELLED for i in incs)
    alerts = [e for e in st.events_after(0, 100000) if e["kind"] in ("alert", "alert_repeat")]
    assert sorted(e["device_id"] for e in alerts) == sorted(d.id for d in devs for _ in range(EPISODES))
    assert all(e["kind"] == "alert" for e in alerts)
    st.close()
