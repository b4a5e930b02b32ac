"""Which receiver node does the once-per-centre work: a leader chosen with a
PostgreSQL advisory lock (issue 19).

Owns: holding, checking and giving up the leader's lock. Never does the
work itself: the server (server.py) runs supervision ticks and the DC-09
forwarder only while `held` is true, and every node keeps taking frames
whether it leads or not.

How it works: each node keeps one connection of its own for this and
every `EVERY` seconds calls step(), off the event loop (a check may wait
on the network):
  - not leading: SELECT pg_try_advisory_lock(KEY). One session in the
    whole database can hold it; the first node to ask gets it.
  - leading: SELECT 1 on the same connection. A session-level advisory
    lock lasts as long as the session, so a session that answers still
    holds it. A check that fails (the connection broke, the database
    restarted or failed over, the session was terminated) drops the
    connection and `held` at once: this node stops leading before any
    other node can start.
When the leader dies, its session ends and the lock with it:
  - killed (kill -9, a crash, a reboot): its kernel closes the TCP
    connection, the database ends the session at once, and another node
    takes the lock at its next step: within EVERY seconds (1 s);
  - cut off (a network partition, a machine that hangs): nothing closes
    the connection. The database notices through its TCP keepalives
    (tcp_keepalives_idle + tcp_keepalives_count x tcp_keepalives_interval:
    with the settings of docs/deployment.md, 3 + 3 x 1 = 6 s), ends the
    session and frees the lock; another node takes it within EVERY more:
    7 s, inside the 10 s the issue asks. The cut-off node, meanwhile,
    fails its own check (client keepalives and tcp_user_timeout bound
    it to a few seconds: CLIENT) and stops leading; it cannot write to
    the database in between, and what it might still send to an ARC (a
    DC-09 message in flight) is a repeat the ARC discards by its sequence
    number.
The SQLite store has one node: for_store returns None and the server
leads alone, as before.

Must stay in sync with: server.py (what runs only on the leader),
docs/deployment.md (the keepalive settings and the takeover time).
"""

import logging

import psycopg

from receiver import store_pg
from receiver.errors import Unavailable

log = logging.getLogger("receiver.leader")

KEY = 0x70616E6963_02  # the advisory lock's key ("panic", 2)
EVERY = 1.0  # seconds between steps
# The leader's own connection: short connect, and a dead link noticed in
# seconds whether it is idle (keepalives) or has a query in flight
# (tcp_user_timeout).
CLIENT = {"connect_timeout": "3", "keepalives_idle": "2", "keepalives_interval": "1", "keepalives_count": "2",
          "tcp_user_timeout": "3000", "application_name": "panic-receiver leader"}


class Leader:
    def __init__(self, url, key=KEY, every=EVERY):
        self.url = url
        self.key = key
        self.every = every
        self.held = False
        self._conn = None

    def step(self):
        """One check (blocking: at most a few seconds). Returns whether
        this node leads now."""
        try:
            if self._conn is None or self._conn.closed or self._conn.broken:
                self._drop()
                self._conn = store_pg.connect(self.url, **CLIENT)
            if self.held:
                self._conn.execute("SELECT 1").fetchone()
            else:
                self.held = bool(store_pg.one_row(self._conn.execute("SELECT pg_try_advisory_lock(%s) AS ok", (self.key,)))["ok"])
        except (psycopg.Error, Unavailable) as e:
            if self.held:
                log.error("leader's database session lost (%s): this node stops leading", " ".join(str(e).split()))
            self._drop()
        return self.held

    def _drop(self):
        self.held = False
        self._conn = store_pg.close_quietly(self._conn)

    def release(self):
        """Give the lock up (a clean shutdown: another node takes over at
        its next step rather than when this session times out)."""
        if self.held and self._conn is not None:
            try:
                self._conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
            except psycopg.Error:
                pass
        self._drop()


def for_store(store):
    """A Leader for a PostgreSQL store; None for SQLite (one node)."""
    url = getattr(store, "url", None)
    return Leader(url) if store_pg.is_url(url) else None
