"""The receiver's store: a small repository interface and its SQLite form.

Owns: every byte the receiver keeps (devices and their sealed keys, frames
as evidence, incidents, replay windows, downlink counters, pending operator
commands, the event feed and the audit log) and the schema migrations.
Never decides anything: the rules live in core.py; the store only reads and
writes rows, inside transactions the core opens.

Durability: SQLite in WAL mode with synchronous=FULL, so a transaction is
on disk when commit() returns; the core sends an ACK only after that. Writes
happen only inside `with store.transaction():` (BEGIN IMMEDIATE ... COMMIT,
rolled back on any exception). `frames` has UNIQUE(device_id, seq): even if
a replay window were lost, a frame cannot be stored twice.

Hot path: load_batch / keys_for / insert_frames / add_events / save_* do
a whole group commit in three reads and one executemany per table. Rows
are cached between batches and dropped on any other write through this
store, on rollback, and whenever another connection (another process: the
`sms`, `command` or `device` commands) has committed, which SQLite reports
through PRAGMA data_version.

Interface for other back ends: the public methods of SqliteStore below
(and of its console section, store_console.ConsoleStore), with the same
meaning. store_pg.PgStore (PostgreSQL, for several receiver nodes) runs
these same methods, their SQL translated by sqldialect.py, so the SQL here
is kept plain: placeholders, INSERT OR IGNORE and lastrowid are
translated; PRAGMAs stay in the methods store_pg overrides.
Files: the database and its -wal and -shm files hold victims' positions
and person references in clear, so they are never readable by other users
(issue 15, D3): a new store is created mode 0600 before SQLite opens it
(SQLite then gives -wal and -shm the database's own mode), and a store
whose files other users can read or write is refused at open with the
chmod that fixes it. A group can be given access on purpose (chgrp and
chmod 640 or 660 on the database); only "other" bits are refused.

Must stay in sync with: docs/receiver.md (schema section), masterkey.py
(sealed key layout), core.py (row meanings), personref.py (the rule that
add_device enforces).
"""

import json
import json.encoder
import operator
import os
import sqlite3
import stat
import threading
import time
from typing import TYPE_CHECKING

from receiver import masterkey, personref
from receiver.store_console import CONSOLE_MIGRATION, ConsoleStore
from receiver.errors import DuplicateDevice, MasterKeyUnavailable, ReceiverError, Unavailable, UnknownDevice

if TYPE_CHECKING:
    from receiver import contracts

ACTIVE = "active"
RETIRED = "retired"

# Incident kinds and states
KIND_ALERT = "alert"
KIND_TEST = "test"
OPEN = "open"          # alert raised, help needed
DURESS = "duress"      # a duress cancel arrived: still open, worse than before
CANCELLED = "cancelled"  # a plain cancel by the user: closed
STOOD_DOWN = "stood_down"  # closed by an operator
OPEN_STATES = (OPEN, DURESS)

# Operator commands
CMD_TRACK = "track"
CMD_STAND_DOWN = "stand_down"
CMD_LISTEN_IN = "listen_in"
COMMANDS = (CMD_TRACK, CMD_STAND_DOWN, CMD_LISTEN_IN)

MIGRATIONS = [
    # version 1
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
    CREATE TABLE devices (
        device_id INTEGER PRIMARY KEY,
        key_sealed BLOB NOT NULL,
        person_ref TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('active', 'retired')),
        created REAL NOT NULL,
        retired REAL,
        heartbeat_s INTEGER,
        last_seen REAL,
        last_heartbeat REAL,
        battery INTEGER,
        csq INTEGER,
        battery_low INTEGER NOT NULL DEFAULT 0,
        silent INTEGER NOT NULL DEFAULT 0,
        lat_e7 INTEGER, lon_e7 INTEGER, source TEXT, accuracy_m INTEGER, pos_time REAL
    );
    CREATE TABLE frames (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        device_id INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        type TEXT NOT NULL,
        frame_time INTEGER NOT NULL,
        arrival REAL NOT NULL,
        transport TEXT NOT NULL,
        peer TEXT,
        raw BLOB NOT NULL,
        decoded TEXT NOT NULL,
        incident_id INTEGER,
        UNIQUE (device_id, seq)
    );
    CREATE TABLE incidents (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        device_id INTEGER NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('alert', 'test')),
        state TEXT NOT NULL CHECK (state IN ('open', 'duress', 'cancelled', 'stood_down')),
        duress INTEGER NOT NULL DEFAULT 0,
        opened_at REAL NOT NULL,
        opened_seq INTEGER,
        opened_by TEXT NOT NULL,
        closed_at REAL,
        closed_seq INTEGER,
        closed_by TEXT,
        updated_at REAL NOT NULL,
        last_seq INTEGER,
        lat_e7 INTEGER, lon_e7 INTEGER, source TEXT, accuracy_m INTEGER, pos_time REAL,
        battery INTEGER, csq INTEGER
    );
    CREATE INDEX incidents_device ON incidents (device_id, id);
    CREATE TABLE replay (
        device_id INTEGER PRIMARY KEY,
        window BLOB NOT NULL,
        down_seq INTEGER NOT NULL
    );
    CREATE TABLE commands (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        device_id INTEGER NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('track', 'stand_down', 'listen_in')),
        value INTEGER,
        queued_at REAL NOT NULL,
        actor TEXT NOT NULL,
        delivered_seq INTEGER,
        delivered_at REAL
    );
    CREATE INDEX commands_device ON commands (device_id, delivered_seq);
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        time REAL NOT NULL,
        kind TEXT NOT NULL,
        device_id INTEGER,
        incident_id INTEGER,
        body TEXT NOT NULL
    );
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        time REAL NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        device_id INTEGER,
        detail TEXT
    );
    """,
    # version 2: frames and events take their ids without AUTOINCREMENT.
    # AUTOINCREMENT reads and rewrites sqlite_sequence for every row (about
    # a third of the cost of inserting one). Without it a new id is the
    # largest id + 1, which only repeats an id if the newest row were
    # deleted, and the receiver never deletes frames (evidence) or events
    # (watchers follow them by id). SQLite cannot drop AUTOINCREMENT from
    # a table, so both are copied into new tables, ids kept.
    """
    CREATE TABLE frames_v2 (
        id INTEGER PRIMARY KEY,
        device_id INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        type TEXT NOT NULL,
        frame_time INTEGER NOT NULL,
        arrival REAL NOT NULL,
        transport TEXT NOT NULL,
        peer TEXT,
        raw BLOB NOT NULL,
        decoded TEXT NOT NULL,
        incident_id INTEGER,
        UNIQUE (device_id, seq)
    );
    INSERT INTO frames_v2 (id, device_id, seq, type, frame_time, arrival, transport, peer, raw, decoded, incident_id)
        SELECT id, device_id, seq, type, frame_time, arrival, transport, peer, raw, decoded, incident_id FROM frames ORDER BY id;
    DROP TABLE frames;
    ALTER TABLE frames_v2 RENAME TO frames;
    CREATE TABLE events_v2 (
        id INTEGER PRIMARY KEY,
        time REAL NOT NULL,
        kind TEXT NOT NULL,
        device_id INTEGER,
        incident_id INTEGER,
        body TEXT NOT NULL
    );
    INSERT INTO events_v2 (id, time, kind, device_id, incident_id, body)
        SELECT id, time, kind, device_id, incident_id, body FROM events ORDER BY id;
    DROP TABLE events;
    ALTER TABLE events_v2 RENAME TO events;
    DELETE FROM sqlite_sequence WHERE name IN ('frames', 'events')
    """,
    # version 3: forwarding to alarm-receiving centres (receiver/forward/).
    # forward_targets: one row per configured ARC (DC-09) or map (Traccar),
    # its settings as JSON and the next DC-09 sequence number.
    # forward_queue: every outgoing message, written in the transaction
    # of the receiver event that causes it, marked only on the peer's
    # answer; `body` is what never changes between attempts (the
    # timestamp, CRC and ciphertext are made at each send).
    """
    CREATE TABLE forward_targets (
        name TEXT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('dc09', 'traccar')),
        config TEXT NOT NULL,
        next_seq INTEGER NOT NULL DEFAULT 1,
        created REAL NOT NULL
    );
    CREATE TABLE forward_queue (
        id INTEGER PRIMARY KEY,
        target TEXT NOT NULL,
        created REAL NOT NULL,
        event_kind TEXT NOT NULL,
        device_id INTEGER,
        incident_id INTEGER,
        seq INTEGER,
        body TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'refused')),
        attempts INTEGER NOT NULL DEFAULT 0,
        done_at REAL,
        via TEXT,
        detail TEXT
    );
    CREATE INDEX forward_queue_state ON forward_queue (target, state, id)
    """,
    # version 4: where the person is now (receiver/estimate.py) and the
    # location database (receiver/locations.py). devices and incidents
    # keep the estimate in their position columns, plus the note it rests
    # on (pos_note: cell id, BSSIDs, data set and licence), the frame that
    # carried it (pos_seq) and every other position as evidence (JSON).
    # location_sets: one row per import; its rows are invisible to lookups
    # until the set is 'active' (one small transaction at the end of the
    # import), so an import is never half-seen and never holds the write
    # lock for long. cells: OpenCellID rows, keyed as lookups ask (the
    # device's TLV has no radio type); wifi_aps: the centre's BSSID survey.
    """
    ALTER TABLE devices ADD COLUMN pos_note TEXT;
    ALTER TABLE devices ADD COLUMN pos_seq INTEGER;
    ALTER TABLE devices ADD COLUMN evidence TEXT;
    ALTER TABLE incidents ADD COLUMN pos_note TEXT;
    ALTER TABLE incidents ADD COLUMN pos_seq INTEGER;
    ALTER TABLE incidents ADD COLUMN evidence TEXT;
    CREATE TABLE location_sets (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('cell', 'wifi')),
        name TEXT NOT NULL,
        licence TEXT,
        file TEXT,
        state TEXT NOT NULL CHECK (state IN ('importing', 'active', 'replaced', 'failed')),
        started REAL NOT NULL,
        finished REAL,
        rows INTEGER NOT NULL DEFAULT 0,
        bad INTEGER NOT NULL DEFAULT 0,
        actor TEXT
    );
    CREATE TABLE cells (
        mcc INTEGER NOT NULL,
        net INTEGER NOT NULL,
        area INTEGER NOT NULL,
        cell INTEGER NOT NULL,
        radio TEXT NOT NULL,
        set_id INTEGER NOT NULL,
        lat_e7 INTEGER NOT NULL,
        lon_e7 INTEGER NOT NULL,
        range_m INTEGER NOT NULL,
        samples INTEGER,
        updated INTEGER,
        PRIMARY KEY (mcc, net, area, cell, radio, set_id)
    ) WITHOUT ROWID;
    CREATE TABLE wifi_aps (
        bssid INTEGER NOT NULL,
        set_id INTEGER NOT NULL,
        lat_e7 INTEGER NOT NULL,
        lon_e7 INTEGER NOT NULL,
        range_m INTEGER NOT NULL,
        surveyed INTEGER,
        PRIMARY KEY (bssid, set_id)
    ) WITHOUT ROWID
    """,
    # version 5: the operator console (receiver/store_console.py): users,
    # sessions, handling (claims, outcomes), incident_actions, escalations,
    # device_info; audit gains peer and incident_id.
    CONSOLE_MIGRATION,
]

_DEVICE_COLS = (
    "device_id, person_ref, status, created, retired, heartbeat_s, last_seen, last_heartbeat, battery, csq, "
    "battery_low, silent, lat_e7, lon_e7, source, accuracy_m, pos_time, pos_note, pos_seq, evidence"
)
_INCIDENT_COLS = (
    "id, device_id, kind, state, duress, opened_at, opened_seq, opened_by, closed_at, closed_seq, closed_by, "
    "updated_at, last_seq, lat_e7, lon_e7, source, accuracy_m, pos_time, pos_note, pos_seq, evidence, battery, csq"
)


def _compact_encoder():
    """json.dumps(obj, separators=(",", ":")) without building an encoder per
    call: one C encoder, made once and reused (json.JSONEncoder.encode makes
    a new one every call, which costs as much as encoding a frame). Output
    is byte-identical; falls back to JSONEncoder where the C accelerator is
    missing."""
    fallback = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode
    make = getattr(json.encoder, "c_make_encoder", None)
    esc = getattr(json.encoder, "c_encode_basestring_ascii", None)
    if make is None or esc is None:
        return fallback

    def default(o):
        raise TypeError("Object of type %s is not JSON serializable" % o.__class__.__name__)

    try:
        enc = make(None, default, esc, None, ":", ",", False, False, True)
        join = "".join
        if join(enc({"a": [1, -2.5, None, True, "\u00e9\n"]}, 0)) != fallback({"a": [1, -2.5, None, True, "\u00e9\n"]}):
            return fallback
    except Exception:  # an interpreter whose private encoder differs
        return fallback

    def encode(obj):
        return join(enc(obj, 0))

    return encode


to_json = _compact_encoder()  # also used by core.py for the decoded-frame column
json_string = getattr(json.encoder, "c_encode_basestring_ascii", None) or json.encoder.encode_basestring_ascii
"""A str as the encoder writes it, quotes included (for core.py's templates)."""
_to_json = to_json


class _Cache:
    """What SqliteStore keeps between batches (load_batch), valid while
    SQLite's data_version is `dv` and dropped whole (see load_batch):
      devices   {device_id: device row + 'window' and 'down_seq'}
      incs      {(device_id, kind): latest incident row}
      pending   device ids with undelivered commands
      loaded    device ids whose rows above are loaded
      keys      {device_id: (status, sealed key) or None} (keys_for)
      memo      batch_memo's dicts, by name
      written   {incident id: its state columns as this store last wrote
                them} (save_incidents), kept beside the rows: the rows
                hold only their columns, for the core to read and change
    """

    __slots__ = ("dv", "devices", "incs", "pending", "loaded", "keys", "memo", "written")

    def __init__(self, dv):
        self.dv = dv
        self.devices = {}
        self.incs = {}
        self.pending = set()
        self.loaded = set()
        self.keys = {}
        self.memo = {}
        self.written = {}


def _new_id(cur) -> int:
    """The id of the row an INSERT just made (the cursor's lastrowid, None
    only before a cursor has inserted anything)."""
    rid = cur.lastrowid
    assert rid is not None, "an INSERT made no row id"
    return rid


def _rowdict(cursor, row):
    return {d[0]: row[i] for i, d in enumerate(cursor.description)}


class SqliteStore(ConsoleStore):
    """The default store. One instance per process; safe to use from one
    thread at a time (the server runs all store work in one worker thread)."""

    def __init__(self, path, master_key=None, clock=time.time):
        self.path = path
        self._master = master_key
        self._clock = clock
        self._in_tx = False
        self._cache: _Cache | None = None
        self._lock = threading.RLock()
        if path not in ("", ":memory:"):
            private_files(path)
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
        except sqlite3.Error as e:
            raise Unavailable("cannot open store %s: %s" % (path, e))
        self._db.row_factory = _rowdict
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA busy_timeout=10000")
            if path == ":memory:":
                self._migrate_memory()
            else:
                self._migrate()
        except sqlite3.DatabaseError as e:
            self._db.close()
            raise Unavailable("cannot use store %s: %s" % (path, e))
        if master_key is not None:
            self._check_master(master_key)

    # ------------------------------------------------------------ plumbing

    def close(self):
        self._db.close()

    def schema_version(self):
        row = self._db.execute("SELECT MAX(version) AS v FROM schema_version").fetchone()
        return row["v"] or 0

    def _migrate_memory(self):
        """A new in-memory store (the simulator opens one per run) is a copy
        of the first one migrated in this process, with its own applied_at:
        the same schema without its ~75 statements each time."""
        global _MEMORY_SCHEMA
        with _MEMORY_LOCK:
            if _MEMORY_SCHEMA is None:
                self._migrate()
                tmpl = sqlite3.connect(":memory:", check_same_thread=False)
                self._db.backup(tmpl)
                _MEMORY_SCHEMA = tmpl
                return
            _MEMORY_SCHEMA.backup(self._db)
        self._db.execute("UPDATE schema_version SET applied_at = ?", (self._clock(),))

    def _migrate(self):
        self._db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)")
        have = self.schema_version()
        if have > len(MIGRATIONS):
            raise Unavailable("store %s has schema version %d, newer than this receiver (%d)" % (self.path, have, len(MIGRATIONS)))
        for v in range(have + 1, len(MIGRATIONS) + 1):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                # executescript would commit on its own; run statements one by one
                for stmt in MIGRATIONS[v - 1].split(";"):
                    if stmt.strip():
                        self._db.execute(stmt)
                self._db.execute("INSERT INTO schema_version VALUES (?, ?)", (v, self._clock()))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def _check_master(self, master):
        """The store opened with the master key `master` (self._master):
        the key it was first opened with, or refused."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'master_check'").fetchone()
        if row is None:
            with self.transaction():
                self._db.execute("INSERT OR IGNORE INTO meta VALUES ('master_check', ?)", (master.check_value(),))
            row = self._db.execute("SELECT value FROM meta WHERE key = 'master_check'").fetchone()
        if not master.matches(row["value"]):
            raise MasterKeyUnavailable("the master key does not match store %s" % self.path)

    def transaction(self):
        return _Tx(self)

    # A transaction in three steps, for a caller that waits for the disk
    # elsewhere (the server runs commit_durable in a worker thread so the
    # event loop keeps reading sockets during the fsync). begin() and end()
    # run on the same thread; between them nothing else may use the store.

    def begin(self):
        """BEGIN IMMEDIATE; the store is this caller's until end()."""
        self._lock.acquire()
        if self._in_tx:
            self._lock.release()
            raise ReceiverError("nested store transaction (bug)")
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._lock.release()
            raise
        self._in_tx = True

    def commit_durable(self):
        """COMMIT: on disk (WAL, synchronous=FULL) when this returns; raises
        if not. Touches only the connection, so it may run on another thread
        while the thread that called begin() waits for it."""
        if not self._in_tx:
            raise ReceiverError("commit outside a transaction (bug)")
        self._db.execute("COMMIT")

    def end(self, committed):
        """Close the transaction begun by begin(): after a successful
        commit_durable (committed=True), or roll it back and drop the row
        cache (the core changed cached rows in place)."""
        try:
            if not committed:
                self._cache = None
                _rollback(self._db)
        finally:
            self._in_tx = False
            self._lock.release()

    def maybe_transaction(self):
        """A transaction, or a no-op when one is already open."""
        return _NoTx() if self._in_tx else _Tx(self)

    def _x(self, sql, args=()):
        return self._db.execute(sql, args)

    def _write(self, sql, args=()):
        """Any write outside the batch path drops the row cache."""
        self._cache = None
        return self._bwrite(sql, args)

    def _bwrite(self, sql, args=()):
        if not self._in_tx:
            raise ReceiverError("store write outside a transaction (bug)")
        return self._db.execute(sql, args)

    def _need_master(self):
        if self._master is None:
            raise MasterKeyUnavailable("this command needs the receiver master key: set %s or pass --master-key-file FILE" % masterkey.ENV)
        return self._master

    # ------------------------------------------------------------ devices

    def add_device(self, device_id, key_bytes, person_ref, heartbeat_s=None, actor=None, via=None):
        """Register a device. Refuses an id already used (even if retired:
        uplink seqs and evidence belong to the old registration) and a
        person reference that breaks personref's rule. The audit row names
        who acted (acting(actor)) and, if given, the command (via)."""
        if not isinstance(device_id, int) or not 0 <= device_id < 1 << 32:
            raise ReceiverError("device id must be an integer 0..4294967295")
        if len(key_bytes) != 32:
            raise ReceiverError("device key must be 32 bytes")
        personref.check(person_ref)
        sealed = self._need_master().seal(device_id, key_bytes)
        with self.transaction():
            if self._x("SELECT 1 FROM devices WHERE device_id = ?", (device_id,)).fetchone():
                raise DuplicateDevice("device %d is already registered" % device_id)
            now = self._clock()
            self._write(
                "INSERT INTO devices (device_id, key_sealed, person_ref, status, created, heartbeat_s) VALUES (?, ?, ?, 'active', ?, ?)",
                (device_id, sealed, person_ref, now, heartbeat_s),
            )
            self.audit(actor, "device add", device_id, "person_ref=%s%s" % (person_ref, " via %s" % via if via else ""))

    def retire_device(self, device_id, actor=None):
        with self.maybe_transaction():
            d = self.get_device(device_id)
            if d is None:
                raise UnknownDevice("device %d is not registered" % device_id)
            if d["status"] == RETIRED:
                return False
            self._write("UPDATE devices SET status = 'retired', retired = ? WHERE device_id = ?", (self._clock(), device_id))
            self.audit(actor, "device retire", device_id, None)
            return True

    def get_device(self, device_id):
        """Device row as a dict without key material, or None."""
        return self._x("SELECT %s FROM devices WHERE device_id = ?" % _DEVICE_COLS, (device_id,)).fetchone()

    def list_devices(self):
        return self._x("SELECT %s FROM devices ORDER BY device_id" % _DEVICE_COLS).fetchall()

    def device_key_sealed(self, device_id):
        """(status, sealed key) or None: what the core needs to verify."""
        row = self._x("SELECT status, key_sealed FROM devices WHERE device_id = ?", (device_id,)).fetchone()
        return None if row is None else (row["status"], row["key_sealed"])

    def open_key(self, device_id, sealed):
        return self._need_master().open(device_id, sealed)

    def device_key(self, device_id):
        """The device's 32-byte key in the clear (for provisioning checks)."""
        r = self.device_key_sealed(device_id)
        if r is None:
            raise UnknownDevice("device %d is not registered" % device_id)
        return self.open_key(device_id, r[1])

    def update_device(self, device_id, **fields):
        cols = ", ".join("%s = ?" % k for k in fields)
        self._write("UPDATE devices SET %s WHERE device_id = ?" % cols, tuple(fields.values()) + (device_id,))

    # ------------------------------------------------------------ frames

    def insert_frame(self, device_id, seq, type_name, frame_time, arrival, transport, peer, raw, decoded, incident_id):
        """Store one verified frame. Returns False if (device_id, seq) is
        already stored (nothing is changed then)."""
        cur = self._write(
            "INSERT OR IGNORE INTO frames (device_id, seq, type, frame_time, arrival, transport, peer, raw, decoded, incident_id) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (device_id, seq, type_name, frame_time, arrival, transport, peer, bytes(raw), json.dumps(decoded, sort_keys=True), incident_id),
        )
        return cur.rowcount == 1

    def has_frame(self, device_id, seq):
        return self._x("SELECT 1 FROM frames WHERE device_id = ? AND seq = ?", (device_id, seq)).fetchone() is not None

    def frames(self, device_id=None):
        if device_id is None:
            return self._x("SELECT * FROM frames ORDER BY id").fetchall()
        return self._x("SELECT * FROM frames WHERE device_id = ? ORDER BY seq", (device_id,)).fetchall()

    def test_frames(self, device_id, since=0):
        """Frames of the device stored since `since` (arrival, Unix s) that
        belong to a *test* incident: what a field self-test looks for.
        Rows: device_id, seq, type, frame_time, arrival, transport,
        incident_id, incident_kind (always "test")."""
        return self._x(
            "SELECT f.device_id, f.seq, f.type, f.frame_time, f.arrival, f.transport, f.incident_id, i.kind AS incident_kind "
            "FROM frames f JOIN incidents i ON i.id = f.incident_id "
            "WHERE f.device_id = ? AND i.kind = ? AND f.arrival >= ? ORDER BY f.seq",
            (device_id, KIND_TEST, since),
        ).fetchall()

    def trail_frames(self, incident_id):
        """The frames of one incident, oldest seq first: seq, type,
        frame_time, arrival, transport, decoded (the frame's JSON). What
        estimate.trail lists every received position from. (Not the
        console's incident_frames, store_console.py: newest first, paged.)"""
        return self._x("SELECT seq, type, frame_time, arrival, transport, decoded FROM frames WHERE incident_id = ? "
                       "ORDER BY seq", (incident_id,)).fetchall()

    def count_frames(self):
        return self._x("SELECT COUNT(*) AS n FROM frames").fetchone()["n"]

    # ------------------------------------------------------------ location database (receiver/locations.py)
    #
    # An import writes its rows under a location_sets row in 'importing'
    # state, in transactions of a few thousand rows (the receiver keeps
    # committing between them), and makes them visible with one UPDATE at
    # the end (activate_location_set). Lookups read the rows of every set
    # and keep those of active sets (the caller holds the active ids).

    def begin_location_set(self, kind, name, licence, file, actor=None):
        with self.maybe_transaction():
            cur = self._write("INSERT INTO location_sets (kind, name, licence, file, state, started, actor) "
                              "VALUES (?, ?, ?, ?, 'importing', ?, ?)", (kind, name, licence, file, self._clock(), acting(actor)))
            return cur.lastrowid

    def insert_cells(self, rows):
        """rows: (mcc, net, area, cell, radio, set_id, lat_e7, lon_e7, range_m, samples, updated), inside
        the caller's transaction; a cell given twice in one set keeps its last row."""
        if not self._in_tx:
            self._write("bug")
        self._db.executemany("INSERT OR REPLACE INTO cells VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)

    def insert_wifi_aps(self, rows):
        """rows: (bssid as int, set_id, lat_e7, lon_e7, range_m, surveyed), inside the caller's transaction."""
        if not self._in_tx:
            self._write("bug")
        self._db.executemany("INSERT OR REPLACE INTO wifi_aps VALUES (?, ?, ?, ?, ?, ?)", rows)

    def activate_location_set(self, set_id, rows, bad, actor=None):
        """Make an imported set visible to lookups, and retire the older
        active sets of the same kind and name (their rows are dropped by
        prune_location_sets). One small transaction."""
        with self.maybe_transaction():
            r = self._x("SELECT kind, name, file FROM location_sets WHERE id = ?", (set_id,)).fetchone()
            if r is None:
                raise ReceiverError("no location set %d" % set_id)
            now = self._clock()
            self._write("UPDATE location_sets SET state = 'replaced', finished = COALESCE(finished, ?) "
                        "WHERE kind = ? AND name = ? AND state = 'active' AND id != ?", (now, r["kind"], r["name"], set_id))
            self._write("UPDATE location_sets SET state = 'active', finished = ?, rows = ?, bad = ? WHERE id = ?",
                        (now, rows, bad, set_id))
            self.audit(actor, "locations import", None, "%s set %d %r from %s: %d rows, %d bad" % (
                r["kind"], set_id, r["name"], r["file"], rows, bad))

    def fail_location_set(self, set_id, rows, bad):
        with self.maybe_transaction():
            self._write("UPDATE location_sets SET state = 'failed', finished = ?, rows = ?, bad = ? "
                        "WHERE id = ? AND state = 'importing'", (self._clock(), rows, bad, set_id))

    def location_sets(self):
        return self._x("SELECT * FROM location_sets ORDER BY id").fetchall()

    def active_location_sets(self):
        """{set_id: (kind, name, licence)} of the sets lookups may use."""
        return {r["id"]: (r["kind"], r["name"], r["licence"]) for r in self._x(
            "SELECT id, kind, name, licence FROM location_sets WHERE state = 'active'").fetchall()}

    def prune_location_sets(self, keep=(), chunk=20000):
        """Delete the rows of sets that are not active (replaced, failed,
        or an import that never finished, other than the ids in `keep`), a
        chunk per transaction. Returns the number of rows deleted."""
        dead = [r["id"] for r in self._x("SELECT id FROM location_sets WHERE state != 'active'").fetchall()
                if r["id"] not in keep]
        n = 0
        for sid in dead:
            for table in ("cells", "wifi_aps"):
                while True:
                    with self.transaction():
                        if table == "cells":
                            cur = self._write(
                                "DELETE FROM cells WHERE (mcc, net, area, cell, radio, set_id) IN (SELECT mcc, net, area, "
                                "cell, radio, set_id FROM cells WHERE set_id = ? LIMIT ?)", (sid, chunk))
                        else:
                            cur = self._write("DELETE FROM wifi_aps WHERE (bssid, set_id) IN (SELECT bssid, set_id FROM "
                                              "wifi_aps WHERE set_id = ? LIMIT ?)", (sid, chunk))
                    n += cur.rowcount
                    if cur.rowcount < chunk:
                        break
        return n

    def location_counts(self):
        """{set_id: rows stored} for every set."""
        out = {}
        for table in ("cells", "wifi_aps"):
            for r in self._x("SELECT set_id, COUNT(*) AS n FROM %s GROUP BY set_id" % table).fetchall():
                out[r["set_id"]] = out.get(r["set_id"], 0) + r["n"]
        return out

    def _lookup_cursor(self):
        cur = getattr(self, "_lk", None)
        if cur is None:
            cur = self._lk = self._db.cursor()
            cur.row_factory = None  # plain tuples: a lookup is a hot path
        return cur

    def cell_rows(self, mcc, net, area, cell):
        """[(lat_e7, lon_e7, range_m, samples, set_id, radio)] of every set."""
        return self._lookup_cursor().execute(
            "SELECT lat_e7, lon_e7, range_m, samples, set_id, radio FROM cells WHERE mcc = ? AND net = ? AND area = ? "
            "AND cell = ?", (mcc, net, area, cell)).fetchall()

    def wifi_rows(self, bssid):
        """[(lat_e7, lon_e7, range_m, surveyed, set_id)] of every set, for one BSSID (an int)."""
        return self._lookup_cursor().execute(
            "SELECT lat_e7, lon_e7, range_m, surveyed, set_id FROM wifi_aps WHERE bssid = ?", (bssid,)).fetchall()

    def batch_memo(self, name):
        """A dict that lives as long as the cached rows (dropped when another
        connection commits, e.g. an import making a set active): for lookups
        worth remembering between batches. Checked against SQLite's
        data_version only when there is no row cache yet: load_batch checks
        it at the start of every batch, and a query per lookup would cost as
        much as the lookup."""
        c = self._cache if self._cache is not None else self._valid_cache()
        m = c.memo.get(name)
        if m is None:
            m = c.memo[name] = {}
        return m

    # ------------------------------------------------------------ batch access (the core's hot path)

    def load_batch(self, device_ids):
        """For a batch of frames, inside its transaction: ({device_id: device
        row + 'window' and 'down_seq'}, {(device_id, kind): latest incident
        row}, set of device ids with undelivered commands).

        The rows are cached between batches and handed out for the core to
        update in place (it writes them back with save_*). The cache is
        dropped when another connection has committed anything (SQLite's
        data_version), on any other write through this store, and on
        rollback, so it never serves a row the database no longer holds."""
        c = self._valid_cache()
        ids = [i for i in device_ids if i not in c.loaded]
        if ids:
            marks = ",".join("?" * len(ids))
            for r in self._x(
                    "SELECT %s, r.window AS window, r.down_seq AS down_seq FROM devices d LEFT JOIN replay r "
                    "ON r.device_id = d.device_id WHERE d.device_id IN (%s)" % (", ".join("d." + x.strip() for x in _DEVICE_COLS.split(",")), marks),
                    ids).fetchall():
                c.devices[r["device_id"]] = r
            for i in self._x(
                    "SELECT %s FROM incidents WHERE id IN (SELECT MAX(id) FROM incidents WHERE device_id IN (%s) GROUP BY device_id, kind)"
                    % (_INCIDENT_COLS, marks), ids).fetchall():
                c.incs[(i["device_id"], i["kind"])] = i
            c.pending.update(r["device_id"] for r in self._x(
                "SELECT DISTINCT device_id FROM commands WHERE delivered_seq IS NULL AND device_id IN (%s)" % marks, ids).fetchall())
            c.loaded.update(ids)
        return c.devices, c.incs, c.pending

    def _valid_cache(self):
        dv = self._x("PRAGMA data_version").fetchone()["data_version"]
        c = self._cache
        if c is None or c.dv != dv:
            c = self._cache = _Cache(dv)
        return c

    def drop_cache(self):
        self._cache = None

    def keys_for(self, device_ids):
        """{device_id: (status, sealed key)} for those registered (cached
        like load_batch)."""
        c = self._valid_cache()
        keys = c.keys
        ids = [i for i in device_ids if i not in keys]
        if ids:
            for i in ids:
                keys[i] = None
            for r in self._x("SELECT device_id, status, key_sealed FROM devices WHERE device_id IN (%s)" % ",".join("?" * len(ids)), ids).fetchall():
                keys[r["device_id"]] = (r["status"], r["key_sealed"])
        return {i: keys[i] for i in device_ids if keys.get(i) is not None}

    def recent_seqs(self, device_id, n):
        return [r["seq"] for r in self._x(
            "SELECT seq FROM frames WHERE device_id = ? ORDER BY seq DESC LIMIT ?", (device_id, n)).fetchall()]

    def insert_frames(self, rows):
        """rows: (device_id, seq, type, frame_time, arrival, transport, peer, raw, decoded_json, incident_id).
        A plain INSERT: (device_id, seq) already stored is a bug upstream and fails the batch."""
        if not self._in_tx:
            self._write("bug")
        self._db.executemany(
            "INSERT INTO frames (device_id, seq, type, frame_time, arrival, transport, peer, raw, decoded, incident_id) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)

    def add_events(self, rows):
        """rows: (time, kind, device_id, incident_id, body as JSON text)."""
        if not self._in_tx:
            self._write("bug")
        self._db.executemany("INSERT INTO events (time, kind, device_id, incident_id, body) VALUES (?, ?, ?, ?, ?)", rows)

    _DEV_STATE = ("last_seen", "last_heartbeat", "battery", "csq", "battery_low", "silent", "lat_e7", "lon_e7",
                  "source", "accuracy_m", "pos_time", "pos_note", "pos_seq", "evidence")
    _INC_STATE = ("state", "duress", "closed_at", "closed_seq", "closed_by", "updated_at", "last_seq", "lat_e7",
                  "lon_e7", "source", "accuracy_m", "pos_time", "pos_note", "pos_seq", "evidence", "battery", "csq")

    _DEV_ROW = operator.itemgetter(*_DEV_STATE, "device_id")
    _INC_ROW = operator.itemgetter(*_INC_STATE, "id")
    _DEV_SQL = "UPDATE devices SET %s WHERE device_id = ?" % ", ".join("%s = ?" % c for c in _DEV_STATE)
    _INC_SQL = "UPDATE incidents SET %s WHERE id = ?" % ", ".join("%s = ?" % c for c in _INC_STATE)

    def save_devices(self, devices):
        if not self._in_tx:
            self._write("bug")
        self._db.executemany(self._DEV_SQL, map(self._DEV_ROW, devices))

    # An incident whose state columns are as this store last wrote them (a
    # TRACK only moves its position, battery, signal and last seq) is
    # written without them: the full UPDATE also runs the CHECK on `state`
    # and cost three times as much per row.
    _INC_STATE_COLS = ("state", "duress", "closed_at", "closed_seq", "closed_by")
    _INC_STATE_OF = operator.itemgetter(*_INC_STATE_COLS)
    _INC_MOVE = ("updated_at", "last_seq", "lat_e7", "lon_e7", "source", "accuracy_m", "pos_time", "pos_note", "pos_seq",
                 "evidence", "battery", "csq")
    assert sorted(_INC_MOVE + _INC_STATE_COLS) == sorted(_INC_STATE)
    _INC_MOVE_ROW = operator.itemgetter(*_INC_MOVE, "id")
    _INC_MOVE_SQL = "UPDATE incidents SET %s WHERE id = ?" % ", ".join("%s = ?" % c for c in _INC_MOVE)

    def save_incidents(self, incidents):
        """Write back incident rows handed out by load_batch (or built by the
        core after create_incident), inside the batch transaction."""
        if not self._in_tx:
            self._write("bug")
        full, moved = [], []
        c = self._cache
        # without a cache (PostgreSQL's store keeps none) every row is written whole
        written = c.written if c is not None else {}
        state_of = self._INC_STATE_OF
        for i in incidents:
            iid = i["id"]
            now = state_of(i)
            (moved if written.get(iid) == now else full).append(i)
            written[iid] = now  # true once this transaction commits; a rollback drops the cache, this with it
        if full:
            self._db.executemany(self._INC_SQL, map(self._INC_ROW, full))
        if moved:
            self._db.executemany(self._INC_MOVE_SQL, map(self._INC_MOVE_ROW, moved))

    def save_replays(self, rows):
        """rows: (device_id, window bytes, down_seq)."""
        if not self._in_tx:
            self._write("bug")
        self._db.executemany(
            "INSERT INTO replay (device_id, window, down_seq) VALUES (?, ?, ?) "
            "ON CONFLICT (device_id) DO UPDATE SET window = excluded.window, down_seq = excluded.down_seq", rows)

    # ------------------------------------------------------------ replay state

    def load_replay(self, device_id):
        """(window bytes or None, last downlink seq used)."""
        row = self._x("SELECT window, down_seq FROM replay WHERE device_id = ?", (device_id,)).fetchone()
        return (None, 0) if row is None else (bytes(row["window"]), row["down_seq"])

    def save_replay(self, device_id, window, down_seq):
        self._write(
            "INSERT INTO replay (device_id, window, down_seq) VALUES (?, ?, ?) "
            "ON CONFLICT (device_id) DO UPDATE SET window = excluded.window, down_seq = excluded.down_seq",
            (device_id, bytes(window), down_seq),
        )

    # ------------------------------------------------------------ incidents

    def latest_incident(self, device_id, kind):
        return self._x(
            "SELECT %s FROM incidents WHERE device_id = ? AND kind = ? ORDER BY id DESC LIMIT 1" % _INCIDENT_COLS,
            (device_id, kind),
        ).fetchone()

    def open_incidents_of(self, device_id):
        return self._x(
            "SELECT %s FROM incidents WHERE device_id = ? AND state IN ('open', 'duress') ORDER BY id DESC" % _INCIDENT_COLS,
            (device_id,),
        ).fetchall()

    def get_incident(self, incident_id):
        return self._x("SELECT %s FROM incidents WHERE id = ?" % _INCIDENT_COLS, (incident_id,)).fetchone()

    def incidents(self, open_only=False):
        where = " WHERE state IN ('open', 'duress')" if open_only else ""
        return self._x("SELECT %s FROM incidents%s ORDER BY id" % (_INCIDENT_COLS, where)).fetchall()

    def create_incident(self, device_id, kind, opened_at, opened_seq, opened_by):
        """Batch path: the caller puts the new row into load_batch's dict."""
        cur = self._bwrite(
            "INSERT INTO incidents (device_id, kind, state, opened_at, opened_seq, opened_by, updated_at) VALUES (?, ?, 'open', ?, ?, ?, ?)",
            (device_id, kind, opened_at, opened_seq, opened_by, opened_at),
        )
        return _new_id(cur)

    def update_incident(self, incident_id, **fields):
        cols = ", ".join("%s = ?" % k for k in fields)
        self._write("UPDATE incidents SET %s WHERE id = ?" % cols, tuple(fields.values()) + (incident_id,))

    # ------------------------------------------------------------ operator commands

    def queue_command(self, device_id, kind, value=None, actor=None):
        if kind not in COMMANDS:
            raise ReceiverError("unknown command %r" % (kind,))
        with self.maybe_transaction():
            if self.get_device(device_id) is None:
                raise UnknownDevice("device %d is not registered" % device_id)
            cur = self._write(
                "INSERT INTO commands (device_id, kind, value, queued_at, actor) VALUES (?, ?, ?, ?, ?)",
                (device_id, kind, value, self._clock(), acting(actor)),
            )
            self.audit(actor, "command %s" % kind, device_id, None if value is None else "value=%s" % value)
            return _new_id(cur)

    def commands_for_ack(self, device_id, acked_seq, now):
        """Commands to put into the ACK of uplink `acked_seq`: those already
        given to that seq (a re-ACK repeats them, in case the first ACK was
        lost) plus every undelivered one, which become bound to it. Batch
        path: the caller drops the device from load_batch's pending set."""
        self._bwrite(
            "UPDATE commands SET delivered_seq = ?, delivered_at = ? WHERE device_id = ? AND delivered_seq IS NULL",
            (acked_seq, now, device_id),
        )
        return self._x(
            "SELECT id, kind, value FROM commands WHERE device_id = ? AND delivered_seq = ? ORDER BY id",
            (device_id, acked_seq),
        ).fetchall()

    def pending_commands(self, device_id=None):
        if device_id is None:
            return self._x("SELECT * FROM commands WHERE delivered_seq IS NULL ORDER BY id").fetchall()
        return self._x("SELECT * FROM commands WHERE device_id = ? AND delivered_seq IS NULL ORDER BY id", (device_id,)).fetchall()

    # ------------------------------------------------------------ events and audit

    def add_event(self, event):
        cur = self._write(
            "INSERT INTO events (time, kind, device_id, incident_id, body) VALUES (?, ?, ?, ?, ?)",
            (event["time"], event["kind"], event.get("device_id"), event.get("incident_id"), json.dumps(event, sort_keys=True)),
        )
        event["event_id"] = cur.lastrowid
        return cur.lastrowid

    def events_after(self, event_id, limit=1000):
        rows = self._x("SELECT id, body FROM events WHERE id > ? ORDER BY id LIMIT ?", (event_id, limit)).fetchall()
        out = []
        for r in rows:
            e = json.loads(r["body"])
            e["event_id"] = r["id"]
            out.append(e)
        return out

    # The feed as a watcher follows it: a cursor, and the events after it.
    # Here ids commit in order (one writer at a time); store_pg orders its
    # feed by transaction, since there two nodes commit side by side.

    def feed_start(self, from_start=False):
        """A feed cursor: before every event, or after the newest."""
        if from_start:
            return 0
        return self._x("SELECT MAX(id) AS m FROM events").fetchone()["m"] or 0

    def feed_after(self, cursor, limit=1000):
        """(events after the cursor, the new cursor)."""
        evs = self.events_after(cursor, limit)
        return evs, (evs[-1]["event_id"] if evs else cursor)

    def audit(self, actor, action, device_id=None, detail=None):
        """One audit row; its actor is acting(actor): the operating-system
        account of this process, with the name the caller gave beside it."""
        with self.maybe_transaction():
            self._write("INSERT INTO audit (time, actor, action, device_id, detail) VALUES (?, ?, ?, ?, ?)",
                        (self._clock(), acting(actor), action, device_id, detail))

    def audit_log(self):
        return self._x("SELECT * FROM audit ORDER BY id").fetchall()

    # ------------------------------------------------------------ forwarding (receiver/forward/)
    #
    # Targets are configured by `panic receiver forward add` and read at
    # start-up; queue rows are written by the forward outbox inside the
    # transaction of the events that cause them, and marked by the
    # forwarder only on the peer's answer. Plain SQL: a PostgreSQL store
    # implements the same methods (forward_enqueue then takes the target
    # row FOR UPDATE).

    def add_forward_target(self, name, kind, config_json, actor="operator"):
        with self.maybe_transaction():
            if self._x("SELECT 1 FROM forward_targets WHERE name = ?", (name,)).fetchone():
                raise ReceiverError("forward target %r already exists" % name)
            self._write("INSERT INTO forward_targets (name, kind, config, created) VALUES (?, ?, ?, ?)",
                        (name, kind, config_json, self._clock()))
            self.audit(actor, "forward add", None, "%s %s" % (kind, name))

    def remove_forward_target(self, name, actor="operator", drop_pending=False):
        """Remove a target; refuses while it has undelivered messages
        unless drop_pending (they are then marked refused, not deleted).
        Returns the number of messages dropped that way."""
        with self.maybe_transaction():
            if not self._x("SELECT 1 FROM forward_targets WHERE name = ?", (name,)).fetchone():
                raise ReceiverError("no forward target %r" % name)
            n = self._x("SELECT COUNT(*) AS n FROM forward_queue WHERE target = ? AND state = 'pending'",
                        (name,)).fetchone()["n"]
            if n and not drop_pending:
                raise ReceiverError("forward target %r has %d undelivered message(s); deliver them first or drop them "
                                    "explicitly" % (name, n))
            if n:
                self._write("UPDATE forward_queue SET state = 'refused', done_at = ?, detail = 'target removed' "
                            "WHERE target = ? AND state = 'pending'", (self._clock(), name))
            self._write("DELETE FROM forward_targets WHERE name = ?", (name,))
            self.audit(actor, "forward remove", None, "%s%s" % (name, " (%d pending dropped)" % n if n else ""))
            return n

    def forward_targets(self):
        """[{name, kind, config (JSON text), next_seq, created}]."""
        return self._x("SELECT name, kind, config, next_seq, created FROM forward_targets ORDER BY name").fetchall()

    def forward_enqueue(self, rows, seq_targets=()):
        """Inside the caller's transaction. rows: (target, created,
        event_kind, device_id, incident_id, body JSON); a row of a target
        named in seq_targets takes that target's next DC-09 sequence
        number (0001..9999, then 0001 again)."""
        if not self._in_tx:
            self._write("bug")
        seqs = {}
        for t in seq_targets:
            r = self._x("SELECT next_seq FROM forward_targets WHERE name = ?", (t,)).fetchone()
            if r is not None:
                seqs[t] = r["next_seq"]
        out = []
        for target, created, kind, dev, inc, body in rows:
            q = seqs.get(target)
            if q is not None:
                seqs[target] = q % 9999 + 1
            out.append((target, created, kind, dev, inc, q, body))
        self._db.executemany(
            "INSERT INTO forward_queue (target, created, event_kind, device_id, incident_id, seq, body) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)", out)
        self._db.executemany("UPDATE forward_targets SET next_seq = ? WHERE name = ?",
                             [(q, t) for t, q in seqs.items()])

    def forward_take_seq(self, target):
        """The target's next DC-09 sequence number, taken (inside the
        caller's transaction): for a message sent outside the queue."""
        r = self._x("SELECT next_seq FROM forward_targets WHERE name = ?", (target,)).fetchone()
        if r is None:
            raise ReceiverError("no forward target %r" % target)
        self._write("UPDATE forward_targets SET next_seq = ? WHERE name = ?", (r["next_seq"] % 9999 + 1, target))
        return r["next_seq"]

    def forward_pending(self, target, limit=100):
        """The oldest undelivered messages of a target, in queue order."""
        return self._x("SELECT id, target, created, event_kind, device_id, incident_id, seq, body, attempts "
                       "FROM forward_queue WHERE target = ? AND state = 'pending' ORDER BY id LIMIT ?",
                       (target, limit)).fetchall()

    def forward_done(self, rows):
        """Mark messages answered, in one transaction. rows: (id, state
        'delivered' or 'refused', at, via, attempts, detail)."""
        with self.maybe_transaction():
            self._db.executemany(
                "UPDATE forward_queue SET state = ?, done_at = ?, via = ?, attempts = ?, detail = ? "
                "WHERE id = ? AND state = 'pending'", [(s, at, via, n, d, i) for i, s, at, via, n, d in rows])

    def forward_queue_rows(self, target=None):
        if target is None:
            return self._x("SELECT * FROM forward_queue ORDER BY id").fetchall()
        return self._x("SELECT * FROM forward_queue WHERE target = ? ORDER BY id", (target,)).fetchall()

    def forward_counts(self):
        """{target: {state: count}}."""
        out = {}
        for r in self._x("SELECT target, state, COUNT(*) AS n FROM forward_queue GROUP BY target, state").fetchall():
            out.setdefault(r["target"], {})[r["state"]] = r["n"]
        return out


class _NoTx:
    def __enter__(self):
        return None

    def __exit__(self, et, ev, tb):
        return False


class _Tx:
    def __init__(self, store):
        self.s = store

    def __enter__(self):
        self.s.begin()
        return self.s

    def __exit__(self, et, ev, tb):
        s = self.s
        if et is not None:
            s.end(False)
            return False
        try:
            s.commit_durable()
        except BaseException:
            s.end(False)
            raise
        s.end(True)
        return False


def _rollback(db):
    try:
        db.execute("ROLLBACK")
    except sqlite3.Error:
        pass


def os_user():
    """The operating-system account this process runs as, from its uid
    ($USER and $LOGNAME are whatever the caller set)."""
    uid = os.getuid()
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return "uid %d" % uid


def acting(name=None):
    """Who acts, for the audit log and the commands table: the OS account,
    and the name given with --actor (an operator's desk, a shared account's
    real user) when there is one that differs: "alice" or "desk 2 (os user
    alice)". Every path records it, so no command can be audited under a
    made-up name alone."""
    user = os_user()
    if not name or name == user:
        return user
    return "%s (os user %s)" % (name, user)


STORE_SUFFIXES = ("", "-wal", "-shm", "-journal")


def exposed(path):
    """The mode of `path` if other users may read or write it, else None
    (also None when it does not exist or is not a regular file)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    mode = stat.S_IMODE(st.st_mode)
    return mode if mode & 0o007 else None


def private_files(path):
    """Refuse a store whose files other users can read or write; create a
    missing database file mode 0600 (SQLite gives its -wal and -shm files
    the database's mode)."""
    bad = [(path + x, m) for x in STORE_SUFFIXES for m in (exposed(path + x),) if m is not None]
    if bad:
        raise Unavailable(
            "store %s is open to other users (%s): it holds victims' positions and person references; run "
            "chmod o-rwx %s (600, or 640/660 for the receiving centre's group), then find out who could read it"
            % (path, ", ".join("%s mode %04o" % (p, m) for p, m in bad), " ".join(p for p, _ in bad)))
    if not os.path.exists(path):
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:  # another process made it meanwhile: check it again
            private_files(path)
        except OSError as e:
            raise Unavailable("cannot create store %s: %s" % (path, e.strerror))


def is_pg(store):
    """True for a PostgreSQL store (store_pg.PgStore), which several
    receiver nodes may share."""
    return hasattr(store, "url")


_MEMORY_SCHEMA: sqlite3.Connection | None = None  # SqliteStore._migrate_memory's template
_MEMORY_LOCK = threading.Lock()


def open_store(path, master_key=None, clock=time.time, create=True):
    """Open (and migrate) the store at `path`: a SQLite file, or a
    postgresql:// URL (store_pg.PgStore, for several receiver nodes).
    master_key: a masterkey.MasterKey, needed to add devices or verify
    frames."""
    if isinstance(path, str) and path.startswith(("postgresql://", "postgres://")):
        from receiver import store_pg

        return store_pg.PgStore(path, master_key, clock, create=create)
    if not create and not os.path.exists(path):
        raise Unavailable("no store at %s" % path)
    return SqliteStore(path, master_key, clock)


Store = SqliteStore


if TYPE_CHECKING:  # the contracts SqliteStore keeps (receiver/contracts.py), proved by pyright
    def _keeps(s: SqliteStore) -> tuple[contracts.CoreStore, contracts.StoreSection, contracts.FeedStore]:
        return s, s, s
