"""Where the person is now: the receiver's position estimate for an incident
(and for a device), chosen by explicit rules, with every other position
kept as evidence.

Owns: the rules table below, merging a newly received position into a
row's evidence, choosing the estimate, and the estimate's views (an event's
`position` and `evidence`, `watch` lines, the operator console's
`view(row, now)`, and `trail(frames, now, locator)`: every position an
incident's stored frames carried). Never does I/O and never reads a clock:
the caller passes `now` (Unix seconds), and to `trail` the frames and the
locator whose lookups it may make. The normative rule it keeps is docs/protocol.md,
"Position semantics": a coarser or older position never replaces a finer,
newer one as "where the person is now", and each is kept and shown with its
source and age.

A position ("candidate") is a tuple

    (lat_e7, lon_e7, accuracy_m, time, source, note, seq)

time: Unix seconds when it was true (the frame's time minus the age the
device reported, never after the frame arrived; a position resolved here
from a cell or Wi-Fi observation: the frame's time), or None when unknown.
source: "gnss" (live fix), "last_fix", "wifi" or "cell" (coordinates the
device itself obtained), "wifi (resolved)" or "cell (resolved)" (resolved
at the receiver from its location database, receiver/locations.py; never
shown as the device's fix). note: what a coarse position rests on (cell id,
BSSIDs, the data set and its licence), else None. seq: the frame that
carried the position or the observation.

The rules (RULES is the table; STALE_S the one stated age):

  R1  Within a class the newer position wins (a tie: the smaller accuracy,
      then a live fix before a last fix).
  R2  The estimate is the newest position of the finest class that has one
      at most STALE_S old at `now`.
  R3  When no position is that fresh, the newest one wins (a tie goes to
      the finer class; a position of unknown time is never fresh and loses
      every tie).

One stale age for every class means a stale fine position is always older
than a fresh coarse one: so a coarser or older position never replaces a
finer, newer one before that one is STALE_S old, and the estimate depends
only on the positions received and `now`, never on the order they arrived
in (tests/test_location_estimate.py checks both against a brute-force
reading of the rules over random sequences).

Storage (receiver/store.py schema 4): the estimate in the row's columns
lat_e7, lon_e7, source, accuracy_m, pos_time, pos_note, pos_seq (as
before: what SQL readers and the forwarders see); every other class's
newest position, the newest observation the database could not resolve,
and the count of (0, 0) placeholders in the row's `evidence` column (JSON),
rewritten only when it changes: a stream of live fixes never touches it.
The parsed state (state(row): [slots, unresolved, placeholders, selected
class]) is the caller's to keep beside the row and hand back with it: the
receiver core keeps it between batches with the rows the store caches
(core._Parsed), never inside the row, which holds only its columns.

Must stay in sync with: receiver/core.py (what it feeds in), store.py
(columns), watch.py (lines), docs/receiver.md ("Where the person is now",
the event fields).
"""

import json
import math

# Classes, finest first, and which sources belong to each (the rules table)
GNSS = 0
WIFI = 1
CELL = 2
RULES = (
    # class, name, sources (best first within the class)
    (GNSS, "GNSS fix", ("gnss", "last_fix")),
    (WIFI, "Wi-Fi", ("wifi", "wifi (resolved)")),
    (CELL, "cell", ("cell", "cell (resolved)")),
)
# R2/R3: after this many seconds a position no longer holds off a coarser,
# newer one. Five minutes at walking pace (1.4 m/s) is 420 m, in any vehicle
# kilometres: by then a fix's real uncertainty is that of an urban cell or
# Wi-Fi estimate, and the newer observation is the better bet. One age for
# every class (see the module header).
STALE_S = 300
CLASS_OF = {s: c for c, _n, srcs in RULES for s in srcs}
CLASS_NAMES = ("gnss", "wifi", "cell")
RESOLVED = ("wifi (resolved)", "cell (resolved)")
# within a class, at the same time and accuracy: a live fix before a last fix
_SRC_RANK = {"gnss": 3, "last_fix": 2, "wifi": 1, "cell": 1, "wifi (resolved)": 0, "cell (resolved)": 0}
_NO_TIME = -math.inf
_NO_ACC = 1 << 40


def _key(c):
    """R1's order within a class: newer, then more accurate, then the
    better source, then the coordinates and seq (a total order, so the
    outcome never depends on arrival order)."""
    t, acc = c[3], c[2]
    return (_NO_TIME if t is None else t, -(_NO_ACC if acc is None else acc), _SRC_RANK.get(c[4], 0),
            c[0], c[1], c[6] or 0)


def fresh(c, now):
    t = c[3]
    return t is not None and now - t <= STALE_S


def select(slots, now):
    """The class of the estimate among `slots` (each class's newest
    position or None) at `now`, or None when there is none (R2, R3)."""
    for cls in (GNSS, WIFI, CELL):
        c = slots[cls]
        if c is not None and c[3] is not None and now - c[3] <= STALE_S:
            return cls
    best = None
    bt = _NO_TIME
    for cls in (GNSS, WIFI, CELL):
        c = slots[cls]
        if c is None:
            continue
        t = _NO_TIME if c[3] is None else c[3]
        if best is None or t > bt:
            best, bt = cls, t
    return best


# ---------------------------------------------------------------- rows

def state(row):
    """The estimate's parsed state of a row (its estimate columns and its
    `evidence`): [slots, unresolved, placeholders, selected class], for
    add / observe_unresolved / placeholder / refresh / evidence to work on
    with the row."""
    slots: list = [None, None, None]
    sel = None
    src = row.get("source")
    lat = row.get("lat_e7")
    if lat is not None and src in CLASS_OF:
        lon = row.get("lon_e7")
        cls = CLASS_OF[src]
        if not (cls != GNSS and lat == 0 and lon == 0):  # a placeholder stored before schema 4: not a position
            slots[cls] = (lat, lon, row.get("accuracy_m"), row.get("pos_time"), src, row.get("pos_note"),
                          row.get("pos_seq"))
            sel = cls
    unresolved = None
    placeholders = 0
    text = row.get("evidence")
    if text:
        try:
            d = json.loads(text)
        except ValueError:
            d = {}
        for i, name in enumerate(CLASS_NAMES):
            v = d.get(name)
            if isinstance(v, list) and len(v) == 7 and i != sel:
                slots[i] = tuple(v)
        u = d.get("unresolved")
        if isinstance(u, list) and len(u) == 4:
            unresolved = tuple(u)
        placeholders = d.get("placeholders") or 0
    return [slots, unresolved, placeholders, sel]


def _evidence_json(st):
    slots, unresolved, placeholders, sel = st
    d = {}
    for i, name in enumerate(CLASS_NAMES):
        if i != sel and slots[i] is not None:
            d[name] = list(slots[i])
    if unresolved is not None:
        d["unresolved"] = list(unresolved)
    if placeholders:
        d["placeholders"] = placeholders
    return json.dumps(d, separators=(",", ":")) if d else None


def _store(row, st, now, evidence_dirty):
    """Choose the estimate at `now` and write it (and the evidence, when it
    changed) into the row's columns."""
    slots = st[0]
    sel = select(slots, now)
    if sel != st[3]:
        st[3] = sel
        evidence_dirty = True
    if sel is not None:
        c = slots[sel]
        row["lat_e7"], row["lon_e7"], row["accuracy_m"], row["pos_time"], row["source"], row["pos_note"], \
            row["pos_seq"] = c
    if evidence_dirty:
        row["evidence"] = _evidence_json(st)


def add(row, st, cand, now):
    """Merge one received position into a row (R1) and choose the estimate
    again at `now` (R2, R3). st: state(row), kept by the caller since.
    Returns True when the row's estimate columns now hold `cand`."""
    slots = st[0]
    cls = CLASS_OF[cand[4]]
    cur = slots[cls]
    t = cand[3]
    if cls == GNSS and st[3] == GNSS and t is not None and now - t <= STALE_S:
        # The hot path, a stream of live fixes: the selected class is the
        # finest and this fix is fresh, so R2 selects it again if R1 takes
        # it, and the evidence (the other classes) is unchanged.
        ct = cur[3]
        if (ct is not None and t > ct) or _key(cand) > _key(cur):
            slots[GNSS] = cand
            row["lat_e7"], row["lon_e7"], row["accuracy_m"], row["pos_time"], row["source"], row["pos_note"], \
                row["pos_seq"] = cand
            return True
        return False
    if cur is None or _key(cand) > _key(cur):
        slots[cls] = cand
        _store(row, st, now, cls != st[3])
    else:
        _store(row, st, now, False)
    return slots[st[3]] is cand if st[3] is not None else False


def observe_unresolved(row, st, time, source, note, seq, now):
    """An observation the location database could not resolve (source
    "cell" or "wifi", note "cell ... not in database"): kept as evidence
    (the newest one), never a position."""
    u = st[1]
    if u is None or (time or 0) >= (u[0] or 0):
        st[1] = (time, source, note, seq)
        _store(row, st, now, True)


def placeholder(row, st, now):
    """A cell or Wi-Fi source at (0, 0) from a device flashed before the
    position rule: counted on the row, never a position."""
    st[2] += 1
    _store(row, st, now, True)


def refresh(row, st, now):
    """The estimate again at a later `now` (R2/R3 depend on it): a view
    that shows a row long after its last frame calls this first."""
    _store(row, st, now, False)


# ---------------------------------------------------------------- views

def osm_link(lat_e7, lon_e7):
    lat = "%.7f" % (lat_e7 / 1e7)
    lon = "%.7f" % (lon_e7 / 1e7)
    return "https://www.openstreetmap.org/?mlat=%s&mlon=%s#map=18/%s/%s" % (lat, lon, lat, lon)


def _age(t, now):
    return None if t is None else max(0, round(now - t))


def position_dict(c, now):
    """A position as an event and a view show it."""
    lat, lon, acc, t, src, note, seq = c
    return {
        "lat_e7": lat, "lon_e7": lon, "lat": lat / 1e7, "lon": lon / 1e7, "source": src, "accuracy_m": acc,
        "fix_time": t, "age_s": _age(t, now), "map": osm_link(lat, lon), "note": note, "seq": seq,
        "stale": not fresh(c, now),
    }


def _evidence_item(c, newer, now):
    lat, lon, acc, t, src, note, seq = c
    return {"source": src, "lat_e7": lat, "lon_e7": lon, "lat": None if lat is None else lat / 1e7,
            "lon": None if lon is None else lon / 1e7, "accuracy_m": acc, "time": t, "age_s": _age(t, now),
            "note": note, "seq": seq, "newer": newer}


def evidence(st, now, extra=()):
    """What an operator sees beside the estimate: every other class's
    newest position that is newer than the estimate (coarse evidence that
    came in since) or finer than it (the last fix the estimate has moved
    on from), the newest unresolved observation if it is newer, and
    `extra` items (this frame's placeholder)."""
    slots, unresolved, _n, sel = st
    est = None if sel is None else slots[sel]
    et = _NO_TIME if est is None or est[3] is None else est[3]
    out = []
    for cls in (GNSS, WIFI, CELL):
        c = slots[cls]
        if c is None or cls == sel:
            continue
        t = _NO_TIME if c[3] is None else c[3]
        if t > et or sel is None or cls < sel:
            out.append(_evidence_item(c, t > et, now))
    if unresolved is not None:
        t, source, note, seq = unresolved
        if est is None or (t is not None and t > et):
            out.append(_evidence_item((None, None, None, t, source, note, seq), True, now))
    out.extend(extra)
    return out


def has_evidence(st):
    """True when the state holds anything besides its estimate (the event
    formatter's fast path: a stream of live fixes has none)."""
    slots, unresolved, _n, sel = st
    return unresolved is not None or (sel != GNSS and slots[GNSS] is not None) or (
        sel != WIFI and slots[WIFI] is not None) or (sel != CELL and slots[CELL] is not None)


def placeholder_item(source, seq, time, now):
    return {"source": source, "lat_e7": None, "lon_e7": None, "lat": None, "lon": None, "accuracy_m": None,
            "time": time, "age_s": _age(time, now),
            "note": "the device sent %s coordinates (0, 0): a placeholder of firmware older than the position rule, "
                    "not a position (ignored and counted)" % source, "seq": seq, "newer": True}


def trail(frames, now, locator=None):
    """Every position an incident's frames carried, oldest frame first:
    the evidence in full, beside the estimate's summary (`evidence` keeps
    only each class's newest). frames: store.trail_frames(id) rows
    (seq, type, frame_time, arrival, decoded). locator: a
    receiver.locations.Locator to resolve cell and Wi-Fi observations as
    the receiver did (its lookups are the caller's I/O), or None to list
    them unresolved. A frame with a live fix is not looked up (as in the
    core). Items as evidence items (source, lat_e7, lon_e7, lat, lon,
    accuracy_m, time, age_s, note, seq) plus type and arrival; a placeholder
    (0, 0) and an observation the database does not know have no
    coordinates and say so in the note. A frame whose decoded column is
    not JSON is listed with the note "unreadable" (never skipped)."""
    out = []
    for f in frames:
        seq, ftype, arrival = f["seq"], f["type"], f["arrival"]
        try:
            items = _trail_frame(json.loads(f["decoded"]), seq, arrival, now, locator)
        except (ValueError, KeyError, TypeError, AttributeError):
            items = [(None, None, None, None, None, "unreadable", seq)]
        out.extend(_trail_item(c, ftype, arrival, now) for c in items)
    return out


def _trail_frame(d, seq, arrival, now, locator):
    """The positions (candidate tuples) one decoded frame carried."""
    src = d.get("source") or "none"
    tlvs = d.get("tlvs") or []
    ft = d.get("time")
    t = ft if ft and ft < arrival else arrival  # a position is never from after its arrival
    out = []
    if src in CLASS_OF:
        lat, lon = d["lat_e7"], d["lon_e7"]
        if CLASS_OF[src] != GNSS and lat == 0 and lon == 0:
            out.append((None, None, None, t, src, placeholder_item(src, seq, t, now)["note"], seq))
        else:
            age = d.get("age_s")
            out.append((lat, lon, d.get("accuracy_m"), None if age is None else t - age, src, None, seq))  # as the core
    if src == "gnss" or not tlvs:
        return out
    cell = next((x for x in tlvs if x.get("tlv") == "cell"), None)  # the first is the serving cell
    aps = [x for x in tlvs if x.get("tlv") == "wifi"]
    if cell is not None:
        if locator is None:
            res = (None, None, None, "cell %03d-%02d TAC %d id %d (not resolved here)" % (
                cell["mcc"], cell["mnc"], cell["tac"], cell["cell_id"]))
        else:
            res = locator.cell(cell["mcc"], cell["mnc"], cell["tac"], cell["cell_id"])
        out.append((res[0], res[1], res[2], t, "cell" if res[0] is None else "cell (resolved)", res[3], seq))
    if aps:
        if locator is None:
            res = (None, None, None, "Wi-Fi %s (not resolved here)" % " ".join(x["bssid"] for x in aps))
        else:
            res = locator.wifi([(bytes.fromhex(x["bssid"].replace(":", "")), x["rssi"]) for x in aps])
        out.append((res[0], res[1], res[2], t, "wifi" if res[0] is None else "wifi (resolved)", res[3], seq))
    return out


def _trail_item(c, ftype, arrival, now):
    item = _evidence_item(c, False, now)
    del item["newer"]
    item["type"] = ftype
    item["arrival"] = arrival
    return item


def view(row, now):
    """The estimate of an incident or device row at `now`, for any view
    (watch, device show, the operator console):

        {"position": position dict or None, "evidence": [items],
         "placeholders": count}

    The position dict: lat_e7, lon_e7, lat, lon, source, accuracy_m,
    fix_time, age_s, map, note, seq, stale. An evidence item: source,
    lat_e7/lon_e7/lat/lon/accuracy_m (None for an unresolved observation),
    time, age_s, note, seq, newer (True: newer than the estimate). The row
    is not changed."""
    st = state(row)
    st[3] = select(st[0], now)
    pos = None if st[3] is None else position_dict(st[0][st[3]], now)
    return {"position": pos, "evidence": evidence(st, now), "placeholders": st[2]}
