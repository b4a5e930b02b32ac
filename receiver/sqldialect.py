"""The store's SQL, written once (in store.py, SQLite's dialect), spoken to
PostgreSQL: the small common part of the two stores.

Owns: turning one statement of store.py into PostgreSQL's form, and
nothing else. The SQLite store's methods are the store: store_pg.PgStore
runs the same methods over a connection whose execute() passes each
statement through `to_pg` (cached per statement text), so a query is
written, reviewed and tested once and both stores answer it the same way;
rows come back as dicts from both (column name -> value, the same Python
types: int, float, str, bytes, None).

The rules, each a difference between the two dialects that store.py's
statements actually meet:
  - placeholders: `?` -> `%s` (a literal `%` is doubled first);
  - `INSERT OR IGNORE INTO t ...` -> `INSERT INTO t ... ON CONFLICT DO
    NOTHING` (both skip a row that breaks a unique constraint);
  - `BEGIN IMMEDIATE` -> `BEGIN` (SQLite takes its write lock at BEGIN;
    PostgreSQL locks rows as it writes them, and PgStore.load_batch locks
    the batch's device rows first);
  - `window` (a column of `replay`) is a reserved word in PostgreSQL: it
    is quoted there;
  - an INSERT into a table with an identity `id`, run alone, gets
    `RETURNING id`, which is how PostgreSQL gives what SQLite's
    cursor.lastrowid gives (returning=True; executemany never asks).
Anything PostgreSQL cannot run (PRAGMA, sqlite_master) is refused here
with the statement named, so a SQLite-only statement reached on the
PostgreSQL store fails loudly in the tests rather than quietly.

Must stay in sync with: store.py (every statement it runs), store_pg.py
(which statements it overrides instead), tests/test_pg_store.py (the
rules, one by one).
"""

import re

from receiver.errors import ReceiverError

_WINDOW = re.compile(r"(?<![\w\"])window(?![\w\"])")
_INSERT_OR_IGNORE = re.compile(r"^\s*INSERT\s+OR\s+IGNORE\s+INTO\s", re.I)
_INSERT = re.compile(r"^\s*INSERT\s+INTO\s+(\w+)", re.I)
_REFUSED = re.compile(r"^\s*(PRAGMA|VACUUM|ATTACH)\b|sqlite_", re.I)

_cache = {}


def to_pg(sql, returning_tables=frozenset()):
    """(statement in PostgreSQL's dialect, whether it returns the new id).
    returning_tables: tables whose INSERTs should return their id."""
    key = (sql, returning_tables)
    hit = _cache.get(key)
    if hit is not None:
        return hit
    if _REFUSED.search(sql):
        raise ReceiverError("a SQLite-only statement on the PostgreSQL store (bug): %s" % " ".join(sql.split())[:120])
    q = sql.strip()
    if q.upper() == "BEGIN IMMEDIATE":
        q = "BEGIN"
    q = q.replace("%", "%%").replace("?", "%s")
    q = _WINDOW.sub('"window"', q)
    returning = False
    if _INSERT_OR_IGNORE.match(q):
        q = _INSERT_OR_IGNORE.sub("INSERT INTO ", q) + " ON CONFLICT DO NOTHING"
    else:
        m = _INSERT.match(q)
        if m and m.group(1).lower() in returning_tables and " RETURNING " not in q.upper():
            q += " RETURNING id"
            returning = True
    if len(_cache) > 4096:  # statements are made from a fixed set of templates; bound it anyway
        _cache.clear()
    _cache[key] = (q, returning)
    return q, returning
