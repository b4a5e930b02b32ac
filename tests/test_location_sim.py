"""Location truth in the simulator (issue 14, item 4): scenario towers and
surveyed access points, the serving cell the SIM7600 emulator reports for
the route (AT+CPSI?, AT manual 4.2.14) which the scenario's receiver
database knows, and whole runs where every position the receiver shows an
operator is checked against the truth."""

import pytest

from firmware.modem.sim7600 import parse_cpsi
from host_sim import cells, runner
from host_sim import scenario as S
from host_sim.endpoint import VerifyingEndpoint
from host_sim.modem import Sim7600
from host_sim.network import Network
from modem_world import KEYS

BASE = """
[scenario]
name = "towers"
duration = "10m"
[route]
points = [ { at = "0s", lat = 54.32500, lon = -2.74750 }, { at = "10m", lat = 54.32120, lon = -2.75350 } ]
"""
TOWERS = """
[[tower]]
mcc = 234
mnc = 15
tac = 6699
cell = 30125732
lat = 54.3262
lon = -2.7441
range = 1200
[[tower]]
mcc = 234
mnc = 15
tac = 6699
cell = 30125733
lat = 54.3190
lon = -2.7560
range = 900
in_database = false
"""


def test_towers_are_read_and_checked_against_the_route():
    sc = S.loads(BASE + TOWERS, "t.toml")
    assert [(t.cell, t.range_m, t.in_database) for t in sc.towers] == [(30125732, 1200, True), (30125733, 900, False)]
    with pytest.raises(S.ScenarioError, match=r"\[\[tower\]\] #1: field 'range'"):
        S.loads(BASE + TOWERS.replace("range = 1200", "range = 10"), "t.toml")
    with pytest.raises(S.ScenarioError, match=r"\[\[tower\]\] #2: field 'cell': tower 234-15 TAC 6699 cell 30125732"):
        S.loads(BASE + TOWERS.replace("cell = 30125733", "cell = 30125732"), "t.toml")
    with pytest.raises(S.ScenarioError, match="missing"):
        S.loads(BASE + "[[tower]]\nmcc = 234\n", "t.toml")
    one = TOWERS.split("[[tower]]")[1]
    with pytest.raises(S.ScenarioError, match=r"no tower has the route within 80% of its range at \d+s"):
        S.loads(BASE + "[[tower]]" + one.replace("range = 1200", "range = 500"), "t.toml")


def test_an_access_point_with_a_place_is_heard_only_in_its_range():
    ap = '[[wifi]]\nbssid = "02:11:22:33:44:01"\nrssi = -60\nlat = 54.32500\nlon = -2.74750\nrange = 60\n'
    sc = S.loads(BASE + ap, "t.toml")
    route = sc.build_route()
    assert sc.wifi_at(0, route.true_position(0)) == [(bytes.fromhex("021122334401"), -60)]
    assert sc.wifi_at(300_000, route.true_position(300_000)) == []  # 300 m on
    with pytest.raises(S.ScenarioError, match="needs lat, lon and range"):
        S.loads(BASE + ap.replace("range = 60\n", ""), "t.toml")
    text = cells.survey_csv(sc.wifi_places)
    assert text.splitlines() == ["bssid,lat,lon,range,surveyed", "02:11:22:33:44:01,54.3250000,-2.7475000,60,2026-03-01"]


def test_the_serving_cell_follows_the_person_with_hysteresis_and_the_firmware_parses_it():
    sc = S.loads(BASE + TOWERS.replace("range = 1200", "range = 1000"), "t.toml")
    route = sc.build_route()
    sv = cells.ServingCell(sc.towers, route.true_position)
    got = [sv(t)[4] for t in range(0, 600_001, 10_000)]
    assert got[0] == 30125732 and got[-1] == 30125733
    assert got == sorted(got)  # one handover, never back and forth
    for t in range(0, 600_001, 10_000):
        tw = next(x for x in sc.towers if x.cell == sv(t)[4])
        la, lo = route.true_position(t)
        assert cells.distance_m(la / 1e7, lo / 1e7, tw.lat, tw.lon) <= cells.RESELECT * tw.range_m
    far = cells.ServingCell(sc.towers, lambda t: (0, 0))
    assert far(0) is None
    # the emulator answers in the manual's format, and the firmware's parser reads the tower back
    emu = Sim7600(VerifyingEndpoint(KEYS), Network(seed=1, jitter_ms=0), echo=False, cell=sv)
    emu.pwrkey(1, 0)
    emu.pwrkey(0, 500)
    emu.read(20000)  # RDY and the URCs after it
    emu.write(b"AT+CPSI?\r", 20000)
    line = emu.read(20100).split(b"\r\n")[1].decode()
    assert line.startswith("+CPSI: LTE,Online,234-15,0x1A2B,30125732,")
    mcc, mnc, tac, cid, rsrp = parse_cpsi(line)
    assert (mcc, mnc, tac, cid) == (234, 15, 6699, 30125732) and -120 <= rsrp <= -60
    emu.f["cell"] = far
    emu.write(b"AT+CPSI?\r", 20200)
    assert b"+CPSI: NO SERVICE,Online" in emu.read(20300)


def _receiver_lines(res):
    return [(e["frame"]["seq"], (e.get("position") or {}).get("source"), [i["source"] for i in e.get("evidence") or []])
            for e in res["receiver"]["events"] if e.get("frame")]


def _inv(res, name):
    return next(i for i in res["invariants"] if i["name"] == name)


def test_power_cut_mid_alert_the_operator_never_sees_zero_zero_and_keeps_the_fix():
    """The shipped scenario of issue 14's report, run whole: after each cut
    the device has no fix and sends its serving cell as an observation
    (source 0); the receiver resolves it from the scenario's towers, shows
    it as newer coarse evidence and keeps the last fix as the position."""
    sc = S.load(S.shipped()[[p.endswith("power_cut_mid_alert.toml") for p in S.shipped()].index(True)])
    res = runner.run(sc)
    assert not runner.failures(res)
    shown = res["receiver"]["positions"]
    assert shown and all((p["lat_e7"], p["lon_e7"]) != (0, 0) for p in shown)
    assert all(p["source"] != 0 or p["lat_e7"] is None for p in res["positions"])  # the device never sends coordinates it has not got
    resolved = [p for p in shown if p["source"] == "cell (resolved)"]
    assert resolved and all(p["role"] == "evidence" and p["error_m"] <= p["accuracy_m"] for p in resolved)
    for _seq, src, ev in _receiver_lines(res):
        if "cell (resolved)" in ev:
            assert src in ("gnss", "last_fix")  # the coarse cell never displaced the fix while it was fresh
    inv = _inv(res, "positions_within_accuracy")
    assert inv["ok"] and inv["receiver_checked"] >= len(resolved)


def test_walk_home_a_stale_last_fix_gives_way_to_the_resolved_cell_and_stays_shown():
    sc = S.load(S.shipped()[[p.endswith("walk_home_indoor_attack.toml") for p in S.shipped()].index(True)])
    res = runner.run(sc)
    assert not runner.failures(res)
    lines = _receiver_lines(res)
    assert lines[1][1] == "last_fix"  # the ALERT: the last fix; the modem's cell was read before the standby, not sent
    later = [x for x in lines[2:] if x[1] == "cell (resolved)"]
    assert later and all("last_fix" in ev for _, _, ev in later)  # the ten-minute-old fix is still shown beside it
    assert _inv(res, "positions_within_accuracy")["receiver_checked"] > 10


def test_a_tower_the_database_does_not_know_is_said_so():
    text = BASE + TOWERS.replace("in_database = false", "in_database = false").replace("range = 1200", "range = 1300") + """
[[indoor]]
from = "0s"
[[action]]
at = "1m"
kind = "sos"
"""
    # keep the person under the unknown tower: stand at the end of the route
    text = text.replace('{ at = "0s", lat = 54.32500, lon = -2.74750 }, ', "")
    sc = S.loads(text, "t.toml")
    res = runner.run(sc)
    notes = [i["note"] for e in res["receiver"]["events"] for i in e.get("evidence") or []]
    assert any(n == "cell 234-15 TAC 6699 id 30125733 not in database" for n in notes)
    assert all(e.get("position") is None for e in res["receiver"]["events"] if e.get("frame"))
    assert not runner.failures(res)
