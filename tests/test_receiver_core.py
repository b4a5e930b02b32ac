"""The receiver core through the simulator's endpoint, in virtual time:
what gets ACKed, stored and shown to an operator, and what never does."""

import os
import sqlite3

import pytest
from hypothesis import given, settings, strategies as st

from protocol import frame as F
from protocol import sms
from protocol.replay import WINDOW
from receiver import core, masterkey
from receiver import store as S
from receiver.endpoint import Endpoint
from receiver.errors import MasterKeyError
from receiver.watch import format_event, headline
from recv_helpers import T0, Dev, older_store, store_path


def make(*devs, **opts):
    return Endpoint.in_memory({d.id: d.key for d in devs}, {d.id: "URN %d" % d.id for d in devs}, now=T0, path=store_path(), **opts)


def kinds(ep):
    return [e["kind"] for e in ep.events]


def test_alert_is_stored_then_acked_with_a_verifiable_ack():
    d = Dev(1001)
    ep = make(d)
    raw = d.frame(F.ALERT)
    replies = ep.on_tcp_frame(raw, T0 + 1)
    assert len(replies) == 1
    ack = d.ack(replies[0])
    assert ack.body.acked_seq == 1 and ack.time == T0 + 1
    rows = ep.store.frames(1001)
    assert len(rows) == 1 and bytes(rows[0]["raw"]) == raw and rows[0]["transport"] == "tcp"
    incs = ep.store.incidents()
    assert len(incs) == 1 and incs[0]["state"] == S.OPEN and incs[0]["kind"] == S.KIND_ALERT
    assert kinds(ep) == ["alert"]
    ev = ep.events[0]
    assert ev["person_ref"] == "URN 1001" and ev["position"]["source"] == "gnss"
    assert "openstreetmap.org/?mlat=51.5007292&mlon=-0.1246254" in ev["position"]["map"]
    assert ev["position"]["age_s"] == 3  # 2 s old at frame time, arrived 1 s later


def test_duplicate_is_acked_again_never_raised_twice_and_downlink_seq_never_reused():
    d = Dev(1)
    ep = make(d)
    raw = d.frame(F.ALERT)
    a1 = d.ack(ep.on_tcp_frame(raw, T0 + 1)[0])
    a2 = d.ack(ep.on_tcp_frame(raw, T0 + 2)[0])
    a3 = d.ack(ep.on_sms("+4477", sms.text_of(raw), T0 + 3).replies[0])
    assert a1.body.acked_seq == a2.body.acked_seq == a3.body.acked_seq == 1
    assert a1.seq < a2.seq < a3.seq
    assert kinds(ep) == ["alert"] and len(ep.store.incidents()) == 1 and len(ep.store.frames()) == 1
    assert ep.counters["duplicate"] == 2


def test_tracks_attach_and_cancel_closes():
    d = Dev(2)
    ep = make(d)
    ep.on_tcp_frame(d.frame(F.ALERT), T0)
    ep.on_tcp_frame(d.frame(F.TRACK, source=F.SRC_GNSS, lat=515100000, lon=-1250000, age=0), T0 + 30)
    ep.on_tcp_frame(d.frame(F.CANCEL), T0 + 60)
    incs = ep.store.incidents()
    assert len(incs) == 1 and incs[0]["state"] == S.CANCELLED and incs[0]["lat_e7"] == 515100000
    assert kinds(ep) == ["alert", "track", "cancel"]
    assert {f["incident_id"] for f in ep.store.frames(2)} == {incs[0]["id"]}


def test_duress_cancel_is_shown_as_duress_and_keeps_the_incident_open():
    d = Dev(3)
    ep = make(d)
    ep.on_tcp_frame(d.frame(F.ALERT), T0)
    ep.on_tcp_frame(d.frame(F.CANCEL, duress=True), T0 + 10)
    inc = ep.store.incidents()[0]
    assert inc["state"] == S.DURESS and inc["duress"] == 1
    assert ep.store.incidents(open_only=True)
    ev = ep.events[-1]
    assert ev["kind"] == "duress" and headline(ev) == "DURESS"
    assert "CANCEL" not in format_event(ev).split("\n")[0]
    # a plain cancel afterwards never lifts duress
    ep.on_tcp_frame(d.frame(F.CANCEL), T0 + 20)
    assert ep.store.incidents()[0]["state"] == S.DURESS
    assert headline(ep.events[-1]).startswith("DURESS")


def test_duress_cancel_after_a_plain_cancel_reopens_as_duress():
    d = Dev(4)
    ep = make(d)
    ep.on_tcp_frame(d.frame(F.ALERT), T0)
    ep.on_tcp_frame(d.frame(F.CANCEL), T0 + 5)
    ep.on_tcp_frame(d.frame(F.CANCEL, duress=True), T0 + 6)
    incs = ep.store.incidents()
    assert len(incs) == 1 and incs[0]["state"] == S.DURESS


def test_test_alerts_are_labelled_and_never_merge_with_real_ones():
    d = Dev(5)
    ep = make(d)
    ep.on_tcp_frame(d.frame(F.TEST), T0)
    ep.on_tcp_frame(d.frame(F.ALERT, source=F.SRC_NONE, test=True), T0 + 1)  # test flag in an ALERT
    assert [i["kind"] for i in ep.store.incidents()] == ["test"]
    assert all(headline(e).startswith("TEST") for e in ep.events)
    ep.on_tcp_frame(d.frame(F.ALERT), T0 + 2)
    assert [i["kind"] for i in ep.store.incidents()] == ["test", "alert"]
    assert headline(ep.events[-1]) == "ALERT"


def test_track_before_alert_opens_one_incident_and_the_late_alert_joins_it():
    d = Dev(6)
    ep = make(d)
    alert = d.frame(F.ALERT)
    ep.on_tcp_frame(d.frame(F.TRACK), T0)
    ep.on_tcp_frame(alert, T0 + 1)
    assert len(ep.store.incidents()) == 1
    assert kinds(ep) == ["alert", "alert_repeat"]


def test_late_frame_after_cancel_attaches_silently():
    d = Dev(7)
    ep = make(d)
    ep.on_tcp_frame(d.frame(F.ALERT, seq=1), T0)
    ep.on_tcp_frame(d.frame(F.CANCEL, seq=3), T0 + 1)
    ep.on_tcp_frame(d.frame(F.TRACK, seq=2), T0 + 2)  # delayed by the network
    assert len(ep.store.incidents()) == 1 and ep.store.incidents()[0]["state"] == S.CANCELLED
    assert kinds(ep) == ["alert", "cancel"]


def test_operator_commands_ride_on_the_next_ack_and_repeat_on_re_ack():
    d = Dev(8)
    ep = make(d)
    ep.on_tcp_frame(d.frame(F.ALERT), T0)
    ep.command(8, S.CMD_TRACK, 15)
    ep.command(8, S.CMD_LISTEN_IN)
    raw = d.frame(F.TRACK)
    a = d.ack(ep.on_tcp_frame(raw, T0 + 5)[0])
    assert a.body.command(F.C_TRACKING) == (True, 15) and a.body.command(F.C_LISTEN_IN)[0]
    again = d.ack(ep.on_tcp_frame(raw, T0 + 6)[0])  # first ACK lost, device retried
    assert again.body.commands == a.body.commands
    nxt = d.ack(ep.on_tcp_frame(d.frame(F.TRACK), T0 + 7)[0])
    assert nxt.body.commands == []
    ep.command(8, S.CMD_STAND_DOWN)
    assert ep.store.incidents()[0]["state"] == S.STOOD_DOWN and kinds(ep)[-1] == "stood_down"
    a = d.ack(ep.on_tcp_frame(d.frame(F.HEARTBEAT), T0 + 8)[0])
    assert a.body.command(F.C_STAND_DOWN)[0]


def test_supervision_device_silent_once_then_back():
    d = Dev(9)
    ep = make(d, heartbeat_s=3600, silent_margin_s=600)
    ep.on_tcp_frame(d.frame(F.HEARTBEAT), T0)
    assert ep.tick(T0 + 3600 + 599) == []
    evs = ep.tick(T0 + 3600 + 601)
    assert [e["kind"] for e in evs] == ["device_silent"] and evs[0]["person_ref"] == "URN 9"
    assert ep.tick(T0 + 9000) == []  # raised once per silence
    ep.on_tcp_frame(d.frame(F.HEARTBEAT), T0 + 9001)
    assert kinds(ep)[-1] == "device_back"
    assert ep.tick(T0 + 9001 + 4300) != []


def test_low_battery_raised_once_with_hysteresis():
    d = Dev(10)
    ep = make(d, low_battery_pct=15)
    ep.on_tcp_frame(d.frame(F.HEARTBEAT, battery=14), T0)
    ep.on_tcp_frame(d.frame(F.HEARTBEAT, battery=13), T0 + 1)
    ep.on_tcp_frame(d.frame(F.HEARTBEAT, battery=50), T0 + 2)
    ep.on_tcp_frame(d.frame(F.STATUS, tlvs=[(F.T_EVENT, (F.EV_LOW_BATTERY, 340))]), T0 + 3)
    assert kinds(ep) == ["low_battery", "battery_ok", "low_battery", "status"]


def _reject_all(ep, frames):
    before = ep.store.count_frames()
    for raw in frames:
        assert ep.on_tcp_frame(raw, T0 + 50) == []
    assert ep.store.count_frames() == before


def test_forged_truncated_oversized_cross_device_unknown_and_stale_are_never_acked():
    a, b = Dev(20), Dev(21)
    ep = make(a, b)
    good = a.frame(F.ALERT)
    forged = Dev(20).frame(F.ALERT, seq=2)  # right id, wrong key
    cross = F.encode(a.keys, F.Frame(F.ALERT, 21, 5, T0, F.Report()))  # a's key, b's id
    unknown = Dev(99).frame(F.ALERT)
    flipped = bytearray(good)
    flipped[20] ^= 1
    oversized = good[:14] + bytes([255]) + good[15:] + bytes(300)
    downlink = F.encode(a.keys, F.Frame(F.ACK, 20, 9, T0, F.Ack(1)))
    _reject_all(ep, [forged, cross, unknown, bytes(flipped), good[:-1], good[:10], b"", oversized, downlink])
    c = ep.counters
    assert c["bad tag"] == 3 and c["unknown device"] == 1 and c["bad length"] == 4 and c["unknown type"] == 1
    assert ep.events == [] and ep.store.incidents() == []
    # replayed: beyond the window is stale and never ACKed; within it is a duplicate
    assert ep.on_tcp_frame(a.frame(F.HEARTBEAT, seq=WINDOW + 10), T0)
    old = a.frame(F.ALERT, seq=5)
    _reject_all(ep, [old])
    assert c["stale"] == 1 and ep.store.incidents() == []


def test_retired_device_is_rejected():
    d = Dev(30)
    ep = make(d)
    ep.store.retire_device(30)
    assert ep.on_tcp_frame(d.frame(F.ALERT), T0) == []
    assert ep.counters["retired device"] == 1


@settings(max_examples=60, deadline=None)
@given(pos=st.integers(0, 200), bit=st.integers(0, 7))
def test_any_single_bit_flip_is_rejected(pos, bit):
    d = Dev(40, key=b"\x07" * 32)
    ep = make(d)
    raw = bytearray(d.frame(F.ALERT, tlvs=[(F.T_CELL, (234, 15, 1, 2, -90))]))
    pos %= len(raw)
    raw[pos] ^= 1 << bit
    assert ep.on_tcp_frame(bytes(raw), T0) == []
    assert ep.store.count_frames() == 0 and ep.events == []


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=400))
def test_random_bytes_never_crash_or_ack(data):
    d = Dev(41, key=b"\x08" * 32)
    ep = make(d)
    assert ep.on_tcp_frame(data, T0) == []
    assert ep.on_sms("+1", "PNC1 " + data.hex()[:150], T0).replies == []


def test_sms_path_verifies_the_same_way():
    d = Dev(50)
    ep = make(d)
    out = ep.on_sms("+447700900123", sms.text_of(d.frame(F.ALERT)), T0)
    assert out.status == core.ACCEPTED and d.ack(out.replies[0]).body.acked_seq == 1
    assert sms.from_sms(out.sms_reply()) == out.replies[0]
    assert ep.store.frames(50)[0]["peer"] == "+447700900123"
    bad = ep.on_sms("+447700900123", "PNC1 not base64!", T0)
    assert bad.status == core.REJECTED and bad.reason == "bad sms" and not bad.replies


def test_state_survives_a_restart_and_downlink_seq_continues(tmp_path):
    d = Dev(60)
    mk = masterkey.MasterKey(os.urandom(32))
    path = store_path(tmp_path, "r.db")
    st1 = S.open_store(path, mk)
    st1.add_device(60, d.key, "URN 60")
    r1 = core.Receiver(st1, clock=lambda: T0)
    raw = d.frame(F.ALERT)
    a1 = d.ack(r1.handle_frame(raw)[0])
    st1.close()
    st2 = S.open_store(path, mk)
    r2 = core.Receiver(st2, clock=lambda: T0 + 1)
    a2 = d.ack(r2.handle_frame(raw)[0])
    assert a2.seq > a1.seq and r2.counters["duplicate"] == 1 and len(st2.incidents()) == 1
    assert st2.schema_version() == len(S.MIGRATIONS)


def test_a_failed_commit_acks_nothing_and_the_retry_succeeds():
    d = Dev(70)
    ep = make(d)
    real = ep.store.save_replays

    def broken(*a):
        raise sqlite3.OperationalError("disk I/O error")

    ep.store.save_replays = broken
    raw = d.frame(F.ALERT)
    out = ep.receiver.handle_frames([(raw, "tcp", "x")])[0]
    assert out.status == core.ERROR and out.replies == []
    assert ep.store.count_frames() == 0 and ep.store.incidents() == []
    ep.store.save_replays = real
    assert ep.on_tcp_frame(raw, T0)
    assert len(ep.store.incidents()) == 1 and ep.store.count_frames() == 1


def test_batch_with_the_same_frame_twice_stores_it_once():
    d = Dev(80)
    ep = make(d)
    raw = d.frame(F.ALERT)
    outs = ep.receiver.handle_frames([(raw, "tcp", "a"), (raw, "sms", "b")])
    assert [o.status for o in outs] == [core.ACCEPTED, core.DUPLICATE_S]
    assert all(o.replies for o in outs) and len(ep.store.incidents()) == 1


@pytest.mark.sqlite_only  # reads the store's files; the PostgreSQL store's rows: test_pg_store.py
def test_keys_are_sealed_at_rest(tmp_path):
    d = Dev(90)
    mk = masterkey.MasterKey(os.urandom(32))
    path = str(tmp_path / "k.db")
    st_ = S.open_store(path, mk)
    st_.add_device(90, d.key, "URN 90")
    assert st_.device_key(90) == d.key
    st_.close()
    for name in os.listdir(tmp_path):
        with open(tmp_path / name, "rb") as f:
            blob = f.read()
        assert d.key not in blob and d.key.hex().encode() not in blob
    try:
        S.open_store(path, masterkey.MasterKey(os.urandom(32)))
        raise AssertionError("a wrong master key was accepted")
    except MasterKeyError as e:
        assert "does not match" in str(e)
    sealed = mk.seal(90, d.key)
    try:
        mk.open(91, sealed)  # bound to its device id
        raise AssertionError("sealed key opened for another device")
    except MasterKeyError:
        pass
    assert "key" not in repr(mk).lower().replace("masterkey", "")


def test_a_hostile_sms_sender_cannot_forge_log_lines(caplog):
    d = Dev(95)
    ep = make(d)
    with caplog.at_level("WARNING", logger="receiver"):
        ep.on_sms("+44\nCRITICAL fake alert cleared", "PNC1 AAAA", T0)
    assert caplog.records and all("\n" not in r.getMessage() for r in caplog.records)


def test_changes_made_by_another_process_are_seen_at_once(tmp_path):
    """The serving receiver caches rows between batches; a CLI in another
    process (another connection) queuing a command, standing an incident
    down, retiring a device or taking an SMS must be seen by the next frame."""
    a, b = Dev(101), Dev(102)
    mk = masterkey.MasterKey(os.urandom(32))
    path = store_path(tmp_path, "shared.db")
    serving = S.open_store(path, mk)
    serving.add_device(101, a.key, "URN 101")
    serving.add_device(102, b.key, "URN 102")
    rx = core.Receiver(serving, clock=lambda: T0)
    cli = S.open_store(path, mk)
    cli_rx = core.Receiver(cli, clock=lambda: T0)
    assert rx.handle_frame(a.frame(F.ALERT)) and rx.handle_frame(b.frame(F.ALERT))
    core.operator_command(cli, 101, S.CMD_LISTEN_IN, actor="other process")
    ack = a.ack(rx.handle_frame(a.frame(F.TRACK))[0])
    assert ack.body.command(F.C_LISTEN_IN)[0]
    core.operator_command(cli, 101, S.CMD_STAND_DOWN, actor="other process")
    rx.handle_frame(a.frame(F.TRACK))
    assert serving.get_incident(1)["state"] == S.STOOD_DOWN  # the TRACK did not reopen or overwrite it
    # an SMS taken by another process advances the window and the downlink seq
    raw = b.frame(F.TRACK)
    d1 = b.ack(cli_rx.handle_sms("+44", sms.text_of(raw)).replies[0])
    d2 = b.ack(rx.handle_frame(raw)[0])
    assert rx.counters["duplicate"] == 1 and d2.seq > d1.seq
    cli.retire_device(102)
    assert rx.handle_frame(b.frame(F.TRACK)) == [] and rx.counters["retired device"] == 1


@pytest.mark.sqlite_only  # a SQLite schema migration
def test_a_version_1_store_with_data_migrates_and_keeps_every_frame_and_event(tmp_path):
    """Version 2 rebuilds frames and events without AUTOINCREMENT. A store
    written by the version-1 receiver keeps its evidence (ids, raw bytes,
    decoded JSON, event bodies), a watcher's position in the event feed
    stays valid, retries of stored frames stay duplicates, and new rows
    take larger ids."""
    d = Dev(95)
    mk = masterkey.MasterKey(os.urandom(32))
    path = str(tmp_path / "v1.db")
    sent = [d.frame(F.ALERT)] + [d.frame(F.TRACK) for _ in range(3)]
    old = older_store(tmp_path, mk, 1, d, sent)
    frames_before = [dict(r) for r in old.frames()]
    events_before = old.events_after(0)
    assert old.schema_version() == 1 and len(frames_before) == 4 and len(events_before) == 4
    old.close()

    st_ = S.open_store(path, mk)
    assert st_.schema_version() == len(S.MIGRATIONS) >= 4
    for table in ("frames", "events"):
        sql = st_._x("SELECT sql FROM sqlite_master WHERE name = ?", (table,)).fetchone()["sql"]
        assert "AUTOINCREMENT" not in sql.upper()
    assert [dict(r) for r in st_.frames()] == frames_before
    assert st_.events_after(0) == events_before
    rx = core.Receiver(st_, clock=lambda: T0 + 5)
    out = rx.handle_frames([(sent[1], "tcp", "retry")])[0]
    assert out.status == core.DUPLICATE_S and out.replies and st_.count_frames() == 4
    try:
        with st_.transaction():
            st_.insert_frames([(95, 2, "TRACK", T0, T0, "tcp", None, b"x", "{}", None)])
        raise AssertionError("a second frame 95/2 was stored")
    except sqlite3.IntegrityError:
        pass
    assert rx.handle_frame(d.frame(F.TRACK))
    new = st_.frames(95)[-1]
    assert new["seq"] == 5 and new["id"] > max(f["id"] for f in frames_before)
    later = st_.events_after(events_before[-1]["event_id"])
    assert [e["kind"] for e in later] == ["track"] and later[0]["frame"]["seq"] == 5
    st_.close()
