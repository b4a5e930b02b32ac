"""Shared helpers for the receiver's host tests: keys, frames, an
in-memory receiver and a client that speaks the TCP framing."""

import os
import socket

from protocol import frame as F
from protocol import stream
from protocol.crypto import DeviceKeys

T0 = 1_800_000_000

# The store the current test runs on (tests/conftest.py sets it for the
# PostgreSQL run of a receiver test; None: SQLite)
STORES = None


class PgNames:
    """Database URLs for one test on the session's PostgreSQL server: one
    database per name (the same name is the same database, as the same file
    name is the same SQLite file); an unnamed one is always new."""

    def __init__(self, databases):
        self.databases = databases
        self.urls = {}
        self.made = []

    def url(self, name=None, exists=True):
        if name is None or name not in self.urls:
            url = self.databases.new() if exists else self.databases.server.url("absent_%d" % len(self.urls))
            self.made.append(url)
            if name is None:
                return url
            self.urls[name] = url
        return self.urls[name]

    def drop(self):
        self.databases.drop(self.made)


def store_path(tmp_path=None, name=None, exists=True):
    """Where the test's store named `name` lives: tmp_path/name on SQLite
    (":memory:" when tmp_path is None), a database of the test's own on
    PostgreSQL (exists=False: one that is never created, as a file name
    that was never written)."""
    if STORES is not None:
        return STORES.url(name if tmp_path is not None or name else None, exists)
    return ":memory:" if tmp_path is None else str(tmp_path / name)


def on_pg():
    return STORES is not None


class Dev:
    """A device as the receiver sees it: id, key, and a seq counter."""

    def __init__(self, device_id, key=None):
        self.id = device_id
        self.key = key or os.urandom(32)
        self.keys = DeviceKeys(self.key)
        self.seq = 0

    def frame(self, ftype=F.ALERT, seq=None, t=T0, **report):
        if seq is None:
            self.seq += 1
            seq = self.seq
        rep = F.Report(**report) if report else F.Report(F.SRC_GNSS, 515007292, -1246254, 5, 2, 80, 20)
        return F.encode(self.keys, F.Frame(ftype, self.id, seq, t, rep))

    def ack(self, raw):
        """Verify an ACK with this device's downlink key; returns the Frame."""
        fr = F.decode(self.keys, raw, F.DOWNLINK)
        assert fr.ftype == F.ACK and fr.device_id == self.id
        return fr


def send_recv(sock, raw, deframer, timeout=5.0):
    sock.settimeout(timeout)
    sock.sendall(stream.pack(raw))
    while True:
        data = sock.recv(4096)
        if not data:
            return None
        got = deframer.feed(data)
        if got:
            return got[0]


def send_until_acked(port, d, raw, timeout=30.0):
    """One frame to a real receiver on 127.0.0.1:port over TCP, a new
    connection per try, until it is ACKed (a device retries so); the ACK
    verified with Dev `d`'s key."""
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                ack = send_recv(s, raw, stream.Deframer(300))
            if ack is not None:
                return d.ack(ack)
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError("frame never ACKed")


def closed_without_reply(sock, timeout=5.0):
    """True if the peer closes the connection without sending a byte."""
    sock.settimeout(timeout)
    try:
        return sock.recv(4096) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


class ServerThread:
    """A receiver Server on an asyncio loop in a background thread, on
    127.0.0.1 with an ephemeral port (and HTTP if asked)."""

    def __init__(self, receiver, limits=None, http=False):
        import asyncio
        import threading

        from receiver.server import Server

        self.server = Server(receiver, limits, supervise_every=0)
        self.loop = asyncio.new_event_loop()
        self._http = http
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        import asyncio

        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.server.start("127.0.0.1", 0, ("127.0.0.1", 0) if self._http else None))
        self._ready.set()
        self.loop.run_forever()

    def __enter__(self):
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc):
        import asyncio

        fut = asyncio.run_coroutine_threadsafe(self.server.close(), self.loop)
        fut.result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    @property
    def port(self):
        return self.server.tcp_address[1]

    @property
    def http_port(self):
        return self.server.http_address[1]

    def counters(self):
        return self.server.all_counters()


def file_receiver(tmp_path, devs, **opts):
    from receiver import core, masterkey
    from receiver import store as S

    st = S.open_store(store_path(tmp_path, "rx.db"), masterkey.MasterKey(os.urandom(32)))
    for d in devs:
        st.add_device(d.id, d.key, "URN %d" % d.id)
    return core.Receiver(st, **opts)


def older_store(tmp_path, mk, version, dev, frames, clock=T0):
    """A store at schema `version` holding what this receiver writes for
    `frames` of Dev `dev`: made in a store of today's schema (the core
    only runs on that), then copied table by table, column by column, into
    a store built by the first `version` migrations. Returned open; read it
    with plain SQL (the store's own queries name today's columns)."""
    from receiver import core
    from receiver import store as S

    made = str(tmp_path / "made.db")
    src = S.open_store(made, mk)
    src.add_device(dev.id, dev.key, "URN %d" % dev.id)
    rx = core.Receiver(src, clock=lambda: clock)
    for raw in frames:
        assert rx.handle_frame(raw)
    src.close()
    real = S.MIGRATIONS
    S.MIGRATIONS = real[:version]
    try:
        old = S.open_store(str(tmp_path / ("v%d.db" % version)), mk)
    finally:
        S.MIGRATIONS = real
    old._db.execute("ATTACH DATABASE ? AS made", (made,))
    with old.transaction():
        tables = [r["name"] for r in old._x("SELECT name FROM main.sqlite_master WHERE type = 'table' AND name NOT IN "
                                            "('schema_version', 'sqlite_sequence')").fetchall()]
        for table in tables:
            cols = ", ".join(r["name"] for r in old._x("PRAGMA main.table_info(%s)" % table).fetchall())
            old._x("INSERT OR REPLACE INTO main.%s (%s) SELECT %s FROM made.%s" % (table, cols, cols, table))
    old._db.execute("DETACH DATABASE made")
    return old
