"""The receiver's store on PostgreSQL: any number of `serve` nodes on one
database (issue 19).

Owns: the connection to PostgreSQL, its schema and migrations, the row
locks that keep the batch path correct when two nodes take the same
device's frames at once, the feed's order across nodes, and the
notifications that wake watchers. Every query of the store is
store.SqliteStore's own method, run through sqldialect.to_pg (see there):
this module only overrides what must differ on a server shared by
several writers.

Durability: a transaction is durable when COMMIT returns (synchronous_commit
on; with a synchronous standby, on two machines: docs/deployment.md), and
the core ACKs only after that, as on SQLite.

Several nodes, one database. The batch's order of work is the same as on
SQLite (verify -> replay window -> store -> commit -> ACK); what changes
is how the window is kept to one writer at a time:
  - load_batch first locks the batch's device rows (SELECT ... ORDER BY
    device_id FOR UPDATE: every writer locks devices in ascending order,
    so two batches cannot deadlock on them), and only then, in new
    statements, reads the devices, their replay windows, latest incidents
    and pending commands. Under READ COMMITTED each statement sees what
    committed before it began, so a batch that waited for the other
    node's lock reads that node's window and frames: the same frame is
    then a duplicate here (ACKed again, raises nothing) and is never
    stored twice. (A read joined into the locking statement would see the
    replay row as it was before the wait.)
  - nothing is cached between transactions: another node may have
    written any row since;
  - an operator command and the supervision tick lock the device rows
    they change the same way (queue_command; list_devices inside a
    transaction, skipping the rows a batch holds: that device is
    reporting), so a stand-down or a "device silent" never races a batch
    into a lost update;
  - a forward target's DC-09 sequence counter is locked (FOR UPDATE)
    before it is read and advanced.
The UNIQUE (device_id, seq) constraint stays the second guard.

The event feed. Ids come from a sequence, so two nodes' transactions can
commit their events out of id order, and a watcher that followed "id >
last" could step past an event that commits a moment later with a smaller
id. Each event row records the transaction that wrote it (tx, xid8), and
the feed hands out only rows whose transaction is older than every
transaction still running (pg_snapshot_xmin of the reading statement's
snapshot): no row can appear later below that horizon, so following
(tx, id) in order never misses or repeats one. Every transaction that adds
events sends NOTIFY panic_events (delivered at COMMIT, to every node and
watcher), and one that queues forward messages NOTIFY panic_forward.

Connections: one per store, autocommit, transactions begun and ended
explicitly (begin / commit_durable / end, as SqliteStore). A connection
that broke (the database restarted or failed over) is replaced at the next
begin() or read; a transaction it was in is lost and reported as a store
error (the frames are not ACKed and the devices retry). List every
database host in the URL (`postgresql://h1,h2/rx?target_session_attrs=
read-write`) and libpq finds the primary after a failover.

Must stay in sync with: store.py (the methods and the schema: the
migrations here create the same tables and columns, version for version,
from version 4 on from store.py's own DDL through sqldialect.ddl_to_pg;
tests/test_pg_store.py compares them), sqldialect.py, docs/deployment.md,
docs/receiver.md (the PostgreSQL sections).
"""

import threading
import time
import urllib.parse
from typing import TYPE_CHECKING

import psycopg
from psycopg import conninfo as _conninfo
from psycopg.rows import DictRow, dict_row, tuple_row

from receiver import sqldialect
from receiver import store as S
from receiver.errors import ReceiverError, Unavailable

if TYPE_CHECKING:
    from receiver import contracts

SCHEMES = ("postgresql://", "postgres://")
FEED_CHANNEL = "panic_events"
FORWARD_CHANNEL = "panic_forward"
_MIGRATE_LOCK = 0x70616E6963_01  # pg_advisory_xact_lock key while migrating ("panic", 1)

MIGRATIONS = [
    # version 1: the tables of SQLite's version 1, in PostgreSQL's types
    # (INTEGER -> BIGINT, REAL -> DOUBLE PRECISION, BLOB -> BYTEA), plus
    # events.tx and its index for the feed (see the module header).
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value BYTEA NOT NULL);
    CREATE TABLE devices (
        device_id BIGINT PRIMARY KEY,
        key_sealed BYTEA NOT NULL,
        person_ref TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('active', 'retired')),
        created DOUBLE PRECISION NOT NULL,
        retired DOUBLE PRECISION,
        heartbeat_s BIGINT,
        last_seen DOUBLE PRECISION,
        last_heartbeat DOUBLE PRECISION,
        battery BIGINT,
        csq BIGINT,
        battery_low BIGINT NOT NULL DEFAULT 0,
        silent BIGINT NOT NULL DEFAULT 0,
        lat_e7 BIGINT, lon_e7 BIGINT, source TEXT, accuracy_m BIGINT, pos_time DOUBLE PRECISION
    );
    CREATE TABLE frames (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        device_id BIGINT NOT NULL,
        seq BIGINT NOT NULL,
        type TEXT NOT NULL,
        frame_time BIGINT NOT NULL,
        arrival DOUBLE PRECISION NOT NULL,
        transport TEXT NOT NULL,
        peer TEXT,
        raw BYTEA NOT NULL,
        decoded TEXT NOT NULL,
        incident_id BIGINT,
        UNIQUE (device_id, seq)
    );
    CREATE TABLE incidents (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        device_id BIGINT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('alert', 'test')),
        state TEXT NOT NULL CHECK (state IN ('open', 'duress', 'cancelled', 'stood_down')),
        duress BIGINT NOT NULL DEFAULT 0,
        opened_at DOUBLE PRECISION NOT NULL,
        opened_seq BIGINT,
        opened_by TEXT NOT NULL,
        closed_at DOUBLE PRECISION,
        closed_seq BIGINT,
        closed_by TEXT,
        updated_at DOUBLE PRECISION NOT NULL,
        last_seq BIGINT,
        lat_e7 BIGINT, lon_e7 BIGINT, source TEXT, accuracy_m BIGINT, pos_time DOUBLE PRECISION,
        battery BIGINT, csq BIGINT
    );
    CREATE INDEX incidents_device ON incidents (device_id, id);
    CREATE TABLE replay (
        device_id BIGINT PRIMARY KEY,
        "window" BYTEA NOT NULL,
        down_seq BIGINT NOT NULL
    );
    CREATE TABLE commands (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        device_id BIGINT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('track', 'stand_down', 'listen_in')),
        value BIGINT,
        queued_at DOUBLE PRECISION NOT NULL,
        actor TEXT NOT NULL,
        delivered_seq BIGINT,
        delivered_at DOUBLE PRECISION
    );
    CREATE INDEX commands_device ON commands (device_id, delivered_seq);
    CREATE TABLE events (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        time DOUBLE PRECISION NOT NULL,
        kind TEXT NOT NULL,
        device_id BIGINT,
        incident_id BIGINT,
        body TEXT NOT NULL,
        tx xid8 NOT NULL DEFAULT pg_current_xact_id()
    );
    CREATE INDEX events_feed ON events (tx, id);
    CREATE TABLE audit (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        time DOUBLE PRECISION NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        device_id BIGINT,
        detail TEXT
    )
    """,
    # version 2: on SQLite, frames and events without AUTOINCREMENT. An
    # identity column never had its cost here: nothing to do, the version
    # is kept so both stores count the same versions.
    "",
    # version 3: forwarding (receiver/forward/), as SQLite's version 3
    """
    CREATE TABLE forward_targets (
        name TEXT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('dc09', 'traccar')),
        config TEXT NOT NULL,
        next_seq BIGINT NOT NULL DEFAULT 1,
        created DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE forward_queue (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        target TEXT NOT NULL,
        created DOUBLE PRECISION NOT NULL,
        event_kind TEXT NOT NULL,
        device_id BIGINT,
        incident_id BIGINT,
        seq BIGINT,
        body TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'refused')),
        attempts BIGINT NOT NULL DEFAULT 0,
        done_at DOUBLE PRECISION,
        via TEXT,
        detail TEXT
    );
    CREATE INDEX forward_queue_state ON forward_queue (target, state, id)
    """,
    # version 4 on (where the person is now and the location database, and
    # whatever store.py adds next): SQLite's own DDL in PostgreSQL's
    # dialect, one for one. A migration that is more than DDL (a table
    # rebuilt, a PRAGMA) fails here loudly, in the tests, and gets its own
    # PostgreSQL text in its place.
] + [sqldialect.ddl_to_pg(m) for m in S.MIGRATIONS[3:]]

# Client settings added to a URL that does not set them: how long a
# connection attempt may take, and TCP keepalives so a database that
# vanished (cut off, not closed) is noticed in seconds, not hours.
CLIENT_DEFAULTS = {
    "connect_timeout": "5",
    "keepalives": "1",
    "keepalives_idle": "5",
    "keepalives_interval": "1",
    "keepalives_count": "3",
    "tcp_user_timeout": "8000",
    "application_name": "panic-receiver",
}


def is_url(path):
    return isinstance(path, str) and path.startswith(SCHEMES)


def redact(url):
    """The URL without its password, for messages and logs."""
    try:
        p = urllib.parse.urlsplit(url)
    except ValueError:
        return "postgresql://..."
    if p.password is None and "password" not in p.query:
        return url
    netloc = p.netloc
    if p.password is not None:
        user, _, hosts = netloc.rpartition("@")
        netloc = "%s:***@%s" % (user.split(":", 1)[0], hosts)
    query = "&".join("password=***" if q.startswith("password=") else q for q in p.query.split("&")) if p.query else ""
    return urllib.parse.urlunsplit((p.scheme, netloc, p.path, query, p.fragment))


def conninfo(url, **extra):
    """The URL with CLIENT_DEFAULTS (and extra) for what it does not set."""
    try:
        have = _conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError as e:
        raise Unavailable("bad store URL %s: %s" % (redact(url), e))
    add = {k: v for k, v in dict(CLIENT_DEFAULTS, **extra).items() if k not in have}
    return _conninfo.make_conninfo(url, **add)


def connect(url, **extra):
    """A psycopg connection (autocommit, rows as dicts), or Unavailable
    naming the URL without its password."""
    try:
        # Connection[DictRow]: the row type the row factory makes (psycopg's
        # connect() is typed by the class it is called on)
        return psycopg.Connection[DictRow].connect(conninfo(url, **extra), autocommit=True, row_factory=dict_row)
    except psycopg.Error as e:
        why = _one_line(e)
        if "database" in why and "does not exist" in why:
            raise Unavailable("no store at %s (the database does not exist)" % redact(url))
        raise Unavailable("cannot open store %s: %s" % (redact(url), why))


def close_quietly(conn):
    """Close a connection that may be broken already; returns None (for
    `self.conn = close_quietly(self.conn)`)."""
    if conn is not None:
        try:
            conn.close()
        except psycopg.Error:
            pass


def one_row(cur):
    """The row of a statement that always returns exactly one (a SELECT of
    expressions or aggregates without FROM or GROUP BY, or an INSERT ...
    RETURNING of one row)."""
    row = cur.fetchone()
    assert row is not None, "a one-row statement returned no row"
    return row


def _one_line(e):
    return " ".join(str(e).split()) or e.__class__.__name__


class _Conn:
    """The connection as SqliteStore's methods use it (execute,
    executemany, close), over psycopg: each statement goes through
    sqldialect.to_pg. Outside a transaction a broken connection is made
    again, once, before the statement runs (a read needs no more); inside
    one the error is the caller's (the transaction is lost)."""

    def __init__(self, store):
        self.store = store
        self.pg: psycopg.Connection[DictRow] | None = None
        self.returning = frozenset()

    @property
    def live(self):
        """The connection open() made (ensure() makes it again after a
        drop()); using the store after close() is our misuse."""
        pg = self.pg
        if pg is None:
            raise ReceiverError("the store's connection is closed (bug)")
        return pg

    def open(self):
        pg = self.pg = connect(self.store.url)
        self.returning = frozenset(r["table_name"] for r in pg.execute(
            "SELECT table_name FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND column_name = 'id' AND is_identity = 'YES'").fetchall())

    def usable(self):
        return self.pg is not None and not self.pg.closed and not self.pg.broken

    def ensure(self):
        if not self.usable():
            self.drop()
            self.open()

    def drop(self):
        self.pg = close_quietly(self.pg)

    def execute(self, sql, args=()):
        q, returning = sqldialect.to_pg(sql, self.returning)
        if not self.store._in_tx:
            self.ensure()
            try:
                return self._run(q, args, returning)
            except psycopg.OperationalError:
                if self.usable():
                    raise
                self.ensure()  # the connection broke: a read outside a transaction is run again, once
                return self._run(q, args, returning)
        return self._run(q, args, returning)

    def _run(self, q, args, returning):
        cur = self.live.execute(q, args or None, prepare=None)
        if returning:
            return _Inserted(one_row(cur)["id"], cur.rowcount)
        return cur

    def executemany(self, sql, rows):
        q, _ = sqldialect.to_pg(sql)
        with self.live.cursor() as cur:
            cur.executemany(q, rows)
            return cur.rowcount

    def close(self):
        self.drop()


class _Inserted:
    """What SQLite's cursor gives after an INSERT: lastrowid, rowcount."""

    __slots__ = ("lastrowid", "rowcount")

    def __init__(self, lastrowid, rowcount):
        self.lastrowid = lastrowid
        self.rowcount = rowcount


class PgStore(S.SqliteStore):
    """The store on PostgreSQL. The same methods, meanings and rows as
    SqliteStore (whose methods it runs), for any number of processes on
    any number of machines. One instance per process, one thread at a
    time, as SqliteStore."""

    def __init__(self, url, master_key=None, clock=time.time, create=True):
        self.url = url
        self.path = redact(url)  # what messages name: never the password
        self._master = master_key
        self._clock = clock
        self._in_tx = False
        self._cache = None
        self._memo = {}  # batch_memo's dicts: one transaction's
        self._lock = threading.RLock()
        self._listen = None
        self._changes = None  # changed_since_last_call's Listener
        self._held = False  # events committed but held back by an older running transaction
        self._db = _Conn(self)
        self._db.open()
        try:
            self._migrate(create)
        except psycopg.Error as e:
            self._db.close()
            raise Unavailable("cannot use store %s: %s" % (self.path, _one_line(e)))
        except BaseException:
            self._db.close()
            raise
        self._db.open()  # again: the migrations may have made the tables with ids
        if master_key is not None:
            self._check_master(master_key)

    # ------------------------------------------------------------ plumbing

    def close(self):
        self._db.close()
        for lis in (self._listen, self._changes):
            if lis is not None:
                lis.close()
        self._listen = self._changes = None

    def _migrate(self, create=True):
        """Apply MIGRATIONS, each in its own transaction under an advisory
        lock, so nodes that start together migrate once."""
        pg = self._db.live
        exists = one_row(pg.execute("SELECT to_regclass('schema_version') IS NOT NULL AS e"))["e"]
        if not exists and not create:
            raise Unavailable("no store at %s (no receiver schema in that database)" % self.path)
        while True:
            with pg.transaction():
                pg.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATE_LOCK,))
                pg.execute("CREATE TABLE IF NOT EXISTS schema_version "
                           "(version BIGINT PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)")
                have = one_row(pg.execute("SELECT COALESCE(MAX(version), 0) AS v FROM schema_version"))["v"]
                if have > len(MIGRATIONS):
                    raise Unavailable("store %s has schema version %d, newer than this receiver (%d)"
                                      % (self.path, have, len(MIGRATIONS)))
                if have == len(MIGRATIONS):
                    return
                v = have + 1
                for stmt in MIGRATIONS[v - 1].split(";"):
                    if stmt.strip():
                        pg.execute(stmt)
                pg.execute("INSERT INTO schema_version VALUES (%s, %s)", (v, self._clock()))

    def end(self, committed):
        try:
            if not committed:
                self._cache = None
                if self._db.usable():
                    try:
                        self._db.live.execute("ROLLBACK")
                    except psycopg.Error:
                        self._db.drop()  # made again at the next begin()
        finally:
            self._in_tx = False
            self._lock.release()

    def begin(self):
        self._lock.acquire()
        if self._in_tx:
            self._lock.release()
            raise ReceiverError("nested store transaction (bug)")
        try:
            self._db.ensure()
            self._db.live.execute("BEGIN")
            self._memo = {}
        except BaseException:
            self._lock.release()
            raise
        self._in_tx = True

    # ------------------------------------------------------------ batch access (locks instead of a cache)

    def _lock_devices(self, device_ids):
        """Lock the device rows in ascending order (every writer does), for
        the rest of the transaction."""
        self._x("SELECT device_id FROM devices WHERE device_id = ANY(?::bigint[]) ORDER BY device_id FOR UPDATE",
                (sorted(device_ids),)).fetchall()

    def load_batch(self, device_ids):
        """As SqliteStore.load_batch, with the device rows locked first and
        everything read after the lock (see the module header); fresh rows
        every batch."""
        if not self._in_tx:
            self._write("bug")
        ids = sorted(device_ids)
        devices, incs, pending = {}, {}, set()
        if not ids:
            return devices, incs, pending
        self._lock_devices(ids)
        cols = ", ".join("d." + x.strip() for x in S._DEVICE_COLS.split(","))
        for r in self._x("SELECT %s, r.window AS window, r.down_seq AS down_seq FROM devices d LEFT JOIN replay r "
                         "ON r.device_id = d.device_id WHERE d.device_id = ANY(?::bigint[])" % cols, (ids,)).fetchall():
            devices[r["device_id"]] = r
        for i in self._x("SELECT %s FROM incidents WHERE id IN (SELECT MAX(id) FROM incidents "
                         "WHERE device_id = ANY(?::bigint[]) GROUP BY device_id, kind)" % S._INCIDENT_COLS,
                         (ids,)).fetchall():
            incs[(i["device_id"], i["kind"])] = i
        pending.update(r["device_id"] for r in self._x(
            "SELECT DISTINCT device_id FROM commands WHERE delivered_seq IS NULL AND device_id = ANY(?::bigint[])",
            (ids,)).fetchall())
        return devices, incs, pending

    def keys_for(self, device_ids):
        ids = sorted(device_ids)
        if not ids:
            return {}
        return {r["device_id"]: (r["status"], r["key_sealed"]) for r in self._x(
            "SELECT device_id, status, key_sealed FROM devices WHERE device_id = ANY(?::bigint[])", (ids,)).fetchall()}

    def _valid_cache(self):
        raise ReceiverError("the PostgreSQL store keeps no row cache (bug)")

    def drop_cache(self):
        self._cache = None

    def list_devices(self):
        """Inside a transaction (the supervision tick) the rows are locked:
        a device that reports while the tick runs is not marked silent on
        a stale last_seen. Rows a batch holds are skipped (SKIP LOCKED):
        that device is reporting now, and the tick never waits for a batch
        (the next tick sees the row again)."""
        lock = " FOR UPDATE SKIP LOCKED" if self._in_tx else ""
        return self._x("SELECT %s FROM devices ORDER BY device_id%s" % (S._DEVICE_COLS, lock)).fetchall()

    def queue_command(self, device_id, kind, value=None, actor=None):
        with self.maybe_transaction():
            self._lock_devices([device_id])
            return super().queue_command(device_id, kind, value, actor)

    # ------------------------------------------------------------ the location database (receiver/locations.py)
    #
    # SQLite's INSERT OR REPLACE is an upsert on the primary key here;
    # lookups return plain tuples as on SQLite; the lookup memo lasts one
    # transaction (another node or an import may change the active sets
    # at any commit, and nothing here is told).

    _CELL_UPSERT = ("INSERT INTO cells VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (mcc, net, area, cell, radio, set_id) DO UPDATE SET lat_e7 = EXCLUDED.lat_e7, "
                    "lon_e7 = EXCLUDED.lon_e7, range_m = EXCLUDED.range_m, samples = EXCLUDED.samples, "
                    "updated = EXCLUDED.updated")
    _WIFI_UPSERT = ("INSERT INTO wifi_aps VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (bssid, set_id) DO UPDATE SET "
                    "lat_e7 = EXCLUDED.lat_e7, lon_e7 = EXCLUDED.lon_e7, range_m = EXCLUDED.range_m, "
                    "surveyed = EXCLUDED.surveyed")

    def insert_cells(self, rows):
        if not self._in_tx:
            self._write("bug")
        with self._db.live.cursor() as cur:
            cur.executemany(self._CELL_UPSERT, rows)

    def insert_wifi_aps(self, rows):
        if not self._in_tx:
            self._write("bug")
        with self._db.live.cursor() as cur:
            cur.executemany(self._WIFI_UPSERT, rows)

    def _tuples(self, sql, args):
        if not self._in_tx:
            self._db.ensure()
        with self._db.live.cursor(row_factory=tuple_row) as cur:
            return cur.execute(sql, args, prepare=True).fetchall()

    def cell_rows(self, mcc, net, area, cell):
        return self._tuples("SELECT lat_e7, lon_e7, range_m, samples, set_id, radio FROM cells WHERE mcc = %s "
                            "AND net = %s AND area = %s AND cell = %s", (mcc, net, area, cell))

    def wifi_rows(self, bssid):
        return self._tuples("SELECT lat_e7, lon_e7, range_m, surveyed, set_id FROM wifi_aps WHERE bssid = %s", (bssid,))

    def batch_memo(self, name):
        m = self._memo.get(name)
        if m is None:
            m = self._memo[name] = {}
        return m

    # ------------------------------------------------------------ events: the feed and its notifications

    def add_events(self, rows):
        rows = list(rows)
        if rows:
            super().add_events(rows)
            self._x("NOTIFY %s" % FEED_CHANNEL)

    def add_event(self, event):
        eid = super().add_event(event)
        self._x("NOTIFY %s" % FEED_CHANNEL)
        return eid

    def feed_start(self, from_start=False):
        """A feed cursor: before every stored event, or after every event
        committed so far."""
        if from_start:
            return (0, 0)
        r = self._x("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS h").fetchone()
        return (r["h"] - 1, 1 << 62)

    def feed_after(self, cursor, limit=1000):
        """(events, cursor): the events after `cursor` whose transactions
        are older than every transaction still running, in (tx, id) order
        (see the module header); each event once, none skipped."""
        tx, eid = cursor
        rows = self._x(
            "SELECT id, tx::text::bigint AS tx, body FROM events "
            "WHERE tx < pg_snapshot_xmin(pg_current_snapshot()) AND (tx, id) > (?::text::xid8, ?) "
            "ORDER BY tx, id LIMIT ?", (str(tx), eid, limit)).fetchall()
        out = []
        for r in rows:
            out.append(_event(r))
            cursor = (r["tx"], r["id"])
        return out, cursor

    # The console's live feed (receiver/console/live.py) follows the same
    # (transaction, id) cursor as feed_after: ids from two nodes can commit
    # out of order, and an id cursor would step past one committed late.

    def feed_cursor(self):
        return self.feed_start()

    @staticmethod
    def cursor_text(cursor):
        return "%d.%d" % cursor

    @staticmethod
    def cursor_from_text(text):
        tx, dot, eid = text.partition(".") if isinstance(text, str) else ("", "", "")
        if not (dot and tx.isascii() and tx.isdigit() and eid.isascii() and eid.isdigit() and len(text) <= 40):
            raise ValueError("not a feed cursor")
        return (int(tx), int(eid))

    def events_raw_after(self, after, upto=None, limit=2000):
        """As the SQLite store's, for cursors (transaction, id): only
        events whose transaction is older than every one still running, in
        (transaction, id) order, so none is skipped or repeated."""
        tx, eid = after
        sql = ("SELECT id, tx::text::bigint AS tx, kind, incident_id, body FROM events "
               "WHERE tx < pg_snapshot_xmin(pg_current_snapshot()) AND (tx, id) > (?::text::xid8, ?)")
        args = [str(tx), eid]
        if upto is not None:
            sql += " AND (tx, id) <= (?::text::xid8, ?)"
            args += [str(upto[0]), upto[1]]
        sql += " ORDER BY tx, id LIMIT ?"
        args.append(limit)
        rows = [((r["tx"], r["id"]), r["kind"], r["incident_id"], r["body"]) for r in self._x(sql, tuple(args)).fetchall()]
        if upto is None and len(rows) < limit:
            # events already committed behind a transaction still running
            # (one that adds none sends no NOTIFY when it ends): the next
            # changed_since_last_call() says so, so the reader looks again
            last = rows[-1][0] if rows else after
            self._held = self._x(
                "SELECT 1 FROM events WHERE tx >= pg_snapshot_xmin(pg_current_snapshot()) "
                "AND (tx, id) > (?::text::xid8, ?) LIMIT 1", (str(last[0]), last[1])).fetchone() is not None
        return rows

    def changed_since_last_call(self):
        """True when a transaction that added events has committed since
        the last call, on any node (NOTIFY panic_events: every batch and
        every console change adds events); the first call, and any call
        after the listening connection broke, answers True. (SQLite's
        answers from PRAGMA data_version, for other connections only;
        here the store's own commits count too: one look more.)"""
        if self._changes is None:
            self._changes = Listener(self.url, FEED_CHANNEL)
        return self._changes.pending() or self._held

    def wait_events(self, timeout):
        """Block until a transaction that added events commits (on any
        node), or `timeout` seconds pass. True if woken by one. A watcher
        polls after it either way, so a lost connection only costs the
        timeout."""
        if self._listen is None:
            self._listen = Listener(self.url, FEED_CHANNEL)
        return self._listen.wait(timeout)

    # ------------------------------------------------------------ forwarding: the sequence counter is locked

    def _lock_targets(self, names):
        if names:
            self._x("SELECT name FROM forward_targets WHERE name = ANY(?::text[]) ORDER BY name FOR UPDATE",
                    (sorted(names),)).fetchall()

    def forward_enqueue(self, rows, seq_targets=()):
        rows = list(rows)
        if not self._in_tx:
            self._write("bug")
        self._lock_targets({r[0] for r in rows} & set(seq_targets))
        super().forward_enqueue(rows, seq_targets)
        if rows:
            self._x("NOTIFY %s" % FORWARD_CHANNEL)

    def forward_take_seq(self, target):
        self._lock_targets([target])
        return super().forward_take_seq(target)


class Listener:
    """A connection of its own, LISTENing on one channel: wait(timeout)
    blocks until a NOTIFY on it (sent at COMMIT by any node) or the
    timeout; True if woken. A broken connection is made again at the next
    wait; meanwhile wait sleeps out its timeout and returns False, so a
    caller that polls after every wait loses nothing but latency. Used
    from one thread at a time (not the store's)."""

    def __init__(self, url, channel):
        self.url = url
        self.channel = channel
        self._conn = None

    def pending(self):
        """Whether any NOTIFY arrived since the last call (all are taken),
        without waiting; True too when the connection broke (a caller
        must then look: something may have been missed)."""
        try:
            if self._conn is None or self._conn.closed or self._conn.broken:
                self.close()
                self._conn = connect(self.url)
                self._conn.execute("LISTEN %s" % self.channel)
                return True
            return bool(list(self._conn.notifies(timeout=0)))
        except (psycopg.Error, Unavailable):
            self.close()
            return True

    def wait(self, timeout):
        try:
            if self._conn is None or self._conn.closed or self._conn.broken:
                self.close()
                self._conn = connect(self.url)
                self._conn.execute("LISTEN %s" % self.channel)
            return any(True for _ in self._conn.notifies(timeout=timeout, stop_after=1))
        except (psycopg.Error, Unavailable):
            self.close()
            time.sleep(timeout)
            return False

    def close(self):
        self._conn = close_quietly(self._conn)


def _event(r):
    import json

    e = json.loads(r["body"])
    e["event_id"] = r["id"]
    return e


if TYPE_CHECKING:  # the contracts PgStore keeps (receiver/contracts.py), proved by pyright
    def _keeps(s: PgStore) -> tuple[contracts.CoreStore, contracts.StoreSection, contracts.FeedStore]:
        return s, s, s
