"""Invariants checked on every simulated run.

Owns: pure checks over a results structure (format: host_sim/report.py
header and docs/scenarios.md "Results"). Each check returns
    {"name": str, "ok": bool, "checked": int, "violations": [str, ...]}
`check_all` first checks the results are well formed (report.validate)
and never raises on odd data: malformed results are themselves a failed
invariant, and the others are then reported as not checked.

The four promises of the product, as the simulation can see them:
- no_alert_lost: every SOS/TEST press that the device accepted reaches the
  receiver and is raised there, or is still queued in the device's flash at
  the end of the run (counted as undelivered, a violation only if strict).
- no_duplicates: the receiver never raises one frame (device_id, seq) twice,
  nor two ALERTs (or TESTs) for one press.
- positions_within_accuracy: every position a frame reports lies within its
  claimed accuracy of the true position at the time the fix was taken
  (frame time minus age; age is whole seconds, so the fix time is anywhere
  in (t - (age+1) s, t - age s] and the closest true position in that
  interval counts), or is marked unknown (source 0, accuracy 0xFFFF/None or
  age unknown), which is counted separately. The same for every position
  the receiver showed an operator (results["receiver"]["positions"]:
  its estimates and the evidence beside them, cell and Wi-Fi positions it
  resolved from its database included, judged at the time the frame that
  carried the observation was built). None may be at (0, 0) unless the
  person truly is there (a cell or Wi-Fi source at (0, 0) is the
  placeholder of firmware older than the position rule: a violation, never
  "unknown").
- nothing_visible / nothing_printed: no output pin that could light, sound or
  show changes to an "on" level, and nothing is printed on the USB console
  without an authenticated engineer session.

Never does: I/O, randomness, or fixing anything up.

Stays in sync with: host_sim/report.py (results format), the receiver's
raise semantics (what "raised" means), protocol position sources.
"""

import math

from host_sim.route import distance_m

UNKNOWN_ACCURACY = 0xFFFF
UNKNOWN_AGE = 0xFFFF
VISIBLE_PIN_WORDS = ("led", "buzzer", "beeper", "speaker", "display", "screen", "backlight", "lcd", "oled")
_RAISE_TYPE = {"sos": "ALERT", "test": "TEST"}


def _result(name, checked, violations, **extra):
    d = {"name": name, "ok": not violations, "checked": checked, "violations": violations}
    d.update(extra)
    return d


def no_alert_lost(results, strict=False):
    """Every sos/test press raised at the receiver (or queued at the end)."""
    alerts = results.get("alerts") or []
    raised = (results.get("receiver") or {}).get("raised") or []
    used = set()
    viol = []
    undelivered = 0
    for a in alerts:
        kind = a.get("kind")
        if kind not in _RAISE_TYPE:
            continue
        want = _RAISE_TYPE[kind]
        seq = a.get("seq")
        hit = None
        for j, r in enumerate(raised):
            if j in used or r.get("type") != want:
                continue
            if seq is not None:
                if r.get("seq") == seq and (a.get("device_id") is None or r.get("device_id") == a.get("device_id")):
                    hit = j
                    break
            elif (r.get("t_ms") or 0) >= (a.get("press_ms") or 0):
                hit = j
                break
        if hit is not None:
            used.add(hit)
            continue
        where = "%s pressed at %s ms (seq %s)" % (kind, a.get("press_ms"), seq)
        if a.get("pending_at_end"):
            undelivered += 1
            if strict:
                viol.append("%s never reached the receiver (still queued on the device at the end)" % where)
        else:
            viol.append("%s LOST: not raised at the receiver and not queued on the device" % where)
    n = sum(1 for a in alerts if a.get("kind") in _RAISE_TYPE)
    return _result("no_alert_lost", n, viol, undelivered=undelivered)


def no_duplicates(results):
    """No (device_id, seq) raised twice; at most one ALERT/TEST per press."""
    raised = (results.get("receiver") or {}).get("raised") or []
    viol = []
    seen = {}
    for r in raised:
        k = (r.get("device_id"), r.get("seq"))
        if k in seen:
            viol.append("device %s seq %s (%s) raised twice, at %s ms and %s ms" % (k[0], k[1], r.get("type"), seen[k], r.get("t_ms")))
        else:
            seen[k] = r.get("t_ms")
    # per press: when every press of a kind has its frame's seq, a raised
    # frame belongs to the press with the largest seq not above its own
    # (seqs grow with build time; a frame held back by an outage is raised
    # late but still belongs to its press). Otherwise: raises of its type
    # between this press and the next one of the same kind.
    alerts = [a for a in (results.get("alerts") or []) if a.get("kind") in _RAISE_TYPE]
    for kind, typ in _RAISE_TYPE.items():
        mine = [a for a in alerts if a.get("kind") == kind]
        byseq = {(r.get("device_id"), r.get("seq")): r.get("t_ms") or 0 for r in raised if r.get("type") == typ}
        if mine and all(isinstance(a.get("seq"), int) for a in mine):
            pseqs = sorted((a["seq"], a.get("press_ms") or 0) for a in mine)
            counts = [0] * len(pseqs)
            for _dev, s in byseq:
                if not isinstance(s, int):
                    continue
                i = max((j for j, (ps, _) in enumerate(pseqs) if ps <= s), default=None)
                if i is not None:
                    counts[i] += 1
            for (_, p), n in zip(pseqs, counts, strict=True):
                if n > 1:
                    viol.append("%d %s frames raised for the one %s press at %d ms" % (n, typ, kind, p))
            continue
        presses = sorted(a.get("press_ms") or 0 for a in mine)
        rs = sorted(byseq.values())
        for i, p in enumerate(presses):
            end = presses[i + 1] if i + 1 < len(presses) else math.inf
            n = sum(1 for t in rs if p <= t < end)
            if n > 1:
                viol.append("%d %s frames raised for the one %s press at %d ms" % (n, typ, kind, p))
    return _result("no_duplicates", len(raised), viol)


def _is_unknown(p):
    acc = p.get("accuracy_m")
    return (
        not p.get("source")
        or p.get("lat_e7") is None
        or p.get("lon_e7") is None
        or acc is None
        or acc == UNKNOWN_ACCURACY
        or p.get("age_s") is None
        or p.get("age_s") == UNKNOWN_AGE
    )


def position_error_m(p, true_position, step_ms=100):
    """Smallest distance (m) from a reported position to the true track
    over its possible fix times; None if the position is marked unknown."""
    if _is_unknown(p):
        return None
    t = p["t_ms"] - p["age_s"] * 1000
    lat = p["lat_e7"] / 1e7
    lon = p["lon_e7"] / 1e7
    best = math.inf
    for k in range(0, 1000 // step_ms + 1):
        tt = t - k * step_ms
        la, lo = true_position(tt)
        d = distance_m(lat, lon, la / 1e7, lo / 1e7)
        if d < best:
            best = d
    return best


_DEVICE_SOURCES = ("gnss", "last_fix", "cell", "wifi")  # coordinates from the device (receiver's words)


def judged_as(shown, by_seq):
    """A position the receiver showed, as position_error_m judges it: at
    the time of the device's own fix (a device position: the frame's build
    time minus its age) or of the observation (a receiver-resolved cell or
    Wi-Fi: the build time of the frame that carried it). None when the
    frame is unknown to the run or the age was unknown."""
    r = by_seq.get(shown.get("seq"))
    if r is None:
        return None
    src = shown.get("source")
    age = r.get("age_s") if src in _DEVICE_SOURCES else 0
    if age is None or age == UNKNOWN_AGE:
        return None
    return {"t_ms": r["t_ms"], "age_s": age, "lat_e7": shown["lat_e7"], "lon_e7": shown["lon_e7"],
            "accuracy_m": shown.get("accuracy_m"), "source": src}


def _placeholder_violation(p, true_position, what):
    """A position at exactly (0, 0) where the person is not: the Gulf of
    Guinea shown as their place. A frame of source 0 carries no position
    (docs/protocol.md, "Position semantics": its coordinate fields are 0 by
    rule), so its zeros are not one."""
    if p.get("lat_e7") != 0 or p.get("lon_e7") != 0 or not p.get("source"):
        return None
    la, lo = true_position(p["t_ms"])
    acc = p.get("accuracy_m")
    if acc is not None and acc != UNKNOWN_ACCURACY and distance_m(0.0, 0.0, la / 1e7, lo / 1e7) <= acc:
        return None
    return "%s at %d ms: at (0, 0), %.0f km from the person" % (what, p["t_ms"], distance_m(0.0, 0.0, la / 1e7, lo / 1e7) / 1000)


def positions_within_accuracy(results, true_position):
    """true_position: callable t_ms -> (lat_e7, lon_e7)."""
    viol = []
    unknown = 0
    checked = 0
    worst = 0.0
    positions = results.get("positions") or []
    for p in positions:
        try:
            z = _placeholder_violation(p, true_position, "%s seq %s (source %s)" % (p.get("type", "frame"), p.get("seq"),
                                                                                    p.get("source")))
            if z is not None:
                viol.append(z)
                continue
            err = position_error_m(p, true_position)
        except (KeyError, TypeError, ValueError) as e:
            viol.append("malformed position entry %r: %s" % (p, e))
            continue
        if err is None:
            unknown += 1
            continue
        checked += 1
        ratio = err / max(p["accuracy_m"], 1e-9)
        worst = max(worst, ratio)
        if err > p["accuracy_m"]:
            viol.append(
                "%s seq %s at %d ms: source %s claims %d m but is %.1f m from the true position"
                % (p.get("type", "frame"), p.get("seq"), p["t_ms"], p.get("source"), p["accuracy_m"], err)
            )
    by_seq = {p.get("seq"): p for p in positions}
    shown_checked = 0
    for s in (results.get("receiver") or {}).get("positions") or []:
        try:
            what = "the receiver's %s %s (seq %s)" % (s.get("role"), s.get("source"), s.get("seq"))
            z = _placeholder_violation(s, true_position, what)
            if z is not None:
                viol.append(z)
                continue
            j = judged_as(s, by_seq)
            err = None if j is None else position_error_m(j, true_position)
        except (KeyError, TypeError, ValueError) as e:
            viol.append("malformed receiver position %r: %s" % (s, e))
            continue
        if j is None or err is None:  # nothing it is judged as, or that is unknown
            unknown += 1
            continue
        checked += 1
        shown_checked += 1
        worst = max(worst, err / max(j["accuracy_m"], 1e-9))
        if err > j["accuracy_m"]:
            viol.append("%s shown at %d ms claims %d m but is %.1f m from where the person was"
                        % (what, s["t_ms"], j["accuracy_m"], err))
    return _result("positions_within_accuracy", checked, viol, unknown=unknown, worst_ratio=round(worst, 3),
                   receiver_checked=shown_checked)


def _visible(pin, visible):
    if pin in visible:
        return True
    if isinstance(pin, str):
        low = pin.lower()
        return any(isinstance(w, str) and w in low for w in visible)
    return False


def nothing_visible(results, visible=VISIBLE_PIN_WORDS, off_levels=None):
    """No visible output pin driven to anything but its off level.
    visible: pin names/numbers, or words matched inside pin names.
    off_levels: {pin: level}, default 0 for every pin."""
    off_levels = off_levels or {}
    viol = []
    pins = results.get("pins") or []
    for ch in pins:
        pin = ch.get("pin")
        if _visible(pin, visible) and ch.get("value") != off_levels.get(pin, 0):
            viol.append("output pin %r set to %r at %s ms" % (pin, ch.get("value"), ch.get("t_ms")))
    return _result("nothing_visible", len(pins), viol)


def nothing_printed(results):
    """Nothing on the USB console unless an engineer session authenticated."""
    out = results.get("console") or []
    viol = ["console output at %s ms without engineer authentication (%d bytes)" % (c.get("t_ms"), len(c.get("text") or ""))
            for c in out if not c.get("authenticated")]
    return _result("nothing_printed", len(out), viol)


# press -> first frame on the air, by power profile, when the device is
# healthy (see healthy_at): the ready profile has the modem registered and
# asleep with its data path up (DTR wake 20 ms + one command + CIPSEND), so
# 5 s is generous; the saver profile boots the modem from off: PWRKEY +
# RDY 12 s + SIM and registration (~4 s here) + NETOPEN + CIPOPEN (Hardware
# Design Table 8; the emulator's network), inside BS 8484's 30 s to the
# receiving centre.
LATENCY_BOUND_MS = {"ready": 5000, "saver": 30000}
SETTLED_MS = 60000  # a device counts as settled this long after it (re)started


def healthy_at(results, t0, t1):
    """True when nothing in [t0, t1] excuses a slow or troubled modem: no
    modem fault in force, data coverage throughout, the receiver up (every
    node of it), no power cut (the device had been up SETTLED_MS before t0)."""
    c = results.get("conditions") or {}
    if c.get("static_modem_faults"):
        return False
    for w in c.get("modem_fault_windows") or []:
        end = w[1] if w[1] is not None else float("inf")
        if w[0] <= t1 and end >= t0:
            return False
    for a, b, mode in c.get("coverage") or []:
        if a <= t1 and b >= t0 and mode not in ("data+sms", "lte-only"):
            return False
    for a, b in c.get("power_cuts") or []:
        if a <= t1 and b + SETTLED_MS >= t0:
            return False
    for a, b in c.get("receiver_down") or []:
        if a <= t1 and b >= t0:
            return False  # TCP to it is refused: the first frame waits for SMS
    for f in c.get("receiver_faults") or []:
        if f[0] <= t1 and f[1] >= t0:
            # one node of several dead or cut off: the first frame may wait for
            # a refused or timed-out connection to it before the device moves
            # to the next (firmware/failover.py; bench/bench_failover.py
            # bounds that time)
            return False
    if t0 < SETTLED_MS:
        return False
    return True


def alert_latency(results):
    """Every SOS/TEST pressed while the device was healthy reached the air
    within the profile's bound (LATENCY_BOUND_MS)."""
    prof = (results.get("scenario") or {}).get("profile") or "ready"
    bound = LATENCY_BOUND_MS.get(prof, LATENCY_BOUND_MS["saver"])
    end = (results.get("scenario") or {}).get("duration_ms") or 0
    viol = []
    checked = 0
    for a in results.get("alerts") or []:
        if a.get("kind") not in _RAISE_TYPE:
            continue
        p = a["press_ms"]
        if p + bound > end or not healthy_at(results, p - 1, p + bound):
            continue
        checked += 1
        ff = a.get("first_frame_ms")
        if ff is None:
            viol.append("%s pressed at %d ms: nothing on the air within %d ms (%s profile)" % (a["kind"], p, bound, prof))
        elif ff - p > bound:
            viol.append("%s pressed at %d ms: first frame on the air after %d ms, more than %d ms (%s profile)"
                        % (a["kind"], p, ff - p, bound, prof))
    return _result("alert_latency", checked, viol, bound_ms=bound)


def modem_left_alone(results):
    """A healthy modem is never forced off (a PWRKEY hold is recovery from
    a hung modem: without a modem fault it is a firmware bug), and the
    firmware never talks to a modem that cannot listen (asleep with DTR
    high, off, booting, shutting down): every such command times out on the
    board."""
    summ = results.get("summary") or {}
    c = results.get("conditions") or {}
    if c.get("static_modem_faults") or c.get("modem_fault_windows"):
        return _result("modem_left_alone", 0, [])  # a faulty modem may need both
    viol = []
    forced = summ.get("modem_forced_offs") or []
    for t in forced:
        viol.append("modem forced off (PWRKEY hold) at %d ms with no modem fault in the scenario" % t)
    deaf = summ.get("modem_deaf_writes") or []
    for t, why in deaf[:10]:
        viol.append("the firmware wrote to the modem at %d ms while it could not listen (%s)" % (t, why))
    # the engine's own count (the virtual-time runner reads it; faithful
    # mode sees the modem's side only, above)
    tmo = summ.get("at_timeouts")
    if tmo:
        viol.append("%d AT command(s) got no final answer in time from a healthy modem" % tmo)
    return _result("modem_left_alone", len(forced) + len(deaf) + (1 if tmo is not None else 0), viol)


def well_formed(results):
    from host_sim.report import validate

    bad = validate(results)
    return _result("well_formed", 1, bad)


def check_all(results, true_position, strict=False, visible=VISIBLE_PIN_WORDS, off_levels=None):
    """All invariants, in a fixed order, after the well-formedness check."""
    wf = well_formed(results)
    if not wf["ok"]:
        names = ("no_alert_lost", "no_duplicates", "positions_within_accuracy", "nothing_visible", "nothing_printed",
                 "alert_latency", "modem_left_alone")
        return [wf] + [_result(n, 0, ["not checked: results are malformed"]) for n in names]
    return [wf,
        no_alert_lost(results, strict),
        no_duplicates(results),
        positions_within_accuracy(results, true_position),
        nothing_visible(results, visible, off_levels),
        nothing_printed(results),
        alert_latency(results),
        modem_left_alone(results),
    ]


def check_expect(results, expect):
    """Compare a scenario's [expect] table with results. Returns a list of
    {"name", "ok", "expected", "actual"}; keys absent from results count as
    not met (the runner must fill them)."""
    raised = (results.get("receiver") or {}).get("raised") or []
    summ = results.get("summary") or {}

    def count(typ, duress=None):
        keys = {(r.get("device_id"), r.get("seq")) for r in raised if r.get("type") == typ and (duress is None or bool(r.get("duress")) == duress)}
        return len(keys)

    actual = {
        "alerts": count("ALERT"),
        "cancels": count("CANCEL"),
        "duress": count("CANCEL", True),
        "test_alerts": count("TEST"),
        "silent_alarm": bool((results.get("receiver") or {}).get("silent_alarms")),
        "low_battery": summ.get("low_battery"),
        "device_dead": summ.get("device_dead"),
        "sms_used": any(f.get("path") == "sms" and f.get("dir") == "up" for f in results.get("frames") or []),
        "min_heartbeats": count("HEARTBEAT"),
        "listen_in_calls": summ.get("listen_in_calls"),
        "max_modem_power_cycles": len(summ.get("modem_forced_offs") or []),
    }
    lat_first = [a["first_frame_ms"] - a["press_ms"] for a in results.get("alerts") or [] if a.get("first_frame_ms") is not None]
    lat_ack = [a["ack_ms"] - a["press_ms"] for a in results.get("alerts") or [] if a.get("ack_ms") is not None]
    out = []
    for k, want in expect.items():
        if k == "max_press_to_first_frame_s":
            got = max(lat_first) / 1000.0 if lat_first else None
            ok = got is not None and got <= want
        elif k == "max_press_to_ack_s":
            got = max(lat_ack) / 1000.0 if lat_ack else None
            ok = got is not None and got <= want
        elif k == "min_heartbeats":
            got = actual[k]
            ok = got >= want
        elif k == "max_modem_power_cycles":
            got = actual[k]
            ok = got <= want
        else:
            got = actual.get(k)
            ok = got == want
        out.append({"name": k, "ok": bool(ok), "expected": want, "actual": got})
    return out
