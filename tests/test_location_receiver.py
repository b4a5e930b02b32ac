"""Location truth at the receiver (issue 14), as an operator meets it:
`panic receiver sms`, `watch`, the JSON feed, the incident row and the
location database (`panic receiver locations import|list|lookup`).

The first two tests replay the situation of the shipped power_cut_mid_alert
scenario at TRACK seq 131: a 4 m GNSS fix, then 5 s later a TRACK from
firmware older than the position rule, whose cell source carries (0, 0).
On main before issue 14 `watch --once` listed the incident at
`0.0000000, 0.0000000 (cell, ...)`; now the 4 m fix stays where the person
is, and the cell shows as coarse evidence: resolved from the database, or
"not in database"."""

import gzip
import io
import json
import os
import time

import pytest

from protocol import frame as F
from protocol import sms
from receiver import core, estimate, locations, masterkey
from receiver import store as S
from receiver.endpoint import Endpoint
from recv_helpers import T0, Dev, older_store, store_path
from tools.cli import main

MK = "cd" * 32
CELL_HEADER = "radio,mcc,net,area,cell,unit,lon,lat,range,samples,changeable,created,updated,averageSignal\n"
SERVING = (234, 15, 6699, 30125732, -97)  # what AT+CPSI? reported: the cell TLV
FIX = (543247897, -27478262)  # the 4 m fix (power_cut_mid_alert's route, Kendal)


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def _placeholder_track(d, seq, t):
    """A TRACK as firmware older than the position rule built it: source 3
    (cell) with latitude and longitude 0 beside the serving cell. Today's
    encoder refuses it, so the body is sealed by hand."""
    body = F.report_bytes(F.Report(F.SRC_CELL, 1, 1, F.UNKNOWN_U16, F.UNKNOWN_U16, 61, 18,
                                   tlvs=[(F.T_CELL, SERVING)]))
    body = body[:2] + bytes(8) + body[10:]
    return F.encode_raw(d.keys, F.TRACK, d.id, seq, t, body)


def _registered(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(masterkey.ENV, MK)
    db = store_path(tmp_path, "rx.db")
    keyf = str(tmp_path / "dev.key")
    rc, out, err = run(capsys, "receiver", "device", "add", "--db", db, "--device-id", "1001", "--generate-key", keyf,
                       "--person-ref", "URN 01/1234/26")
    assert rc == 0, err
    return db, Dev(1001, bytes.fromhex(open(keyf).read().strip()))


def _power_cut_track_131(db, d, capsys):
    now = int(time.time())
    fix = F.encode(d.keys, F.Frame(F.TRACK, 1001, 130, now - 5, F.Report(
        F.SRC_GNSS, FIX[0], FIX[1], 4, 0, 61, 18, tlvs=[(F.T_CELL, SERVING), (F.T_GNSS, (9, 5))])))
    alert = F.encode(d.keys, F.Frame(F.ALERT, 1001, 2, now - 80, F.Report(F.SRC_LAST_FIX, FIX[0] + 300, FIX[1], 11, 72)))
    for raw in (alert, fix, _placeholder_track(d, 131, now)):
        rc, out, err = run(capsys, "receiver", "sms", "--db", db, "--from", "+447700900123", "--text", sms.text_of(raw))
        assert rc == 0 and json.loads(out)["status"] == "accepted", out + err


def _position_line(out):
    return next(line for line in out.splitlines() if line.strip().startswith("position"))


def test_power_cut_track_131_keeps_the_4_m_fix_and_says_the_cell_is_not_in_the_database(tmp_path, capsys, monkeypatch):
    db, d = _registered(tmp_path, capsys, monkeypatch)
    _power_cut_track_131(db, d, capsys)
    rc, out, err = run(capsys, "receiver", "watch", "--db", db, "--once")
    assert rc == 0
    line = _position_line(out)
    assert "54.3247897, -2.7478262" in line and "GNSS fix, +/-4 m" in line
    assert "0.0000000" not in out
    assert "cell 234-15 TAC 6699 id 30125732 not in database" in out
    assert "carried (0, 0) as a cell or Wi-Fi position" in out
    inc = S.open_store(db).incidents()[0]
    assert (inc["lat_e7"], inc["lon_e7"], inc["source"], inc["accuracy_m"], inc["pos_seq"]) == (FIX[0], FIX[1], "gnss", 4, 130)
    # every later view: `device show`, as text and as JSON
    rc, out, err = run(capsys, "receiver", "device", "show", "--db", db, "--device-id", "1001")
    assert rc == 0 and "0.0000000" not in out
    assert [line for line in out.splitlines() if "54.3247897, -2.7478262" in line and "GNSS fix, +/-4 m" in line]
    assert "cell 234-15 TAC 6699 id 30125732 not in database" in out  # the incident's evidence
    rc, out, err = run(capsys, "receiver", "device", "show", "--db", db, "--device-id", "1001", "--json")
    shown = json.loads(out)
    pos = shown["incident_positions"][str(inc["id"])]["position"]
    assert (pos["lat_e7"], pos["source"], pos["accuracy_m"], pos["seq"]) == (FIX[0], "gnss", 4, 130)
    assert shown["position"]["position"]["seq"] == 130 and shown["position"]["placeholders"] == 1


def test_power_cut_track_131_with_the_cell_in_the_database(tmp_path, capsys, monkeypatch):
    db, d = _registered(tmp_path, capsys, monkeypatch)
    cells = tmp_path / "cells.csv"
    cells.write_text(CELL_HEADER + "LTE,234,15,6699,30125732,257,-2.7480,54.3240,1500,40,1,1600000000,1700000000,0\n")
    rc, out, err = run(capsys, "receiver", "locations", "import", "--db", db, str(cells))
    assert rc == 0 and "1 rows imported, 0 bad" in out and "OpenCellID, CC BY-SA 4.0" in out
    _power_cut_track_131(db, d, capsys)
    feed = str(tmp_path / "events.jsonl")
    rc, out, err = run(capsys, "receiver", "watch", "--db", db, "--once", "--from-start", "--events", feed)
    rc, listed, err = run(capsys, "receiver", "watch", "--db", db, "--once")
    line = _position_line(listed)
    assert "54.3247897, -2.7478262" in line and "GNSS fix, +/-4 m" in line and "0.0000000" not in listed
    assert "newer coarse evidence: 54.3240000, -2.7480000 (cell (resolved)" in listed and "+/-1500 m" in listed
    assert "OpenCellID, CC BY-SA 4.0" in listed
    events = [json.loads(x) for x in open(feed)]
    last = events[-1]
    assert last["frame"]["seq"] == 131 and last["position"]["source"] == "gnss" and last["position"]["accuracy_m"] == 4
    assert not last["position_in_frame"]  # the placeholder is not a position
    ev = {i["source"]: i for i in last["evidence"]}
    assert ev["cell (resolved)"]["newer"] and ev["cell (resolved)"]["accuracy_m"] == 1500
    assert "OpenCellID, CC BY-SA 4.0" in ev["cell (resolved)"]["note"]
    assert "placeholder" in ev["cell"]["note"] and ev["cell"]["lat_e7"] is None
    assert all((e.get("position") or {}).get("lat_e7") not in (0, None) for e in events if "position" in e)
    # every received position, in full, for any later view (the console's route)
    st = S.open_store(db)
    inc = st.incidents()[0]
    items = estimate.trail(st.trail_frames(inc["id"]), time.time(), locations.Locator(st))
    assert [(i["seq"], i["source"]) for i in items] == [
        (2, "last_fix"), (130, "gnss"), (131, "cell"), (131, "cell (resolved)")]
    assert (items[0]["lat_e7"], items[0]["accuracy_m"]) == (FIX[0] + 300, 11)
    assert items[0]["time"] == items[1]["time"] - 75 - 72  # the ALERT's fix: its frame time less its 72 s age
    assert items[1]["lat_e7"] == FIX[0] and items[1]["accuracy_m"] == 4
    assert items[2]["lat_e7"] is None and "placeholder" in items[2]["note"]
    assert items[3]["accuracy_m"] == 1500 and "OpenCellID, CC BY-SA 4.0" in items[3]["note"]
    unresolved = estimate.trail(st.trail_frames(inc["id"]), time.time())[3]
    assert unresolved["source"] == "cell" and unresolved["note"] == "cell 234-15 TAC 6699 id 30125732 (not resolved here)"
    st.close()


def test_observations_alone_give_a_receiver_resolved_estimate_labelled_as_such():
    d = Dev(5)
    ep = Endpoint.in_memory({5: d.key}, {5: "URN 5"}, now=T0)
    locations.import_file(ep.store, "cells.csv", text=io.StringIO(
        CELL_HEADER + "LTE,234,15,6699,30125732,257,-2.7480,54.3240,1500,40,1,1600000000,1700000000,0\n"))
    ep.on_tcp_frame(d.frame(F.ALERT, t=T0, tlvs=[(F.T_CELL, (234, 15, 6699, 1, -90))]), T0 + 1)
    pos = ep.events[-1]["position"]
    assert pos is None and ep.events[-1]["evidence"][0]["note"] == "cell 234-15 TAC 6699 id 1 not in database"
    ep.on_tcp_frame(d.frame(F.TRACK, t=T0 + 30, tlvs=[(F.T_CELL, SERVING)]), T0 + 31)
    pos = ep.events[-1]["position"]
    assert pos["source"] == "cell (resolved)" and pos["accuracy_m"] == 1500 and pos["fix_time"] == T0 + 30
    assert (pos["lat_e7"], pos["lon_e7"]) == (543240000, -27480000)
    assert pos["note"] == "cell 234-15 TAC 6699 id 30125732 (LTE; OpenCellID, CC BY-SA 4.0)"
    row = ep.store.incidents()[0]
    assert row["source"] == "cell (resolved)" and row["pos_note"] == pos["note"]
    # a later GNSS fix takes over at once: finer and newer
    ep.on_tcp_frame(d.frame(F.TRACK, t=T0 + 60, source=F.SRC_GNSS, lat=FIX[0], lon=FIX[1], accuracy=6, age=0), T0 + 61)
    assert ep.events[-1]["position"]["source"] == "gnss"
    assert [i["source"] for i in ep.events[-1]["evidence"]] == []  # the resolved cell is older and coarser: not shown


def test_a_running_receiver_sees_an_import_made_by_another_process(tmp_path):
    """The receiver remembers lookups between batches; an import committed
    by another connection (the `locations import` command) drops them."""
    d = Dev(6)
    path = store_path(tmp_path, "rx.db")
    ep = Endpoint.in_memory({6: d.key}, {6: "URN 6"}, now=T0, path=path)
    ep.on_tcp_frame(d.frame(F.ALERT, t=T0, tlvs=[(F.T_CELL, SERVING)]), T0)
    assert "not in database" in ep.events[-1]["evidence"][0]["note"]
    other = S.open_store(path)
    locations.import_file(other, "cells.csv", text=io.StringIO(
        CELL_HEADER + "LTE,234,15,6699,30125732,257,-2.7480,54.3240,1500,40,1,1600000000,1700000000,0\n"))
    other.close()
    ep.on_tcp_frame(d.frame(F.TRACK, t=T0 + 10, tlvs=[(F.T_CELL, SERVING)]), T0 + 10)
    assert ep.events[-1]["position"]["source"] == "cell (resolved)"


def test_bad_rows_are_counted_and_reported_by_line_and_the_good_ones_used(tmp_path, capsys):
    db = store_path(tmp_path, "rx.db")
    S.open_store(db).close()
    f = tmp_path / "cells.csv"
    f.write_text(CELL_HEADER
                 + "LTE,234,15,6699,1,257,-2.7480,54.3240,1500,40,1,1600000000,1700000000,0\n"
                 + "LTE,234,15,6699,x,257,-2.7480,54.3240,1500,40,1,1600000000,1700000000,0\n"
                 + "\n"
                 + "WIMAX,234,15,6699,3,257,-2.7480,54.3240,1500,40,1,1600000000,1700000000,0\n"
                 + "GSM,234,15,6699,4,,-2.7480,95.5,1500,40,1,1600000000,1700000000,0\n"
                 + "UMTS,234,15,6699,5,,-2.7480,54.1,0,40,1,1600000000,1700000000,0\n"
                 + "LTE,234,15,6699,6,257,-2.7480,54.3240,1500\n"
                 + "GSM,234,10,100,7,,-0.1,51.5,13100000,1,1,1600000000,1700000000,0\n"
                 + "UMTS,234,15,6699,8,,-2.7481,54.3241,2000,40,1,1600000000,1700000000,0\n")
    rc, out, err = run(capsys, "receiver", "locations", "import", "--db", db, str(f))
    assert rc == 0, err
    assert "2 rows imported, 6 bad" in out
    for line, what in ((3, "cell 'x' is not a whole number"), (5, "radio 'WIMAX'"), (6, "lat 95.5 is out of -90..90"),
                       (7, "range 0 is out of"), (8, "9 fields, want 14"), (9, "range 13100000 is out of")):
        assert "bad row at line %d: %s" % (line, what) in out, out
    rc, out, err = run(capsys, "receiver", "locations", "lookup", "--db", db, "--cell", "234-15-6699-8")
    assert rc == 0 and "54.3241000, -2.7481000 cell (resolved) +/-2000 m" in out and "UMTS; OpenCellID" in out
    rc, out, err = run(capsys, "receiver", "locations", "lookup", "--db", db, "--cell", "234-15-6699-3")
    assert rc == 1 and "not in database" in out


def test_a_file_that_is_not_the_format_or_has_too_many_bad_rows_is_never_used(tmp_path, capsys):
    db = store_path(tmp_path, "rx.db")
    S.open_store(db).close()
    f = tmp_path / "x.csv"
    f.write_text("mcc,mnc,lac,cid,lat,lon\n234,15,1,2,54,-2\n")
    rc, out, err = run(capsys, "receiver", "locations", "import", "--db", db, str(f))
    assert rc == 1 and "the header is neither an OpenCellID export" in err
    f.write_text(CELL_HEADER + "LTE,234,15,6699,1,257,-2.7480,54.3240,1500,40,1,1600000000,1700000000,0\n"
                 + "nonsense\n" * 5)
    rc, out, err = run(capsys, "receiver", "locations", "import", "--db", db, str(f), "--max-bad", "3")
    assert rc == 1 and "more than 3 bad rows" in err and "nothing of this file is used" in err
    rc, out, err = run(capsys, "receiver", "locations", "lookup", "--db", db, "--cell", "234-15-6699-1")
    assert rc == 1 and "not in database" in out
    rc, out, err = run(capsys, "receiver", "locations", "list", "--db", db, "--json")
    sets = json.loads(out)
    assert [(s["kind"], s["state"]) for s in sets] == [("cell", "failed")]
    rc, out, err = run(capsys, "receiver", "locations", "import", "--db", db, str(tmp_path / "missing.csv"))
    assert rc == 3 and "cannot read" in err
    rc, out, err = run(capsys, "receiver", "locations", "import", "--db", store_path(tmp_path, "none.db", exists=False), str(f))
    assert rc == 3 and "no store" in err


def test_an_interrupted_import_leaves_nothing_half_imported(tmp_path, monkeypatch):
    st = S.open_store(store_path(tmp_path, "rx.db"))
    rows = "".join("LTE,234,15,6699,%d,1,-2.7480,54.3240,1500,40,1,1600000000,1700000000,0\n" % i for i in range(12000))
    real = st.insert_cells
    calls = []

    def cut(batch):
        calls.append(len(batch))
        if len(calls) == 2:
            raise KeyboardInterrupt()  # the operator's Ctrl-C, or the process dying, mid-file
        real(batch)

    monkeypatch.setattr(st, "insert_cells", cut)
    with pytest.raises(KeyboardInterrupt):
        locations.import_file(st, "cells.csv", text=io.StringIO(CELL_HEADER + rows))
    monkeypatch.undo()
    assert st.location_counts()  # the first chunk is on disk ...
    loc = locations.Locator(st)
    assert loc.cell(234, 15, 6699, 1)[0] is None  # ... and never used
    assert [r["state"] for r in st.location_sets()] == ["failed"]
    res = locations.import_file(st, "cells.csv", text=io.StringIO(CELL_HEADER + rows))
    assert res.rows == 12000 and res.pruned == 5000  # the failed set's rows are dropped after a good import
    st.drop_cache()
    assert locations.Locator(st).cell(234, 15, 6699, 1)[2] == 1500


def test_a_new_import_of_a_set_replaces_the_old_one_and_gzip_is_read(tmp_path, capsys):
    db = store_path(tmp_path, "rx.db")
    S.open_store(db).close()
    old = tmp_path / "cells.csv"
    old.write_text(CELL_HEADER + "LTE,234,15,6699,1,257,-2.7480,54.3240,1500,40,1,1600000000,1700000000,0\n"
                   + "LTE,234,15,6699,2,257,-2.7480,54.3240,1500,40,1,1600000000,1700000000,0\n")
    assert run(capsys, "receiver", "locations", "import", "--db", db, str(old))[0] == 0
    new = tmp_path / "cells.csv.gz"
    with gzip.open(new, "wt") as f:
        f.write(CELL_HEADER + "LTE,234,15,6699,1,257,-2.7000,54.3000,900,40,1,1600000000,1700000000,0\n")
    rc, out, err = run(capsys, "receiver", "locations", "import", "--db", db, str(new))
    assert rc == 0 and "2 rows of replaced or failed sets dropped" in out
    rc, out, err = run(capsys, "receiver", "locations", "lookup", "--db", db, "--cell", "234-15-6699-1")
    assert "54.3000000, -2.7000000" in out and "+/-900 m" in out
    assert run(capsys, "receiver", "locations", "lookup", "--db", db, "--cell", "234-15-6699-2")[0] == 1
    rc, out, err = run(capsys, "receiver", "locations", "list", "--db", db)
    assert "replaced" in out and "active" in out


def test_the_survey_format_and_a_weighted_wifi_estimate(tmp_path, capsys):
    db = store_path(tmp_path, "rx.db")
    S.open_store(db).close()
    f = tmp_path / "survey.csv"
    f.write_text("bssid,lat,lon,range,surveyed\n"
                 "02:11:22:33:44:01,54.32410,-2.74810,60,2026-03-01\n"
                 "02-11-22-33-44-02,54.32430,-2.74840,50,1772323200\n"
                 "021122334403,54.32415,-2.74790,40,\n"
                 "02:11:22:33:44,54.3,-2.7,40,2026-03-01\n"
                 "02:11:22:33:44:05,54.3,-2.7,40,March\n")
    rc, out, err = run(capsys, "receiver", "locations", "import", "--db", db, str(f), "--name", "centre survey 2026")
    assert rc == 0 and "wifi set 1 'centre survey 2026': 3 rows imported, 2 bad" in out
    assert "line 5: bssid '02:11:22:33:44' is not six hex pairs" in out and "line 6: surveyed 'March'" in out
    rc, out, err = run(capsys, "receiver", "locations", "lookup", "--db", db, "--wifi", "02:11:22:33:44:01@-55",
                       "02:11:22:33:44:02@-80", "02:11:22:33:44:03@-60", "02:11:22:33:44:99@-50")
    assert rc == 0 and "wifi (resolved)" in out and "3 of 4 BSSIDs known" in out and "centre survey 2026" in out
    d = Dev(8)
    ep = Endpoint.in_memory({8: d.key}, {8: "URN 8"}, now=T0, path=db)
    tlvs = [(F.T_WIFI, (bytes.fromhex("021122334401"), -55)), (F.T_WIFI, (bytes.fromhex("021122334403"), -60))]
    ep.on_tcp_frame(d.frame(F.ALERT, t=T0, tlvs=tlvs), T0)
    pos = ep.events[-1]["position"]
    assert pos["source"] == "wifi (resolved)" and pos["accuracy_m"] <= 40 + 20
    assert "Wi-Fi 2 of 2 BSSIDs known" in pos["note"] and "spread" in pos["note"]
    # the trail lists the Wi-Fi observation as the receiver resolved it, and a row it cannot read in words
    rows = ep.store.trail_frames(ep.events[-1]["incident_id"])
    items = estimate.trail(rows + [dict(rows[0], seq=9, decoded="{not json")], T0 + 5, locations.Locator(ep.store))
    assert [(i["seq"], i["source"], i["accuracy_m"]) for i in items] == [(1, "wifi (resolved)", pos["accuracy_m"]),
                                                                          (9, None, None)]
    assert items[0]["note"] == pos["note"] and items[0]["age_s"] == 5 and items[1]["note"] == "unreadable"


@pytest.mark.sqlite_only  # a SQLite schema migration
def test_a_version_3_store_migrates_to_4_and_keeps_its_incidents_and_positions(tmp_path, capsys):
    mk = masterkey.MasterKey(os.urandom(32))
    d = Dev(41)
    sent = [d.frame(F.ALERT, source=F.SRC_GNSS, lat=FIX[0], lon=FIX[1], accuracy=4, age=0), d.frame(F.TRACK)]
    old = older_store(tmp_path, mk, 3, d, sent)
    before = [dict(r) for r in old._x("SELECT * FROM incidents ORDER BY id").fetchall()]
    old.close()
    st = S.open_store(str(tmp_path / "v3.db"), mk)
    assert st.schema_version() == len(S.MIGRATIONS) >= 4
    after = st.incidents()
    assert [{k: r[k] for k in before[0]} for r in after] == before
    assert after[0]["evidence"] is None and after[0]["pos_note"] is None
    # a placeholder stored by an older receiver is not a position when shown now
    with st.transaction():
        st.update_incident(after[0]["id"], lat_e7=0, lon_e7=0, source="cell")
    v = estimate.view(st.get_incident(after[0]["id"]), T0)
    assert v["position"] is None
    rx = core.Receiver(st, clock=lambda: T0 + 20)
    assert rx.handle_frame(d.frame(F.TRACK, t=T0 + 20, source=F.SRC_GNSS, lat=FIX[0], lon=FIX[1], accuracy=5, age=0))
    assert st.incidents()[0]["source"] == "gnss" and st.incidents()[0]["accuracy_m"] == 5


def test_the_view_the_console_calls(tmp_path):
    """receiver.estimate.view(row, now): the one plain function for any
    view of an incident or device row (documented in docs/receiver.md)."""
    d = Dev(9)
    ep = Endpoint.in_memory({9: d.key}, {9: "URN 9"}, now=T0)
    ep.on_tcp_frame(d.frame(F.ALERT, t=T0, source=F.SRC_GNSS, lat=FIX[0], lon=FIX[1], accuracy=4, age=0,
                            tlvs=[(F.T_CELL, SERVING)]), T0)
    ep.on_tcp_frame(d.frame(F.TRACK, t=T0 + 5, tlvs=[(F.T_CELL, SERVING)]), T0 + 5)
    for row in (ep.store.incidents()[0], ep.store.get_device(9)):
        v = estimate.view(row, T0 + 10)
        assert set(v) == {"position", "evidence", "placeholders"}
        assert set(v["position"]) == {"lat_e7", "lon_e7", "lat", "lon", "source", "accuracy_m", "fix_time", "age_s",
                                      "map", "note", "seq", "stale"}
        assert v["position"]["source"] == "gnss" and v["position"]["age_s"] == 10
        assert [i["note"] for i in v["evidence"]] == ["cell 234-15 TAC 6699 id 30125732 not in database"]


def test_panic_frame_encode_refuses_coordinates_the_device_does_not_hold(tmp_path, capsys):
    key = tmp_path / "k.hex"
    key.write_text("00" * 32)
    cell = {"tlv": "cell", "mcc": 234, "mnc": 15, "tac": 6699, "cell_id": 30125732, "rsrp": -97}
    for frame, says in (({"source": "cell", "tlvs": [cell]}, 'needs the coordinates the device holds'),
                        ({"source": "wifi", "lat": 0, "lon": 0}, "placeholder older firmware sent"),
                        ({"source": "gnss", "lat_e7": 515007292}, 'needs the coordinates the device holds')):
        rc, out, err = run(capsys, "frame", "encode", "--key-file", str(key), "--json",
                           json.dumps(dict({"type": "ALERT", "device_id": 1, "seq": 1}, **frame)))
        assert rc == 2 and says in err and out == ""
    rc, out, err = run(capsys, "frame", "encode", "--key-file", str(key), "--json",
                       json.dumps({"type": "ALERT", "device_id": 1, "seq": 1, "tlvs": [cell]}))
    assert rc == 0  # observations only: source none and the cell TLV
