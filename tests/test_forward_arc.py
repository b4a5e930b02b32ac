"""`panic receiver serve` forwarding to pysiaalarm's receiver as the ARC,
as a user runs it: the receiver and the ARC are real processes, devices
send real frames over TCP, targets are set with `panic receiver forward
add`. Every event type arrives (plain and encrypted), passes pysiaalarm's
CRC and timestamp checks and is ACKed; the ARC and the receiver are
killed and restarted mid-stream, the primary is dropped and comes back,
ACKs are held past the timeout: every alarm arrives at least once and
every repeat carries its original sequence number."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

from protocol import frame as F
from receiver import masterkey
from receiver import store as S
from recv_helpers import Dev, send_until_acked, store_path
from test_forward_peers import DelayProxy, OwnArc, PysiaArc, free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY_TEXT = "89ABCDEF01234567"
GNSS = dict(source=F.SRC_GNSS, lat=515007292, lon=-1246254, accuracy=6, age=3)


class Serve:
    """`panic receiver serve` as a subprocess (kill -9 able)."""

    def __init__(self, tmp_path, *extra):
        self.tmp = tmp_path
        self.db = store_path(tmp_path, "rx.db")
        self.mk = str(tmp_path / "master.key")
        if not os.path.exists(self.mk):
            fd = os.open(self.mk, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # serve refuses a key others can read
            with os.fdopen(fd, "w") as f:
                f.write(masterkey.generate_hex())
        self.extra = extra
        self.proc = None
        self.port = None
        self.starts = 0

    def store(self):
        with open(self.mk) as f:
            return S.open_store(self.db, masterkey.MasterKey(bytes.fromhex(f.read().strip())))

    def panic(self, *args):
        r = subprocess.run([sys.executable, "-m", "tools.cli", "receiver", *args], cwd=ROOT, capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, r.stderr + r.stdout
        return r.stdout

    def start(self):
        self.starts += 1
        self.log = str(self.tmp / ("serve-%d.log" % self.starts))
        self.logf = open(self.log, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tools.cli", "receiver", "serve", "--db", self.db, "--listen", "127.0.0.1:0",
             "--master-key-file", self.mk, *self.extra], cwd=ROOT, stdout=self.logf, stderr=subprocess.STDOUT)
        end = time.monotonic() + 20
        while time.monotonic() < end:
            with open(self.log) as f:
                for line in f:
                    if "listening tcp" in line:
                        self.port = int(line.rsplit(":", 1)[1])
                        return self
            assert self.proc.poll() is None, open(self.log).read()
            time.sleep(0.02)
        raise AssertionError("serve did not start")

    def kill9(self):
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.logf.close()

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(20)
            self.logf.close()

    def send(self, d, raw):
        """One frame over TCP until it is ACKed (retries as a device does)."""
        return send_until_acked(self.port, d, raw)


def rows(sv):
    st = sv.store()
    try:
        return st.forward_queue_rows()
    finally:
        st.close()


def wait_rows(sv, pred, timeout=40.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        r = rows(sv)
        if pred(r):
            return r
        time.sleep(0.1)
    raise AssertionError("queue not as expected: %s" % [(x["id"], x["event_kind"], x["state"]) for x in rows(sv)])


def all_done(r):
    return r and all(x["state"] == "delivered" for x in r)


def check_repeats(sent_rows, arc_events):
    """Every queued message reached the ARC at least once with its own
    sequence number; repeats of a sequence number are the same message."""
    by_seq = {}
    for ev in arc_events:
        by_seq.setdefault(int(ev["seq"]), set()).add((ev["account"], ev["code"], ev["type"]))
    for r in sent_rows:
        assert r["seq"] in by_seq, ("never arrived", r["seq"], r["event_kind"])
    assert all(len(v) == 1 for v in by_seq.values()), by_seq
    for ev in arc_events:  # NULL link tests included
        assert ev["crc_ok"] and ev["length_ok"] and ev["timestamp_ok"] and ev["response"] == "ACK", ev


def _every_event_type(tmp_path, encrypted):
    arc_acct = [{"account": "1001", "key": KEY_TEXT if encrypted else None},
                {"account": "1234", "key": KEY_TEXT if encrypted else None}]
    own = OwnArc(key=KEY_TEXT.encode() if encrypted else None)  # our strict decoder, a second target
    with PysiaArc(arc_acct) as arc:
        sv = Serve(tmp_path, "--supervise-every", "0.2", "--silent-margin-s", "1")
        d1, d2, d3 = Dev(101), Dev(102), Dev(103)
        st = sv.store()
        st.add_device(101, d1.key, "URN 01/101/26")
        st.add_device(102, d2.key, "URN 01/102/26")
        st.add_device(103, d3.key, "URN 01/103/26", heartbeat_s=1)
        st.close()
        add = ["forward", "add", "--db", sv.db, "--name", "arc", "--arc", "127.0.0.1:%d" % arc.port,
               "--account", "1234", "--receiver", "1", "--person", "URN 01/101/26=1001", "--poll-s", "0.5",
               "--verify-url", "https://console.example/incidents/{incident_id}"]
        if encrypted:
            (tmp_path / "arc.key").write_text(KEY_TEXT + "\n")
            add += ["--key-file", str(tmp_path / "arc.key"), "--key-encoding", "ascii"]
        sv.panic(*add)
        sv.panic(*[("127.0.0.1:%d" % own.port if a == "127.0.0.1:%d" % arc.port else "own" if a == "arc" else a)
                   for a in add])
        sv.start()
        try:
            sv.send(d3, d3.frame(F.HEARTBEAT))  # then silent: its heartbeat is 1 s, the margin 1 s
            sv.send(d1, d1.frame(F.ALERT, **GNSS))
            sv.send(d1, d1.frame(F.CANCEL, **GNSS))
            sv.send(d1, d1.frame(F.ALERT, **GNSS))
            sv.send(d1, d1.frame(F.CANCEL, duress=True, **GNSS))
            sv.send(d2, d2.frame(F.TEST, **GNSS))
            sv.send(d2, d2.frame(F.HEARTBEAT, battery=9))
            sv.send(d2, d2.frame(F.HEARTBEAT, battery=80))
            wait_rows(sv, lambda r: any(x["event_kind"] == "device_silent" for x in r))
            sv.send(d3, d3.frame(F.HEARTBEAT))
            d2.seq += 1
            sv.send(d2, d2.frame(F.TEST, seq=d2.seq))  # a second test alert opens nothing new: no message
            both = wait_rows(sv, lambda r: len(r) >= 18 and all_done(r))
        finally:
            sv.stop()
            own.close()
        got = [r for r in both if r["target"] == "arc"]
        events = arc.wait_for(lambda e: len(e) >= len(got))
    # every message, the same ones, also through our own decoder (strict: no quirk forgiven)
    mine = [r for r in both if r["target"] == "own"]
    assert not own.errors and [(m.seq, m.encrypted) for m in own.events()] == [(r["seq"], encrypted) for r in mine]
    assert [m.data for m in own.events()] == [json.loads(r["body"])["data"] for r in got]
    kinds = [r["event_kind"] for r in got]
    assert kinds == ["alert", "cancel", "alert", "duress", "test_alert", "low_battery", "battery_ok",
                     "device_silent", "device_back"]
    assert [r["seq"] for r in got] == list(range(1, 10))
    check_repeats(got, events)
    by_seq = {int(e["seq"]): e for e in events}
    want = [("SIA-DCS", "1001", "PA"), ("SIA-DCS", "1001", "OC"), ("SIA-DCS", "1001", "PA"),
            ("SIA-DCS", "1001", "HA"), ("SIA-DCS", "1234", "RX"), ("ADM-CID", "1234", "YT"),
            ("ADM-CID", "1234", "YR"), ("ADM-CID", "1234", "YC"), ("ADM-CID", "1234", "YK")]
    assert [(by_seq[r["seq"]]["type"], by_seq[r["seq"]]["account"], by_seq[r["seq"]]["code"]) for r in got] == want
    for r in got:
        ev = by_seq[r["seq"]]
        assert ev["encrypted"] is encrypted and ev["receiver"] == "R1" and ev["line"] == "L0"
        xd = dict(ev["xdata"])
        if ev["type"] == "SIA-DCS":
            assert xd["X"] == "-0.124625" and xd["Y"] == "51.500729" and "+/-6 m" in xd["I"]
            assert xd["V"] == "https://console.example/incidents/%d" % r["incident_id"]
        else:
            assert ev["qualifier"] == ("3" if r["event_kind"] in ("battery_ok", "device_back") else "1")
            assert xd == {}  # no incident: no [V] link
    assert by_seq[6]["event_type"] == "302" and by_seq[8]["event_type"] == "350"


def test_every_event_type_reaches_pysiaalarm_in_the_clear(tmp_path):
    _every_event_type(tmp_path, encrypted=False)


def test_every_event_type_reaches_pysiaalarm_encrypted(tmp_path):
    _every_event_type(tmp_path, encrypted=True)


def _devices(sv, n):
    devs = [Dev(200 + i) for i in range(n)]
    st = sv.store()
    for d in devs:
        st.add_device(d.id, d.key, "URN %d" % d.id)
    st.close()
    return devs


def test_arc_and_receiver_killed_and_restarted_mid_stream_lose_no_alarm(tmp_path):
    port = free_port()
    arc = PysiaArc([{"account": "1234", "key": KEY_TEXT}], port=port).start()
    sv = Serve(tmp_path, "--supervise-every", "0")
    (tmp_path / "arc.key").write_text(KEY_TEXT)
    devs = _devices(sv, 12)
    sv.panic("forward", "add", "--db", sv.db, "--name", "arc", "--arc", "127.0.0.1:%d" % port, "--account", "1234",
             "--key-file", str(tmp_path / "arc.key"), "--key-encoding", "ascii", "--ack-timeout-s", "2")
    sv.start()
    stop = threading.Event()
    errors = []

    def devices():  # each device: alert, cancel, alert, cancel ... while things die around it
        try:
            for rnd in range(3):
                for d in devs:
                    if stop.is_set():
                        return
                    sv.send(d, d.frame(F.ALERT if rnd % 2 == 0 else F.CANCEL, **GNSS))
        except AssertionError as e:
            errors.append(e)

    t = threading.Thread(target=devices)
    t.start()
    try:
        time.sleep(0.6)
        arc.kill()            # the ARC dies: connections reset, messages queue up
        time.sleep(1.0)
        arc.start()           # and comes back on the same port
        time.sleep(0.4)
        sv.kill9()            # the receiver dies mid-stream (answered-but-unmarked messages go again)
        sv.start()
        t.join(60)
        assert not errors and not t.is_alive()
        got = wait_rows(sv, lambda r: len(r) == 36 and all_done(r), timeout=60)
    finally:
        stop.set()
        sv.stop()
        events = arc.got()
        arc.stop()
    check_repeats(got, events)
    assert len({r["seq"] for r in got}) == 36
    assert sorted(r["event_kind"] for r in got).count("alert") == 24


def test_primary_dropped_fails_over_then_back_and_held_acks_repeat_the_same_seq(tmp_path):
    """The primary sits behind a proxy that holds its answers past our
    ACK timeout: each message reaches it, times out, and goes to the
    secondary (the primary ACKs too late: a repeat with the same seq).
    Then the primary is killed (path down), the secondary takes every
    alarm, and when the primary is back the forwarder returns to it."""
    p_port = free_port()
    primary = PysiaArc([{"account": "1234"}], port=p_port).start()
    secondary = PysiaArc([{"account": "1234"}]).start()
    proxy = DelayProxy(p_port, delay=1.5)
    sv = Serve(tmp_path, "--supervise-every", "0")
    devs = _devices(sv, 6)
    sv.panic("forward", "add", "--db", sv.db, "--name", "arc", "--arc", "127.0.0.1:%d" % proxy.port,
             "--arc", "127.0.0.1:%d" % secondary.port, "--account", "1234", "--ack-timeout-s", "0.5",
             "--poll-s", "0.5", "--failback-s", "1")
    sv.start()
    try:
        for d in devs[:2]:
            sv.send(d, d.frame(F.ALERT, **GNSS))
        held = wait_rows(sv, lambda r: len(r) == 2 and all_done(r))
        assert {r["via"] for r in held} == {"127.0.0.1:%d" % secondary.port}
        primary.wait_for(lambda e: any(x["type"] != "NULL" for x in e))  # the held one reached the primary too
        proxy.delay = 0.0
        primary.kill()
        for d in devs[2:4]:
            sv.send(d, d.frame(F.ALERT, **GNSS))
        wait_rows(sv, lambda r: len(r) == 4 and all_done(r))
        primary.start()
        time.sleep(2.5)  # a poll to the primary is ACKed: fail-back
        for d in devs[4:]:
            sv.send(d, d.frame(F.ALERT, **GNSS))
        got = wait_rows(sv, lambda r: len(r) == 6 and all_done(r))
        st = sv.store()
        kinds = [e["kind"] for e in st.events_after(0) if e["kind"].startswith("forward_path")]
        st.close()
    finally:
        sv.stop()
        proxy.close()
        p_events, s_events = primary.got(), secondary.got()
        primary.stop()
        secondary.stop()
    assert {r["via"] for r in got[4:]} == {"127.0.0.1:%d" % proxy.port}
    assert "forward_path_down" in kinds and "forward_path_up" in kinds
    check_repeats(got, p_events + s_events)
    p_seqs = {int(e["seq"]) for e in p_events if e["type"] != "NULL"}
    s_seqs = {int(e["seq"]) for e in s_events if e["type"] != "NULL"}
    assert got[0]["seq"] in p_seqs and got[0]["seq"] in s_seqs  # held past the timeout: at both, one seq
    assert {r["seq"] for r in got[4:]} <= p_seqs


def test_an_unreadable_key_never_stops_alarms_being_taken_and_the_queue_waits(tmp_path):
    """The ARC's key file has gone when serve starts: devices' alarms are
    still taken and raised, a FORWARDING NOT STARTED event says why, and
    the messages wait in the queue; with the key back, a restart sends them."""
    with PysiaArc([{"account": "1234", "key": KEY_TEXT}]) as arc:
        sv = Serve(tmp_path, "--supervise-every", "0")
        (d,) = _devices(sv, 1)
        keyf = tmp_path / "arc.key"
        keyf.write_text(KEY_TEXT)
        sv.panic("forward", "add", "--db", sv.db, "--name", "arc", "--arc", "127.0.0.1:%d" % arc.port,
                 "--account", "1234", "--key-file", str(keyf), "--key-encoding", "ascii")
        keyf.unlink()
        sv.start()
        try:
            sv.send(d, d.frame(F.ALERT, **GNSS))
            st = sv.store()
            kinds = [e["kind"] for e in st.events_after(0)]
            reason = [e for e in st.events_after(0) if e["kind"] == "forward_unavailable"][0]["reason"]
            st.close()
            assert kinds == ["forward_unavailable", "alert"] and "cannot read key file" in reason
            assert [r["state"] for r in rows(sv)] == ["pending"]
            assert KEY_TEXT not in open(sv.log).read()
        finally:
            sv.stop()
        keyf.write_text(KEY_TEXT)
        sv.start()
        try:
            got = wait_rows(sv, all_done)
        finally:
            sv.stop()
        check_repeats(got, arc.wait_for(lambda e: any(x["type"] != "NULL" for x in e)))
