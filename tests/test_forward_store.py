"""The forward queue in the store: schema version 3 over a version-2 store
holding data, the queue in the events' own transaction, sequence numbers,
and removal that cannot lose an undelivered alarm."""

import json
import os

import pytest

from protocol import frame as F
from receiver import core, masterkey
from receiver import store as S
from receiver.errors import ReceiverError
from receiver.forward import config as C
from recv_helpers import T0, Dev, older_store, store_path

MK = masterkey.MasterKey(os.urandom(32))


def arc_cfg(**kw):
    return C.to_json(C.check(dict({"kind": "dc09", "paths": ["127.0.0.1:9"], "account": "1234"}, **kw)))


@pytest.mark.sqlite_only  # a SQLite schema migration
def test_a_version_2_store_with_data_migrates_to_3_and_keeps_everything(tmp_path):
    d = Dev(31)
    path = str(tmp_path / "v2.db")
    sent = [d.frame(F.ALERT), d.frame(F.TRACK), d.frame(F.CANCEL)]
    old = older_store(tmp_path, MK, 2, d, sent)
    frames, events = [dict(r) for r in old.frames()], old.events_after(0)
    incidents = [dict(r) for r in old._x("SELECT * FROM incidents ORDER BY id").fetchall()]
    audit = [dict(r) for r in old.audit_log()]
    assert old.schema_version() == 2
    old.close()

    st = S.open_store(path, MK)
    assert st.schema_version() == len(S.MIGRATIONS) >= 3
    assert [dict(r) for r in st.frames()] == frames and st.events_after(0) == events
    assert [{k: r[k] for k in incidents[0]} for r in st.incidents()] == incidents
    assert [{k: r[k] for k in a} for r, a in zip(st.audit_log(), audit, strict=True)] == audit  # version 5 adds columns
    assert st.forward_targets() == [] and st.forward_queue_rows() == []
    # and the migrated store forwards: a retry stays a duplicate, a new alert is queued
    st.add_forward_target("arc", "dc09", arc_cfg())
    rx = core.Receiver(st, clock=lambda: T0 + 10)
    assert rx.handle_frames([(sent[0], "tcp", "retry")])[0].status == core.DUPLICATE_S
    assert rx.handle_frame(d.frame(F.ALERT))
    q = st.forward_queue_rows()
    assert [(r["event_kind"], r["seq"], r["state"]) for r in q] == [("alert", 1, "pending")]
    assert json.loads(q[0]["body"])["token"] == "SIA-DCS"


def test_messages_commit_with_their_events_or_not_at_all(tmp_path):
    st = S.open_store(store_path(tmp_path, "rx.db"), MK)
    d = Dev(32)
    st.add_device(32, d.key, "URN 32")
    st.add_forward_target("arc", "dc09", arc_cfg())
    rx = core.Receiver(st, clock=lambda: T0)
    boom = RuntimeError("disk gone")

    def fail():
        raise boom

    real = st.commit_durable
    st.commit_durable = fail
    out = rx.handle_frames([(d.frame(F.ALERT), "tcp", "x")])[0]
    st.commit_durable = real
    assert out.status == core.ERROR and st.forward_queue_rows() == [] and st.events_after(0) == []
    assert rx.handle_frame(d.frame(F.ALERT))  # the device's retry (a new seq here) goes through
    assert len(st.forward_queue_rows()) == 1 and [e["kind"] for e in st.events_after(0)] == ["alert"]


def test_sequence_numbers_run_0001_to_9999_then_0001_per_target(tmp_path):
    st = S.open_store(store_path(tmp_path, "rx.db"), MK)
    st.add_forward_target("a", "dc09", arc_cfg())
    st.add_forward_target("b", "dc09", arc_cfg())
    st.add_forward_target("map", "traccar", C.to_json(C.check({"kind": "traccar", "url": "http://127.0.0.1:9/"})))
    st._db.execute("UPDATE forward_targets SET next_seq = 9998 WHERE name = 'a'")
    with st.transaction():
        st.forward_enqueue([("a", 1.0, "alert", 1, 1, "{}")] * 3 + [("b", 1.0, "alert", 1, 1, "{}"),
                                                                   ("map", 1.0, "track", 1, 1, "{}")], ("a", "b"))
    assert [(r["target"], r["seq"]) for r in st.forward_queue_rows()] == [
        ("a", 9998), ("a", 9999), ("a", 1), ("b", 1), ("map", None)]
    assert {r["name"]: r["next_seq"] for r in st.forward_targets()} == {"a": 2, "b": 2, "map": 1}


def test_a_target_with_undelivered_messages_is_not_removed_by_accident(tmp_path):
    st = S.open_store(store_path(tmp_path, "rx.db"), MK)
    st.add_forward_target("arc", "dc09", arc_cfg())
    with pytest.raises(ReceiverError):
        st.add_forward_target("arc", "dc09", arc_cfg())
    with st.transaction():
        st.forward_enqueue([("arc", 1.0, "alert", 1, 1, "{}"), ("arc", 2.0, "cancel", 1, 1, "{}")], ("arc",))
    first = st.forward_queue_rows()[0]["id"]
    st.forward_done([(first, "delivered", 3.0, "127.0.0.1:9", 1, None)])
    st.forward_done([(first, "refused", 4.0, "x", 9, "late mark")])  # a delivered row stays delivered
    with pytest.raises(ReceiverError) as e:
        st.remove_forward_target("arc")
    assert "1 undelivered" in str(e.value)
    assert st.remove_forward_target("arc", drop_pending=True) == 1
    assert [(r["state"], r["detail"]) for r in st.forward_queue_rows()] == [
        ("delivered", None), ("refused", "target removed")]
    assert st.forward_targets() == [] and "forward remove" in [a["action"] for a in st.audit_log()]
