"""The receiver's network side: asyncio TCP for devices, HTTP for an SMS
gateway, and the group-commit loop between them and the core.

Owns: sockets, deadlines, per-peer limits, and batching. Never decides
whether a frame is good (core.py does) and never writes the store itself.

Flow: each TCP connection (an asyncio BufferedProtocol, _Conn) reads into
one buffer shared by all connections, deframes (protocol/stream.py u16
framing) and appends whole frames to one pending list. One flusher task
takes what is pending (up to max_batch) and, holding the store lock:
core.Receiver.prepare verifies the frames and writes the batch inside one
open transaction on the loop thread; Batch.commit (the COMMIT: WAL write,
fsync, checkpoints) runs on the committer thread while the loop keeps
reading sockets; core.Receiver.finish ends the transaction. Only then, and
only if the commit succeeded, does each connection get its Outcomes and
ACKs, in order: an ACK never leaves before its batch is durable. What
arrives during a batch forms the next one, so batches grow with the load
and the disk's latency and shrink to one frame when it is light (the group
commit is adaptive without a timer). The CPU work stays on the loop thread:
a worker thread running the whole core measured slower, since every socket
call then waits for the GIL behind it; only the disk wait moved. The HTTP
SMS endpoint and supervision ticks take the same store lock, so the store
has one user at a time.

Limits (Limits below; every breach is counted and logged, then the
connection is closed):
  - frame size: a length prefix outside 31..286 ends the connection
    ("bad stream length"), since a length-prefixed stream cannot resync
  - idle timeout between frames; a read deadline for a frame once its
    first byte arrived (a slow trickle cannot hold a connection: slowloris);
    one sweeper task enforces every connection's deadline
  - write deadline for a peer that does not read its ACKs
  - connections per peer address and in total
  - rejected frames per connection
"""

import asyncio
import collections
import concurrent.futures
import json
import logging
import urllib.parse

from protocol import stream
from protocol.errors import BadLength
from protocol.frame import MAX_FRAME, OVERHEAD
from receiver import core

log = logging.getLogger("receiver.server")


class Limits:
    def __init__(self, idle_timeout=300.0, frame_deadline=10.0, write_timeout=10.0, max_conns_per_peer=256,
                 max_conns=8192, max_rejects_per_conn=8, max_batch=512, http_deadline=10.0, http_max_body=4096):
        self.max_frame = MAX_FRAME
        self.idle_timeout = idle_timeout
        self.frame_deadline = frame_deadline
        self.write_timeout = write_timeout
        self.max_conns_per_peer = max_conns_per_peer
        self.max_conns = max_conns
        self.max_rejects_per_conn = max_rejects_per_conn
        self.max_batch = max_batch
        self.http_deadline = http_deadline
        self.http_max_body = http_max_body


def parse_hostport(text, what="--listen"):
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError("%s must be HOST:PORT, got %r" % (what, text))
    return host.strip("[]") or "0.0.0.0", int(port)


_MAX_INFLIGHT = 256  # frames of one connection waiting for their batch: reading pauses above this


class _Conn(asyncio.BufferedProtocol):
    """One device connection: deframes, hands frames to the batch, writes
    the ACKs it is given back, in order. Deadlines are enforced by the
    server's sweeper through `until` / `why`."""

    def __init__(self, server):
        self.s = server
        self.transport = None
        self.ip = "?"
        self.until = 0.0
        self.why = ""
        self.expired = False
        self.closed = True
        self.inflight = 0
        self.rejects = 0
        self.paused = False
        self._saved = None
        self.deframer = stream.Deframer(server.limits.max_frame)

    def connection_made(self, transport):
        s = self.s
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.ip = peer[0] if peer else "?"
        why = s._admit(self.ip)
        if why:
            s._count(why, self.ip)
            transport.abort()
            return
        self.closed = False
        s._conns += 1
        s._per_peer[self.ip] += 1
        s.counters["connections"] += 1
        self.until, self.why = s._now() + s.limits.idle_timeout, "idle timeout"
        s._live.add(self)

    def connection_lost(self, exc):
        if self.closed:
            return
        self.closed = True
        s = self.s
        s._live.discard(self)
        s._conns -= 1
        s._per_peer[self.ip] -= 1
        if not s._per_peer[self.ip]:
            del s._per_peer[self.ip]
        if exc is not None:
            s.counters["connection reset"] += 1

    def close(self, reason=None, detail=""):
        if reason:
            self.s._count(reason, self.ip, detail)
        self.transport.abort()

    def get_buffer(self, sizehint):
        return self.s._read_view

    def buffer_updated(self, nbytes):
        """Bytes read into the server's shared read buffer (see Server):
        used at once, before the loop reads any other connection."""
        if self.closed or self.expired:
            return
        s = self.s
        buf = s._read_buf
        if nbytes > 2 and nbytes - 2 == (buf[0] << 8) | buf[1] and not self.deframer.pending() and (
                OVERHEAD <= nbytes - 2 <= s.limits.max_frame):
            self._got((bytes(s._read_view[2:nbytes]),))  # the usual read: one whole frame (what the Deframer would return)
        else:
            self.data_received(bytes(s._read_view[:nbytes]))

    def data_received(self, data):
        if self.closed or self.expired:
            return
        try:
            frames = self.deframer.feed(data)
        except BadLength as e:
            self.close("bad stream length", str(e))
            return
        self._got(frames)

    def _got(self, frames):
        s = self.s
        lim = s.limits
        if self.why != "write timeout":
            if self.deframer.pending():
                if frames or self.why != "read deadline":  # a new frame has started: it must finish in time
                    self.until, self.why = s._now() + lim.frame_deadline, "read deadline"
            else:
                self.until, self.why = s._now() + lim.idle_timeout, "idle timeout"
        for raw in frames:
            s._enqueue(raw, "tcp", self.ip, self)
        self.inflight += len(frames)
        if self.inflight > _MAX_INFLIGHT and not self.paused:
            self.paused = True
            self.transport.pause_reading()

    def eof_received(self):
        return False

    def deliver(self, out):
        """The Outcome of one of this connection's frames, after its batch
        committed (or failed)."""
        self.inflight -= 1
        if self.closed or self.expired:
            return
        replies = out.replies
        if replies:
            self.transport.write(stream.pack(replies[0]) if len(replies) == 1 else b"".join(map(stream.pack, replies)))
        if out.status == core.REJECTED:
            self.rejects += 1
            if self.rejects >= self.s.limits.max_rejects_per_conn:
                self.close("too many rejected frames")
                return
        if self.paused and self.inflight <= _MAX_INFLIGHT // 2:
            self.paused = False
            self.transport.resume_reading()

    def pause_writing(self):  # the peer does not read its ACKs: give it write_timeout
        self._saved = (self.until, self.why)
        self.until, self.why = self.s._now() + self.s.limits.write_timeout, "write timeout"

    def resume_writing(self):
        if self._saved is not None:
            self.until, self.why = self._saved
            self._saved = None


class Server:
    def __init__(self, receiver, limits=None, supervise_every=30.0):
        self.receiver = receiver
        self.limits = limits or Limits()
        self.supervise_every = supervise_every
        self.counters = collections.Counter()  # connection-level; frame-level live in receiver.counters
        self._per_peer = collections.Counter()
        self._live = set()
        self._conns = 0
        # One read buffer for every device connection: asyncio's plain
        # Protocol path allocates a 256 KiB bytes object for every recv(),
        # which cost more than verifying the frame. The loop calls
        # get_buffer, recv_into and buffer_updated back to back, and
        # buffer_updated copies out what it keeps, so one buffer serves all.
        self._read_buf = bytearray(16384)
        self._read_view = memoryview(self._read_buf)
        self._pending = []
        self._wake = None  # asyncio.Event: frames are pending
        self._store_lock = None  # asyncio.Lock: one store user at a time (batch, SMS, tick)
        self._committer = None  # the one thread that waits for COMMIT (the disk)
        self._loop = None
        self._servers = []
        self._tasks = []
        self.tcp_address = None
        self.http_address = None
        self.forwarder = None  # receiver/forward/: runs only when forward targets are configured

    # ------------------------------------------------------------ lifecycle

    async def start(self, host, port, http=None):
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._store_lock = asyncio.Lock()
        self._committer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="receiver-commit")
        self._tasks.append(asyncio.create_task(self._flusher()))
        self._tasks.append(asyncio.create_task(self._sweeper()))
        if self.supervise_every:
            self._tasks.append(asyncio.create_task(self._supervisor()))
        await self._start_forwarder()
        srv = await self._loop.create_server(lambda: _Conn(self), host, port, backlog=1024)
        self._servers.append(srv)
        self.tcp_address = srv.sockets[0].getsockname()[:2]
        log.info("listening tcp %s:%d", *self.tcp_address)
        if http is not None:
            hs = await asyncio.start_server(self._http_conn, http[0], http[1], limit=8192)
            self._servers.append(hs)
            self.http_address = hs.sockets[0].getsockname()[:2]
            log.info("listening http %s:%d", *self.http_address)

    async def close(self):
        for s in self._servers:
            s.close()
        for c in list(self._live):
            c.transport.abort()
        for s in self._servers:
            await s.wait_closed()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.forwarder is not None:
            await self.forwarder.close()
        if self._committer is not None:
            self._committer.shutdown(wait=True)

    async def _start_forwarder(self):
        """The forwarder task (receiver/forward/forwarder.py) when the
        store has forward targets; it uses the store under the store lock,
        and the outbox wakes it when a batch queued messages."""
        outbox = self.receiver.outbox
        if outbox is None:
            return
        from receiver.forward import config as fconfig
        from receiver.forward.forwarder import Forwarder

        try:
            self.forwarder = Forwarder(self.receiver.store, outbox.targets, self._store_call, counters=self.counters)
        except fconfig.ConfigError as e:
            # Devices' alarms are still taken, stored and raised; their ARC
            # messages wait in the queue until this is fixed and serve restarts.
            log.error("forwarding NOT started: %s", e)
            self.counters["forward not started"] += 1
            ev = {"time": self.receiver.clock(), "kind": "forward_unavailable", "label": "FORWARDING NOT STARTED",
                  "device_id": None, "person_ref": None, "incident_id": None, "incident_kind": None,
                  "incident_state": None, "test": False, "reason": str(e)}
            with self.receiver.store.transaction():
                self.receiver.store.add_event(ev)
            return
        outbox.on_queued = self.forwarder.kick
        await self.forwarder.start()

    def all_counters(self):
        c = collections.Counter(self.receiver.counters)
        c.update(self.counters)
        return dict(sorted(c.items()))

    def _count(self, reason, peer, detail=""):
        self.counters[reason] += 1
        log.warning("closed connection from %s: %s%s", peer, reason, (" (%s)" % detail) if detail else "")

    def _now(self):
        return self._loop.time()

    # ------------------------------------------------------------ group commit

    def _enqueue(self, raw, transport, peer, sink):
        self._pending.append((raw, transport, peer, sink))
        self._wake.set()

    async def _flusher(self):
        """The group-commit loop: every frame that arrived since the last
        batch (up to max_batch) is verified and written in one transaction
        on the loop; the COMMIT (the fsync) runs on the committer thread
        while the loop keeps reading sockets, so what arrives meanwhile is
        the next batch (bigger when the disk is slow, one frame when the
        load is light); then, and only if the commit succeeded, each
        connection gets its ACKs."""
        while True:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = self._pending[: self.limits.max_batch]
            del self._pending[: len(batch)]
            async with self._store_lock:
                outs = await self._group_commit([(r, t, p) for r, t, p, _ in batch])
            self.counters["batches"] += 1
            for (_, _, _, sink), o in zip(batch, outs, strict=True):
                sink.deliver(o)

    async def _group_commit(self, items):
        rx = self.receiver
        try:
            b = rx.prepare(items)
        except Exception as e:  # a bug, not a store failure (the core handles those): never ACK
            log.exception("batch of %d frames failed: %s", len(items), e.__class__.__name__)
            return [core.Outcome(core.ERROR, "internal error") for _ in items]
        if b.needs_commit:
            fut = self._loop.run_in_executor(self._committer, b.commit)
            try:
                await asyncio.shield(fut)
            except asyncio.CancelledError:  # shutting down: let the commit end, close the transaction, ACK nothing
                await asyncio.wait([fut])
                rx.finish(b)
                raise
        try:
            return rx.finish(b)
        except Exception as e:
            log.exception("batch of %d frames failed after commit: %s", len(items), e.__class__.__name__)
            return [core.Outcome(core.ERROR, "internal error") for _ in items]

    async def _store_call(self, fn, *args):
        async with self._store_lock:
            return fn(*args)

    async def _supervisor(self):
        while True:
            await asyncio.sleep(self.supervise_every)
            try:
                await self._store_call(self.receiver.tick)
            except Exception as e:
                log.error("supervision tick failed: %s", e.__class__.__name__)

    async def _sweeper(self):
        """Deadlines for every connection, checked by one task instead of a
        timer per read (cheaper per frame; a deadline fires within `step`)."""
        lim = self.limits
        step = max(0.05, min(1.0, lim.frame_deadline / 4, lim.idle_timeout / 4))
        while True:
            await asyncio.sleep(step)
            now = self._now()
            for c in [c for c in self._live if now > c.until and not c.expired]:
                c.expired = True
                c.close(c.why)

    # ------------------------------------------------------------ TCP admission

    def _admit(self, ip):
        lim = self.limits
        if self._conns >= lim.max_conns:
            return "too many connections"
        if self._per_peer[ip] >= lim.max_conns_per_peer:
            return "too many connections from peer"
        return None

    # ------------------------------------------------------------ HTTP (SMS gateway)

    async def _http_conn(self, reader, writer):
        peer = writer.get_extra_info("peername")
        ip = peer[0] if peer else "?"
        self.counters["http requests"] += 1
        try:
            async with asyncio.timeout(self.limits.http_deadline):
                code, body = await self._http_request(reader, ip)
        except TimeoutError:
            self._count("http read deadline", ip)
            writer.transport.abort()
            return
        except (ConnectionError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            self._count("http malformed", ip)
            code, body = 400, {"error": "malformed request"}
        data = json.dumps(body).encode()
        head = "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % (
            code, _REASONS.get(code, "Error"), len(data))
        try:
            writer.write(head.encode() + data)
            async with asyncio.timeout(self.limits.write_timeout):
                await writer.drain()
        except (TimeoutError, ConnectionError, OSError):
            pass
        writer.close()

    async def _http_request(self, reader, ip):
        line = await reader.readuntil(b"\r\n")
        parts = line.decode("latin-1").split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            raise ValueError("bad request line")
        method, target = parts[0], parts[1]
        headers = {}
        total = 0
        while True:
            h = await reader.readuntil(b"\r\n")
            total += len(h)
            if total > 8192:
                raise ValueError("headers too long")
            if h == b"\r\n":
                break
            k, sep, v = h.decode("latin-1").partition(":")
            if not sep:
                raise ValueError("bad header")
            headers[k.strip().lower()] = v.strip()
        path = urllib.parse.urlsplit(target).path
        if path == "/health" and method == "GET":
            return 200, {"status": "ok", "counters": self.all_counters()}
        if path != "/sms":
            return 404, {"error": "not found"}
        if method != "POST":
            return 405, {"error": "POST only"}
        n = headers.get("content-length", "")
        if not n.isdigit():
            return 411, {"error": "Content-Length required"}
        if int(n) > self.limits.http_max_body:
            self.counters["http body too large"] += 1
            return 413, {"error": "body too large"}
        body = await reader.readexactly(int(n))
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        try:
            if ctype == "application/json":
                form = json.loads(body.decode("utf-8"))
                if not isinstance(form, dict):
                    raise ValueError("not an object")
            else:
                form = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode("utf-8"), strict_parsing=False).items()}
        except (ValueError, UnicodeDecodeError):
            self.counters["http malformed"] += 1
            return 400, {"error": "body does not parse"}
        sender = _first(form, ("from", "From", "sender", "msisdn"))
        text = _first(form, ("text", "Text", "Body", "body", "message"))
        if not isinstance(sender, str) or not isinstance(text, str) or not sender or not text:
            self.counters["http malformed"] += 1
            return 400, {"error": "need 'from' and 'text'"}
        out = await self._store_call(self.receiver.handle_sms, sender[:32], text[:1024])
        res = {"status": out.status, "reason": out.reason, "device_id": out.device_id, "seq": out.seq,
               "reply": out.sms_reply()}
        if out.status in (core.ACCEPTED, core.DUPLICATE_S):
            return 200, res
        if out.status == core.ERROR:
            return 503, res
        return 422, res


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 411: "Length Required",
            413: "Payload Too Large", 422: "Unprocessable Entity", 503: "Service Unavailable"}


def _first(form, names):
    for n in names:
        if n in form:
            return form[n]
    return None
