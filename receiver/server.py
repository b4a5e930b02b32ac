"""The receiver's network side: asyncio TCP for devices, HTTP for an SMS
gateway, and the group-commit loop between them and the core.

Owns: sockets, deadlines, per-peer limits, and batching. Never decides
whether a frame is good (core.py does) and never writes the store itself.

Flow: each TCP connection deframes its bytes (protocol/stream.py u16
framing) and submits whole frames to one queue. A single committer task
takes everything queued (up to max_batch), runs core.handle_frames on it,
and resolves each frame's future with its Outcome. The connection writes
the ACKs only then: an ACK never leaves before its batch is durable.
The core runs on the event loop itself by default: while a commit runs,
new frames wait in kernel buffers and form the next batch. (A worker thread
measured slower: every socket call then waits for the GIL behind the
CPU-bound core.) The HTTP SMS endpoint and supervision ticks go through
the same path, so the store has one caller at a time.

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
from protocol.frame import MAX_FRAME
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


class _Conn:
    __slots__ = ("transport", "ip", "until", "why", "expired")

    def __init__(self, transport, ip):
        self.transport = transport
        self.ip = ip
        self.until = 0.0
        self.why = ""
        self.expired = False


class Server:
    def __init__(self, receiver, limits=None, supervise_every=30.0, store_thread=False):
        self.receiver = receiver
        self.limits = limits or Limits()
        self.supervise_every = supervise_every
        self.counters = collections.Counter()  # connection-level; frame-level live in receiver.counters
        self._per_peer = collections.Counter()
        self._live = set()
        self._conns = 0
        self._queue = None
        self._ex = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="receiver-store") if store_thread else None
        self._servers = []
        self._tasks = []
        self.tcp_address = None
        self.http_address = None

    # ------------------------------------------------------------ lifecycle

    async def start(self, host, port, http=None):
        self._queue = asyncio.Queue()
        self._tasks.append(asyncio.create_task(self._committer()))
        self._tasks.append(asyncio.create_task(self._sweeper()))
        if self.supervise_every:
            self._tasks.append(asyncio.create_task(self._supervisor()))
        srv = await asyncio.start_server(self._tcp_conn, host, port, limit=4096, backlog=1024)
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
        for s in self._servers:
            await s.wait_closed()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._ex is not None:
            self._ex.shutdown(wait=True)

    def all_counters(self):
        c = collections.Counter(self.receiver.counters)
        c.update(self.counters)
        return dict(sorted(c.items()))

    def _count(self, reason, peer, detail=""):
        self.counters[reason] += 1
        log.warning("closed connection from %s: %s%s", peer, reason, (" (%s)" % detail) if detail else "")

    # ------------------------------------------------------------ group commit

    def submit(self, raw, transport, peer):
        fut = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((raw, transport, peer, fut))
        return fut

    async def _store_call(self, fn, *args):
        """Run store work: on the loop itself by default (a commit blocks the
        loop for one fsync; the kernel buffers what arrives meanwhile, and
        that becomes the next batch), or on the one worker thread."""
        if self._ex is None:
            return fn(*args)
        return await asyncio.get_running_loop().run_in_executor(self._ex, fn, *args)

    async def _committer(self):
        q = self._queue
        while True:
            batch = [await q.get()]
            while len(batch) < self.limits.max_batch and not q.empty():
                batch.append(q.get_nowait())
            items = [(r, t, p) for r, t, p, _ in batch]
            try:
                outs = await self._store_call(self.receiver.handle_frames, items)
            except Exception as e:  # never ACK what was not stored
                log.error("batch of %d frames failed: %s", len(batch), e.__class__.__name__)
                outs = [core.Outcome(core.ERROR, "store error") for _ in batch]
            self.counters["batches"] += 1
            for (_, _, _, fut), o in zip(batch, outs, strict=True):
                if not fut.done():
                    fut.set_result(o)

    async def _supervisor(self):
        while True:
            await asyncio.sleep(self.supervise_every)
            try:
                await self._store_call(self.receiver.tick)
            except Exception as e:
                log.error("supervision tick failed: %s", e.__class__.__name__)

    # ------------------------------------------------------------ TCP

    def _admit(self, ip):
        lim = self.limits
        if self._conns >= lim.max_conns:
            return "too many connections"
        if self._per_peer[ip] >= lim.max_conns_per_peer:
            return "too many connections from peer"
        return None

    async def _tcp_conn(self, reader, writer):
        peer = writer.get_extra_info("peername")
        ip = peer[0] if peer else "?"
        why = self._admit(ip)
        if why:
            self._count(why, ip)
            writer.transport.abort()
            return
        self._conns += 1
        self._per_peer[ip] += 1
        self.counters["connections"] += 1
        try:
            await self._serve_conn(reader, writer, ip)
        except (ConnectionError, OSError):
            self.counters["connection reset"] += 1
        finally:
            self._conns -= 1
            self._per_peer[ip] -= 1
            if not self._per_peer[ip]:
                del self._per_peer[ip]
            writer.transport.abort() if writer.transport.get_write_buffer_size() else writer.close()

    async def _serve_conn(self, reader, writer, ip):
        lim = self.limits
        loop = asyncio.get_running_loop()
        deframer = stream.Deframer(lim.max_frame)
        conn = _Conn(writer.transport, ip)
        conn.until, conn.why = loop.time() + lim.idle_timeout, "idle timeout"
        self._live.add(conn)
        rejects = 0
        try:
            while True:
                data = await reader.read(4096)
                if not data or conn.expired:
                    return
                now = loop.time()
                try:
                    frames = deframer.feed(data)
                except BadLength as e:
                    self._count("bad stream length", ip, str(e))
                    return
                if deframer.pending():
                    if frames or conn.why != "read deadline":  # a new frame has started: it must finish in time
                        conn.until, conn.why = now + lim.frame_deadline, "read deadline"
                else:
                    conn.until, conn.why = now + lim.idle_timeout, "idle timeout"
                if not frames:
                    continue
                outs = [await f for f in [self.submit(raw, "tcp", ip) for raw in frames]]
                reply = b"".join(stream.pack(r) for o in outs for r in o.replies)
                rejects += sum(1 for o in outs if o.status == core.REJECTED)
                if reply:
                    writer.write(reply)
                    if writer.transport.get_write_buffer_size():
                        until, why = conn.until, conn.why
                        conn.until, conn.why = loop.time() + lim.write_timeout, "write timeout"
                        await writer.drain()
                        if conn.expired:
                            return
                        conn.until, conn.why = until, why
                if rejects >= lim.max_rejects_per_conn:
                    self._count("too many rejected frames", ip)
                    return
        finally:
            self._live.discard(conn)

    async def _sweeper(self):
        """Deadlines for every connection, checked by one task instead of a
        timer per read (cheaper per frame; a deadline fires within `step`)."""
        lim = self.limits
        step = max(0.05, min(1.0, lim.frame_deadline / 4, lim.idle_timeout / 4))
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(step)
            now = loop.time()
            for c in [c for c in self._live if now > c.until]:
                c.expired = True
                self._live.discard(c)
                self._count(c.why, c.ip)
                c.transport.abort()

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
