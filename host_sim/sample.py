"""A synthetic results structure for tests, docs and report previews.

Owns: `synthetic_results()`, a plausible run of the walk-home scenario
built from the real route, GNSS emulator and energy model, with made-up
frame timings (no firmware, modem or receiver involved). It shows the
results format filled in; it proves nothing about the device.

Never does: pretend to be a simulation run (its scenario name says
"synthetic").

Stays in sync with: host_sim/report.py (results format).
"""

import os

from host_sim import energy as E
from host_sim import invariants as I
from host_sim.gnss import GnssEmulator
from host_sim.route import Route

HERE = os.path.dirname(os.path.abspath(__file__))
DEVICE_ID = 1001


def synthetic_results(seed=1):
    route = Route.from_gpx(os.path.join(HERE, "scenarios", "walk_home.gpx"))
    route.add_window(1155000, 2700000, "indoor")
    g = GnssEmulator(route, seed=seed, start="warm", keep_log=True)
    g.power(True, 0)
    g.advance(1800000)
    en = E.EnergyModel(start_pct=85)
    en.set_state("esp32", "light_sleep", 0)
    en.set_state("modem", "sleep", 0)
    en.set_state("gnss", "tracking", 0)
    press = 1740000
    assert g.log is not None  # keep_log=True above
    fixes = [x for x in g.log if x[1]]
    last = fixes[-1]
    positions = []
    frames = []
    seq = 100
    # the alert: last known fix, its age, accuracy the emulator guarantees
    for i, t in enumerate([press + 400, press + 60400, press + 120400]):
        age = (t - last[0]) // 1000
        acc = int(g.max_error_m(last[2])) + 1 + 2 * age // 10
        typ = "ALERT" if i == 0 else "TRACK"
        positions.append({"t_ms": t, "type": typ, "seq": seq + i, "source": 2, "lat_e7": last[4], "lon_e7": last[5],
                          "accuracy_m": acc, "age_s": age})
        frames.append({"t_ms": t, "dir": "up", "event": "built", "path": None, "type": typ, "device_id": DEVICE_ID, "seq": seq + i, "size": 63, "note": ""})
        frames.append({"t_ms": t + 900, "dir": "up", "event": "on_air", "path": "tcp", "type": typ, "device_id": DEVICE_ID, "seq": seq + i, "size": 65, "note": ""})
        frames.append({"t_ms": t + 1250, "dir": "up", "event": "received", "path": "tcp", "type": typ, "device_id": DEVICE_ID, "seq": seq + i, "size": 65, "note": ""})
        frames.append({"t_ms": t + 1270, "dir": "up", "event": "committed", "path": "tcp", "type": typ, "device_id": DEVICE_ID, "seq": seq + i, "size": 65, "note": ""})
        frames.append({"t_ms": t + 1600, "dir": "down", "event": "received", "path": "tcp", "type": "ACK", "device_id": DEVICE_ID, "seq": 7 + i, "size": 51, "note": "acks %d" % (seq + i)})
        frames.append({"t_ms": t + 1610, "dir": "down", "event": "acked", "path": "tcp", "type": "ACK", "device_id": DEVICE_ID, "seq": 7 + i, "size": 51, "note": ""})
    # two live fixes from earlier on the walk (heartbeat-style reports)
    for t_fix in (300000, 900000):
        f = next(x for x in fixes if x[0] >= t_fix)
        positions.append({"t_ms": f[0] + 2000, "type": "HEARTBEAT", "seq": 90 + len(positions), "source": 1, "lat_e7": f[4], "lon_e7": f[5],
                          "accuracy_m": int(g.max_error_m(f[2])) + 1, "age_s": 2})
    positions.append({"t_ms": press + 180400, "type": "TRACK", "seq": seq + 3, "source": 3, "lat_e7": 543230000, "lon_e7": -27480000, "accuracy_m": 900, "age_s": 0})
    positions.append({"t_ms": press + 240400, "type": "TRACK", "seq": seq + 4, "source": 0, "lat_e7": None, "lon_e7": None, "accuracy_m": None, "age_s": None})
    positions.sort(key=lambda p: p["t_ms"])
    for p in positions:
        err = I.position_error_m(p, route.true_position)
        p["error_m"] = None if err is None else round(err, 2)
        if err is not None:
            tl, tn = route.true_position(p["t_ms"] - p["age_s"] * 1000)
            p["true_lat_e7"], p["true_lon_e7"] = tl, tn
    en.set_state("modem", "tx", press + 400)
    en.set_state("modem", "idle", press + 1400)
    en.set_state("gnss", "off", press + 300000)
    en.advance(2700000)
    energy = en.summary()
    energy["profiles"] = E.profile_tradeoff()
    results = {
        "format": "panic-sim-results/1",
        "scenario": {"name": "synthetic: walk home, then indoor attack", "file": None, "seed": seed, "duration_ms": 2700000,
                     "profile": "ready", "start_utc_ms": 1773524400000, "description": "made-up timings over the real route and GNSS emulator"},
        "frames": frames,
        "alerts": [{"kind": "sos", "press_ms": press, "device_id": DEVICE_ID, "seq": seq, "first_frame_ms": press + 1300,
                    "committed_ms": press + 1670, "ack_ms": press + 2010, "pending_at_end": False}],
        "positions": positions,
        "route": [{"t_ms": t, "lat_e7": la, "lon_e7": lo, "condition": c} for t, la, lo, c in route.samples(5000, 2700000)],
        "receiver": {"raised": [{"t_ms": press + 1670, "device_id": DEVICE_ID, "seq": seq, "type": "ALERT", "duress": False}], "silent_alarms": []},
        "pins": [{"t_ms": 0, "pin": "modem_pwrkey", "value": 1}, {"t_ms": 500, "pin": "modem_pwrkey", "value": 0}],
        "console": [],
        "events": [
            {"t_ms": 0, "end_ms": 2700000, "kind": "coverage", "detail": "data+sms"},
            {"t_ms": 0, "end_ms": 1155000, "kind": "sky", "detail": "open"},
            {"t_ms": 1155000, "end_ms": 2700000, "kind": "sky", "detail": "indoor"},
        ],
        "energy": energy,
        "summary": {"low_battery": False, "device_dead": False},
    }
    results["invariants"] = I.check_all(results, route.true_position)
    results["expect"] = I.check_expect(results, {"alerts": 1, "max_press_to_first_frame_s": 5.0})
    return results
