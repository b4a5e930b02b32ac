"""The receiver over real sockets: framing, many frames and connections,
limits (slowloris, oversize, per-peer), garbage floods, and the HTTP SMS
endpoint. Every rejected frame is counted and never ACKed."""

import json
import os
import random
import socket
import threading
import time
import urllib.error
import urllib.request

from protocol import frame as F
from protocol import sms, stream
from receiver.server import Limits
from recv_helpers import Dev, ServerThread, closed_without_reply, file_receiver, send_recv

GARBAGE_CONNS = int(os.environ.get("RECEIVER_GARBAGE_CONNS", "10000"))


def test_many_frames_on_one_connection_pipelined_each_acked(tmp_path):
    d = Dev(1)
    rx = file_receiver(tmp_path, [d])
    with ServerThread(rx) as srv, socket.create_connection(("127.0.0.1", srv.port)) as s:
        frames = [d.frame(F.ALERT)] + [d.frame(F.TRACK) for _ in range(49)]
        s.sendall(b"".join(stream.pack(f) for f in frames))  # all at once
        de = stream.Deframer()
        acks = []
        s.settimeout(5)
        while len(acks) < 50:
            acks.extend(de.feed(s.recv(4096)))
        assert [d.ack(a).body.acked_seq for a in acks] == list(range(1, 51))
    assert rx.store.count_frames() == 50 and len(rx.store.incidents()) == 1


def test_many_connections_at_once(tmp_path):
    devs = [Dev(100 + i) for i in range(40)]
    rx = file_receiver(tmp_path, devs)
    errors = []

    def run(d):
        try:
            with socket.create_connection(("127.0.0.1", srv.port)) as s:
                de = stream.Deframer()
                for _ in range(5):
                    raw = d.frame(F.TRACK)
                    assert d.ack(send_recv(s, raw, de)).body.acked_seq == d.seq
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    with ServerThread(rx, Limits(max_conns_per_peer=64)) as srv:
        ts = [threading.Thread(target=run, args=(d,)) for d in devs]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
    assert errors == []
    assert rx.store.count_frames() == 200


def test_bad_frames_over_tcp_are_never_acked_and_are_counted(tmp_path):
    a, b = Dev(5), Dev(6)
    rx = file_receiver(tmp_path, [a, b])
    with ServerThread(rx) as srv:
        with socket.create_connection(("127.0.0.1", srv.port)) as s:
            good = a.frame(F.ALERT)
            for bad in (Dev(5).frame(F.ALERT), Dev(77).frame(F.ALERT),
                        F.encode(a.keys, F.Frame(F.ALERT, 6, 1, 0, F.Report()))):
                s.sendall(stream.pack(bad))
            # the good frame after them still gets the only ACK
            ack = send_recv(s, good, stream.Deframer())
            assert a.ack(ack).body.acked_seq == 1
            s.settimeout(0.3)
            try:
                extra = s.recv(4096)
            except socket.timeout:
                extra = b""
            assert extra == b""
        # oversized length prefix: connection closed with nothing sent back
        with socket.create_connection(("127.0.0.1", srv.port)) as s:
            s.sendall(b"\x01\x20" + bytes(288))
            assert closed_without_reply(s)
        c = srv.counters()
    assert c["bad tag"] == 2 and c["unknown device"] == 1 and c["bad stream length"] == 1
    assert rx.store.count_frames() == 1


def test_slowloris_and_idle_connections_are_dropped(tmp_path):
    d = Dev(9)
    rx = file_receiver(tmp_path, [d])
    lim = Limits(idle_timeout=1.0, frame_deadline=0.5, auth_deadline=1.0)
    with ServerThread(rx, lim) as srv:
        raw = stream.pack(d.frame(F.ALERT))
        with socket.create_connection(("127.0.0.1", srv.port)) as s:
            t0 = time.monotonic()
            dropped = False
            for i in range(len(raw) - 1):  # one byte every 0.1 s never completes in time
                try:
                    s.sendall(raw[i : i + 1])
                except OSError:
                    dropped = True
                    break
                time.sleep(0.1)
            assert dropped or closed_without_reply(s, 2)
            assert time.monotonic() - t0 < 3
        with socket.create_connection(("127.0.0.1", srv.port)) as s:  # never sends: no verified frame in time
            assert closed_without_reply(s, 3)
        with socket.create_connection(("127.0.0.1", srv.port)) as s:  # verified, then idle
            assert d.ack(send_recv(s, d.frame(F.ALERT), stream.Deframer())).body.acked_seq == d.seq
            assert closed_without_reply(s, 3)
        c = srv.counters()
    assert c["read deadline"] == 1 and c["no verified frame in time"] == 1 and c["idle timeout"] == 1
    assert rx.store.count_frames() == 1


def test_unverified_connections_per_peer_are_limited_by_evicting_the_oldest_silent_one(tmp_path):
    d = Dev(11)
    rx = file_receiver(tmp_path, [d])
    with ServerThread(rx, Limits(max_conns_per_peer=4)) as srv:
        talker = socket.create_connection(("127.0.0.1", srv.port))
        talker.sendall(b"\x00")  # has started a frame: evicted after the silent ones
        time.sleep(0.2)
        hogs = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(3)]
        time.sleep(0.2)
        dev = socket.create_connection(("127.0.0.1", srv.port))  # a fifth from the same address: the oldest silent hog goes
        assert closed_without_reply(hogs[0], 3)
        assert d.ack(send_recv(dev, d.frame(F.ALERT), stream.Deframer())).body.acked_seq == 1
        # verified now: it no longer counts, so a fourth unverified one fits without an eviction
        more = [socket.create_connection(("127.0.0.1", srv.port))]
        time.sleep(0.2)
        assert not closed_without_reply(talker, 0.2) and not closed_without_reply(dev, 0.2)
        assert d.ack(send_recv(dev, d.frame(F.TRACK), stream.Deframer())).body.acked_seq == 2
        for s in hogs + more + [talker, dev]:
            s.close()
        c = srv.counters()
    assert c["unverified connection evicted"] == 1 and "too many connections" not in c


def test_random_byte_connections_do_not_stop_a_real_device(tmp_path):
    """GARBAGE_CONNS connections of random bytes from 127.0.0.1 (64 at a
    time) while a real device on 127.0.0.2 sends a frame every 20 ms and
    must get every ACK."""
    d = Dev(12)
    rx = file_receiver(tmp_path, [d])
    lim = Limits(idle_timeout=2.0, frame_deadline=1.0, max_conns_per_peer=128)
    stop = threading.Event()
    latencies = []
    errors = []

    def device():
        try:
            s = socket.socket()
            s.bind(("127.0.0.2", 0))
            s.connect(("127.0.0.1", srv.port))
            de = stream.Deframer()
            while not stop.is_set():
                raw = d.frame(F.TRACK if d.seq else F.ALERT)
                t0 = time.monotonic()
                ack = send_recv(s, raw, de, timeout=5)
                latencies.append(time.monotonic() - t0)
                assert d.ack(ack).body.acked_seq == d.seq
                time.sleep(0.02)
            s.close()
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    rng = random.Random(1234)
    done = [0]
    lock = threading.Lock()

    def garbage(n):
        r = random.Random(rng.random())
        for _ in range(n):
            try:
                with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as g:
                    blob = r.randbytes(r.randint(1, 600))
                    if r.random() < 0.3:  # a plausible length prefix, garbage inside
                        n_ = r.randint(31, 286)
                        blob = bytes((n_ >> 8, n_ & 0xFF)) + r.randbytes(n_)
                    g.sendall(blob)
                    g.shutdown(socket.SHUT_WR)
                    g.settimeout(5)
                    while g.recv(4096):
                        raise AssertionError("garbage was answered")
            except (ConnectionResetError, BrokenPipeError):
                pass
            with lock:
                done[0] += 1

    with ServerThread(rx, lim) as srv:
        dev = threading.Thread(target=device)
        dev.start()
        workers = [threading.Thread(target=garbage, args=(GARBAGE_CONNS // 16,)) for _ in range(16)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(600)
        stop.set()
        dev.join(10)
        c = srv.counters()
    assert errors == [] and done[0] == 16 * (GARBAGE_CONNS // 16)
    assert len(latencies) >= 5 and max(latencies) < 3.0
    assert rx.store.count_frames() == d.seq
    assert c["connections"] >= done[0]


def _post(port, body, ctype):
    req = urllib.request.Request("http://127.0.0.1:%d/sms" % port, data=body, headers={"Content-Type": ctype})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_http_sms_endpoint_form_and_json(tmp_path):
    d = Dev(13)
    rx = file_receiver(tmp_path, [d])
    with ServerThread(rx, http=True) as srv:
        text = sms.text_of(d.frame(F.ALERT))
        code, res = _post(srv.http_port, urllib.parse.urlencode({"from": "+447700900123", "text": text}).encode(),
                          "application/x-www-form-urlencoded")
        assert code == 200 and res["status"] == "accepted"
        assert d.ack(sms.from_sms(res["reply"])).body.acked_seq == 1
        code, res = _post(srv.http_port, json.dumps({"from": "+447700900123", "text": text}).encode(), "application/json")
        assert code == 200 and res["status"] == "duplicate"
        forged = sms.text_of(Dev(13).frame(F.ALERT, seq=2))
        code, res = _post(srv.http_port, json.dumps({"from": "+44", "text": forged}).encode(), "application/json")
        assert code == 422 and res["reason"] == "bad tag" and res["reply"] is None
        code, res = _post(srv.http_port, b"{not json", "application/json")
        assert code == 400
        code, res = _post(srv.http_port, b"x" * 10000, "text/plain")
        assert code == 413
    assert rx.store.count_frames() == 1 and rx.store.frames(13)[0]["transport"] == "sms"


def test_a_steady_stream_split_across_reads_is_not_cut_by_the_frame_deadline(tmp_path):
    d = Dev(14)
    rx = file_receiver(tmp_path, [d])
    with ServerThread(rx, Limits(frame_deadline=0.4, idle_timeout=5)) as srv, \
            socket.create_connection(("127.0.0.1", srv.port)) as s:
        wire = b"".join(stream.pack(d.frame(F.TRACK)) for _ in range(40))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        t_end = time.monotonic() + 1.5
        step = 50  # never a frame boundary: every read leaves a started frame
        sent = 0
        while sent < len(wire):
            s.sendall(wire[sent : sent + step])
            sent += step
            time.sleep(max(0.0, (t_end - time.monotonic()) / max(1, (len(wire) - sent) // step + 1)))
        de = stream.Deframer()
        acks = []
        s.settimeout(5)
        while len(acks) < 40:
            data = s.recv(4096)
            assert data, "connection closed mid-stream"
            acks.extend(de.feed(data))
    assert rx.store.count_frames() == 40 and srv.counters().get("read deadline", 0) == 0


def test_a_failed_commit_sends_no_ack_and_the_retry_is_acked(tmp_path):
    import sqlite3

    d = Dev(15)
    rx = file_receiver(tmp_path, [d])
    real = rx.store.save_replays

    def disk_full(*a):
        raise sqlite3.OperationalError("database or disk is full")

    with ServerThread(rx) as srv, socket.create_connection(("127.0.0.1", srv.port)) as s:
        rx.store.save_replays = disk_full
        raw = d.frame(F.ALERT)
        s.sendall(stream.pack(raw))
        s.settimeout(0.5)
        try:
            got = s.recv(4096)
        except socket.timeout:
            got = None
        assert got is None, "an ACK left for a frame that was not stored"
        assert rx.store.count_frames() == 0
        rx.store.save_replays = real
        assert d.ack(send_recv(s, raw, stream.Deframer())).body.acked_seq == 1
    assert rx.store.count_frames() == 1 and srv.counters()["store error"] == 1
