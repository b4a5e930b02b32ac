"""The receiver's location database: cell ids and Wi-Fi BSSIDs to
positions, imported from CSV files, and the lookups that turn a frame's
cell and Wi-Fi observations into receiver-resolved positions.

Owns: the two CSV formats (below), streaming import with bad rows counted
and reported by line number, and the lookups (`Locator`): a cell's
position with its range as the accuracy, a Wi-Fi estimate weighted from
several BSSIDs with its spread. The rows live in the receiver's store
(receiver/store.py schema 4: location_sets, cells, wifi_aps); the SQL is
the store's. Never decides where the person is (receiver/estimate.py does)
and never labels a resolved position as the device's: its source is
"cell (resolved)" or "wifi (resolved)" and its note names the data set and
its licence.

Formats (the header line decides which one a file is):

  OpenCellID cell export (CC BY-SA 4.0: every view of a position resolved
  from it says so), the exchange format of OpenCellID and Mozilla
  Location Service (mozilla/ichnaea docs/import_export.rst):
      radio,mcc,net,area,cell,unit,lon,lat,range,samples,changeable,created,updated,averageSignal
  radio GSM/UMTS/LTE/CDMA/NR; mcc, net (MNC), area (LAC or TAC), cell (the
  cell id as the modem reports it in AT+CPSI?); lon, lat in degrees; range
  in metres (the radius of the cell's area); created/updated Unix seconds.
  The device's cell TLV carries no radio type, so a lookup matches every
  radio with that (mcc, net, area, cell).

  BSSID survey (the centre's own: no public BSSID database remains):
      bssid,lat,lon,range,surveyed
  bssid aa:bb:cc:dd:ee:ff (or with '-', or 12 hex digits); lat, lon in
  degrees; range in metres: the farthest a device can hear it; surveyed:
  the date (YYYY-MM-DD, or Unix seconds) it was measured.

Import: a file is read as a stream (gzip when it ends in .gz), rows are
checked one by one and written under a new location set in transactions of
CHUNK rows, so a running receiver keeps committing in between; the set
becomes visible to lookups in one small transaction at the end. Bad rows
are skipped, counted and reported with their line numbers; more than
max_bad of them, a wrong header, or an interruption leave the set 'failed'
and nothing of it is ever used (never half-imported). Re-importing a set of
the same name replaces the old one when the new one is complete.

Resolution (Locator):
  cell   every matching row of an active set; one row: its position and
         range; several (other radios, other sets): the best-sampled row's
         position, with the range grown to cover every matching row's area.
  Wi-Fi  the BSSIDs found: a centroid weighted by received amplitude
         (10^(RSSI/20)), and as accuracy the tightest bound the ranges
         give: the device heard every one of them, so it is within
         range_i of each, hence within d(centroid, ap_i) + range_i of the
         centroid for every i; the weighted RMS distance of the BSSIDs from
         the centroid is reported as the spread.

Must stay in sync with: receiver/store.py (tables, SQL), receiver/core.py
(which observations it resolves), docs/receiver.md ("Location database"),
bench/bench_locations.py.
"""

import csv
import gzip
import io
import math
import os
import sys
import time

from receiver.errors import ReceiverError

CELL_HEADER = ("radio", "mcc", "net", "area", "cell", "unit", "lon", "lat", "range", "samples", "changeable", "created",
               "updated", "averageSignal")
WIFI_HEADER = ("bssid", "lat", "lon", "range", "surveyed")
RADIOS = ("GSM", "UMTS", "LTE", "CDMA", "NR")
CHUNK = 5000  # rows per transaction: a few tens of ms, so a serving receiver's group commits wait little
MAX_RANGE_M = 100000  # a larger "range" is a broken row, not a cell (OpenCellID has a few of millions of metres)
DEFAULT_MAX_BAD = 1000
REPORT_BAD = 20  # bad rows listed by line number (all are counted)
MEMO_MAX = 50000  # cells remembered between batches (about 10 MB at most)
OPENCELLID = ("OpenCellID", "CC BY-SA 4.0")
EARTH_M = 6371008.8


class LocationFileError(ReceiverError):
    """An import that cannot go on (wrong header, too many bad rows)."""


def distance_m(lat1, lon1, lat2, lon2):
    """Great-circle distance in metres between two points in degrees."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp = p2 - p1
    dl = math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_M * math.asin(min(1.0, math.sqrt(a)))


def _e7(text, lo, hi, what):
    try:
        v = float(text)
    except ValueError:
        raise ValueError("%s %r is not a number" % (what, text))
    if not (lo <= v <= hi):  # NaN fails this too
        raise ValueError("%s %s is out of %d..%d" % (what, text, lo, hi))
    return int(round(v * 1e7))


def _int(text, lo, hi, what):
    try:
        v = int(text)
    except ValueError:
        raise ValueError("%s %r is not a whole number" % (what, text))
    if not lo <= v <= hi:
        raise ValueError("%s %s is out of %d..%d" % (what, text, lo, hi))
    return v


def parse_bssid(text):
    s = text.strip().replace(":", "").replace("-", "").lower()
    if len(s) != 12 or any(c not in "0123456789abcdef" for c in s):
        raise ValueError("bssid %r is not six hex pairs" % text)
    return int(s, 16)


def bssid_text(b):
    if isinstance(b, int):
        b = b.to_bytes(6, "big")
    return ":".join("%02x" % x for x in b)


def _date(text):
    """YYYY-MM-DD or Unix seconds -> Unix seconds (or None if empty)."""
    text = text.strip()
    if not text:
        return None
    if text.isdigit():
        return int(text)
    try:
        return int(time.mktime(time.strptime(text[:10], "%Y-%m-%d")) - time.timezone)
    except ValueError:
        raise ValueError("surveyed %r is not a date (YYYY-MM-DD) or Unix seconds" % text)


def _cell_row(f, set_id):
    if len(f) != 14:
        raise ValueError("%d fields, want 14" % len(f))
    radio = f[0].strip().upper()
    if radio not in RADIOS:
        raise ValueError("radio %r is not one of %s" % (f[0], ", ".join(RADIOS)))
    return (_int(f[1], 0, 999, "mcc"), _int(f[2], 0, 999, "net"), _int(f[3], 0, 0xFFFFFFFF, "area"),
            _int(f[4], 0, 0xFFFFFFFFF, "cell"), radio, set_id, _e7(f[7], -90, 90, "lat"), _e7(f[6], -180, 180, "lon"),
            _int(f[8], 1, MAX_RANGE_M, "range"), _int(f[9], 0, 1 << 40, "samples") if f[9].strip() else None,
            _int(f[12], 0, 1 << 40, "updated") if f[12].strip() else None)


def _wifi_row(f, set_id):
    if len(f) != 5:
        raise ValueError("%d fields, want 5" % len(f))
    return (parse_bssid(f[0]), set_id, _e7(f[1], -90, 90, "lat"), _e7(f[2], -180, 180, "lon"),
            _int(f[3], 1, MAX_RANGE_M, "range"), _date(f[4]))


def _open_text(path):
    if path == "-":
        return sys.stdin, None
    raw = open(path, "rb")
    size = os.fstat(raw.fileno()).st_size
    if path.endswith(".gz"):
        return io.TextIOWrapper(gzip.GzipFile(fileobj=raw), encoding="utf-8", errors="replace", newline=""), (raw, size)
    return io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline=""), (raw, size)


class ImportResult:
    def __init__(self, kind, set_id, name):
        self.kind = kind
        self.set_id = set_id
        self.name = name
        self.rows = 0
        self.bad = 0
        self.bad_lines = []  # (line number, why), the first REPORT_BAD
        self.seconds = 0.0
        self.pruned = 0

    def summary(self):
        return "%s set %d %r: %d rows imported, %d bad" % (self.kind, self.set_id, self.name, self.rows, self.bad)


def import_file(store, path, name=None, licence=None, max_bad=DEFAULT_MAX_BAD, actor=None, progress=None,
                chunk=CHUNK, text=None):
    """Import one CSV file (or `text`, a file-like object, for tests and the
    simulator) into `store`. name/licence: the data set's (default for an
    OpenCellID file: OpenCellID, CC BY-SA 4.0; for a survey: the file's
    name, no licence). progress(rows, bad, fraction or None): called about
    every chunk. Returns an ImportResult; raises LocationFileError (the set is
    then 'failed' and never used)."""
    t0 = time.monotonic()
    if text is None:
        f, sized = _open_text(path)
    else:
        f, sized = text, None
    try:
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            raise LocationFileError("%s is empty" % path)
        except csv.Error as e:
            raise LocationFileError("%s line 1: %s" % (path, e))
        head = tuple(h.strip() for h in header)
        if head and head[0].startswith("\ufeff"):
            head = (head[0][1:],) + head[1:]
        if head == CELL_HEADER:
            kind, parse, insert = "cell", _cell_row, store.insert_cells
            name = name or OPENCELLID[0]
            if licence is None and name == OPENCELLID[0]:
                licence = OPENCELLID[1]
        elif head == WIFI_HEADER:
            kind, parse, insert = "wifi", _wifi_row, store.insert_wifi_aps
            name = name or os.path.basename(path)
        else:
            raise LocationFileError("%s: the header is neither an OpenCellID export (%s) nor a BSSID survey (%s); got %s" % (
                path, ",".join(CELL_HEADER), ",".join(WIFI_HEADER), ",".join(header)[:200]))
        set_id = store.begin_location_set(kind, name, licence, os.path.abspath(path) if path != "-" else "-", actor)
        res = ImportResult(kind, set_id, name)
        try:
            _stream(store, reader, parse, insert, set_id, res, max_bad, progress, chunk, sized, path)
        except BaseException:
            store.fail_location_set(set_id, res.rows, res.bad)
            raise
        store.activate_location_set(set_id, res.rows, res.bad, actor)
        res.pruned = store.prune_location_sets()
        res.seconds = time.monotonic() - t0
        return res
    finally:
        if text is None and f is not sys.stdin:
            f.close()


def _stream(store, reader, parse, insert, set_id, res, max_bad, progress, chunk, sized, path):
    batch = []
    line = 1
    while True:
        try:
            f = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            line = reader.line_num
            _bad(res, line, str(e), max_bad, path)
            continue
        line = reader.line_num
        if not f or (len(f) == 1 and not f[0].strip()):
            continue  # a blank line
        try:
            batch.append(parse(f, set_id))
        except (ValueError, IndexError) as e:
            _bad(res, line, str(e), max_bad, path)
            continue
        if len(batch) >= chunk:
            _flush(store, insert, batch, res)
            batch = []
            if progress is not None:
                progress(res.rows, res.bad, _fraction(sized))
    if batch:
        _flush(store, insert, batch, res)
    if progress is not None:
        progress(res.rows, res.bad, 1.0)


def _flush(store, insert, batch, res):
    with store.transaction():
        insert(batch)
    res.rows += len(batch)


def _bad(res, line, why, max_bad, path):
    res.bad += 1
    if len(res.bad_lines) < REPORT_BAD:
        res.bad_lines.append((line, why))
    if res.bad > max_bad:
        raise LocationFileError("%s: more than %d bad rows (line %d: %s); nothing of this file is used" % (
            path, max_bad, line, why))


def _fraction(sized):
    if sized is None:
        return None
    raw, size = sized
    try:
        return min(1.0, raw.tell() / size) if size else None
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------- lookups

def attribution(name, licence):
    """How a resolved position credits its data: "OpenCellID, CC BY-SA 4.0"."""
    return "%s, %s" % (name, licence) if licence else name


def cell_text(mcc, mnc, tac, cid):
    return "cell %03d-%02d TAC %d id %d" % (mcc, mnc, tac, cid)


class Locator:
    """Resolves a frame's cell and Wi-Fi observations against the store's
    active location sets. The memo lives as long as the store's row cache
    (dropped when another process commits, e.g. an import activating a
    set), so a device camped on one cell costs one query."""

    def __init__(self, store):
        self.store = store
        self.lookups = 0

    def _sets(self):
        m = self.store.batch_memo("location_sets")
        sets = m.get("active")
        if sets is None:
            sets = m["active"] = self.store.active_location_sets()
        return sets

    def cell(self, mcc, mnc, tac, cid):
        """(lat_e7, lon_e7, accuracy_m, note) or (None, None, None, note
        saying it is not in the database)."""
        memo = self.store.batch_memo("cells")
        key = (mcc, mnc, tac, cid)
        hit = memo.get(key)
        if hit is None:
            if len(memo) >= MEMO_MAX:
                memo.clear()  # a receiver that runs for months must not grow without bound
            hit = memo[key] = self._cell(mcc, mnc, tac, cid)
        return hit

    def _cell(self, mcc, mnc, tac, cid):
        self.lookups += 1
        sets = self._sets()
        rows = [r for r in self.store.cell_rows(mcc, mnc, tac, cid) if r[4] in sets]
        what = cell_text(mcc, mnc, tac, cid)
        if not rows:
            return None, None, None, "%s not in database" % what
        rows.sort(key=lambda r: -(r[3] or 0))
        lat, lon, rng = rows[0][0], rows[0][1], rows[0][2]
        acc = rng
        for r in rows[1:]:  # other radios or sets: grow the radius to cover every matching area
            acc = max(acc, int(math.ceil(distance_m(lat / 1e7, lon / 1e7, r[0] / 1e7, r[1] / 1e7))) + r[2])
        credit = sorted({attribution(sets[r[4]][1], sets[r[4]][2]) for r in rows})
        return lat, lon, acc, "%s (%s; %s)" % (what, rows[0][5], "; ".join(credit))

    def wifi(self, seen):
        """seen: [(bssid 6 bytes, rssi dBm)]. (lat_e7, lon_e7, accuracy_m,
        note) or (None, None, None, note saying none is in the database)."""
        self.lookups += 1
        sets = self._sets()
        found = []
        credit = set()
        for bssid, rssi in seen:
            rows = [r for r in self.store.wifi_rows(int.from_bytes(bytes(bssid), "big")) if r[4] in sets]
            if rows:
                r = min(rows, key=lambda r: r[2])
                found.append((r[0] / 1e7, r[1] / 1e7, r[2], rssi))
                credit.add(attribution(sets[r[4]][1], sets[r[4]][2]))
        names = ", ".join(bssid_text(b) for b, _ in seen)
        if not found:
            return None, None, None, "Wi-Fi %s not in database" % names
        lat, lon, acc, spread = wifi_estimate(found)
        note = "Wi-Fi %d of %d BSSIDs known (%s), spread %d m (%s)" % (len(found), len(seen), names, spread,
                                                                       "; ".join(sorted(credit)))
        return int(round(lat * 1e7)), int(round(lon * 1e7)), acc, note


def wifi_estimate(found):
    """found: [(lat, lon, range_m, rssi)] -> (lat, lon, accuracy_m,
    spread_m): the amplitude-weighted centroid, the tightest radius the
    ranges prove (see the module header) and the weighted RMS spread."""
    w = [10 ** (max(-127, min(0, rssi)) / 20.0) for _, _, _, rssi in found]
    tw = sum(w)
    lat0, lon0 = found[0][0], found[0][1]
    k = math.cos(math.radians(lat0))
    # local east/north metres around the first BSSID (a few hundred metres at most)
    xs = [(lo - lon0) * k * 111320.0 for _, lo, _, _ in found]
    ys = [(la - lat0) * 111320.0 for la, _, _, _ in found]
    cx = sum(wi * x for wi, x in zip(w, xs)) / tw
    cy = sum(wi * y for wi, y in zip(w, ys)) / tw
    lat = lat0 + cy / 111320.0
    lon = lon0 + cx / (k * 111320.0) if k else lon0
    dists = [distance_m(lat, lon, la, lo) for la, lo, _, _ in found]
    acc = min(d + r for d, (_, _, r, _) in zip(dists, found))
    spread = math.sqrt(sum(wi * d * d for wi, d in zip(w, dists)) / tw)
    return lat, lon, int(math.ceil(acc)), int(round(spread))
