"""Cell towers and surveyed Wi-Fi access points of a simulated world, and
what the receiving centre's location database knows of them.

Owns: which tower serves the person at a time (what the SIM7600 emulator
answers to AT+CPSI?, SIM7600 AT Command Manual V3.00 section 4.2.14: an LTE
cell as "+CPSI: LTE,Online,<MCC>-<MNC>,<TAC>,<ScellID>,...,<RSRP>,..." with
RSRP in tenths of a dBm), and the OpenCellID-format and BSSID-survey CSV
text the simulated receiver imports (receiver/locations.py), so a run's
receiver resolves the cells and BSSIDs the scenario places through the same
import and lookup a real centre uses.

Serving cell: the modem camps on the tower that covers the person best
(smallest distance over range) and stays on it while the person is within
RESELECT of its range (hysteresis: a real modem reselects on signal
quality well before the edge, and does not hop at every step); past that
it moves to the best tower; outside every range it has no service. The
scenario loader refuses towers that do not cover every point of the route
within RESELECT of a range (host_sim/scenario.py), so the serving cell
always has 20 % of its range to spare when the modem reads it: the
firmware sends a cell read at most 90 s before the frame (firmware/app.py),
and a walker covers about 130 m in that time, so a cell the receiver
resolves contains the person at the frame's time too. RSRP falls with
distance (-70 dBm at 100 m, 35 dB per decade: an urban macro cell).

Never does: I/O, randomness, or anything the firmware could see other than
through the modem's answers.

Stays in sync with: host_sim/scenario.py ([[tower]], [[wifi]]),
host_sim/modem.py (the "cell" setting may be this callable),
receiver/locations.py (the CSV formats), docs/scenarios.md.
"""

import math

from host_sim.route import distance_m

CELL_HEADER = "radio,mcc,net,area,cell,unit,lon,lat,range,samples,changeable,created,updated,averageSignal"
WIFI_HEADER = "bssid,lat,lon,range,surveyed"
RESELECT = 0.8  # fraction of a tower's range within which the modem stays on it
DATA_SET = "simulated towers of the scenario"
WIFI_SET = "simulated survey of the scenario"


def rsrp_dbm(d_m):
    """RSRP at d_m metres from the tower: -70 dBm at 100 m, -35 dB per
    decade, clipped to what AT+CPSI? can report (-140..-44 dBm)."""
    v = -70.0 - 35.0 * math.log10(max(d_m, 10.0) / 100.0)
    return max(-140.0, min(-44.0, v))


class ServingCell:
    """The modem's serving cell over time: call with `now` (ms), get the
    emulator's cell tuple (system mode, mcc, mnc, tac, cell id, RSRP x10)
    or None (no tower in range: "+CPSI: NO SERVICE,Online")."""

    def __init__(self, towers, true_position):
        self.towers = list(towers)
        self.where = true_position
        self.current = None
        self.log = []  # (t_ms, tower cell id or None): every change

    def _dist(self, tw, lat, lon):
        return distance_m(lat, lon, tw.lat, tw.lon)

    def __call__(self, now):
        la, lo = self.where(now)
        lat, lon = la / 1e7, lo / 1e7
        cur = self.current
        if cur is None or self._dist(cur, lat, lon) > RESELECT * cur.range_m:
            best = None
            for tw in self.towers:
                d = self._dist(tw, lat, lon)
                if d <= tw.range_m and (best is None or d / tw.range_m < best[0]):
                    best = (d / tw.range_m, tw)
            new = None if best is None else best[1]
            if new is not cur:
                self.log.append((now, None if new is None else new.cell))
            self.current = cur = new
        if cur is None:
            return None
        rsrp = rsrp_dbm(self._dist(cur, lat, lon))
        return (cur.radio, cur.mcc, cur.mnc, cur.tac, cur.cell, int(round(rsrp * 10)))


def towers_csv(towers):
    """The towers the centre's database knows, as an OpenCellID export."""
    rows = [CELL_HEADER]
    for tw in towers:
        if tw.in_database:
            rows.append("%s,%d,%d,%d,%d,,%.7f,%.7f,%d,50,1,1700000000,1700000000,0" % (
                tw.radio, tw.mcc, tw.mnc, tw.tac, tw.cell, tw.lon, tw.lat, tw.range_m))
    return "\n".join(rows) + "\n" if len(rows) > 1 else None


def survey_csv(places):
    """The Wi-Fi access points the centre surveyed, as its BSSID survey."""
    rows = [WIFI_HEADER]
    for bssid, (lat, lon, rng, known) in sorted(places.items()):
        if known:
            rows.append("%s,%.7f,%.7f,%d,2026-03-01" % (":".join("%02x" % b for b in bssid), lat, lon, rng))
    return "\n".join(rows) + "\n" if len(rows) > 1 else None


def import_into(store, scenario):
    """Give a simulated receiver's store the scenario's location database
    (nothing when the scenario places no towers and no surveyed APs)."""
    import io

    from receiver import locations

    text = towers_csv(scenario.towers)
    if text:
        locations.import_file(store, "scenario towers", name=DATA_SET, text=io.StringIO(text))
    text = survey_csv(scenario.wifi_places)
    if text:
        locations.import_file(store, "scenario survey", name=WIFI_SET, text=io.StringIO(text))


def coverage_gap(towers, true_position, duration_ms, step_ms=5000):
    """The first time (ms) at which no tower has the person within
    RESELECT of its range, or None."""
    t = 0
    while t <= duration_ms:
        la, lo = true_position(t)
        lat, lon = la / 1e7, lo / 1e7
        if not any(distance_m(lat, lon, tw.lat, tw.lon) <= RESELECT * tw.range_m for tw in towers):
            return t
        t += step_ms
    return None
