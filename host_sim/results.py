"""Recorder: the one place a run writes down what happened, producing the
results structure of host_sim/report.py.

Owns: appending frames, presses, positions, receiver raises, pins, console
output and events as they happen; at the end, tying each press to its
frames (first on air, committed, ACK), measuring every position against
the true route, and running the invariants and the scenario's
expectations.

Never does: decide anything about the device or the receiver; hold keys
(it stores frame metadata, never frame bytes or key material).

Stays in sync with: host_sim/report.py (format), host_sim/invariants.py.
"""

import functools

from host_sim import invariants as I
from host_sim.report import FORMAT

_FRAME_TYPE = {"sos": "ALERT", "test": "TEST", "cancel": "CANCEL", "duress_cancel": "CANCEL"}


class Recorder:
    def __init__(self, scenario=None, route=None):
        self.scenario = scenario
        self.route = route if route is not None else (scenario.build_route() if scenario is not None else None)
        self.frames = []
        self.alerts = []
        self.positions = []
        self.raised = []
        self.silent_alarms = []
        self.pins = []
        self.console = []
        self.events = []
        self.shown = []  # positions the receiver showed an operator (estimate and evidence)
        self.marks = []  # receiver events other than TRACKs: [{t_ms, kind, label, duress}]
        self._shown_keys = set()
        self.battery_log = []  # [{t_ms, soc_pct, cell_mv}]: the true battery over the run
        self.summary: dict[str, object] = {"low_battery": False, "device_dead": False}

    # -- as it happens -----------------------------------------------------------
    def frame(self, t_ms, dir, event, type, seq, device_id=None, path=None, size=None, note="", acked_seq=None):
        """dir "up"/"down"; event built/on_air/received/committed/acked/
        dropped/rejected; for an ACK give acked_seq (the uplink seq it
        acknowledges)."""
        f = {"t_ms": int(t_ms), "dir": dir, "event": event, "type": type, "seq": seq, "device_id": device_id,
             "path": path, "size": size, "note": note}
        if acked_seq is not None:
            f["acked_seq"] = acked_seq
        self.frames.append(f)
        return f

    def press(self, kind, t_ms, device_id=None, seq=None):
        """A button action completed (sos, test, cancel, duress_cancel).
        seq may be set now or later (alert["seq"] = ...), or left for
        finish() to infer from the first matching frame built after it."""
        a = {"kind": kind, "press_ms": int(t_ms), "device_id": device_id, "seq": seq, "first_frame_ms": None,
             "committed_ms": None, "ack_ms": None, "pending_at_end": False}
        self.alerts.append(a)
        return a

    def position(self, t_ms, type, seq, source, lat_e7, lon_e7, accuracy_m, age_s):
        """A position a frame reported (accuracy 0xFFFF / age 0xFFFF are
        kept and mean unknown)."""
        p = {"t_ms": int(t_ms), "type": type, "seq": seq, "source": int(source), "lat_e7": lat_e7, "lon_e7": lon_e7,
             "accuracy_m": accuracy_m, "age_s": age_s, "error_m": None}
        self.positions.append(p)
        return p

    def raise_(self, t_ms, device_id, seq, type, duress=False):
        """The receiver raised a frame to operators."""
        self.raised.append({"t_ms": int(t_ms), "device_id": device_id, "seq": seq, "type": type, "duress": bool(duress)})

    def receiver_event(self, t_ms, ev):
        """An event the receiver raised (its dict): every position it shows
        an operator, the estimate and the evidence beside it, is written
        down once (source, seq, place) with the first time it was shown."""
        kind = ev.get("kind")
        if kind not in ("track", "alert_repeat"):  # the report's receiver lane: what an operator was told
            self.marks.append({"t_ms": int(t_ms), "kind": kind, "label": ev.get("label") or kind,
                               "duress": bool(ev.get("duress"))})
        items = []
        if ev.get("position"):
            items.append(("estimate", ev["position"]))
        for e in ev.get("evidence") or ():
            items.append(("evidence", e))
        for role, p in items:
            if p.get("lat_e7") is None:
                continue
            key = (p.get("source"), p.get("seq"), p["lat_e7"], p["lon_e7"])
            if key in self._shown_keys:
                continue
            self._shown_keys.add(key)
            self.shown.append({"t_ms": int(t_ms), "role": role, "source": p.get("source"), "seq": p.get("seq"),
                               "lat_e7": p["lat_e7"], "lon_e7": p["lon_e7"], "accuracy_m": p.get("accuracy_m"),
                               "note": p.get("note"), "error_m": None})

    def battery(self, t_ms, soc_pct, cell_mv):
        self.battery_log.append({"t_ms": int(t_ms), "soc_pct": round(soc_pct, 2), "cell_mv": int(cell_mv)})

    def silent(self, t_ms, device_id):
        self.silent_alarms.append({"t_ms": int(t_ms), "device_id": device_id})

    def pin(self, t_ms, pin, value):
        self.pins.append({"t_ms": int(t_ms), "pin": pin, "value": value})

    def print_(self, t_ms, text, authenticated=False):
        self.console.append({"t_ms": int(t_ms), "text": text, "authenticated": bool(authenticated)})

    def event(self, t_ms, kind, detail="", end_ms=None):
        self.events.append({"t_ms": int(t_ms), "end_ms": int(t_ms if end_ms is None else end_ms), "kind": kind, "detail": detail})

    # -- at the end -------------------------------------------------------------------
    def _tie_alerts(self, pending_seqs):
        claimed = {a["seq"] for a in self.alerts if a["seq"] is not None}
        for a in sorted(self.alerts, key=lambda a: a["press_ms"]):
            if a["seq"] is None:
                want = _FRAME_TYPE.get(a["kind"])
                for f in self.frames:
                    if (f["dir"] == "up" and f["event"] == "built" and f["type"] == want and f["t_ms"] >= a["press_ms"]
                            and f["seq"] not in claimed):
                        a["seq"] = f["seq"]
                        a["device_id"] = a["device_id"] if a["device_id"] is not None else f["device_id"]
                        claimed.add(f["seq"])
                        break
            seq = a["seq"]
            if seq is None:
                continue

            a["first_frame_ms"] = self._first("up", "on_air", "seq", seq)
            a["committed_ms"] = self._first("up", "committed", "seq", seq)
            a["ack_ms"] = self._first("down", "acked", "acked_seq", seq)
            a["pending_at_end"] = seq in pending_seqs

    def _first(self, direction, event, key, seq):
        ts = [f["t_ms"] for f in self.frames if f["dir"] == direction and f["event"] == event and f.get(key) == seq]
        return min(ts) if ts else None

    def _measure_positions(self, truth):
        """truth: route.true_position (remembered: the invariants ask again)."""
        if truth is None:  # (no route)
            return
        for p in self.positions:
            try:
                err = I.position_error_m(p, truth)
            except (KeyError, TypeError, ValueError):
                err = None
            p["error_m"] = None if err is None else round(err, 2)
            if err is not None:
                p["true_lat_e7"], p["true_lon_e7"] = truth(p["t_ms"] - p["age_s"] * 1000)
        by_seq = {p["seq"]: p for p in self.positions}
        for s in self.shown:
            j = I.judged_as(s, by_seq)
            if j is None:
                continue
            err = I.position_error_m(j, truth)
            s["error_m"] = None if err is None else round(err, 2)
            s["true_lat_e7"], s["true_lon_e7"] = truth(j["t_ms"] - j["age_s"] * 1000)

    def _conditions(self, dur):
        """What the scenario put in the device's way (for the invariants
        that hold only when nothing did): modem faults, coverage, power."""
        sc = self.scenario
        if sc is None:
            return {}
        cov = []
        for c in sc.coverage:
            cov.append([c.from_ms, c.to_ms if c.to_ms is not None else dur, c.mode])
        cuts = []
        for e in self.events:
            if e["kind"] in ("power_off",):
                cuts.append([e["t_ms"], e["t_ms"]])
        for pc in sc.power_cuts:
            end = dur if pc.duration_ms is None else pc.at_ms + pc.duration_ms
            cuts.append([pc.at_ms, end])
        return {
            "static_modem_faults": sorted(k for k in sc.modem_faults if k not in ("rssi", "cell", "own_number")),
            "modem_fault_windows": [[w.from_ms, w.to_ms, w.name] for w in sc.modem_fault_windows],
            "coverage": cov,
            "power_cuts": cuts,
            "receiver_down": [[w.from_ms, w.to_ms] for w in sc.receiver_down],
            "receiver_faults": [[f.from_ms, f.to_ms, f.node, f.mode] for f in getattr(sc, "receiver_faults", ())],
        }

    def finish(self, energy=None, pending_seqs=(), profiles=None, strict=False, visible=I.VISIBLE_PIN_WORDS,
               off_levels=None, route_step_ms=5000, extra_events=()):
        """The results dict, with alerts tied to frames, positions measured,
        invariants and expectations checked. energy: an EnergyModel (its
        summary is taken) or a dict; pending_seqs: uplink seqs still queued
        on the device at the end; profiles: energy.profile_tradeoff() rows."""
        self._tie_alerts(set(pending_seqs))
        # the truth at an instant, asked for every position by the measures
        # below and again by the invariants: worked out once
        truth = functools.lru_cache(maxsize=None)(self.route.true_position) if self.route is not None else None
        self._measure_positions(truth)
        sc = self.scenario
        dur = sc.duration_ms if sc is not None else max([0] + [f["t_ms"] for f in self.frames] + [e["t_ms"] for e in self.events])
        if energy is not None and not isinstance(energy, dict):
            energy = energy.summary()
        energy = dict(energy or {})
        if profiles is not None:
            energy["profiles"] = list(profiles)
        events = list(sc.world_events()) if sc is not None else []
        events = [e for e in events if e["kind"] in ("coverage", "sky", "receiver_down")]  # planned context
        events += list(extra_events) + self.events
        events.sort(key=lambda e: (e["t_ms"], e["kind"]))
        route = []
        if self.route is not None:
            route = [{"t_ms": t, "lat_e7": la, "lon_e7": lo, "condition": c} for t, la, lo, c in self.route.samples(route_step_ms, dur)]
        results = {
            "format": FORMAT,
            "scenario": {
                "name": sc.name if sc is not None else "unnamed run",
                "file": sc.path if sc is not None else None,
                "seed": sc.seed if sc is not None else None,
                "duration_ms": dur,
                "profile": sc.profile if sc is not None else None,
                "start_utc_ms": sc.start_utc_ms if sc is not None else None,
                "description": sc.description if sc is not None else "",
            },
            "frames": sorted(self.frames, key=lambda f: f["t_ms"]),
            "alerts": self.alerts,
            "positions": self.positions,
            "route": route,
            "receiver": {"raised": self.raised, "silent_alarms": self.silent_alarms, "positions": self.shown,
                         "marks": self.marks},
            "battery": self.battery_log,
            "pins": self.pins,
            "console": self.console,
            "events": events,
            "energy": energy,
            "summary": dict(self.summary),
            "conditions": self._conditions(dur),
        }
        tp = truth if truth is not None else (lambda t: (0, 0))
        results["invariants"] = I.check_all(results, tp, strict, visible, off_levels)
        results["expect"] = I.check_expect(results, sc.expect) if sc is not None else []
        return results
