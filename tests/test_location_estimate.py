"""Where the person is now (receiver/estimate.py): over random sequences of
positions of every source and age, the estimate obeys the rules of issue 14
(2) and docs/receiver.md ("Where the person is now"):

- a fresh GNSS fix beats a last fix beats Wi-Fi beats cell, resolved or not;
- within a kind the newer wins;
- a coarser or older position never displaces a finer, newer one before
  that one is STALE_S old; when everything is that old, the newest wins;
- the estimate is always one of the positions received (never made up,
  never a (0, 0) placeholder), whatever order they arrived in.

First on the rules module alone (many examples), then end to end: random
frames through the real receiver core with a location database, the
estimate read back from the events, the incident row and `watch`."""

import io
import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import frame as F
from receiver import estimate as E
from receiver import locations
from receiver.endpoint import Endpoint
from receiver.watch import format_incident
from recv_helpers import T0, Dev

SOURCES = ("gnss", "last_fix", "wifi", "cell", "wifi (resolved)", "cell (resolved)")
KIND_RANK = {"gnss": 0, "last_fix": 0, "wifi": 1, "wifi (resolved)": 1, "cell": 2, "cell (resolved)": 2}


def fresh(c, now):
    return c[3] is not None and now - c[3] <= E.STALE_S


def newer_key(c):
    """R1's order, as the rules state it: time, then accuracy, then a live
    fix before a last fix, then (to be total) the rest."""
    t = -math.inf if c[3] is None else c[3]
    acc = c[2] if c[2] is not None else 1 << 40
    live = {"gnss": 3, "last_fix": 2, "wifi": 1, "cell": 1}.get(c[4], 0)
    return (t, -acc, live, c[0], c[1], c[6] or 0)


def reference(received, now):
    """The rules read literally over everything received (no slots, no
    incremental state): the estimate at `now`, or None."""
    if not received:
        return None
    fr = [c for c in received if fresh(c, now)]
    if fr:
        finest = min(KIND_RANK[c[4]] for c in fr)
        return max((c for c in received if KIND_RANK[c[4]] == finest), key=newer_key)
    newest_t = max(-math.inf if c[3] is None else c[3] for c in received)
    tied = [c for c in received if (-math.inf if c[3] is None else c[3]) == newest_t]
    finest = min(KIND_RANK[c[4]] for c in tied)
    # R3 picks the finest class with a position that new; within it R1
    return max((c for c in received if KIND_RANK[c[4]] == finest), key=newer_key)


positions = st.lists(st.tuples(
    st.sampled_from(SOURCES),
    st.one_of(st.none(), st.integers(0, 1200)),  # age at arrival (None: unknown)
    st.one_of(st.none(), st.integers(1, 3000)),  # accuracy
    st.integers(0, 400),  # seconds since the previous arrival
    st.integers(0, 3),  # where (a few places, so ties happen)
), min_size=1, max_size=12)


def _cands(script):
    now = T0
    out = []
    for i, (src, age, acc, gap, where) in enumerate(script):
        now += gap
        t = None if age is None else now - age
        out.append(((515000000 + where, -1250000 - where, acc, t, src, None, i + 1), now))
    return out


@settings(max_examples=600, deadline=None)
@given(positions, st.integers(0, 2000))
def test_the_estimate_is_the_rules_read_literally_after_every_position(script, later):
    row = {"lat_e7": None}
    est_state = E.state(row)  # kept beside the row, as the receiver core keeps it; views read the row alone
    got = []
    for c, now in _cands(script):
        E.add(row, est_state, c, now)
        got.append(c)
        est = E.view(row, now)["position"]
        want = reference(got, now)
        assert (est["lat_e7"], est["lon_e7"], est["accuracy_m"], est["fix_time"], est["source"], est["seq"]) == (
            want[0], want[1], want[2], want[3], want[4], want[6])
    # and at any later time, with nothing new: the rules depend on `now`
    now = _cands(script)[-1][1] + later
    want = reference(got, now)
    assert E.view(row, now)["position"]["seq"] == want[6]


@settings(max_examples=400, deadline=None)
@given(positions, st.integers(0, 2000), st.randoms(use_true_random=False))
def test_the_rules_stated_one_by_one_and_in_any_order(script, later, rnd):
    cands = _cands(script)
    now = cands[-1][1] + later
    received = [c for c, _ in cands]
    shuffled = received[:]
    rnd.shuffle(shuffled)
    a, b = {"lat_e7": None}, {"lat_e7": None}
    sa, sb = E.state(a), E.state(b)
    for c in received:
        E.add(a, sa, c, now)
    for c in shuffled:
        E.add(b, sb, c, now)
    ea, eb = E.view(a, now)["position"], E.view(b, now)["position"]
    assert ea == eb  # the order of arrival does not matter
    est = next(c for c in received if c[6] == ea["seq"])  # one of the positions received: never made up
    k = KIND_RANK[est[4]]
    for x in received:
        kx = KIND_RANK[x[4]]
        if kx == k:  # within a kind the newer wins
            assert newer_key(x) <= newer_key(est)
        if kx < k:  # a finer one it displaced was stale (and older than the estimate when it is fresh)
            assert not fresh(x, now)
            if fresh(est, now):
                assert x[3] is None or x[3] < est[3]
        if kx > k and fresh(x, now) and x[3] is not None and est[3] is not None and x[3] > est[3]:
            assert fresh(est, now)  # newer coarse evidence never displaced a fresh, finer estimate
    if any(fresh(x, now) for x in received):  # a fresh GNSS fix beats Wi-Fi beats cell
        assert k == min(KIND_RANK[x[4]] for x in received if fresh(x, now))
    else:  # all stale: the newest wins
        assert (est[3] if est[3] is not None else -math.inf) == max(
            -math.inf if x[3] is None else x[3] for x in received)
    # what is not the estimate is still shown: each kind's newest is kept
    shown = E.view(a, now)
    kinds = {KIND_RANK[i["source"]] for i in shown["evidence"] if i["lat_e7"] is not None}
    for x in received:
        kx = KIND_RANK[x[4]]
        if kx == k:
            continue
        xt = -math.inf if x[3] is None else x[3]
        et = -math.inf if est[3] is None else est[3]
        if kx < k or xt > et:
            assert kx in kinds


def test_a_live_fix_five_seconds_old_holds_against_a_newer_cell_until_it_is_stale():
    """The shape of issue 14's report: a 4 m fix, then a coarse cell 5 s
    later. The fix stays the estimate, the cell shows as newer evidence;
    STALE_S after the fix the newer cell takes over, the fix still shown."""
    row = {"lat_e7": None}
    fix = (543247897, -27478262, 4, T0, "gnss", None, 130)
    cell = (543240000, -27480000, 1500, T0 + 5, "cell (resolved)", "cell 234-15 TAC 6699 id 30125732", 131)
    st = E.state(row)
    E.add(row, st, fix, T0)
    E.add(row, st, cell, T0 + 5)
    v = E.view(row, T0 + 5)
    assert v["position"]["source"] == "gnss" and v["position"]["accuracy_m"] == 4 and not v["position"]["stale"]
    assert [(i["source"], i["newer"]) for i in v["evidence"]] == [("cell (resolved)", True)]
    assert (row["lat_e7"], row["source"]) == (543247897, "gnss")  # the row's columns: what SQL readers see
    v = E.view(row, T0 + E.STALE_S + 1)
    assert v["position"]["source"] == "cell (resolved)"
    assert [(i["source"], i["newer"]) for i in v["evidence"]] == [("gnss", False)]


# ---------------------------------------------------------------- end to end

CELLS = {  # cell id -> (lat, lon, range): in the receiver's database
    1001: (54.3240, -2.7480, 1500),
    1002: (54.3300, -2.7400, 800),
}
APS = {  # BSSID -> (lat, lon, range)
    0x021122334401: (54.32410, -2.74810, 60),
    0x021122334402: (54.32430, -2.74840, 50),
    0x021122334403: (54.32415, -2.74790, 40),
}


def _database(store):
    cells = "radio,mcc,net,area,cell,unit,lon,lat,range,samples,changeable,created,updated,averageSignal\n" + "".join(
        "LTE,234,15,6699,%d,1,%.5f,%.5f,%d,10,1,1600000000,1700000000,0\n" % (cid, lon, lat, r)
        for cid, (lat, lon, r) in CELLS.items())
    aps = "bssid,lat,lon,range,surveyed\n" + "".join(
        "%s,%.5f,%.5f,%d,2026-03-01\n" % (locations.bssid_text(b), lat, lon, r) for b, (lat, lon, r) in APS.items())
    locations.import_file(store, "cells.csv", text=io.StringIO(cells))
    locations.import_file(store, "survey.csv", text=io.StringIO(aps))


frames = st.lists(st.tuples(
    st.integers(0, 4),  # source
    st.booleans(),  # a cell or Wi-Fi source sends the (0, 0) placeholder
    st.one_of(st.none(), st.integers(0, 900)),  # age
    st.sampled_from([None, 1001, 1002, 4242]),  # serving cell (4242: not in the database)
    st.lists(st.sampled_from(sorted(APS) + [0x02AAAAAAAAAA]), max_size=3, unique=True),  # Wi-Fi seen
    st.integers(1, 400),  # seconds since the previous frame
    st.booleans(),  # the device has no clock (frame time 0)
), min_size=1, max_size=8)


def _expected(fr_script):
    """What the test itself reads each frame to mean (the protocol's
    position semantics and the database above), as estimate candidates."""
    now = T0
    out = []
    for i, (src, zero, age, cell, wifi, gap, _no_clock) in enumerate(fr_script):
        now += gap
        seq = i + 1
        t_frame = now  # frames are made when they arrive here
        cands = []
        if src and not (zero and src >= F.SRC_CELL):
            cands.append((515000000 + i, -1250000, 10 * src, None if age is None else t_frame - age,
                          F.SOURCE_NAMES[src], seq))
        if src != F.SRC_GNSS:
            if cell in CELLS:
                cands.append((None, None, CELLS[cell][2], t_frame, "cell (resolved)", seq))
            if wifi and any(b in APS for b in wifi):
                cands.append((None, None, None, t_frame, "wifi (resolved)", seq))
        out.append((now, seq, cands))
    return out


@settings(max_examples=60, deadline=None)
@given(frames)
def test_random_frames_through_the_receiver_keep_the_rules(script):
    d = Dev(77)
    ep = Endpoint.in_memory({77: d.key}, {77: "URN 77"}, now=T0)
    _database(ep.store)
    received = []
    for (now, seq, cands), (src, zero, age, cell, wifi, _gap, no_clock) in zip(_expected(script), script):
        tlvs = []
        if cell is not None:
            tlvs.append((F.T_CELL, (234, 15, 6699, cell, -90)))
        for j, b in enumerate(wifi):
            tlvs.append((F.T_WIFI, (b.to_bytes(6, "big"), -50 - 10 * j)))
        ftime = 0 if no_clock else now
        if src and zero and src >= F.SRC_CELL:  # what older firmware sent; sealed by hand
            body = F.report_bytes(F.Report(F.SRC_CELL, 1, 1, 30, F.UNKNOWN_U16 if age is None else age, tlvs=tlvs))
            raw = F.encode_raw(d.keys, F.TRACK if seq > 1 else F.ALERT, 77, seq, ftime,
                               bytes([body[0], src]) + bytes(8) + body[10:])
        else:
            raw = F.encode(d.keys, F.Frame(F.TRACK if seq > 1 else F.ALERT, 77, seq, ftime, F.Report(
                src, 515000000 + seq - 1 if src else None, -1250000 if src else None, 10 * src,
                F.UNKNOWN_U16 if age is None else age, tlvs=tlvs)))
        ep.events.clear()
        assert ep.on_tcp_frame(raw, now)
        received += cands
        (ev,) = [e for e in ep.events if e["incident_id"] is not None]
        pos = ev["position"]
        if not received:
            assert pos is None
            continue
        # the estimate the receiver shows is the rules' pick among what the frames meant
        want = reference([(0, 0, c[2], c[3], c[4], None, c[5]) for c in received], now)
        assert pos is not None and (pos["source"], pos["seq"], pos["fix_time"]) == (want[4], want[6], want[3])
        assert (pos["lat_e7"], pos["lon_e7"]) != (0, 0)  # never a placeholder
        if pos["source"].endswith("(resolved)"):
            assert "not a device fix" in format_incident(ep.store.incidents()[0], "URN 77", now)
            if pos["source"] == "cell (resolved)":
                assert "OpenCellID, CC BY-SA 4.0" in pos["note"] and pos["accuracy_m"] in {r for _, _, r in CELLS.values()}
    if any(zero and src >= F.SRC_CELL for src, zero, *_ in script):
        assert ep.counters["placeholder position"] == sum(1 for src, zero, *_ in script if zero and src >= F.SRC_CELL)


def test_a_weighted_wifi_estimate_covers_where_the_device_is():
    """Three surveyed BSSIDs heard from a point inside all their ranges:
    the estimate's radius (the tightest the ranges prove) contains it."""
    rnd = random.Random(14)
    for _ in range(200):
        lat0, lon0 = 54.3241, -2.7481
        pts = [(lat0 + rnd.uniform(-0.0006, 0.0006), lon0 + rnd.uniform(-0.0009, 0.0009)) for _ in range(3)]
        where = (lat0 + rnd.uniform(-0.0002, 0.0002), lon0 + rnd.uniform(-0.0003, 0.0003))
        found = []
        for la, lo in pts:
            d = locations.distance_m(la, lo, *where)
            found.append((la, lo, int(d) + rnd.randint(1, 40), rnd.randint(-90, -40)))
        lat, lon, acc, spread = locations.wifi_estimate(found)
        assert locations.distance_m(lat, lon, *where) <= acc
        assert acc <= 1 + min(r for _, _, r, _ in found) + max(locations.distance_m(lat, lon, la, lo) for la, lo, _, _ in found)
