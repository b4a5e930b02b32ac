"""The PostgreSQL store's own parts (receiver/store_pg.py,
receiver/sqldialect.py): the same schema as SQLite's, version for
version; the dialect rules one by one; a URL's password never in a
message; a database that is missing, unreachable or newer refused in
words; nodes that start together migrate once; a connection that breaks
is made again, and a batch it broke is not ACKed."""

import os
import sqlite3
import threading
import time

import psycopg
import pytest

from protocol import frame as F
from receiver import core, masterkey, sqldialect, store_pg
from receiver import store as S
from receiver.errors import ReceiverError, Unavailable
from recv_helpers import T0, Dev

MK = masterkey.MasterKey(os.urandom(32))

# PostgreSQL's types for SQLite's declared ones (store_pg.MIGRATIONS' rule)
_TYPES = {"INTEGER": {"bigint"}, "REAL": {"double precision"}, "TEXT": {"text"}, "BLOB": {"bytea"}}


def pg_columns(url):
    with psycopg.connect(url) as c:
        rows = c.execute("SELECT table_name, column_name, data_type FROM information_schema.columns "
                         "WHERE table_schema = 'public' ORDER BY table_name, ordinal_position").fetchall()
    out = {}
    for t, col, typ in rows:
        out.setdefault(t, {})[col] = typ
    return out


def test_both_stores_have_the_same_tables_and_columns_in_matching_types(tmp_path, pg_databases):
    S.open_store(str(tmp_path / "rx.db")).close()
    db = sqlite3.connect(str(tmp_path / "rx.db"))
    pg = pg_columns(pg_databases.new())
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
    assert sorted(tables) == sorted(pg)
    for t in tables:
        cols = [(r[1], r[2].upper()) for r in db.execute("SELECT * FROM pragma_table_info(?)", (t,))]
        extra = set(pg[t]) - {c for c, _ in cols}
        assert extra <= ({"tx"} if t == "events" else set()), (t, extra)  # events.tx: the feed's order
        for c, typ in cols:
            assert pg[t][c] in _TYPES[typ], (t, c, typ, pg[t][c])
    assert len(store_pg.MIGRATIONS) == len(S.MIGRATIONS)


@pytest.mark.parametrize("sql, want, returning", [
    ("SELECT * FROM devices WHERE device_id = ?", "SELECT * FROM devices WHERE device_id = %s", False),
    ("SELECT 5 % 2 FROM t WHERE a LIKE '%x' AND b = ?", "SELECT 5 %% 2 FROM t WHERE a LIKE '%%x' AND b = %s", False),
    ("INSERT OR IGNORE INTO meta VALUES (?, ?)", "INSERT INTO meta VALUES (%s, %s) ON CONFLICT DO NOTHING", False),
    ("BEGIN IMMEDIATE", "BEGIN", False),
    ("UPDATE replay SET window = ? WHERE device_id = ?", 'UPDATE replay SET "window" = %s WHERE device_id = %s', False),
    ("SELECT r.window AS window FROM replay r", 'SELECT r."window" AS "window" FROM replay r', False),
    ("INSERT INTO frames (a) VALUES (?)", "INSERT INTO frames (a) VALUES (%s) RETURNING id", True),
    ("INSERT INTO replay (a) VALUES (?)", "INSERT INTO replay (a) VALUES (%s)", False),  # no identity id
    ("SELECT windows, window_x FROM t", "SELECT windows, window_x FROM t", False),
])
def test_each_dialect_rule(sql, want, returning):
    assert sqldialect.to_pg(sql, frozenset({"frames"})) == (want, returning)


@pytest.mark.parametrize("sql", ["PRAGMA data_version", "SELECT name FROM sqlite_master", "VACUUM"])
def test_a_sqlite_only_statement_is_refused_by_name(sql):
    with pytest.raises(ReceiverError, match="SQLite-only statement"):
        sqldialect.to_pg(sql)


def test_a_password_never_appears_in_a_message(pg_server):
    url = "postgresql://postgres:s3cret-pw@127.0.0.1:%d/no_such_db" % pg_server.port
    with pytest.raises(Unavailable) as e:
        S.open_store(url)
    assert "s3cret-pw" not in str(e.value) and "does not exist" in str(e.value) and "***" in str(e.value)
    assert store_pg.redact("postgresql://u:pw@h/db?sslmode=require&password=x") == \
        "postgresql://u:***@h/db?sslmode=require&password=***"
    assert store_pg.redact("postgresql://u@h/db") == "postgresql://u@h/db"


def test_an_unreachable_server_is_refused_in_seconds(tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    with pytest.raises(Unavailable, match="cannot open store"):
        S.open_store("postgresql://postgres@127.0.0.1:%d/rx" % port)
    assert time.monotonic() - t0 < 10


def test_an_empty_database_is_not_a_store_unless_created_and_a_newer_schema_is_refused(pg_databases, capsys):
    from tools.cli import main

    url = pg_databases.new(empty=True)
    assert main(["receiver", "device", "list", "--db", url]) == 3
    assert "no receiver schema" in capsys.readouterr().err
    S.open_store(url).close()  # created
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("INSERT INTO schema_version VALUES (%s, 0)", (len(store_pg.MIGRATIONS) + 1,))
    with pytest.raises(Unavailable, match="newer than this receiver"):
        S.open_store(url)


def test_nodes_that_start_together_migrate_once(pg_databases):
    url = pg_databases.new(empty=True)
    errors, stores = [], []

    def node():
        try:
            stores.append(S.open_store(url, MK))
        except Exception as e:  # reported below
            errors.append(e)

    ts = [threading.Thread(target=node) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    assert errors == [] and len(stores) == 4
    with psycopg.connect(url) as c:
        assert [r[0] for r in c.execute("SELECT version FROM schema_version ORDER BY version")] == \
            list(range(1, len(store_pg.MIGRATIONS) + 1))
        assert c.execute("SELECT COUNT(*) FROM meta").fetchone()[0] == 1  # one master key check value
    for st in stores:
        st.close()


def kill_sessions(url, name="panic-receiver"):
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
                  "AND application_name = %s AND pid != pg_backend_pid()", (name,))


def test_a_broken_connection_is_made_again_and_a_batch_it_broke_is_not_acked(pg_databases):
    d = Dev(9)
    url = pg_databases.new()
    st = S.open_store(url, MK, clock=lambda: T0)
    st.add_device(d.id, d.key, "URN 9")
    rx = core.Receiver(st, clock=lambda: T0 + 1)
    kill_sessions(url)  # the database restarted, or failed over, while the node was idle
    assert [r["device_id"] for r in st.list_devices()] == [9]  # a read: reconnected once, answered
    assert rx.handle_frames([(d.frame(F.ALERT), "tcp", "x")])[0].status == core.ACCEPTED
    track = d.frame(F.TRACK)
    batch = rx.prepare([(track, "tcp", "x")])
    kill_sessions(url)  # mid-transaction
    batch.commit()
    (o,) = rx.finish(batch)
    assert o.status == core.ERROR and o.replies == [] and rx.counters["store error"] == 1
    (o,) = rx.handle_frames([(track, "tcp", "x")])  # the device retries: stored now, once
    assert o.status == core.ACCEPTED and o.replies
    assert [(f["device_id"], f["seq"]) for f in st.frames()] == [(9, 1), (9, 2)]
    st.close()


def test_a_migrations_ddl_in_postgresqls_dialect():
    sqlite = ("CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER NOT NULL, x REAL, b BLOB, window BLOB);"
              "CREATE TABLE k (a INTEGER, b TEXT, PRIMARY KEY (a, b)) WITHOUT ROWID;"
              "CREATE TABLE h (incident_id INTEGER PRIMARY KEY, interval_s INTEGER);"
              "ALTER TABLE audit ADD COLUMN incident_id INTEGER")
    assert sqldialect.ddl_to_pg(sqlite) == (
        "CREATE TABLE t (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, n BIGINT NOT NULL, x DOUBLE "
        'PRECISION, b BYTEA, "window" BYTEA);'
        "CREATE TABLE k (a BIGINT, b TEXT, PRIMARY KEY (a, b));"
        "CREATE TABLE h (incident_id BIGINT PRIMARY KEY, interval_s BIGINT);"  # a key that is always given
        "ALTER TABLE audit ADD COLUMN incident_id BIGINT")


def test_serve_on_a_database_it_cannot_reach_says_so_without_the_password(tmp_path, capsys):
    import socket

    from tools.cli import main

    mk = str(tmp_path / "master.key")
    with open(os.open(mk, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
        f.write(masterkey.generate_hex())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rc = main(["receiver", "serve", "--db", "postgresql://panic:hunter2-pw@127.0.0.1:%d/rx" % port,
               "--listen", "127.0.0.1:0", "--master-key-file", mk])
    err = capsys.readouterr().err
    assert rc == 3 and "cannot open store postgresql://panic:***@127.0.0.1" in err and "hunter2" not in err
