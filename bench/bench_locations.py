"""The receiver's location database (receiver/locations.py): importing a
1,000,000-row OpenCellID export, and cell lookups per second.

Import: a generated file in the OpenCellID format (the header of the real
export, rows of plausible UK LTE/UMTS/GSM cells, seeded), imported by
`panic receiver locations import` as an operator runs it: a subprocess on
a fresh store, its wall time and its peak memory (the child's maximum
resident set, getrusage). Beside it, the peer on equal work: a bare Python
import of the same file into the same table (csv.reader, executemany in
the same chunks, one commit per chunk) with no row checks, no location
set and no progress, also a subprocess.
Target: peak memory under 200 MB (the import streams; it never holds the
file). The time is shown, with the ratio to the peer.

Lookups: Locator.cell() as the receiver core calls it when a frame has no
live fix, on the imported store, the memo bypassed so every lookup reaches
SQLite: half of the ids in the database, half not. Beside it, the peer on
equal work: the same SELECT through a bare sqlite3 connection.
Target: >= 50,000 lookups/s. Medians of ROUNDS interleaved rounds.

Environment: LOCATIONS_BENCH_ROWS (1000000), LOCATIONS_BENCH_ROUNDS (5),
LOCATIONS_BENCH_LOOKUPS (50000).
"""

import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.verdict import interleave, median_spread, note, verdict  # noqa: E402
from receiver import locations  # noqa: E402
from receiver import store as S  # noqa: E402

B = "locations"
ROWS = int(os.environ.get("LOCATIONS_BENCH_ROWS", "1000000"))
ROUNDS = int(os.environ.get("LOCATIONS_BENCH_ROUNDS", "5"))
LOOKUPS = int(os.environ.get("LOCATIONS_BENCH_LOOKUPS", "50000"))
MEM_TARGET_MB = 200
LOOKUP_TARGET = 50000

_PEER = r"""
import csv, sqlite3, sys
db, path, chunk = sys.argv[1], sys.argv[2], int(sys.argv[3])
c = sqlite3.connect(db, isolation_level=None)
c.execute("PRAGMA journal_mode=WAL"); c.execute("PRAGMA synchronous=FULL")
r = csv.reader(open(path, newline=""))
next(r)
batch = []
def flush(b):
    c.execute("BEGIN IMMEDIATE")
    c.executemany("INSERT OR REPLACE INTO cells VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?)",
                  [(int(f[1]), int(f[2]), int(f[3]), int(f[4]), f[0], int(round(float(f[7]) * 1e7)),
                    int(round(float(f[6]) * 1e7)), int(f[8]), int(f[9]), int(f[12])) for f in b])
    c.execute("COMMIT")
for f in r:
    batch.append(f)
    if len(batch) >= chunk:
        flush(batch); batch = []
if batch:
    flush(batch)
"""


def generate(path, rows, seed=14):
    """An OpenCellID export of `rows` cells around Great Britain; returns
    a sample of (mcc, net, area, cell) that are in it."""
    rnd = random.Random(seed)
    sample = []
    with open(path, "w") as f:
        f.write(",".join(locations.CELL_HEADER) + "\n")
        for i in range(rows):
            radio = rnd.choice(("LTE", "LTE", "LTE", "UMTS", "GSM"))
            net = rnd.choice((10, 15, 20, 30))
            area = rnd.randrange(1, 65000)
            cell = rnd.randrange(1, 1 << 28) if radio != "GSM" else rnd.randrange(1, 65536)
            lat, lon = 50.0 + rnd.random() * 8.5, -6.0 + rnd.random() * 7.5
            f.write("%s,234,%d,%d,%d,%d,%.6f,%.6f,%d,%d,1,%d,%d,0\n" % (
                radio, net, area, cell, rnd.randrange(0, 504), lon, lat, rnd.randrange(200, 5000), rnd.randrange(1, 500),
                1500000000 + i, 1700000000 + i))
            if i % (rows // 2000 or 1) == 0:
                sample.append((234, net, area, cell))
    return sample


def _fresh_store(d, name):
    db = os.path.join(d, name)
    for x in ("", "-wal", "-shm"):
        if os.path.exists(db + x):
            os.remove(db + x)
    S.open_store(db).close()
    return db


def _measured(argv):
    """(seconds, peak MB) of one child, measured in a throwaway parent so
    the figure is that child's own maximum, not the largest one so far."""
    code = ("import resource, subprocess, sys, time; t = time.monotonic(); "
            "r = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True); "
            "dt = time.monotonic() - t; print('%f %d' % (dt, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)); "
            "sys.stdout.write(r.stdout[-2000:]); sys.exit(r.returncode)")
    p = subprocess.run([sys.executable, "-c", code] + argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True)
    first, _, rest = p.stdout.partition("\n")
    if p.returncode != 0:
        raise SystemExit("import failed: %s" % rest)
    dt, kb = first.split()
    return float(dt), int(kb) / 1024.0, rest


def main():
    d = tempfile.mkdtemp(prefix="panic-bench-locations-")
    try:
        csv_path = os.path.join(d, "cell_towers.csv")
        t0 = time.monotonic()
        sample = generate(csv_path, ROWS)
        print("  generated %s rows (%.0f MB) in %.1f s" % (format(ROWS, ","), os.path.getsize(csv_path) / 1e6,
                                                          time.monotonic() - t0), flush=True)

        def ours():
            db = _fresh_store(d, "ours.db")
            dt, mb, out = _measured([sys.executable, "-m", "tools.cli", "receiver", "locations", "import", "--db", db,
                                     csv_path, "--quiet"])
            assert "%s rows imported, 0 bad" % ROWS in out, out
            return dt, mb

        def peer():
            db = _fresh_store(d, "peer.db")
            dt, mb, _ = _measured([sys.executable, "-c", _PEER, db, csv_path, str(locations.CHUNK)])
            return dt, mb

        runs = interleave({"ours": ours, "peer": peer}, rounds=ROUNDS)
        t_ours, t_ours_sp = median_spread([r[0] for r in runs["ours"]])
        m_ours, m_ours_sp = median_spread([r[1] for r in runs["ours"]])
        t_peer, t_peer_sp = median_spread([r[0] for r in runs["peer"]])
        how = "median of %d interleaved runs, %s rows, a fresh store each" % (ROUNDS, format(ROWS, ","))
        verdict(B, "import of %s OpenCellID rows: peak memory" % format(ROWS, ","), m_ours, MEM_TARGET_MB, "MB",
                higher_is_better=False, spread=m_ours_sp, method=how + ", the child's maximum resident set")
        note(B, "import of %s OpenCellID rows: time" % format(ROWS, ","), t_ours, "s", how, spread=t_ours_sp)
        note(B, "import rows/s", ROWS / t_ours, "rows/s", how)
        note(B, "peer: bare Python csv + executemany, same table, no checks: time", t_peer, "s", how, spread=t_peer_sp)
        note(B, "import time / peer's", t_ours / t_peer, "x", how)

        # lookups on the last store ours imported
        st = S.open_store(os.path.join(d, "ours.db"))
        loc = locations.Locator(st)
        rnd = random.Random(7)
        keys = [rnd.choice(sample) if i % 2 == 0 else (234, 15, rnd.randrange(1, 65000), rnd.randrange(1, 1 << 28))
                for i in range(LOOKUPS)]
        assert loc._cell(*sample[0])[0] is not None
        import sqlite3

        raw = sqlite3.connect(os.path.join(d, "ours.db"))
        sql = ("SELECT lat_e7, lon_e7, range_m, samples, set_id, radio FROM cells WHERE mcc = ? AND net = ? AND area = ? "
               "AND cell = ?")

        def ours_lookups():
            t = time.perf_counter()
            for k in keys:
                loc._cell(*k)  # what Locator.cell() does on a memo miss
            return LOOKUPS / (time.perf_counter() - t)

        def peer_lookups():
            t = time.perf_counter()
            for k in keys:
                raw.execute(sql, k).fetchall()
            return LOOKUPS / (time.perf_counter() - t)

        rates = interleave({"ours": ours_lookups, "peer": peer_lookups}, rounds=ROUNDS)
        m, sp = median_spread(rates["ours"])
        mp_, spp = median_spread(rates["peer"])
        how = "median of %d interleaved rounds of %s lookups (half known, half not), memo bypassed" % (
            ROUNDS, format(LOOKUPS, ","))
        verdict(B, "cell lookups/s from the SQLite store", m, LOOKUP_TARGET, "lookups/s", spread=sp, method=how)
        note(B, "peer: the same SELECT on a bare sqlite3 connection", mp_, "lookups/s", how, spread=spp)
        note(B, "lookup rate / peer's", m / mp_, "x", how)
        st.close()
        raw.close()
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
