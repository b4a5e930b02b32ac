"""The forwarder's exchanges with real receivers, in-process: NAK and clock
offset, DUH, the two key encodings, what pysiaalarm cannot read (against
our own decoder), stale answers, supervision and path events."""

import asyncio
import os
import socket
import time

from protocol import frame as F
from receiver import core, masterkey
from receiver import store as S
from receiver.forward import config as C
from receiver.forward import dc09 as D
from receiver.forward.forwarder import Forwarder
from receiver.watch import format_event
from recv_helpers import Dev, store_path
from test_forward_peers import OwnArc, PysiaArc, free_port

KEY_TEXT = "0123456789ABCDEF"  # pysiaalarm's key: 16 hex characters, used as the key bytes


def setup(tmp_path, targets, devs=(), db="rx.db"):
    st = S.open_store(store_path(tmp_path, db), masterkey.MasterKey(os.urandom(32)))
    for d in devs:
        st.add_device(d.id, d.key, "URN %d" % d.id)
    for name, cfg in targets.items():
        cfg = dict({"kind": "dc09", "account": "1234", "receiver": "1", "poll_s": 30, "ack_timeout_s": 2,
                    "connect_timeout_s": 2, "max_backoff_s": 0.5}, **cfg)
        if cfg.get("key_text"):
            kf = tmp_path / ("%s.key" % name)
            kf.write_text(cfg.pop("key_text"))
            cfg["key_file"] = str(kf)
        st.add_forward_target(name, cfg["kind"], C.to_json(C.check(cfg)))
    return st, core.Receiver(st)


def run_until(st, rx, frames, done, clock=time.time, timeout=20.0, on_events=None):
    """Feed frames to the receiver, run the forwarder until done(st) is
    true; returns the forwarder (its counters)."""
    async def main():
        async def call(fn, *a):
            return fn(*a)

        fw = Forwarder(st, rx.outbox.targets, call, clock=clock, rescan_s=0.1)
        rx.outbox.on_queued = fw.kick
        await fw.start()
        for raw in frames:
            assert rx.handle_frame(raw)
        end = time.monotonic() + timeout
        try:
            while not done(st):
                assert time.monotonic() < end, ("timed out", st.forward_queue_rows(), dict(fw.counters))
                await asyncio.sleep(0.05)
        finally:
            await fw.close()
        return fw

    return asyncio.run(main())


def delivered(st):
    rows = st.forward_queue_rows()
    return rows and all(r["state"] != "pending" for r in rows)


def test_a_nak_for_our_clock_sets_the_offset_and_the_same_seq_is_acked(tmp_path):
    with PysiaArc([{"account": "1234"}]) as arc:
        d = Dev(1)
        st, rx = setup(tmp_path, {"arc": {"paths": ["127.0.0.1:%d" % arc.port]}}, [d])
        fw = run_until(st, rx, [d.frame(F.ALERT)], delivered, clock=lambda: time.time() - 300)
        row = st.forward_queue_rows()[0]
        assert row["state"] == "delivered" and fw.counters["forward nak"] == 1
        ev = arc.wait_for(lambda e: e)[0]
        assert ev["seq"] == "%04d" % row["seq"] and ev["timestamp_ok"] and ev["code"] == "PA"


def test_duh_from_every_receiver_marks_the_message_refused_and_raises_an_event(tmp_path):
    with PysiaArc([{"account": "1234"}]) as arc:
        d = Dev(2)
        path = "127.0.0.1:%d" % arc.port
        st, rx = setup(tmp_path, {"arc": {"paths": [path, path], "format": "sia-dcs",
                                          "codes": {"alert": [122, 1, "ZX"]}}}, [d])  # ZX: no such SIA code
        fw = run_until(st, rx, [d.frame(F.ALERT)], delivered)
        row = st.forward_queue_rows()[0]
        assert row["state"] == "refused" and "DUH" in row["detail"] and fw.counters["forward duh"] == 2
        ev = [e for e in st.events_after(0) if e["kind"] == "forward_refused"]
        assert len(ev) == 1 and ev[0]["seq"] == row["seq"] and ev[0]["device_id"] == 2


def test_key_encodings_ascii_for_pysiaalarm_binary_for_the_standard(tmp_path):
    """The same 16 hex characters: pysiaalarm uses them as the AES key's
    bytes (ascii); the standard reads hex digits as binary, so a 32-digit
    key is 16 bytes. Each receiver reads only its own encoding."""
    with PysiaArc([{"account": "1234", "key": KEY_TEXT}]) as arc:
        d = Dev(3)
        st, rx = setup(tmp_path, {"arc": {"paths": ["127.0.0.1:%d" % arc.port], "key_text": KEY_TEXT,
                                          "key_encoding": "ascii"}}, [d])
        run_until(st, rx, [d.frame(F.ALERT)], delivered)
        ev = arc.wait_for(lambda e: e)[0]
        assert ev["encrypted"] and ev["crc_ok"] and ev["timestamp_ok"] and ev["code"] == "PA"
        assert st.forward_queue_rows()[0]["state"] == "delivered"

    binary = KEY_TEXT * 2  # 32 hex digits = a 128-bit key
    own = OwnArc(key=bytes.fromhex(binary))
    try:
        d = Dev(4)
        st, rx = setup(tmp_path, {"arc": {"paths": ["127.0.0.1:%d" % own.port], "key_text": binary}}, [d], "b.db")
        run_until(st, rx, [d.frame(F.ALERT)], delivered)
        msg = own.events()[0]
        assert msg.encrypted and msg.token == D.SIA_DCS and msg.data == "#1234|NPA000"
    finally:
        own.close()


def test_adm_cid_with_location_is_read_by_our_decoder_and_nakked_by_pysiaalarm(tmp_path):
    """format adm-cid puts [X][Y][I][V] after a Contact ID event, as the
    standard allows; pysiaalarm 3.2.2 reads one block at most and NAKs it
    (design.md, Known quirks), our decoder reads it whole."""
    own = OwnArc()
    d = Dev(5)
    cfg = {"format": "adm-cid", "verify_url": "https://console.example/incidents/{incident_id}"}
    try:
        st, rx = setup(tmp_path, {"arc": dict(cfg, paths=["127.0.0.1:%d" % own.port])}, [d])
        run_until(st, rx, [d.frame(F.ALERT, source=F.SRC_GNSS, lat=515007292, lon=-1246254, accuracy=7, age=2)],
                  delivered)
        msg = own.events()[0]
        assert msg.token == D.ADM_CID and msg.data == "#1234|1122 00 000"
        assert msg.ext[:2] == ("X-0.124625", "Y51.500729")
        assert msg.ext[2].startswith("IALERT device 5 gnss +/-7 m") and msg.ext[3] == "Vhttps://console.example/incidents/1"
    finally:
        own.close()
    with PysiaArc([{"account": "1234"}]) as arc:
        m = D.Message(D.ADM_CID, 9, "1234", msg.data, msg.ext, "1", "0")
        s = socket.create_connection(("127.0.0.1", arc.port), timeout=5)
        s.sendall(D.encode(m, None, time.time()))
        assert D.read_answer(s.recv(1000), m).kind == D.NAK
        s.close()


def test_a_stale_encrypted_ack_is_not_taken(tmp_path):
    """An ACK encrypted under our key but stamped 100 s ago (a replayed
    one) does not mark the message delivered."""
    key = bytes.fromhex(KEY_TEXT * 2)
    own = OwnArc(key=key)
    d = Dev(6)
    try:
        st, rx = setup(tmp_path, {"arc": {"paths": ["127.0.0.1:%d" % own.port], "key_text": KEY_TEXT * 2}}, [d])
        real = D.answer
        D.answer = lambda kind, to, key=None, now=None, rand=os.urandom: real(kind, to, key, now - 100, rand)
        try:
            fw = run_until(st, rx, [d.frame(F.ALERT)], lambda s: len(own.events()) >= 2, timeout=10)
        finally:
            D.answer = real
        assert st.forward_queue_rows()[0]["state"] == "pending"
        assert fw.counters["forward bad answer: stale ACK"] >= 2
        assert len({m.seq for m in own.events()}) == 1  # every repeat carries the original seq
    finally:
        own.close()


def test_supervision_polls_raise_path_down_then_up(tmp_path):
    port = free_port()
    arc = PysiaArc([{"account": "1234"}], port=port).start()
    st, rx = setup(tmp_path, {"arc": {"paths": ["127.0.0.1:%d" % port], "poll_s": 0.2}}, [Dev(7)])

    def kinds(s):
        return [e["kind"] for e in s.events_after(0) if e["kind"].startswith("forward_path")]

    async def main():
        async def call(fn, *a):
            return fn(*a)

        fw = Forwarder(st, rx.outbox.targets, call, rescan_s=0.1)
        await fw.start()
        try:
            await asyncio.sleep(0.5)
            assert fw.counters["forward poll ok"] >= 1 and kinds(st) == []
            arc.kill()
            await _until(lambda: kinds(st) == ["forward_path_down"])
            arc.start()
            await _until(lambda: kinds(st) == ["forward_path_down", "forward_path_up"])
        finally:
            await fw.close()
            arc.stop()

    asyncio.run(main())
    down = [e for e in st.events_after(0) if e["kind"] == "forward_path_down"][0]
    assert down["path"] == "127.0.0.1:%d" % port and down["target"] == "arc" and down["label"].startswith("ARC PATH")
    shown = format_event(down)  # what `panic receiver watch` prints
    assert "ARC PATH DOWN 127.0.0.1:%d" % port in shown and "receiver" in shown and "target arc" in shown


async def _until(pred, timeout=15.0):
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end
        await asyncio.sleep(0.05)


def test_an_unusable_queue_row_is_refused_and_does_not_block_the_next(tmp_path):
    own = OwnArc()
    d = Dev(8)
    try:
        st, rx = setup(tmp_path, {"arc": {"paths": ["127.0.0.1:%d" % own.port]}}, [d])
        with st.transaction():
            st.forward_enqueue([("arc", 1.0, "alert", 8, None, "not json")], ("arc",))
        run_until(st, rx, [d.frame(F.ALERT)], delivered)
        bad, good = st.forward_queue_rows()
        assert bad["state"] == "refused" and "unusable" in bad["detail"] and good["state"] == "delivered"
        assert [m.seq for m in own.events()] == [good["seq"]]
        assert [e["kind"] for e in st.events_after(0)] == ["alert", "forward_refused"]
    finally:
        own.close()


def test_a_bug_in_making_a_message_never_stops_alarms_being_acked(tmp_path, monkeypatch):
    from receiver.forward import events as E

    d = Dev(9)
    st, rx = setup(tmp_path, {"arc": {"paths": ["127.0.0.1:9"]}}, [d])

    def broken(ev, cfg):
        raise RuntimeError("bug")

    monkeypatch.setattr(E, "dc09_body", broken)
    out = rx.handle_frames([(d.frame(F.ALERT), "tcp", "t")])[0]
    assert out.status == core.ACCEPTED and out.replies
    assert [e["kind"] for e in st.events_after(0)] == ["alert"] and st.forward_queue_rows() == []
    assert rx.outbox.errors == 1
