"""Live updates: from the store's commit to every operator's browser.

Owns: the console's own store connection (one worker thread: every
console read and write runs there, in turn, so the event loop never waits
for SQLite), the hub that follows the event feed, and the Server-Sent
Events stream each browser holds open.

How the hub learns of a commit:
- inside `serve` (`--console`): ConsoleReceiver, the core's Receiver with
  finish() and tick() extended, kicks the hub on the loop thread right
  after a batch with events is durable; the hub reads the new events at
  once (no timer in the path);
- a separate `panic receiver console` process: every `poll_s` (0.1 s by
  default) the hub asks the store whether another connection committed
  (store.changed_since_last_call: SQLite's PRAGMA data_version, one cheap
  read) and reads the new events only then;
- the console's own writes (claims, notes ...) kick the hub directly.

Never missed across a reconnect: every SSE message carries the store's
feed cursor as its `id:` (the event id; with several PostgreSQL nodes,
whose transactions can commit ids out of order, "transaction.id": the
store hands out only events no running transaction can precede, so the
live stream skips none either); a browser that reconnects (EventSource does, after
a network blip or a restart of the receiver) sends Last-Event-ID, and the
stream first replays the events after it from the store, then goes live.
A page opened fresh asks from the id it was rendered at (?since=). Replay
and live meet without a gap or a repeat: the subscriber is registered at
the hub's current id L before the replay reads (since, L], and the live
queue holds only ids above L. A browser too far behind (more than
REPLAY_MAX events) is told to reload: the page it then gets is rendered
from the store, so it still misses nothing.

Cost under load: one SELECT per commit (kicked) or per change (polled) for
every browser together, at most one every MIN_GAP_S (a kick within it is
read at its end: an alarm waits 50 ms at most), or every BUSY_GAP_S after
a read that found more than BUSY_ROWS events (at thousands of frames a
second the reads, the messages and the browsers' work stay bounded),
bodies passed through as stored (not parsed); of the TRACKs of one
incident in one read only the last is sent (it carries the incident's
newest position), so a browser gets at most one message per incident per
read whatever the frame rate. A subscriber whose queue fills (a stalled
browser) is dropped; it reconnects and replays.

Must stay in sync with: store_console.py (events_raw_after,
changed_since_last_call), static/console.js (the messages), core.py
(Receiver.finish / tick).
"""

import asyncio
import concurrent.futures
import logging

from receiver import core
from receiver.store_console import event_id_of, event_json_with_id

log = logging.getLogger("receiver.console")

REPLAY_MAX = 5000
READ_CHUNK = 2000
QUEUE_MAX = 2000
KEEPALIVE_S = 15.0
RETRY_MS = 1000
MIN_GAP_S = 0.05
# Under load (a read found more than BUSY_ROWS events) the next read waits
# BUSY_GAP_S: more TRACKs of each incident fall into one read and are
# coalesced, so the messages and every browser's work stop growing with
# the frame rate (bench_console: 400 devices at 12,000 frames/s). An alarm
# then reaches the page within BUSY_GAP_S plus a read, inside the 1 s goal.
BUSY_ROWS = 500
BUSY_GAP_S = 0.25
_COALESCE = ("track",)


class DbWorker:
    """One thread owning the console's store connection."""

    def __init__(self, store):
        self.store = store
        self._ex = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="console-db")

    async def __call__(self, fn, *args, **kw):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._ex, lambda: fn(self.store, *args, **kw))

    def close(self):
        self._ex.shutdown(wait=True)
        self.store.close()


def encode(rows, cursor_text=str):
    """SSE messages (bytes) for rows (cursor, kind, incident_id, body),
    TRACKs coalesced per incident (the last one stays, at its place in
    order); each message's id is cursor_text(cursor) (the store's).
    Returns (bytes, last cursor)."""
    last_track = {}
    for i, (_eid, kind, iid, _body) in enumerate(rows):
        if kind in _COALESCE and iid is not None:
            last_track[iid] = i
    parts = []
    for i, (eid, kind, iid, body) in enumerate(rows):
        if kind in _COALESCE and iid is not None and last_track[iid] != i:
            continue
        parts.append("id: %s\ndata: %s\n\n" % (cursor_text(eid), event_json_with_id(event_id_of(eid), body)))
    return "".join(parts).encode(), (rows[-1][0] if rows else None)


class Subscriber:
    __slots__ = ("queue", "dropped", "since")

    def __init__(self, since):
        self.queue = asyncio.Queue(QUEUE_MAX)
        self.dropped = False
        self.since = since


class Hub:
    def __init__(self, db, poll_s=0.1):
        self.db = db
        self.poll_s = poll_s
        self.last_id = 0  # the feed cursor read up to (the store's: an id, or (transaction, id))
        self.cursor_text = str
        self.subs = set()
        self._kick = None
        self._task = None
        self._busy = False
        self.counters = {"reads": 0, "events": 0, "messages": 0, "dropped subscribers": 0}

    async def start(self):
        kick = self._kick = asyncio.Event()
        self.last_id = await self.db(lambda s: s.feed_cursor())
        self.cursor_text = self.db.store.cursor_text
        await self.db(lambda s: s.changed_since_last_call())
        self._task = asyncio.create_task(self._run(kick))

    async def close(self):
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for s in list(self.subs):  # end every stream; browsers reconnect to the next console
            s.dropped = True
            if not s.queue.full():
                s.queue.put_nowait(None)

    def kick(self):
        """A commit happened (called on the loop thread)."""
        if self._kick is not None:
            self._kick.set()

    async def _run(self, kick):
        """Follow the feed; `kick` (self._kick) is set by kick() on a commit."""
        loop = asyncio.get_running_loop()
        last = 0.0
        self._busy = False
        while True:
            kicked = False
            try:
                await asyncio.wait_for(kick.wait(), self.poll_s)
                kicked = True
            except TimeoutError:
                pass
            gap = last + (BUSY_GAP_S if self._busy else MIN_GAP_S) - loop.time()
            if gap > 0:
                await asyncio.sleep(gap)
            kick.clear()
            last = loop.time()
            try:
                await self._read(kicked)
            except Exception as e:  # the store went away for a moment: keep following it
                log.error("console: reading the event feed failed: %s: %s", e.__class__.__name__, e)
                await asyncio.sleep(self.poll_s)

    async def _read(self, kicked):
        def read(s, last, kicked):
            changed = s.changed_since_last_call()
            if not (changed or kicked):
                return None
            return s.events_raw_after(last, limit=READ_CHUNK)

        n = 0
        while True:
            rows = await self.db(read, self.last_id, kicked)
            self.counters["reads"] += 1
            n += len(rows or ())
            self._busy = n > BUSY_ROWS
            if not rows:
                return
            data, last = encode(rows, self.cursor_text)
            self.last_id = last
            self.counters["events"] += len(rows)
            self._publish(data)
            if len(rows) < READ_CHUNK:
                return
            kicked = True

    def _publish(self, data):
        for s in list(self.subs):
            if s.dropped:
                continue
            try:
                s.queue.put_nowait(data)
                self.counters["messages"] += 1
            except asyncio.QueueFull:
                s.dropped = True
                self.counters["dropped subscribers"] += 1
                self.subs.discard(s)

    def subscribe(self):
        """A subscriber registered at the current id (see the header)."""
        s = Subscriber(self.last_id)
        self.subs.add(s)
        return s

    def unsubscribe(self, s):
        self.subs.discard(s)

    async def replay(self, after, upto):
        """SSE bytes of the events in (after, upto] (feed cursors), or None
        when more than REPLAY_MAX are missing (the browser reloads instead)."""
        if isinstance(after, int) and isinstance(upto, int) and upto - after > REPLAY_MAX:
            return None
        out = []
        n = 0
        while after < upto:
            rows = await self.db(lambda s, a: s.events_raw_after(a, upto, READ_CHUNK), after)
            if not rows:
                break
            n += len(rows)
            if n > REPLAY_MAX:
                return None
            data, _ = encode(rows, self.cursor_text)
            after = rows[-1][0]  # the cursor of the last row read (what encode hands back for rows)
            out.append(data)
        return b"".join(out)


class ConsoleReceiver(core.Receiver):
    """The core's Receiver, telling the console hub of every commit that
    raised events (inside `serve --console`). The work added per batch is
    one method call; the hub reads on its own thread."""

    on_commit = None

    def finish(self, batch):
        outs = super().finish(batch)
        if batch.committed and batch.events and self.on_commit is not None:
            self.on_commit()
        return outs

    def tick(self, now=None):
        events = super().tick(now)
        if events and self.on_commit is not None:
            self.on_commit()
        return events
