"""The receiver's network side: asyncio TCP for devices, HTTP for an SMS
gateway, and the group-commit loop between them and the core.

Owns: sockets, deadlines, per-peer limits, batching, and how much a peer
may make us log. Never decides whether a frame is good (core.py does) and
never writes the store itself.

Flow: each TCP connection (an asyncio BufferedProtocol, _Conn) reads into
one buffer shared by all connections, deframes (protocol/stream.py u16
framing) and queues whole frames on itself; a connection with queued
frames waits in one ready queue. One flusher task builds a batch by taking
frames from the ready connections in turn (up to max_batch, and from each
connection no more than it may still have rejected: see Limits) and,
holding the store lock: core.Receiver.prepare verifies the frames and
writes the batch inside one open transaction on the loop thread;
Batch.commit (the COMMIT: WAL write, fsync, checkpoints) runs on the
committer thread while the loop keeps reading sockets;
core.Receiver.finish ends the transaction. Only then, and only if the
commit succeeded, does each connection get its Outcomes and ACKs, in
order: an ACK never leaves before its batch is durable. What arrives during
a batch forms the next one, so batches grow with the load and the disk's
latency and shrink to one frame when it is light (the group commit is
adaptive without a timer). The CPU work stays on the loop thread: a worker
thread running the whole core measured slower, since every socket call
then waits for the GIL behind it; only the disk wait moved. The HTTP SMS
endpoint and supervision ticks take the same store lock, so the store has
one user at a time.

Several nodes (a PostgreSQL store): every node takes frames; the
once-per-centre work (supervision ticks, the forwarder) runs only on the
node holding the leader's lock (leader.py), checked every second off the
loop, and moves to another node when the leader dies.

A connection is *unverified* until one of its frames is accepted (a new
frame that verified and was stored); a duplicate does not count, since
anyone who captured a frame can replay it. Limits (Limits below; every
breach is counted, and logged within the per-peer log budget):
  - frame size: a length prefix outside 31..286 ends the connection
    ("bad stream length"; a length-prefixed stream cannot resync), after
    the frames that completed before it are handled and ACKed
  - an unverified connection must deliver a verified frame within
    auth_deadline ("no verified frame in time"); a verified one may then
    idle for idle_timeout ("idle timeout")
  - a read deadline for a frame once its first byte arrived (a slow
    trickle cannot hold a connection: slowloris); one sweeper task
    enforces every connection's deadline
  - write deadline for a peer that does not read its ACKs
  - unverified connections per peer address: at max_conns_per_peer, the
    oldest one that has sent nothing (else the oldest) is closed to admit
    the new one ("unverified connection evicted"). Verified connections
    never count: a carrier NAT puts thousands of devices behind one
    address, and idle sockets from that address must not lock them out
    (issue 15). At max_conns in total the oldest unverified connection
    anywhere is evicted; only when every one is verified is a new
    connection refused ("too many connections")
  - rejected frames per connection, per frame: a batch never holds more
    frames of a connection than it may still have rejected, so a
    connection over its limit is closed before any more of its frames are
    verified ("too many rejected frames")
  - a peer that closes inside a frame is counted ("closed mid-frame")
  - HTTP: a deadline for the whole request, header and body sizes, and a
    bounded body parse (JSON nesting depth, form field count): 400/413
"""

import asyncio
import collections
import concurrent.futures
import json
import logging
import socket
import urllib.parse

from protocol import stream
from protocol.errors import BadLength
from protocol.frame import MAX_FRAME, OVERHEAD
from receiver import core

log = logging.getLogger("receiver.server")

# Connection close reasons (counter keys)
C_AUTH = "no verified frame in time"
C_IDLE = "idle timeout"
C_READ = "read deadline"
C_WRITE = "write timeout"
C_REJECTS = "too many rejected frames"
C_LENGTH = "bad stream length"
C_EVICTED = "unverified connection evicted"
C_FULL = "too many connections"
C_MIDFRAME = "closed mid-frame"
C_RESET = "connection reset"


class Limits:
    def __init__(self, idle_timeout=300.0, frame_deadline=10.0, write_timeout=10.0, max_conns_per_peer=256,
                 max_conns=8192, max_rejects_per_conn=8, max_batch=512, http_deadline=10.0, http_max_body=4096,
                 auth_deadline=10.0, http_max_depth=8, http_max_fields=32, log_burst=10, log_per_s=0.2,
                 log_total_per_s=20.0):
        self.max_frame = MAX_FRAME
        self.idle_timeout = idle_timeout
        self.auth_deadline = auth_deadline
        self.frame_deadline = frame_deadline
        self.write_timeout = write_timeout
        self.max_conns_per_peer = max_conns_per_peer
        self.max_conns = max_conns
        self.max_rejects_per_conn = max_rejects_per_conn
        self.max_batch = max_batch
        self.http_deadline = http_deadline
        self.http_max_body = http_max_body
        self.http_max_depth = http_max_depth
        self.http_max_fields = http_max_fields
        self.log_burst = log_burst
        self.log_per_s = log_per_s
        self.log_total_per_s = log_total_per_s


def parse_hostport(text, what="--listen"):
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or len(port) > 5 or int(port) > 65535:
        raise ValueError("%s must be HOST:PORT, got %r" % (what, text))
    return host.strip("[]") or "0.0.0.0", int(port)


def bind(host, port, backlog=1024):
    """Listening sockets for host:port (every address the name resolves
    to, as asyncio's create_server binds them), made before anything else
    is opened so a failure leaves nothing behind. Raises OSError with a
    message naming the address."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as e:
        raise OSError("cannot resolve %s: %s" % (host, getattr(e, "strerror", None) or e)) from None
    socks = []
    seen = set()
    try:
        for family, kind, proto, _, addr in infos:
            if (family, addr) in seen:
                continue
            seen.add((family, addr))
            s = socket.socket(family, kind, proto)
            socks.append(s)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                s.bind(addr)
            except OSError as e:
                raise OSError(e.errno, "cannot listen on %s:%d: %s" % (host, port, e.strerror)) from None
            s.listen(backlog)
            s.setblocking(False)
    except BaseException:
        for s in socks:
            s.close()
        raise
    return socks


_MAX_INFLIGHT = 256  # frames of a verified connection queued or in a batch: reading pauses above this
# An unverified connection pauses above max_rejects_per_conn: it can never
# have more of its frames verified than that, so holding more is only
# memory an attacker could fill (8,192 connections of 256 frames: 600 MB).


class _Pool:
    """Unverified connections in arrival order, the silent ones (nothing
    received yet) apart: an eviction takes the oldest silent one first, so
    a real device, which sends its frame at once, outlives idle sockets."""

    __slots__ = ("silent", "talking")

    def __init__(self):
        self.silent = {}
        self.talking = {}

    def __len__(self):
        return len(self.silent) + len(self.talking)

    def add(self, c):
        self.silent[c] = None

    def heard(self, c):
        if c in self.silent:
            del self.silent[c]
            self.talking[c] = None

    def discard(self, c):
        self.silent.pop(c, None)
        self.talking.pop(c, None)

    def victim(self):
        for c in self.silent:
            return c
        for c in self.talking:
            return c
        return None


class _LogBudget:
    """How many lines a peer may put in the log: a token bucket per peer
    (burst, then per_s lines a second) inside one for all peers (a flood
    from many addresses is bounded too). Refused lines are counted and
    summed up per peer every few seconds by flush(). Counters are never
    limited, only log lines."""

    def __init__(self, clock, burst, per_s, total_per_s, max_peers=4096):
        self.clock = clock
        self.burst = burst
        self.per_s = per_s
        self.total_per_s = total_per_s
        self.max_peers = max_peers
        self.peers = {}  # peer -> [tokens, time of last refill]
        self.total = [max(burst, total_per_s * 5), None]
        self.suppressed = collections.Counter()
        self.suppressed_total = 0

    def allow(self, peer):
        now = self.clock()
        b = self.peers.get(peer)
        if b is None:
            if len(self.peers) >= self.max_peers:  # forget the peer seen first
                del self.peers[next(iter(self.peers))]
            b = self.peers[peer] = [float(self.burst), now]
        else:
            b[0] = min(float(self.burst), b[0] + (now - b[1]) * self.per_s)
            b[1] = now
        t = self.total
        cap = max(self.burst, self.total_per_s * 5)
        t[0] = cap if t[1] is None else min(cap, t[0] + (now - t[1]) * self.total_per_s)
        t[1] = now
        if b[0] >= 1.0 and t[0] >= 1.0:
            b[0] -= 1.0
            t[0] -= 1.0
            return True
        if len(self.suppressed) < self.max_peers or peer in self.suppressed:
            self.suppressed[peer] += 1
        self.suppressed_total += 1
        return False

    def flush(self):
        """One line per peer whose lines were held back since the last flush
        (at most 20 peers named, then a total)."""
        if not self.suppressed:
            return
        top = self.suppressed.most_common(20)
        for peer, n in top:
            log.warning("%d log line(s) about %s held back (log budget: %d, then %.1f a second)",
                        n, core._printable(peer), self.burst, self.per_s)
        if len(self.suppressed) > len(top):
            log.warning("and %d line(s) about %d other peer(s)", sum(self.suppressed.values()) - sum(n for _, n in top),
                        len(self.suppressed) - len(top))
        self.suppressed.clear()


class _Conn(asyncio.BufferedProtocol):
    """One device connection: deframes, queues frames for the batch, writes
    the ACKs it is given back, in order. Deadlines are enforced by the
    server's sweeper through `until` / `why`."""

    # set by connection_made, which asyncio calls before any other method;
    # the server reaches a connection only through the pools it joins there
    transport: asyncio.Transport

    def __init__(self, server):
        self.s = server
        self.ip = "?"
        self.until = 0.0
        self.why = ""
        self.auth_until = 0.0
        self.verified = False
        self.heard = False
        self.expired = False
        self.closed = True
        self.queue = []  # whole frames waiting for a batch
        self.queued = False  # in the server's ready queue
        self.inflight = 0  # frames queued or in a batch, without an Outcome yet
        self.rejects = 0
        self.paused = False
        self.doomed = None  # (reason, detail): close once the frames in flight are answered
        self._saved = None
        self.deframer = stream.Deframer(server.limits.max_frame)

    def connection_made(self, transport):
        s = self.s
        # a stream server's transport (create_server) is always a Transport:
        # it reads, writes and pauses, which BaseTransport does not promise
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.ip = peer[0] if peer else "?"
        if not s._admit(self):
            s._count(C_FULL, self.ip)
            transport.abort()
            return
        self.closed = False
        s._conns += 1
        s.counters["connections"] += 1
        now = s._now()
        self.auth_until = now + s.limits.auth_deadline
        self.until, self.why = self.auth_until, C_AUTH
        s._live.add(self)
        s._unverified(self.ip).add(self)
        s._pre_all.add(self)

    def connection_lost(self, exc):
        if self.closed:
            return
        s = self.s
        left = self.deframer.pending()
        if left and not self.deframer.broken:
            s._count(C_MIDFRAME, self.ip, "%d byte(s) of a frame" % left, closed_by="peer")
        if exc is not None:
            s.counters[C_RESET] += 1
        self._forget()

    def _forget(self):
        """Out of every count and pool (the queue stays: frames a peer sent
        before it hung up are still verified and stored)."""
        self.closed = True
        s = self.s
        s._live.discard(self)
        s._conns -= 1
        if not self.verified:
            s._drop_unverified(self)

    def close(self, reason=None, detail=""):
        """Close from our side: count and log the reason; frames still
        queued from this connection are dropped unverified."""
        if self.closed:
            return
        if reason:
            self.s._count(reason, self.ip, detail)
        self._forget()
        self.inflight -= len(self.queue)
        self.queue = []
        self.transport.abort()

    def get_buffer(self, sizehint):
        return self.s._read_view

    def buffer_updated(self, nbytes):
        """Bytes read into the server's shared read buffer (see Server):
        used at once, before the loop reads any other connection."""
        if self.closed or self.expired:
            return
        if not self.heard:
            self.heard = True
            if not self.verified:
                self.s._heard(self)
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
            self.close(C_LENGTH, str(e))
            return
        if self.deframer.broken is None:
            self._got(frames)
            return
        # frames completed before the bad prefix are handled and ACKed first
        self._got(frames)
        self.doomed = (C_LENGTH, self.deframer.broken)
        self.transport.pause_reading()
        self.paused = True

    def _got(self, frames):
        s = self.s
        lim = s.limits
        if self.why != C_WRITE:
            if self.deframer.pending():
                if frames or self.why != C_READ:  # a new frame has started: it must finish in time
                    self.until, self.why = s._now() + lim.frame_deadline, C_READ
                    if not self.verified and self.auth_until < self.until:
                        self.until, self.why = self.auth_until, C_AUTH
            elif self.verified:
                self.until, self.why = s._now() + lim.idle_timeout, C_IDLE
            else:
                self.until, self.why = self.auth_until, C_AUTH
        if not frames:
            return
        if len(frames) == 1:
            self.queue.append(frames[0])
        else:
            self.queue.extend(frames)
        self.inflight += len(frames)
        if not self.queued:
            self.queued = True
            s._ready.append(self)
            s._wake.set()
        if self.inflight > (_MAX_INFLIGHT if self.verified else lim.max_rejects_per_conn) and not self.paused:
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
        status = out.status
        if status == core.ACCEPTED:
            if not self.verified:
                self.s._verified(self)
        elif status == core.REJECTED:
            self.rejects += 1
            if self.rejects >= self.s.limits.max_rejects_per_conn:
                self.close(C_REJECTS)
                return
        if self.doomed is not None:
            if not self.inflight:
                self.close(*self.doomed)
            return
        if self.paused and self.inflight <= (_MAX_INFLIGHT if self.verified else self.s.limits.max_rejects_per_conn) // 2:
            self.paused = False
            self.transport.resume_reading()

    def pause_writing(self):  # the peer does not read its ACKs: give it write_timeout
        self._saved = (self.until, self.why)
        self.until, self.why = self.s._now() + self.s.limits.write_timeout, C_WRITE

    def resume_writing(self):
        if self._saved is not None:
            self.until, self.why = self._saved
            self._saved = None


class Server:
    # made by start() on the running loop; nothing reads them before it
    _loop: asyncio.AbstractEventLoop
    _wake: asyncio.Event  # frames are queued
    _store_lock: asyncio.Lock  # one store user at a time (batch, SMS, tick)

    def __init__(self, receiver, limits=None, supervise_every=30.0, leader=None):
        # cli.py binds the sockets before it opens the store, so it makes
        # the Server with None and sets the receiver before start()
        self.receiver: core.Receiver = receiver
        # leader.Leader on a PostgreSQL store with several nodes: supervision
        # and forwarding run only while it is held. None: this node leads.
        self.leader = leader
        self.leading = leader is None
        self._leader_thread = None
        self._forward_wake = None  # the leader's LISTEN panic_forward task
        self.limits = limits or Limits()
        self.supervise_every = supervise_every
        self.counters = collections.Counter()  # connection-level; frame-level live in receiver.counters
        self._live = set()
        self._conns = 0
        self._pre = {}  # peer address -> _Pool of its unverified connections
        self._pre_all = _Pool()  # every unverified connection
        # One read buffer for every device connection: asyncio's plain
        # Protocol path allocates a 256 KiB bytes object for every recv(),
        # which cost more than verifying the frame. The loop calls
        # get_buffer, recv_into and buffer_updated back to back, and
        # buffer_updated copies out what it keeps, so one buffer serves all.
        self._read_buf = bytearray(16384)
        self._read_view = memoryview(self._read_buf)
        self._ready = collections.deque()  # connections with queued frames, in turn
        self._committer = None  # the one thread that waits for COMMIT (the disk)
        self._servers = []
        self._tasks = []
        self._tcp_socks = []
        self._http_socks = []
        self._logs: _LogBudget | None = None
        self.tcp_address = None
        self.http_address = None
        self.forwarder = None  # receiver/forward/: runs only when forward targets are configured

    # ------------------------------------------------------------ lifecycle

    def bind(self, host, port, http=None):
        """Make the listening sockets now (start() serves them). Raises
        OSError naming the address; nothing is left open then."""
        tcp = bind(host, port)
        try:
            hs = bind(http[0], http[1]) if http is not None else []
        except BaseException:
            for s in tcp:
                s.close()
            raise
        self._tcp_socks, self._http_socks = tcp, hs

    def unbind(self):
        """Close sockets made by bind() that start() never served."""
        for s in self._tcp_socks + self._http_socks:
            s.close()
        self._tcp_socks, self._http_socks = [], []

    async def start(self, host=None, port=None, http=None):
        if host is not None:
            self.bind(host, port, http)
        self._loop = asyncio.get_running_loop()
        lim = self.limits
        logs = self._logs = _LogBudget(self._now, lim.log_burst, lim.log_per_s, lim.log_total_per_s)
        self.receiver.may_log = logs.allow
        self._wake = asyncio.Event()
        self._store_lock = asyncio.Lock()
        self._committer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="receiver-commit")
        self._tasks.append(asyncio.create_task(self._flusher()))
        self._tasks.append(asyncio.create_task(self._sweeper(logs)))
        if self.supervise_every:
            self._tasks.append(asyncio.create_task(self._supervisor()))
        leader = self.leader
        if leader is None:
            await self._start_forwarder()
        else:
            self._leader_thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="receiver-leader")
            await self._lead_step(leader)
            self._tasks.append(asyncio.create_task(self._lead(leader)))
        for sock in self._tcp_socks:
            srv = await self._loop.create_server(lambda: _Conn(self), sock=sock, backlog=1024)
            self._servers.append(srv)
            if self.tcp_address is None:
                self.tcp_address = sock.getsockname()[:2]
                log.info("listening tcp %s:%d", *self.tcp_address)
        for sock in self._http_socks:
            hs = await asyncio.start_server(self._http_conn, sock=sock, limit=8192)
            self._servers.append(hs)
            if self.http_address is None:
                self.http_address = sock.getsockname()[:2]
                log.info("listening http %s:%d", *self.http_address)

    async def close(self):
        for s in self._servers:
            s.close()
        for c in list(self._live):
            c.transport.abort()
        for s in self._servers:
            await s.wait_closed()
        if self._forward_wake is not None:
            self._tasks.append(self._forward_wake)
            self._forward_wake = None
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.forwarder is not None:
            await self.forwarder.close()
        if self._committer is not None:
            self._committer.shutdown(wait=True)
        if self._leader_thread is not None and self.leader is not None:
            await self._loop.run_in_executor(self._leader_thread, self.leader.release)
            self._leader_thread.shutdown(wait=True)

    def tasks_alive(self):
        """True while the flusher, the sweeper (and the supervisor) run: a
        task that ended has failed, and the receiver no longer works."""
        return all(not t.done() for t in self._tasks)

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
        if self._logs is not None and self._logs.suppressed_total:
            c["log lines held back"] = self._logs.suppressed_total
        return dict(sorted(c.items()))

    def _count(self, reason, peer, detail="", closed_by="us"):
        self.counters[reason] += 1
        if self._logs is not None and not self._logs.allow(peer):
            return
        log.warning("%s from %s: %s%s", "closed connection" if closed_by == "us" else "connection",
                    core._printable(peer), reason, (" (%s)" % detail) if detail else "")

    def _now(self):
        return self._loop.time()

    # ------------------------------------------------------------ group commit

    def _next_batch(self):
        """Up to max_batch frames, taken from the ready connections in turn;
        from each no more than it may still have rejected (its whole
        remaining budget may be spent in this one batch, and the next batch
        is built only after this one's Outcomes were delivered)."""
        lim = self.limits
        room = lim.max_batch
        items, sinks, again = [], [], []
        ready = self._ready
        while ready and room:  # each connection once per batch
            c = ready.popleft()
            q = c.queue
            k = min(room, len(q), lim.max_rejects_per_conn - c.rejects)
            if k <= 0:  # an empty queue; or a connection at its limit (closed, its queue dropped)
                c.queued = False
                continue
            ip = c.ip
            for raw in q[:k]:
                items.append((raw, "tcp", ip))
            sinks.extend([c] * k)
            del q[:k]
            room -= k
            if q:
                again.append(c)  # behind every connection still waiting: turns are fair
            else:
                c.queued = False
        ready.extend(again)
        return items, sinks

    async def _flusher(self):
        """The group-commit loop: the frames that arrived since the last
        batch (see _next_batch) are verified and written in one transaction
        on the loop; the COMMIT (the fsync) runs on the committer thread
        while the loop keeps reading sockets, so what arrives meanwhile is
        the next batch (bigger when the disk is slow, one frame when the
        load is light); then, and only if the commit succeeded, each
        connection gets its ACKs."""
        while True:
            if not self._ready:
                self._wake.clear()
                await self._wake.wait()
                continue
            items, sinks = self._next_batch()
            if not items:
                continue
            async with self._store_lock:
                outs = await self._group_commit(items)
            self.counters["batches"] += 1
            for sink, o in zip(sinks, outs, strict=True):
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

    async def _lead(self, leader):
        """Every leader.every seconds, one leader step (the first ran in
        start(), so a lone node leads before it takes its first frame)."""
        while True:
            await asyncio.sleep(leader.every)
            await self._lead_step(leader)

    async def _lead_step(self, leader):
        """One leader.step() off the loop; the once-per-centre work
        (supervision, the forwarder) starts when this node takes the lock
        and stops when it loses it (leader.py)."""
        held = await self._loop.run_in_executor(self._leader_thread, leader.step)
        if held and not self.leading:
            self.leading = True
            self.counters["leader taken"] += 1
            log.info("leading: supervision and forwarding run on this node")
            await self._start_forwarder()
            if self.forwarder is not None and self._forward_wake is None:
                self._forward_wake = asyncio.create_task(self._forward_wakeups())
        elif not held and self.leading:
            self.leading = False
            self.counters["leader lost"] += 1
            log.warning("no longer leading: supervision and forwarding stopped on this node")
            fw, self.forwarder = self.forwarder, None
            if self._forward_wake is not None:
                self._forward_wake.cancel()
                self._forward_wake = None
            if self.receiver.outbox is not None:
                self.receiver.outbox.on_queued = None
            if fw is not None:
                await fw.close()

    async def _forward_wakeups(self):
        """On the leader: a batch committed on any node that queued
        forward messages sends NOTIFY panic_forward; this wakes the
        forwarder at once (without it, a message queued on another node
        would wait for the forwarder's next idle poll)."""
        from receiver import store_pg

        listener = store_pg.Listener(self.receiver.store.url, store_pg.FORWARD_CHANNEL)
        pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="receiver-forward-listen")
        try:
            while True:
                woke = await self._loop.run_in_executor(pool, listener.wait, 1.0)
                if woke and self.forwarder is not None:
                    self.forwarder.kick()
        finally:
            pool.submit(listener.close)
            pool.shutdown(wait=False)

    async def _supervisor(self):
        while True:
            await asyncio.sleep(self.supervise_every)
            if not self.leading:
                continue
            try:
                await self._store_call(self.receiver.tick)
            except Exception as e:
                log.error("supervision tick failed: %s", e.__class__.__name__)

    async def _sweeper(self, logs):
        """Deadlines for every connection, checked by one task instead of a
        timer per read (cheaper per frame; a deadline fires within `step`).
        An unverified connection whose frames are being verified is given
        their verdict first. Every few seconds it also writes the lines the
        log budget held back."""
        lim = self.limits
        step = max(0.05, min(1.0, lim.frame_deadline / 4, lim.idle_timeout / 4, lim.auth_deadline / 4))
        n = 0
        while True:
            await asyncio.sleep(step)
            now = self._now()
            for c in [c for c in self._live if now > c.until and not c.expired]:
                if c.why == C_AUTH and c.inflight:
                    continue
                c.expired = True
                c.close(c.why)
            n += 1
            if n * step >= 5.0:
                n = 0
                logs.flush()

    # ------------------------------------------------------------ TCP admission

    def _unverified(self, ip):
        p = self._pre.get(ip)
        if p is None:
            p = self._pre[ip] = _Pool()
        return p

    def _drop_unverified(self, c):
        p = self._pre.get(c.ip)
        if p is not None:
            p.discard(c)
            if not p:
                del self._pre[c.ip]
        self._pre_all.discard(c)

    def _heard(self, c):
        p = self._pre.get(c.ip)
        if p is not None:
            p.heard(c)
        self._pre_all.heard(c)

    def _verified(self, c):
        """The connection delivered an accepted frame: it no longer counts
        against its peer's limit and may idle for idle_timeout."""
        c.verified = True
        self._drop_unverified(c)
        if c.why == C_AUTH:
            c.until, c.why = self._now() + self.limits.idle_timeout, C_IDLE

    def _admit(self, c):
        """Make room for a new connection from c.ip (evicting an unverified
        one if its peer, or the server, is full); False if every connection
        is verified and the server is full."""
        lim = self.limits
        p = self._pre.get(c.ip)
        if p is not None and len(p) >= lim.max_conns_per_peer:
            v = p.victim()
            v.close(C_EVICTED, "%d unverified connections from this address" % len(p))
        if self._conns >= lim.max_conns:
            v = self._pre_all.victim()
            if v is None:
                return False
            v.close(C_EVICTED, "the receiver is at %d connections" % self._conns)
        return True

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
        except Exception as e:  # a bug: answer, count, and keep serving
            self.counters["http internal error"] += 1
            log.exception("http request from %s failed: %s", core._printable(ip), e.__class__.__name__)
            code, body = 500, {"error": "internal error"}
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
        if "transfer-encoding" in headers:
            self.counters["http malformed"] += 1
            return 400, {"error": "Transfer-Encoding is not accepted: send Content-Length"}
        n = headers.get("content-length", "")
        if not (n.isascii() and n.isdigit()):
            return 411, {"error": "Content-Length required"}
        if len(n) > 9 or int(n) > self.limits.http_max_body:
            self.counters["http body too large"] += 1
            return 413, {"error": "body too large (at most %d bytes)" % self.limits.http_max_body}
        body = await reader.readexactly(int(n))
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        form, why = parse_sms_body(body, ctype, self.limits)
        if form is None:
            self.counters["http malformed"] += 1
            return 400, {"error": why}
        sender = _first(form, ("from", "From", "sender", "msisdn"))
        text = _first(form, ("text", "Text", "Body", "body", "message"))
        if not isinstance(sender, str) or not isinstance(text, str) or not sender or not text:
            self.counters["http malformed"] += 1
            return 400, {"error": "need 'from' and 'text'"}
        out = await self._store_call(self.receiver.handle_sms, sender, text)
        res = {"status": out.status, "reason": out.reason, "device_id": out.device_id, "seq": out.seq,
               "reply": out.sms_reply()}
        if out.status in (core.ACCEPTED, core.DUPLICATE_S):
            return 200, res
        if out.status == core.ERROR:
            return 503, res
        if out.reason == core.R_SENDER:
            res["error"] = "'from': %s" % core.sender_problem(sender)
            return 400, res
        return 422, res


def json_depth(data):
    """The deepest nesting of [ and { in JSON text (bytes), outside strings:
    checked before json.loads, whose recursion a few thousand brackets
    exhaust (issue 15, D7)."""
    depth = deepest = 0
    in_str = esc = False
    for b in data:
        if in_str:
            if esc:
                esc = False
            elif b == 0x5C:  # backslash
                esc = True
            elif b == 0x22:
                in_str = False
        elif b == 0x22:
            in_str = True
        elif b == 0x5B or b == 0x7B:
            depth += 1
            if depth > deepest:
                deepest = depth
        elif b == 0x5D or b == 0x7D:
            depth -= 1
    return deepest


def parse_sms_body(body, ctype, limits):
    """(form dict, None) or (None, why): a JSON object or a URL-encoded
    form, with the nesting depth and the number of fields bounded."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None, "body is not UTF-8"
    if ctype == "application/json":
        if json_depth(body) > limits.http_max_depth:
            return None, "JSON nests deeper than %d levels" % limits.http_max_depth
        try:
            form = json.loads(text)
        except (ValueError, RecursionError):
            return None, "body does not parse as JSON"
        if not isinstance(form, dict):
            return None, "body must be a JSON object"
        return form, None
    try:
        pairs = urllib.parse.parse_qs(text, strict_parsing=False, max_num_fields=limits.http_max_fields)
    except ValueError:
        return None, "form has more than %d fields" % limits.http_max_fields
    return {k: v[0] for k, v in pairs.items()}, None


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 411: "Length Required",
            413: "Payload Too Large", 422: "Unprocessable Entity", 500: "Internal Server Error",
            503: "Service Unavailable"}


def _first(form, names):
    for n in names:
        if n in form:
            return form[n]
    return None
