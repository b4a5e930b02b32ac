"""Two receiver nodes on one PostgreSQL database (issue 19): the batch
path (verify -> replay window -> store -> commit -> ACK) stays exactly
once when both take the same device's frames at once, as when a device
that timed out waiting for one node's ACK sends the same frame to the
other.

Interleavings are driven step by step: node a's Receiver.prepare() opens
the batch's transaction and writes it (the device rows locked first),
Batch.commit() commits, finish() hands out the ACKs. Node b's batch, which
must wait for a's row lock, runs whole on a thread, and the test sees it
waiting in pg_stat_activity before it lets a go on.
A bounded stress run then throws the same frames at both nodes from
threads."""

import os
import random
import threading
import time

import pytest

from protocol import frame as F
from receiver import core, masterkey
from receiver import store as S
from recv_helpers import T0, Dev

MK = masterkey.MasterKey(os.urandom(32))


def nodes(pg_databases, *devs, n=2):
    """n Receivers, each on a connection of its own to one new database."""
    url = pg_databases.new()
    st = S.open_store(url, MK)
    for d in devs:
        st.add_device(d.id, d.key, "URN %d" % d.id)
    st.close()
    return url, [core.Receiver(S.open_store(url, MK), clock=lambda: T0 + 1) for _ in range(n)]


def waiting_on_lock(url, count=1, timeout=10.0):
    """Wait until `count` sessions of this database wait for a lock."""
    import psycopg

    end = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as c:
        while time.monotonic() < end:
            n = c.execute("SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() "
                          "AND wait_event_type = 'Lock'").fetchone()[0]
            if n >= count:
                return
            time.sleep(0.01)
    raise AssertionError("no session waited for the other node's lock")


class Later:
    """A whole batch (prepare, commit, finish: finish runs on prepare's
    thread) on a thread, since its prepare() may wait for a lock;
    join() -> its Outcomes."""

    def __init__(self, rx, items):
        self.rx, self.items, self.outs, self.error = rx, items, None, None
        self.t = threading.Thread(target=self._run)
        self.t.start()

    def _run(self):
        try:
            self.outs = self.rx.handle_frames(self.items)
        except BaseException as e:  # surfaced by join()
            self.error = e

    def join(self):
        self.t.join(10)
        assert not self.t.is_alive(), "the batch never returned"
        if self.error is not None:
            raise self.error
        return self.outs


def finish(rx, batch):
    batch.commit()
    return rx.finish(batch)


def stored(rx):
    return sorted((f["device_id"], f["seq"]) for f in rx.store.frames())


def alerts(rx):
    return [e for e in rx.store.events_after(0, 100000) if e["kind"] in ("alert", "alert_repeat")]


def test_the_same_frame_on_two_nodes_at_once_is_stored_once_and_both_ack(pg_databases):
    d = Dev(1)
    url, (a, b) = nodes(pg_databases, d)
    raw = d.frame(F.ALERT)
    ba = a.prepare([(raw, "tcp", "node a")])  # a holds the device's row
    later = Later(b, [(raw, "tcp", "node b")])
    waiting_on_lock(url)  # b waits for a's lock: it has read nothing yet
    (oa,) = finish(a, ba)
    assert oa.status == core.ACCEPTED and oa.replies and [e.kind for e in oa.raised] == ["alert"]
    (ob,) = later.join()
    # b read a's committed window after the wait: a duplicate, ACKed again, raising nothing
    assert ob.status == core.DUPLICATE_S and ob.replies and ob.raised == ()
    assert d.ack(oa.replies[0]).body.acked_seq == d.ack(ob.replies[0]).body.acked_seq == 1
    assert stored(a) == [(1, 1)] and len(a.store.incidents()) == 1 and len(alerts(a)) == 1


def test_when_the_first_node_fails_to_commit_the_other_stores_the_frame(pg_databases):
    d = Dev(2)
    url, (a, b) = nodes(pg_databases, d)
    raw = d.frame(F.ALERT)
    ba = a.prepare([(raw, "tcp", "node a")])
    later = Later(b, [(raw, "tcp", "node b")])
    waiting_on_lock(url)
    (oa,) = a.finish(ba)  # never committed (the store failed): rolled back, nothing ACKed
    assert oa.status == core.ERROR and oa.replies == []
    (ob,) = later.join()
    assert ob.status == core.ACCEPTED and ob.replies and [e.kind for e in ob.raised] == ["alert"]
    assert stored(b) == [(2, 1)] and len(alerts(b)) == 1


def test_consecutive_frames_of_one_device_on_two_nodes_keep_one_incident(pg_databases):
    d = Dev(3)
    url, (a, b) = nodes(pg_databases, d)
    alert, track = d.frame(F.ALERT), d.frame(F.TRACK)
    ba = a.prepare([(alert, "tcp", "a")])
    later = Later(b, [(track, "tcp", "b")])
    waiting_on_lock(url)
    finish(a, ba)
    (ob,) = later.join()
    assert ob.status == core.ACCEPTED
    assert stored(a) == [(3, 1), (3, 2)]
    incs = a.store.incidents()
    assert len(incs) == 1 and incs[0]["last_seq"] == 2  # the track joined a's incident, seen after the wait
    # both seqs are in the one replay window: each is a duplicate on either node now
    for rx in (a, b):
        outs = rx.handle_frames([(alert, "tcp", "retry"), (track, "tcp", "retry")])
        assert [o.status for o in outs] == [core.DUPLICATE_S] * 2


def test_batches_that_name_the_same_devices_in_opposite_orders_do_not_deadlock(pg_databases):
    d1, d2 = Dev(4), Dev(5)
    url, (a, b) = nodes(pg_databases, d1, d2)
    f1, f2 = d1.frame(F.ALERT), d2.frame(F.ALERT)
    ba = a.prepare([(f1, "tcp", "a"), (f2, "tcp", "a")])
    later = Later(b, [(f2, "tcp", "b"), (f1, "tcp", "b")])
    waiting_on_lock(url)
    assert [o.status for o in finish(a, ba)] == [core.ACCEPTED] * 2
    assert [o.status for o in later.join()] == [core.DUPLICATE_S] * 2
    assert stored(a) == [(4, 1), (5, 1)] and len(alerts(a)) == 2


def test_an_operator_command_waits_for_a_batch_and_rides_on_the_next_ack(pg_databases):
    d = Dev(6)
    url, (a, b) = nodes(pg_databases, d)
    ba = a.prepare([(d.frame(F.ALERT), "tcp", "a")])
    done = []
    t = threading.Thread(target=lambda: done.append(
        core.operator_command(b.store, 6, S.CMD_STAND_DOWN, actor="desk", clock=lambda: T0 + 2)))
    t.start()
    waiting_on_lock(url)
    finish(a, ba)
    t.join(10)
    assert done and not t.is_alive()
    (o,) = b.handle_frames([(d.frame(F.TRACK), "tcp", "b")])
    assert d.ack(o.replies[0]).body.command(F.C_STAND_DOWN)[0]
    assert a.store.incidents()[0]["state"] == S.STOOD_DOWN


def test_stress_two_nodes_take_the_same_frames_from_threads_and_store_each_once(pg_databases):
    """Bounded: 8 devices x 25 frames, every frame sent to both nodes in a
    random order from two threads, and sometimes twice."""
    devs = [Dev(100 + i) for i in range(8)]
    url, (a, b) = nodes(pg_databases, *devs)
    rng = random.Random(19)
    frames = []
    for d in devs:
        frames.append(d.frame(F.ALERT))
        frames.extend(d.frame(F.TRACK) for _ in range(23))
        frames.append(d.frame(F.CANCEL, source=F.SRC_NONE))
    acks = {}
    lock = threading.Lock()
    errors = []

    def node(rx, seed):
        r = random.Random(seed)
        order = frames[:]
        # keep each device's frames in order (a device sends one at a time),
        # interleave devices, and re-send some
        by_dev = {}
        for raw in order:
            by_dev.setdefault(F.peek(raw)[1], []).append(raw)
        while by_dev:
            dev = r.choice(sorted(by_dev))
            raw = by_dev[dev].pop(0)
            if not by_dev[dev]:
                del by_dev[dev]
            items = [(raw, "tcp", "n")] * (2 if r.random() < 0.2 else 1)
            try:
                for o in rx.handle_frames(items):
                    assert o.status in (core.ACCEPTED, core.DUPLICATE_S) and o.replies, o.status
                    with lock:
                        acks[(dev, F.peek(raw)[2])] = acks.get((dev, F.peek(raw)[2]), 0) + 1
            except BaseException as e:
                errors.append(e)
                return

    ts = [threading.Thread(target=node, args=(rx, s)) for rx, s in ((a, rng.random()), (b, rng.random()))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert not errors, errors[:3]
    want = sorted((d.id, s) for d in devs for s in range(1, 26))
    assert sorted(acks) == want and all(n >= 2 for n in acks.values())  # every frame ACKed by both nodes
    assert stored(a) == want  # each stored once
    incs = a.store.incidents()
    assert len(incs) == len(devs) and all(i["state"] == S.CANCELLED for i in incs)
    assert sorted(e["device_id"] for e in alerts(a)) == [d.id for d in devs]
    assert all(e["kind"] == "alert" for e in alerts(a))
    assert a.counters["accepted"] + b.counters["accepted"] == len(want)


def test_the_simulator_can_run_a_second_node_and_a_failed_over_retry_is_a_duplicate(pg_databases):
    """receiver.endpoint: the hook for a simulator with two receiver nodes
    (a device's receiver list): the alert ACKed by node a, whose ACK the
    device never got, is sent again to node b: ACKed, stored once, no
    second alert."""
    from receiver.endpoint import Endpoint

    d = Dev(51)
    a = Endpoint.in_memory({51: d.key}, {51: "URN 51"}, now=T0, path=pg_databases.new())
    b = a.another_node()
    raw = d.frame(F.ALERT, t=T0)
    assert a.on_tcp_frame(raw, T0 + 1)
    acks = b.on_tcp_frame(raw, T0 + 9)  # the retry, to the next receiver on the list
    assert acks and d.ack(acks[0]).body.acked_seq == 1
    assert [e["kind"] for e in a.events] == ["alert"] and b.events == []
    assert [f["seq"] for f in b.store.frames()] == [1] and len(b.store.incidents()) == 1
    assert b.on_tcp_frame(d.frame(F.TRACK, t=T0 + 10), T0 + 10)
    assert [e["kind"] for e in b.events] == ["track"]  # b carries on the incident a opened
    mem = Endpoint.in_memory({51: d.key}, now=T0)
    with pytest.raises(ValueError, match="PostgreSQL"):
        mem.another_node()


def test_the_supervision_tick_skips_a_device_a_batch_holds_and_never_waits_for_it(pg_databases):
    quiet, busy = Dev(61), Dev(62)
    url, (a, b) = nodes(pg_databases, quiet, busy)
    for rx_dev in (quiet, busy):  # both reported once, long ago
        a.handle_frames([(rx_dev.frame(F.HEARTBEAT), "tcp", "a")])
    b.clock = a.clock = lambda: T0 + 10 * core.DEFAULT_HEARTBEAT_S
    batch = a.prepare([(busy.frame(F.HEARTBEAT), "tcp", "a")])  # busy is reporting right now
    done = []
    t = threading.Thread(target=lambda: done.append(b.tick()))
    t.start()
    t.join(10)
    assert not t.is_alive(), "the tick waited for a batch"
    assert [e.get("device_id") for e in done[0]] == [61]  # only the quiet one is silent
    finish(a, batch)
    assert [e["kind"] for e in alerts(a)] == []
    assert {d["device_id"]: d["silent"] for d in a.store.list_devices()} == {61: 1, 62: 0}
