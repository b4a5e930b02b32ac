"""`panic receiver migrate --from rx.db --to postgresql://...`: a SQLite
store copied whole into a PostgreSQL store, and checked.

Owns: the copy and its check. Every table of the SQLite store goes over
row for row with its ids (frames and events keep theirs: evidence cites
them, a watcher follows them), raw frames byte for byte, event bodies as
written, device keys still sealed under the same master key (the master
key's check value goes with `meta`, so the same key opens them on the
new store and nothing here needs the key). The PostgreSQL ids then
continue after the largest copied id.

Order of work:
  1. open the SQLite store (migrated to this receiver's schema at open,
     as every command does) and read it inside one transaction: a
     consistent snapshot even if something writes meanwhile (stop `serve`
     first all the same: what it stores after the snapshot stays behind);
  2. open the PostgreSQL store (its schema made or migrated) and refuse
     one that holds anything: this never merges two centres' stores;
  3. in one PostgreSQL transaction: COPY each table, set each identity
     past its largest id, then count every table on both sides and
     compare a digest of the evidence (every frame's id, device, seq and
     raw bytes; every event's id and body); only if all match, COMMIT.
     Any difference rolls the whole copy back: the target stays empty.

A table the SQLite store has and the PostgreSQL schema lacks is refused
by name before anything is written (a store written by a newer receiver).

Must stay in sync with: store.py and store_pg.py (the tables), cli.py
(the command), docs/deployment.md (moving a pilot to PostgreSQL).
"""

import hashlib
import sqlite3

import psycopg

from receiver import store as S
from receiver import store_pg
from receiver.errors import ReceiverError, Unavailable

# SQLite's own bookkeeping, and what each store keeps for itself
_SKIP = {"sqlite_sequence", "schema_version"}


def _sqlite_tables(db):
    return [r["name"] for r in db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").fetchall() if r["name"] not in _SKIP]


def _pg_columns(pg, table):
    return [r["column_name"] for r in pg.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
        "AND table_name = %s ORDER BY ordinal_position", (table,)).fetchall()]


def _evidence_digest(rows):
    h = hashlib.sha256()
    for r in rows:
        for v in r:
            b = v if isinstance(v, bytes) else str(v).encode()
            h.update(len(b).to_bytes(4, "big"))
            h.update(b)
    return h.hexdigest()


_DIGESTS = (
    ("frames", "SELECT id, device_id, seq, raw FROM frames ORDER BY id"),
    ("events", "SELECT id, body FROM events ORDER BY id"),
)


def migrate(src_path, dst_url, out=None):
    """Copy the SQLite store at src_path into the empty PostgreSQL store at
    dst_url. Returns {table: rows copied}. Raises ReceiverError (or
    Unavailable) with nothing written to the target on any failure."""
    if store_pg.is_url(src_path):
        raise ReceiverError("--from must be a SQLite store (a file), not a URL")
    if not store_pg.is_url(dst_url):
        raise ReceiverError("--to must be a postgresql:// URL")
    src = S.open_store(src_path, None, create=False)
    dst = store_pg.PgStore(dst_url)
    try:
        return _copy(src, dst, out)
    finally:
        src.close()
        dst.close()


def _copy(src, dst, out):
    if src.schema_version() != dst.schema_version():
        raise ReceiverError("schema versions differ: %s has %d, %s has %d" % (
            src.path, src.schema_version(), dst.path, dst.schema_version()))
    sdb = src._db
    pg = dst._db.pg
    tables = _sqlite_tables(sdb)
    cols = {}
    for t in tables:
        have = _pg_columns(pg, t)
        if not have:
            raise ReceiverError("the PostgreSQL schema has no table %r (the SQLite store is from a newer receiver?)" % t)
        mine = [r["name"] for r in sdb.execute("SELECT name FROM pragma_table_info(?) ORDER BY cid", (t,)).fetchall()]
        missing = [c for c in mine if c not in have]
        if missing:
            raise ReceiverError("the PostgreSQL table %s lacks column(s) %s" % (t, ", ".join(missing)))
        cols[t] = mine
    for t in tables:
        if pg.execute("SELECT EXISTS (SELECT 1 FROM %s) AS e" % t).fetchone()["e"]:
            raise ReceiverError("%s is not empty (table %s has rows): migrate only into a new store" % (dst.path, t))
    # the location tables are WITHOUT ROWID (keyed by cell or BSSID): no
    # rowid to keep the order by, and no id that anything cites
    no_rowid = {r["name"] for r in sdb.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                                "AND sql LIKE '%WITHOUT ROWID%'").fetchall()}
    counts = {}
    sdb.execute("BEGIN")  # one read snapshot of the whole SQLite store
    try:
        with pg.transaction():
            for t in tables:
                quoted = ", ".join('"%s"' % c for c in cols[t])
                n = 0
                with pg.cursor() as cur, cur.copy("COPY %s (%s) FROM STDIN" % (t, quoted)) as cp:
                    for row in sdb.execute("SELECT %s FROM %s%s" % (quoted, t, "" if t in no_rowid else " ORDER BY rowid")):
                        cp.write_row([row[c] for c in cols[t]])
                        n += 1
                counts[t] = n
                if "id" in cols[t]:
                    pg.execute("SELECT setval(pg_get_serial_sequence(%s, 'id'), "
                               "GREATEST((SELECT MAX(id) FROM " + t + "), 1), (SELECT MAX(id) FROM " + t + ") IS NOT NULL)",
                               (t,))
                if out is not None:
                    out("copied %s: %d row(s)" % (t, n))
            _verify(sdb, pg, tables, counts)
    except (psycopg.Error, sqlite3.Error) as e:
        raise Unavailable("copy failed, nothing was written to %s: %s" % (dst.path, " ".join(str(e).split())))
    finally:
        sdb.execute("ROLLBACK")
    return counts


def _verify(sdb, pg, tables, counts):
    """Inside the copy's transaction: the same number of rows in every
    table on both sides, and the same evidence; raises (and so rolls the
    copy back) on any difference."""
    for t in tables:
        a = sdb.execute("SELECT COUNT(*) AS n FROM %s" % t).fetchone()["n"]
        b = pg.execute("SELECT COUNT(*) AS n FROM %s" % t).fetchone()["n"]
        if not a == b == counts[t]:
            raise ReceiverError("table %s: %d row(s) in SQLite, %d copied, %d in PostgreSQL: rolled back" % (
                t, a, counts[t], b))
    for t, q in _DIGESTS:
        if t not in counts:
            continue
        a = _evidence_digest(tuple(r.values()) for r in sdb.execute(q))
        b = _evidence_digest(tuple(r.values()) for r in pg.execute(q))
        if a != b:
            raise ReceiverError("table %s: the copied rows differ from the SQLite store's: rolled back" % t)
