"""`watch` on a PostgreSQL store follows the commits of every node (issue
19): events committed out of id order by two nodes are each shown once,
none skipped, in commit-safe order; and a watcher waiting on LISTEN wakes
when any node commits, not at its next poll."""

import io
import json
import os
import threading
import time

from protocol import frame as F
from receiver import core, masterkey
from receiver import store as S
from receiver.watch import Watcher
from recv_helpers import T0, Dev

MK = masterkey.MasterKey(os.urandom(32))


def nodes(pg_databases, *devs):
    url = pg_databases.new()
    st = S.open_store(url, MK)
    for d in devs:
        st.add_device(d.id, d.key, "URN %d" % d.id)
    st.close()
    return url, [core.Receiver(S.open_store(url, MK), clock=lambda: T0 + 1) for _ in range(2)]


def test_an_event_committed_late_with_a_smaller_id_is_not_skipped(pg_databases):
    a_dev, b_dev = Dev(1), Dev(2)
    url, (a, b) = nodes(pg_databases, a_dev, b_dev)
    feed = io.StringIO()
    w = Watcher(S.open_store(url), feed=feed)
    w.start()
    batch = a.prepare([(a_dev.frame(F.ALERT), "tcp", "a")])  # a's alert event has the smaller id, not committed
    (ob,) = b.handle_frames([(b_dev.frame(F.ALERT), "tcp", "b")])  # b's commits first, with a larger id
    assert ob.status == core.ACCEPTED
    # a watcher that followed "id > last" would show b's event now and then step past a's for ever;
    # this one holds b's back while a transaction older than it is still running
    assert w.poll() == []
    batch.commit()
    a.finish(batch)
    shown = w.poll()
    assert [(e["kind"], e["device_id"]) for e in shown] == [("alert", 1), ("alert", 2)]
    assert shown[0]["event_id"] < shown[1]["event_id"]
    assert w.poll() == []  # nothing twice
    lines = [json.loads(x) for x in feed.getvalue().splitlines()]
    assert [e["device_id"] for e in lines] == [1, 2]


def test_a_watcher_wakes_when_either_node_commits(pg_databases):
    d1, d2 = Dev(3), Dev(4)
    url, (a, b) = nodes(pg_databases, d1, d2)
    w = Watcher(S.open_store(url))
    w.start()
    assert w.wait(0.2) is False and w.poll() == []  # nothing committed: the timeout
    for rx, d in ((a, d1), (b, d2)):
        woke = []

        def waiter(woke=woke):
            t0 = time.monotonic()
            woke.append((w.wait(30.0), time.monotonic() - t0))

        t = threading.Thread(target=waiter)
        t.start()
        time.sleep(0.3)  # the watcher is waiting on LISTEN
        assert rx.handle_frames([(d.frame(F.ALERT), "tcp", "n")])[0].status == core.ACCEPTED
        t.join(30)
        assert woke and woke[0][0] is True and woke[0][1] < 5.0  # woken by the commit, not the 30 s timeout
        assert [e["device_id"] for e in w.poll()] == [d.id]


def test_watch_from_the_command_line_follows_both_nodes(pg_databases, capsys):
    from tools.cli import main

    d1, d2 = Dev(5), Dev(6)
    url, (a, b) = nodes(pg_databases, d1, d2)
    a.handle_frame(d1.frame(F.ALERT))
    b.handle_frame(d2.frame(F.ALERT))
    assert main(["receiver", "watch", "--db", url, "--once", "--from-start", "--events", "-"]) == 0
    out = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert sorted(e["device_id"] for e in out if e["kind"] == "alert") == [5, 6]


def test_changed_since_last_call_sees_commits_of_any_node(pg_databases):
    """The console's cheap "anything new?" check, on PostgreSQL from NOTIFY."""
    d = Dev(7)
    url, (a, b) = nodes(pg_databases, d)
    st = S.open_store(url)
    assert st.changed_since_last_call() is True  # the first call: look
    assert st.changed_since_last_call() is False
    a.handle_frame(d.frame(F.ALERT))
    end = time.monotonic() + 5
    while not st.changed_since_last_call():
        assert time.monotonic() < end, "a commit on another node was never seen"
        time.sleep(0.01)
    assert st.changed_since_last_call() is False
    st.close()


def test_the_consoles_live_feed_skips_no_event_committed_late_with_a_smaller_id(pg_databases):
    """The operator console's hub (receiver/console/live.py) on the same
    interleaving: it follows the store's (transaction, id) cursor, so the
    alarm a's batch commits late reaches the browsers, once; and the hub
    is told to look again while an event is held back behind a running
    transaction that will send no notification when it ends."""
    import asyncio

    from receiver.console import live

    a_dev, b_dev = Dev(7), Dev(8)
    url, (a, b) = nodes(pg_databases, a_dev, b_dev)
    con = S.open_store(url)

    async def main():
        hub = live.Hub(live.DbWorker(con), poll_s=0.05)
        await hub.start()
        sub = hub.subscribe()
        since = hub.last_id
        batch = a.prepare([(a_dev.frame(F.ALERT), "tcp", "a")])  # the smaller id, not committed yet
        assert b.handle_frames([(b_dev.frame(F.ALERT), "tcp", "b")])[0].status == core.ACCEPTED
        hub.kick()
        await asyncio.sleep(0.5)
        assert sub.queue.empty()  # b's alarm waits for a's transaction: an id cursor would step past a's
        batch.commit()
        a.finish(batch)
        got = b""
        end = time.monotonic() + 10
        while got.count(b"data: ") < 2 and time.monotonic() < end:
            try:
                got += await asyncio.wait_for(sub.queue.get(), 0.5)
            except TimeoutError:
                pass
        devices = [json.loads(line[6:])["device_id"] for line in got.decode().splitlines() if line.startswith("data: ")]
        assert devices == [7, 8]
        ids = [line[4:] for line in got.decode().splitlines() if line.startswith("id: ")]
        assert [con.cursor_from_text(i) for i in ids] == sorted(con.cursor_from_text(i) for i in ids)
        # a browser that reconnects with the first id gets exactly the second again
        replay = await hub.replay(con.cursor_from_text(ids[0]), hub.last_id)
        assert [json.loads(line[6:])["device_id"] for line in replay.decode().splitlines()
                if line.startswith("data: ")] == [8]
        assert (await hub.replay(since, hub.last_id)).count(b"data: ") == 2
        await hub.close()

    try:
        asyncio.run(main())
    finally:
        con.close()
