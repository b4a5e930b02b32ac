"""The receiver's hot-path shortcuts must store and send exactly what the
plain path would: the decoded-frame column, the event JSON, the ACK bytes,
and the replay window kept between batches."""

import json
import sqlite3

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from protocol import frame as F
from protocol import jsonform
from protocol.crypto import DeviceKeys
from receiver import core, estimate
from receiver import store as S
from receiver.endpoint import Endpoint
from recv_helpers import T0, Dev, on_pg, store_path

KEYS = DeviceKeys(bytes(range(32)))
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
tlv = st.one_of(
    st.tuples(u16, u16, u32, u32, st.integers(-32768, 32767)).map(lambda v: (F.T_CELL, v)),
    st.tuples(st.integers(-32768, 32767), u16, st.integers(0, 35999)).map(lambda v: (F.T_MOTION, v)),
    st.tuples(st.integers(0, 255), st.integers(0, 255)).map(lambda v: (F.T_GNSS, v)),
    st.tuples(st.integers(0, 255), u16).map(lambda v: (F.T_EVENT, v)),
    st.tuples(st.integers(0x06, 0xFF), st.binary(max_size=20)),
)
wifi = st.tuples(st.binary(min_size=6, max_size=6), st.integers(-128, 127)).map(lambda v: (F.T_WIFI, v))


@st.composite
def decoded_uplinks(draw):
    """An uplink as the receiver sees it: sealed, then opened by F.decode."""
    tlvs = draw(st.lists(tlv, max_size=5)) + draw(st.lists(wifi, max_size=3))
    source = draw(st.integers(0, 4))
    lat = lon = None  # source 0 carries no coordinates (docs/protocol.md, position semantics)
    if source:
        lat, lon = draw(st.integers(-900000000, 900000000)), draw(st.integers(-1800000000, 1800000000))
        if source >= F.SRC_CELL and lat == lon == 0:
            lon = 1  # a cell or Wi-Fi source at (0, 0) is the placeholder the encoder refuses
    rep = F.Report(source, lat, lon,
                   draw(u16), draw(u16), draw(st.one_of(st.integers(0, 100), st.just(F.UNKNOWN_BATTERY))),
                   draw(st.one_of(st.integers(0, 31), st.just(F.UNKNOWN_CSQ))), draw(st.booleans()),
                   draw(st.booleans()), draw(st.booleans()), draw(st.booleans()), draw(st.permutations(tlvs)))
    fr = F.Frame(draw(st.sampled_from(sorted(t for t in F.TYPE_NAMES if t < 0x80))), draw(u32), draw(u32), draw(u32), rep)
    return F.decode(KEYS, F.encode(KEYS, fr), F.UPLINK)


@settings(max_examples=300, deadline=None)
@given(decoded_uplinks())
def test_the_decoded_column_is_the_json_of_the_frame_dict(fr):
    got = core.frame_json(fr, fr.name)
    want = jsonform.to_dict(fr)
    assert got == json.dumps(want, separators=(",", ":"))


def test_an_unknown_tlv_numbered_like_a_command_is_stored_and_spoils_no_batch():
    """A newer firmware may send an uplink TLV this receiver does not know,
    numbered like a downlink command (0x81). It is stored with its bytes and
    ACKed, and the other devices' frames in the same group commit are too."""
    a, b = Dev(21), Dev(22)
    ep = Endpoint.in_memory({21: a.key, 22: b.key}, now=T0, path=store_path())
    odd = a.frame(F.ALERT, source=F.SRC_NONE, tlvs=[(F.C_TRACKING, b"\x00\x3c"), (F.C_STAND_DOWN, b"")])
    outs = ep.receiver.handle_frames([(odd, "tcp", "a"), (b.frame(F.ALERT), "tcp", "b")])
    assert [o.status for o in outs] == [core.ACCEPTED, core.ACCEPTED] and all(o.replies for o in outs)
    stored = json.loads(ep.store.frames(21)[0]["decoded"])
    assert stored["tlvs"] == [{"tlv": 0x81, "hex": "003c"}, {"tlv": 0x82, "hex": ""}]
    assert len(ep.store.incidents()) == 2


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text()),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_the_reused_encoder_writes_what_json_dumps_writes(v):
    assert S.to_json(v) == json.dumps(v, separators=(",", ":"))


def test_the_reused_encoder_refuses_what_json_refuses():
    for bad in ({"a": b"bytes"}, {"a": object()}, {(1, 2): 3}):
        try:
            S.to_json(bad)
            raise AssertionError("encoded %r" % (bad,))
        except TypeError:
            pass


def test_a_plain_ack_is_byte_identical_to_the_protocol_encoder():
    d = Dev(7)
    ep = Endpoint.in_memory({7: d.key}, {7: "URN 7"}, now=T0, path=store_path())
    for i in range(3):
        raw = d.frame(F.TRACK if i else F.ALERT)
        reply = ep.on_tcp_frame(raw, T0 + i)[0]
        ack = d.ack(reply)
        want = F.encode(d.keys, F.Frame(F.ACK, 7, ack.seq, T0 + i, F.Ack(i + 1, [])))
        assert reply == want and ack.body.commands == []


def test_a_window_kept_between_batches_is_dropped_with_a_failed_batch():
    """The parsed replay window is kept beside the cached device row between
    batches. A batch whose commit fails must not leave its seqs marked:
    the device's retry is then a new frame (stored, raised), never a
    'duplicate' that would be ACKed without being stored."""
    d = Dev(8)
    ep = Endpoint.in_memory({8: d.key}, {8: "URN 8"}, now=T0, path=store_path())
    assert ep.on_tcp_frame(d.frame(F.ALERT), T0)  # the window is now cached on the row
    real = ep.store.insert_frames

    def broken(rows):
        raise sqlite3.OperationalError("database or disk is full")

    ep.store.insert_frames = broken
    raws = [d.frame(F.TRACK) for _ in range(3)]
    outs = ep.receiver.handle_frames([(r, "tcp", "x") for r in raws])
    assert [o.status for o in outs] == [core.ERROR] * 3 and not any(o.replies for o in outs)
    ep.store.insert_frames = real
    outs = ep.receiver.handle_frames([(r, "tcp", "x") for r in raws])
    assert [o.status for o in outs] == [core.ACCEPTED] * 3
    assert [f["seq"] for f in ep.store.frames(8)] == [1, 2, 3, 4]
    assert ep.receiver.counters["duplicate"] == 0


def test_a_position_from_a_failed_batch_is_not_shown_as_evidence_later():
    """What the core parsed of the device's position (kept beside its
    cached row) is dropped with a batch whose commit failed, as the row's
    columns are: a later event shows only positions the store holds."""
    d = Dev(13)
    ep = Endpoint.in_memory({13: d.key}, {13: "URN 13"}, now=T0, path=store_path())
    ep.on_tcp_frame(d.frame(F.HEARTBEAT, source=F.SRC_GNSS, lat=515000000, lon=-1250000, age=0), T0)
    real = ep.store.insert_frames

    def broken(rows):
        raise sqlite3.OperationalError("disk I/O error")

    ep.store.insert_frames = broken
    cell = d.frame(F.HEARTBEAT, t=T0 + 400, source=F.SRC_CELL, lat=515100000, lon=-1260000, accuracy=900, age=0)
    assert ep.on_tcp_frame(cell, T0 + 400) == []  # not stored, not ACKed
    ep.store.insert_frames = real
    out = ep.receiver.handle_frames([(d.frame(F.CANCEL, t=T0 + 401, source=F.SRC_NONE, lat=0, lon=0), "tcp", "x")])[0]
    (ev,) = out.events
    assert ev["kind"] == "cancel" and ev["incident_id"] is None
    assert [i["source"] for i in ev["evidence"]] == [] and ev["position"]["source"] == "gnss"


def test_the_rows_a_batch_reads_hold_their_columns_and_nothing_else():
    """The store hands the core its cached rows to read and change. What
    the core parses from them (the replay window, the map link) and what
    the store remembers of them (the state columns it last wrote) are kept
    beside the rows, never as keys in them: a row holds the columns a read
    of the database gives, nothing another reader could trip on."""
    d = Dev(12)
    ep = Endpoint.in_memory({12: d.key}, {12: "URN 12"}, now=T0, path=store_path())
    ep.on_tcp_frame(d.frame(F.ALERT, source=F.SRC_GNSS, lat=515000000, lon=-1250000, age=0), T0)
    for i in range(2):  # a TRACK writes the incident without its state columns, from what the store remembers
        ep.on_tcp_frame(d.frame(F.TRACK, source=F.SRC_GNSS, lat=515000000, lon=-1250000, age=0), T0 + 1 + i)
    st = ep.store
    iid = st.incidents()[0]["id"]
    with st.transaction():
        devices, incs, _ = st.load_batch({12})
        assert set(devices[12]) == set(st.get_device(12)) | {"window", "down_seq"}
        assert set(incs[(12, S.KIND_ALERT)]) == set(st.get_incident(iid))
    assert ep.on_tcp_frame(d.frame(F.TRACK), T0 + 3)  # and the next batch still takes frames


def test_incident_state_changes_reach_the_disk_after_track_only_writes(tmp_path):
    """TRACKs write an incident without its state columns; a later cancel,
    a duress cancel, and a cancel whose first commit failed must still land
    in the database (read back through a second connection)."""
    d = Dev(9)
    path = store_path(tmp_path, "rx.db")
    ep = Endpoint.in_memory({9: d.key}, {9: "URN 9"}, now=T0, path=path)
    other = S.open_store(path)

    def state():
        return other.incidents()[0]

    ep.on_tcp_frame(d.frame(F.ALERT), T0)
    for i in range(3):
        ep.on_tcp_frame(d.frame(F.TRACK, source=F.SRC_GNSS, lat=515000000 + i, lon=-1250000, age=0), T0 + 1 + i)
    assert state()["state"] == S.OPEN and state()["lat_e7"] == 515000002 and state()["last_seq"] == 4
    real = ep.store.insert_frames

    def broken(rows):
        raise sqlite3.OperationalError("disk I/O error")

    ep.store.insert_frames = broken
    cancel = d.frame(F.CANCEL)
    assert ep.on_tcp_frame(cancel, T0 + 10) == []
    ep.store.insert_frames = real
    assert state()["state"] == S.OPEN
    assert ep.on_tcp_frame(d.frame(F.TRACK), T0 + 11)  # a TRACK between the failed cancel and its retry
    assert ep.on_tcp_frame(cancel, T0 + 12)
    row = state()
    assert row["state"] == S.CANCELLED and row["closed_seq"] == 5 and row["closed_by"] == "CANCEL"
    ep.on_tcp_frame(d.frame(F.CANCEL, duress=True), T0 + 13)
    row = state()
    assert row["state"] == S.DURESS and row["duress"] == 1 and row["closed_at"] is None and row["closed_seq"] is None
    ep.on_tcp_frame(d.frame(F.TRACK, source=F.SRC_GNSS, lat=515100000, lon=-1250000, age=0), T0 + 14)
    row = state()
    assert row["state"] == S.DURESS and row["lat_e7"] == 515100000
    other.close()


INCIDENT_EVENTS = ("alert", "test_alert", "alert_repeat", "track", "duress", "cancel")
steps = st.lists(st.tuples(
    st.sampled_from([F.ALERT, F.TRACK, F.TRACK, F.TEST, F.CANCEL, F.HEARTBEAT]),
    st.booleans(),  # duress flag
    st.integers(0, 4),  # position source
    st.one_of(u16, st.just(F.UNKNOWN_U16)),  # age
    st.one_of(st.integers(0, 100), st.just(F.UNKNOWN_BATTERY)),
    st.one_of(st.integers(0, 31), st.just(F.UNKNOWN_CSQ)),
    st.one_of(st.integers(0, 3), st.floats(0, 5)),  # receiver clock step
    st.one_of(st.just(0), u32),  # frame time (0: the device had no clock)
    st.integers(0, 2),  # how far the device moved
    st.booleans(),  # a cell or Wi-Fi source sends the (0, 0) placeholder of older firmware
    st.booleans(),  # the serving cell rides along (not in the location database: unresolved evidence)
), min_size=1, max_size=8)


@settings(max_examples=150, deadline=None)
@given(steps, st.text(min_size=1, max_size=12))
def test_an_incident_event_is_the_json_of_its_dict(script, person):
    """Incident events are formatted from a template, not a dict: what the
    feed and `watch` read back must be the JSON of the dict the docs
    describe, built here from the rows the event speaks of, whatever the
    frame (no position, unknown age/battery/signal, a device without a
    clock, late frames) and whatever the person reference holds: a store
    written before the person-reference rule (receiver/personref.py) may
    hold anything, so it is put in the row directly. (Anything but NUL on
    PostgreSQL, whose text columns refuse it: no PostgreSQL store predates
    the rule.)"""
    assume(not (on_pg() and "\x00" in person))
    d = Dev(31)
    ep = Endpoint.in_memory({31: d.key}, {31: "URN 31"}, now=T0, path=store_path())
    with ep.store.transaction():
        ep.store.update_device(31, person_ref=person)
    now = T0
    for ftype, duress, source, age, battery, csq, step, ftime, moved, zero, cell in script:
        now += step
        ep.events.clear()
        lat, lon = (515007292 + moved, -1246254 - 3 * moved) if source else (0, 0)
        placeholder = zero and source >= F.SRC_CELL
        tlvs = [(F.T_CELL, (234, 15, 6699, 30125732 + moved, -97))] if cell else []
        if placeholder:  # what older firmware sent; the encoder refuses it, so it is sealed by hand
            body = F.report_bytes(F.Report(F.SRC_CELL, 1, 1, 7, age, battery, csq, tlvs=tlvs))
            body = bytes([body[0], source]) + bytes(8) + body[10:]
            raw = F.encode_raw(d.keys, ftype, 31, d.seq + 1, ftime, body)
            d.seq += 1
        else:
            raw = d.frame(ftype, t=ftime, source=source, lat=lat if source else None, lon=lon if source else None,
                          accuracy=7, age=age, battery=battery, csq=csq, duress=duress and ftype == F.CANCEL, tlvs=tlvs)
        assert ep.on_tcp_frame(raw, now)
        for ev in ep.events:
            if ev["incident_id"] is None or ev["kind"] not in INCIDENT_EVENTS:
                continue
            inc = ep.store.get_incident(ev["incident_id"])
            shown = estimate.view(inc, now)
            extra = [estimate.placeholder_item(F.SOURCE_NAMES[source], d.seq, ftime or now, now)] if placeholder else []
            want = {
                "time": now, "kind": ev["kind"], "device_id": 31, "person_ref": person, "incident_id": inc["id"],
                "incident_kind": inc["kind"], "incident_state": inc["state"], "test": inc["kind"] == S.KIND_TEST,
                "label": ev["label"], "duress": bool(inc["duress"]),
                "frame": {"type": F.TYPE_NAMES[ftype], "seq": d.seq, "time": ftime, "transport": "tcp"},
                "position": shown["position"], "evidence": shown["evidence"] + extra,
                "position_in_frame": source != F.SRC_NONE and not placeholder,
                "battery": inc["battery"], "csq": inc["csq"],
            }
            assert ev == want and list(ev) == list(want)
        bodies = [r["body"] for r in ep.store._x("SELECT body FROM events ORDER BY id DESC LIMIT ?", (len(ep.events),))]
        for body, ev in zip(reversed(bodies), ep.events, strict=True):
            assert body == json.dumps(json.loads(body), separators=(",", ":"))  # compact, keys in the dict's order
            assert json.loads(body) == ev
