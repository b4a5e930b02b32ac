"""The forwarder: an asyncio task inside `panic receiver serve` that
delivers the forward queue to each target and supervises the paths.

Owns: connections to ARC receivers and Traccar, timers, failover and
fail-back, and marking queue rows on the peer's answer. Never decides
what is forwarded (events.py does, in the event's own transaction) and
never touches the store except through `store_call(fn, *args)`, which
runs a store method with the store to itself (the server's store lock),
so it only ever reads committed rows.

DC-09 target, per message, oldest first (what the queue guarantees):
  1. build it from its stored body, its own sequence number, a fresh
     timestamp (our clock plus the path's offset), so a repeat has a new
     CRC and ciphertext and stays inside the receiver's 40 s window;
  2. send it in one write on the active path's connection (made on
     demand, kept open) and wait up to ack_timeout_s for the answer;
  3. ACK (encrypted and fresh when we encrypt; seq and account ours):
     delivered; the row is marked after the group, in one transaction.
     If we stop before the mark, the message goes again after restart
     with the same seq, and the ARC sees a repeat it can discard.
     NAK: take the receiver's time as the path's clock offset and send
     again at once (same seq); a second NAK counts as a failure.
     DUH: that receiver cannot process it; try the next one. When every
     receiver has answered DUH, the row is marked refused and a
     `forward_refused` event says so (never dropped silently).
     Timeout, closed connection, garbage: the path failed; close it and
     try the next path at once (failover); when every path failed, wait
     (0.5 s doubling to max_backoff_s) and start again.
  4. Fail-back: while sending via another path, the primary gets a NULL
     poll every failback_s; the first one it ACKs moves sending back.
Supervision: each path gets a NULL link test after poll_s without
traffic (encrypted when the target is; seq 0000). Polls run in tasks of
their own, one exchange at a time per path, so a hung receiver's ACK
timeout never holds up a message on another path. A path that fails (a
message or a poll) raises `forward_path_down` once; the first success
after raises `forward_path_up`.

Traccar target: one HTTP request per row (OsmAnd protocol, the
parameters in the query string), 200 = delivered, another 4xx = refused
(the map does not know the device), anything else retried with back-off.
Traccar is a secondary map: its rows never hold up the ARC's.
"""

import asyncio
import collections
import json
import logging
import time
import urllib.parse

from receiver.forward import config as C
from receiver.forward import dc09 as D

log = logging.getLogger("receiver.forward")

BATCH = 32  # rows read per store call


class _Path:
    __slots__ = ("host", "port", "name", "reader", "writer", "offset", "up", "last_io", "lock", "polling")

    def __init__(self, host, port):
        self.host = host
        self.port = port
        self.name = "%s:%d" % (host, port)
        self.reader = self.writer = None
        self.offset = 0.0  # the receiver's clock minus ours (from its NAK)
        self.up = None  # None: not known yet
        self.last_io = -1e18
        self.lock = asyncio.Lock()  # one exchange at a time on this path's connection
        self.polling = False

    def close(self):
        if self.writer is not None:
            self.writer.transport.abort()
        self.reader = self.writer = None


class Forwarder:
    """All targets' links. store_call: async (fn, *args) -> fn(*args) with
    the store to itself; clock: Unix seconds (timestamps); counters: a
    Counter to count into (the server's). on_done(row, state, via,
    monotonic time): optional, for tests and the bench."""

    def __init__(self, store, targets, store_call, clock=time.time, counters=None, rescan_s=2.0, on_done=None):
        self.store = store
        self.store_call = store_call
        self.clock = clock
        self.counters = counters if counters is not None else collections.Counter()
        self.rescan_s = rescan_s
        self.on_done = on_done
        self.links = []
        for cfg in targets:
            if cfg["kind"] == C.DC09:
                self.links.append(Dc09Link(self, cfg, C.load_key(cfg)))
            else:
                self.links.append(TraccarLink(self, cfg))
        self._tasks = []
        self.closing = False

    async def start(self):
        for link in self.links:
            self._tasks.append(asyncio.create_task(link.run(), name="forward " + link.name))

    def kick(self):
        """New rows may be committed: look now rather than at the next rescan."""
        for link in self.links:
            link.wake.set()

    async def close(self):
        # asyncio.timeout rather than wait_for everywhere here: on 3.11,
        # wait_for can swallow a cancellation that lands as its inner
        # future completes, and the task would then never end.
        self.closing = True
        for t in self._tasks:
            t.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=10)
        polls = [t for link in self.links for t in getattr(link, "polls", ())]
        for link in self.links:
            link.close()
        if polls:
            await asyncio.wait(polls, timeout=10)
        for link in self.links:
            if link.done:  # answered but not yet marked: mark now (else they are simply sent again)
                try:
                    self.store.forward_done(link.done)
                    link.done = []
                except Exception as e:
                    log.error("forward %s: could not mark %d answered message(s): %s", link.name, len(link.done),
                              e.__class__.__name__)

    async def event(self, kind, label, **fields):
        """Record a receiver event of the forwarder's own (path down/up,
        message refused) in the event feed."""
        ev = {"time": self.clock(), "kind": kind, "label": label, "device_id": fields.pop("device_id", None),
              "person_ref": None, "incident_id": fields.pop("incident_id", None), "incident_kind": None,
              "incident_state": None, "test": False}
        ev.update(fields)

        def write():
            with self.store.transaction():
                self.store.add_event(ev)

        try:
            await self.store_call(write)
        except Exception as e:
            log.error("could not record %s event: %s", kind, e.__class__.__name__)
        log.warning("%s: %s", label, json.dumps({k: v for k, v in fields.items()}, sort_keys=True))


class _Link:
    def __init__(self, fw, cfg):
        self.fw = fw
        self.cfg = cfg
        self.name = cfg["name"]
        self.wake = asyncio.Event()
        self.done = []  # (id, state, at, via, attempts, detail) answered, to mark

    def close(self):
        pass

    async def deliver(self, row):
        """One queue row to the target, its answer kept in self.done (each
        kind of link has its own: Dc09Link, TraccarLink)."""
        raise NotImplementedError

    async def flush(self):
        if not self.done:
            return
        rows, self.done = self.done, []
        try:
            await self.fw.store_call(self.fw.store.forward_done, rows)
        except Exception as e:  # the rows stay pending in the store and go again: at least once
            log.error("forward %s: marking %d message(s) failed: %s", self.name, len(rows), e.__class__.__name__)

    async def unusable(self, row, e):
        detail = "unusable queue row: %s" % e.__class__.__name__
        self._finish(row, "refused", None, row["attempts"], detail)
        await self.fw.event("forward_refused", "FORWARD REFUSED by %s" % self.name, target=self.name, seq=row["seq"],
                            event=row["event_kind"], device_id=row["device_id"], incident_id=row["incident_id"],
                            reason=detail)

    def _finish(self, row, state, via, attempts, detail=None):
        self.done.append((row["id"], state, self.fw.clock(), via, attempts, detail))
        self.fw.counters["forward %s" % state] += 1
        if self.fw.on_done is not None:
            self.fw.on_done(row, state, via, time.monotonic())

    async def run(self):
        """Deliver the queue until closed. A bug in one round is logged
        and counted, and the next round starts a second later: the queue
        is in the store, so nothing is lost, and forwarding never stops
        silently."""
        while not self.fw.closing:
            try:
                await self._round()
            except Exception:
                log.exception("forward %s: internal error; again in 1 s", self.name)
                self.fw.counters["forward internal error"] += 1
                await asyncio.sleep(1.0)

    async def _round(self):
        """One round: deliver what is pending, or supervise and wait."""
        self.wake.clear()
        try:
            rows = await self.fw.store_call(self.fw.store.forward_pending, self.name, BATCH)
        except Exception as e:
            log.error("forward %s: reading the queue failed: %s", self.name, e.__class__.__name__)
            rows = []
        if rows:
            for row in rows:
                await self.deliver(row)
            await self.flush()
            await self.idle_work()
            return
        await self.idle_work()
        try:
            async with asyncio.timeout(self.next_timeout()):
                await self.wake.wait()
        except TimeoutError:
            pass

    async def idle_work(self):
        pass

    def next_timeout(self):
        return self.fw.rescan_s


class Dc09Link(_Link):
    def __init__(self, fw, cfg, key):
        super().__init__(fw, cfg)
        self.key = key
        self.paths = [_Path(h, p) for h, p in cfg["paths"]]
        self.active = 0
        self.last_answer = None  # the last D.Answer read (for `forward test`)
        self.polls = set()  # supervision polls under way (they never hold up a message)

    def close(self):
        for t in self.polls:
            t.cancel()
        for p in self.paths:
            p.close()

    def _now(self):
        return time.monotonic()

    def message(self, row):
        b = json.loads(row["body"])
        return D.Message(b["token"], row["seq"], b["account"], b["data"], b["ext"], self.cfg["receiver"],
                         self.cfg["line"])

    async def deliver(self, row):
        try:
            msg = self.message(row)
        except (KeyError, TypeError, ValueError) as e:  # a row no message can be made of must not block the queue
            await self.unusable(row, e)
            return
        attempts = row["attempts"]
        duh = set()
        delay = 0.5
        while not self.fw.closing:
            order = list(range(self.active, len(self.paths))) + list(range(self.active))
            for i in order:
                if i in duh:
                    continue
                path = self.paths[i]
                attempts += 1
                res = await self.send(path, msg)
                if res == D.ACK:
                    await self.path_state(path, True, None)
                    if i != self.active:
                        self.active = i
                        log.warning("forward %s: now sending via %s", self.name, path.name)
                    self._finish(row, "delivered", path.name, attempts)
                    return
                if res == D.DUH:
                    await self.path_state(path, True, None)
                    duh.add(i)
                    self.fw.counters["forward duh"] += 1
                    continue
                await self.path_state(path, False, res)
            if len(duh) == len(self.paths):
                self._finish(row, "refused", ",".join(p.name for p in self.paths), attempts,
                             "every receiver answered DUH")
                await self.fw.event("forward_refused", "FORWARD REFUSED by %s" % self.name, target=self.name,
                                    seq=row["seq"], event=row["event_kind"], device_id=row["device_id"],
                                    incident_id=row["incident_id"], reason="every receiver answered DUH")
                return
            self.fw.counters["forward backoff"] += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.cfg["max_backoff_s"])

    async def send(self, path, msg):
        """One exchange: D.ACK, D.DUH, or the reason it failed."""
        async with path.lock:
            return await self._send(path, msg)

    async def _send(self, path, msg):
        cfg = self.cfg
        if path.writer is None:
            try:
                async with asyncio.timeout(cfg["connect_timeout_s"]):
                    path.reader, path.writer = await asyncio.open_connection(path.host, path.port, limit=4096)
            except (OSError, TimeoutError) as e:
                path.close()
                self.fw.counters["forward connect failed"] += 1
                return "connect: %s" % (e.strerror if isinstance(e, OSError) and e.strerror else e.__class__.__name__)
        for _ in range(2):
            now = self.fw.clock() + path.offset
            raw = D.encode(msg, self.key, now)
            path.last_io = self._now()
            try:
                path.writer.write(raw)  # the whole message in one write
                async with asyncio.timeout(cfg["ack_timeout_s"]):
                    data = await path.reader.readuntil(b"\r")
            except TimeoutError:
                path.close()
                self.fw.counters["forward timeout"] += 1
                return "no answer in %g s" % cfg["ack_timeout_s"]
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as e:
                path.close()
                self.fw.counters["forward connection lost"] += 1
                return "connection: %s" % e.__class__.__name__
            try:
                ans = D.read_answer(data, msg, self.key, self.fw.clock() + path.offset)
            except D.Dc09Garbage as e:
                path.close()
                self.fw.counters["forward bad answer: %s" % e.reason] += 1
                return "bad answer: %s" % e.reason
            self.last_answer = ans
            for q in ans.quirks:
                self.fw.counters["forward peer quirk: %s" % q] += 1
            if ans.kind == D.NAK:
                self.fw.counters["forward nak"] += 1
                path.offset = ans.time - self.fw.clock()
                log.warning("forward %s: NAK from %s, clock offset now %+.0f s", self.name, path.name, path.offset)
                continue
            if ans.kind == D.DUH:
                return D.DUH
            self.fw.counters["forward ack"] += 1
            return D.ACK
        return "NAK twice"

    async def path_state(self, path, up, reason):
        was = path.up
        path.up = up
        if up and was is False:
            await self.fw.event("forward_path_up", "ARC PATH UP %s" % path.name, target=self.name, path=path.name)
        elif not up and was is not False:
            await self.fw.event("forward_path_down", "ARC PATH DOWN %s" % path.name, target=self.name,
                                path=path.name, reason=reason)

    async def poll(self, i):
        path = self.paths[i]
        msg = D.Message(D.NULL, 0, self.cfg["account"], "", (), self.cfg["receiver"], self.cfg["line"])
        try:
            res = await self.send(path, msg)
            ok = res in (D.ACK, D.DUH)
            self.fw.counters["forward poll %s" % ("ok" if ok else "failed")] += 1
            await self.path_state(path, ok, None if ok else res)
            if ok and i == 0 and self.active:
                self.active = 0
                log.warning("forward %s: back on the primary %s", self.name, path.name)
        finally:
            path.polling = False

    async def idle_work(self):
        """Start the polls that are due, each in its own task, so a hung
        receiver's ACK timeout never holds up a message on another path:
        every path after poll_s without traffic, and the primary every
        failback_s while we send via another (its ACK is the fail-back)."""
        now = self._now()
        for i, p in enumerate(self.paths):
            due = now - p.last_io >= self.cfg["poll_s"] or (
                i == 0 and self.active and now - p.last_io >= self.cfg["failback_s"])
            if due and not p.polling:
                p.polling = True
                p.last_io = now
                t = asyncio.create_task(self.poll(i))
                self.polls.add(t)
                t.add_done_callback(self.polls.discard)

    def next_timeout(self):
        now = self._now()
        due = min(p.last_io + self.cfg["poll_s"] for p in self.paths) - now
        if self.active:
            due = min(due, self.paths[0].last_io + self.cfg["failback_s"] - now)
        return max(0.05, min(self.fw.rescan_s, due))


class TraccarLink(_Link):
    def __init__(self, fw, cfg):
        super().__init__(fw, cfg)
        u = urllib.parse.urlsplit(cfg["url"])
        self.host, self.port = u.hostname, u.port or 80
        self.path = u.path or "/"

    async def deliver(self, row):
        try:
            params = [tuple(p) for p in json.loads(row["body"])]
        except (TypeError, ValueError) as e:
            await self.unusable(row, e)
            return
        delay = 0.5
        attempts = row["attempts"]
        while not self.fw.closing:
            attempts += 1
            status = await self.post(params)
            if status == 200:
                self._finish(row, "delivered", "%s:%d" % (self.host, self.port), attempts)
                return
            if isinstance(status, int) and 400 <= status < 500:
                self._finish(row, "refused", "%s:%d" % (self.host, self.port), attempts, "HTTP %d" % status)
                log.warning("forward %s: Traccar answered %d for %s (device %s unknown there?)", self.name, status,
                            row["event_kind"], row["device_id"])
                return
            self.fw.counters["forward traccar retry"] += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.cfg["max_backoff_s"])

    async def post(self, params):
        """POST the OsmAnd parameters (in the query, as Traccar's client
        does); the HTTP status, or the reason it failed."""
        req = ("POST %s?%s HTTP/1.1\r\nHost: %s:%d\r\nContent-Length: 0\r\nConnection: close\r\n\r\n" % (
            self.path, urllib.parse.urlencode(params), self.host, self.port)).encode("ascii")
        writer = None
        try:
            async with asyncio.timeout(self.cfg["timeout_s"]):
                reader, writer = await asyncio.open_connection(self.host, self.port, limit=8192)
                writer.write(req)
                line = await reader.readuntil(b"\r\n")
            parts = line.split()
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
                return "bad status line"
            return int(parts[1])
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as e:
            return e.__class__.__name__
        finally:
            if writer is not None:
                writer.transport.abort()
