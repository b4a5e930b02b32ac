"""The receiver on PostgreSQL (issue 19): committed frames/s and ACK
latency for SQLite (1 node) beside PostgreSQL (1 node, 2 nodes), the same
load on the same machine; and the driver choice, psycopg 3 beside asyncpg
on the receiver's own batch transaction.

End to end (as bench_receiver.py: `panic receiver serve` subprocesses,
CONNS concurrent TCP connections each sending a frame, waiting for its
ACK, sending the next; a frame counts only when its ACK came back, and
the ACK comes only after its batch committed). Contenders, interleaved,
RUNS rounds, a fresh store each:
  sqlite   one node on a SQLite file (WAL, synchronous=FULL);
  pg-1     one node on a PostgreSQL database;
  pg-2     two nodes on one database, the connections split between them.
PostgreSQL runs here (tests/pg.py: a server of its own in a temporary
directory) with fsync on and synchronous_commit on: a commit is on disk
when it returns, as SQLite's. Every ACKed frame is checked to be in the
store after each run.

Target: pg-2 >= TARGET_FPS committed frames/s. The largest UK services
(hundreds of thousands of devices, a heartbeat every few hours) make tens
of frames per second; the target leaves twenty-fold room for an incident
storm. The receiver on SQLite stays the reference (bench_receiver.py).

Driver (the store's choice, docs/deployment.md): the receiver's batch
transaction on one connection, sequentially, TX_N times a round (BEGIN;
lock the device row; read the device, its window and its latest incident;
insert the frame; update the window and the device; insert an event;
COMMIT), with psycopg 3 (what store_pg.py uses: a synchronous driver for
the store's synchronous interface) and asyncpg (an asyncio driver, often
quoted as the fastest). Target: psycopg >= DRIVER_RATIO x asyncpg's
transactions/s; missing it would mean the driver, not the commit, bounds
the store, and the choice must be measured again.

The lead (receiver/leader.py): two nodes on one database, the leading
one killed with SIGKILL, the time until the other logs that it leads;
median of RUNS kills. Target: <= TAKEOVER_S (issue 19: within 10 s).

Environment: PG_BENCH_CONNS (default 200), PG_BENCH_FRAMES (per
connection, default 25).
"""

import asyncio
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))
sys.path.insert(0, os.path.join(ROOT, "tests"))

from receiver import masterkey  # noqa: E402
from receiver import store as S  # noqa: E402

import bench_receiver as BR  # noqa: E402
import pg  # noqa: E402
from verdict import interleave, median_spread, note, verdict  # noqa: E402

B = "pg"
CONNS = int(os.environ.get("PG_BENCH_CONNS", "200"))
PER_CONN = int(os.environ.get("PG_BENCH_FRAMES", "25"))
RUNS = 5
TARGET_FPS = 1000
TX_N = 300
DRIVER_RATIO = 0.75
TAKEOVER_S = 10.0
WORK = os.path.join(ROOT, "build", "bench-pg")


def wait_log(proc, path, what, timeout):
    """The first line of the log holding `what` (polled every 5 ms)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with open(path) as f:
            for line in f:
                if what in line:
                    return line
        if proc.poll() is not None:
            break
        time.sleep(0.005)
    proc.kill()
    raise SystemExit("receiver: no %r in %s:\n%s" % (what, path, open(path).read()))


def start_node(db, mk_file, name, supervise="0"):
    path = os.path.join(WORK, "%s.log" % name)
    log = open(path, "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tools.cli", "receiver", "serve", "--db", db, "--listen", "127.0.0.1:0",
         "--master-key-file", mk_file, "--max-conns-per-peer", str(CONNS + 10), "--supervise-every", supervise],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    return proc, int(wait_log(proc, path, "listening tcp", 30).rsplit(":", 1)[1])


def takeover(server, mk_file, k):
    """Seconds from kill -9 of the leading node to the other leading."""
    server.sql("DROP DATABASE IF EXISTS lead WITH (FORCE)")
    server.sql("CREATE DATABASE lead")
    db = server.url("lead")
    S.open_store(db, masterkey.load(mk_file)).close()
    a, _ = start_node(db, mk_file, "lead-a%d" % k, "1")
    wait_log(a, os.path.join(WORK, "lead-a%d.log" % k), "leading:", 10)
    b, _ = start_node(db, mk_file, "lead-b%d" % k, "1")
    try:
        time.sleep(0.5)
        a.kill()  # SIGKILL
        a.wait(10)
        t0 = time.monotonic()
        wait_log(b, os.path.join(WORK, "lead-b%d.log" % k), "leading:", 3 * TAKEOVER_S)
        return time.monotonic() - t0
    finally:
        b.terminate()
        b.wait(30)


async def _loads(ports, plan):
    """The plan's connections dealt round-robin over the nodes, all at once."""
    parts = [plan[i::len(ports)] for i in range(len(ports))]
    t0 = time.perf_counter()
    outs = await asyncio.gather(*(BR.load(p, part) for p, part in zip(ports, parts)))
    dt = time.perf_counter() - t0
    lat = sorted(x for _, _, lt in outs for x in lt)
    return sum(n for n, _, _ in outs), dt, lat


def run(kind, plan, server, mk_file):
    """One end-to-end run on a fresh store: 'sqlite', 'pg-1' or 'pg-2'."""
    if kind == "sqlite":
        db = os.path.join(WORK, "bench.db")
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(db + suffix):
                os.unlink(db + suffix)
    else:
        server.sql("DROP DATABASE IF EXISTS bench WITH (FORCE)")
        server.sql("CREATE DATABASE bench")
        db = server.url("bench")
    st = S.open_store(db, masterkey.load(mk_file))
    for dev, key, _, _ in plan:
        st.add_device(dev, key, "bench %d" % dev)
    st.close()
    nodes = [start_node(db, mk_file, "%s-%d" % (kind, i)) for i in range(2 if kind == "pg-2" else 1)]
    try:
        n, dt, lat = asyncio.run(_loads([p for _, p in nodes], [(keys, frames) for _, _, keys, frames in plan]))
    finally:
        for proc, _ in nodes:
            proc.terminate()
        for proc, _ in nodes:
            proc.wait(30)
    st = S.open_store(db)
    stored = st.count_frames()
    st.close()
    if stored != n:
        raise SystemExit("%s: only %d of %d ACKed frames are in the store" % (kind, stored, n))
    return {"fps": n / dt, "p50": 1000 * lat[len(lat) // 2], "p99": 1000 * lat[int(len(lat) * 0.99)], "n": n}


# ---------------------------------------------------------------- drivers

SCHEMA = """
DROP TABLE IF EXISTS bd, bf, br, be;
CREATE TABLE bd (device_id BIGINT PRIMARY KEY, last_seen DOUBLE PRECISION, battery BIGINT);
CREATE TABLE br (device_id BIGINT PRIMARY KEY, win BYTEA NOT NULL, down_seq BIGINT NOT NULL);
CREATE TABLE bf (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, device_id BIGINT NOT NULL, seq BIGINT NOT NULL,
                 raw BYTEA NOT NULL, decoded TEXT NOT NULL, UNIQUE (device_id, seq));
CREATE TABLE be (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, time DOUBLE PRECISION, body TEXT NOT NULL);
INSERT INTO bd SELECT g, 0, 0 FROM generate_series(1, 100) g;
INSERT INTO br SELECT g, '\\x00', 0 FROM generate_series(1, 100) g;
"""
RAW = bytes(range(90))
BODY = '{"kind": "track", "frame": {"seq": 1}, "position": {"lat_e7": 515007292, "lon_e7": -1246254}}'


def psycopg_round(url, seq0):
    import psycopg

    with psycopg.connect(url, autocommit=True) as c:
        t0 = time.perf_counter()
        for i in range(TX_N):
            dev, seq = 1 + i % 100, seq0 + i
            with c.transaction():
                c.execute("SELECT device_id FROM bd WHERE device_id = ANY(%s) ORDER BY device_id FOR UPDATE", ([dev],))
                c.execute("SELECT d.*, r.win, r.down_seq FROM bd d LEFT JOIN br r ON r.device_id = d.device_id "
                          "WHERE d.device_id = ANY(%s)", ([dev],)).fetchall()
                c.execute("INSERT INTO bf (device_id, seq, raw, decoded) VALUES (%s, %s, %s, %s) RETURNING id",
                          (dev, seq, RAW, BODY)).fetchone()
                c.execute("UPDATE br SET win = %s, down_seq = %s WHERE device_id = %s", (RAW[:16], seq, dev))
                c.execute("UPDATE bd SET last_seen = %s, battery = %s WHERE device_id = %s", (time.time(), 80, dev))
                c.execute("INSERT INTO be (time, body) VALUES (%s, %s)", (time.time(), BODY))
        return TX_N / (time.perf_counter() - t0)


def asyncpg_round(url, seq0):
    import asyncpg

    async def go():
        c = await asyncpg.connect(url)
        try:
            t0 = time.perf_counter()
            for i in range(TX_N):
                dev, seq = 1 + i % 100, seq0 + i
                async with c.transaction():
                    await c.fetch("SELECT device_id FROM bd WHERE device_id = ANY($1::bigint[]) ORDER BY device_id "
                                  "FOR UPDATE", [dev])
                    await c.fetch("SELECT d.*, r.win, r.down_seq FROM bd d LEFT JOIN br r ON r.device_id = d.device_id "
                                  "WHERE d.device_id = ANY($1::bigint[])", [dev])
                    await c.fetchval("INSERT INTO bf (device_id, seq, raw, decoded) VALUES ($1, $2, $3, $4) RETURNING id",
                                     dev, seq, RAW, BODY)
                    await c.execute("UPDATE br SET win = $1, down_seq = $2 WHERE device_id = $3", RAW[:16], seq, dev)
                    await c.execute("UPDATE bd SET last_seen = $1, battery = $2 WHERE device_id = $3", time.time(), 80, dev)
                    await c.execute("INSERT INTO be (time, body) VALUES ($1, $2)", time.time(), BODY)
            return TX_N / (time.perf_counter() - t0)
        finally:
            await c.close()

    return asyncio.run(go())


def drivers(server):
    server.sql("DROP DATABASE IF EXISTS drivers WITH (FORCE)")
    server.sql("CREATE DATABASE drivers")
    import psycopg

    with psycopg.connect(server.url("drivers"), autocommit=True) as c:
        c.execute(SCHEMA)
    url = server.url("drivers")
    seq = [0]

    def next_seq():
        seq[0] += TX_N
        return seq[0]

    return interleave({"psycopg": lambda: psycopg_round(url, next_seq()),
                       "asyncpg": lambda: asyncpg_round(url, next_seq())}, rounds=RUNS)


def main():
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    mk_file = os.path.join(WORK, "master.key")
    with open(os.open(mk_file, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
        f.write(masterkey.generate_hex())
    BR.CONNS, BR.PER_CONN = CONNS, PER_CONN
    plan = BR.make_plan()
    server = pg.PgServer.start_new(fsync=True)
    try:
        res = interleave({k: (lambda k=k: run(k, plan, server, mk_file)) for k in ("sqlite", "pg-1", "pg-2")},
                         rounds=RUNS)
        d = drivers(server)
        lead = [takeover(server, mk_file, k) for k in range(RUNS)]
    finally:
        server.stop()
        server.remove()
    print("pg: %d frames over %d concurrent connections per run, commit (fsync on) before every ACK, every ACKed "
          "frame found in the store after each run; %d interleaved rounds" % (res["sqlite"][0]["n"], CONNS, RUNS))
    how = "median of %d interleaved runs, fresh store each" % RUNS
    for k in ("sqlite", "pg-1", "pg-2"):
        m, spread = median_spread([r["fps"] for r in res[k]])
        if k == "pg-2":
            verdict(B, "pg-2 (two nodes, one database): committed frames/s", m, TARGET_FPS, "frames/s",
                    spread=spread, method=how)
        else:
            note(B, "%s: committed frames/s" % k, m, "frames/s", how, spread=spread)
        for p in ("p50", "p99"):
            m, spread = median_spread([r[p] for r in res[k]])
            note(B, "%s: ACK latency %s" % (k, p), m, "ms", how, spread=spread)
    how = "median of %d interleaved rounds of %d transactions, one connection" % (RUNS, TX_N)
    mp, sp = median_spread(d["psycopg"])
    ma, sa = median_spread(d["asyncpg"])
    note(B, "driver psycopg 3: batch transactions/s", mp, "tx/s", how, spread=sp)
    note(B, "driver asyncpg: batch transactions/s", ma, "tx/s", how, spread=sa)
    verdict(B, "driver psycopg / asyncpg, transactions/s", mp / ma, DRIVER_RATIO, "x", method=how)
    m, spread = median_spread(lead)
    verdict(B, "leader killed -> the other node leads", m, TAKEOVER_S, "s", higher_is_better=False, spread=spread,
            method="median of %d kill -9 of the leading serve, two nodes" % RUNS)


if __name__ == "__main__":
    main()
