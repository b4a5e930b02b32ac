"""Run reports: the JSON results file and a self-contained HTML report.

Owns: the results format (below), its JSON writer, and the HTML report a
person reads (inline SVG: a whole-run timeline whose lanes show presses,
frames up, ACKs down, coverage, the receiver's outages and what it raised
(alerts, duress, cancels, silent device, low battery), power and sky; one
timeline per alert with press, first frame on air, committed and ACK; the
route map with its start, end and every press, each position a frame
reported with its accuracy circle and source, and every position the
receiver resolved itself, credited to its data set; the battery over time;
tables in words, unknowns shown as "unknown"). Unknown positions (source 0,
and a cell or Wi-Fi source at (0, 0)) are never plotted: the map's extent
is the route's. The HTML needs no network: no scripts, no styles or fonts
fetched, no external links.

Never does: compute invariants (host_sim/invariants.py does) or run
anything. Refuses (ReportError) a results structure with a field named like
a key or secret: keys never appear in reports.

Results format ("panic-sim-results/1"), a plain dict of JSON types;
times are sim ms from the start of the run:

    format      "panic-sim-results/1"
    scenario    {name, file, seed, duration_ms, profile, start_utc_ms, description}
    frames      [{t_ms, dir: "up"|"down", event, path: "tcp"|"sms"|None,
                  type: "ALERT"|"TRACK"|..|"ACK", device_id, seq, size, note,
                  acked_seq (ACKs: the uplink seq acknowledged)}]
                event: "built" (device made it), "on_air" (left the modem),
                "received" (reached the receiver or device), "committed"
                (receiver stored it durably), "acked" (device accepted the
                ACK), "dropped" (network or fault lost it), "rejected".
    alerts      [{kind: "sos"|"test"|"cancel"|"duress_cancel", press_ms,
                  device_id, seq|None, first_frame_ms|None, committed_ms|None,
                  ack_ms|None, pending_at_end: bool}]
    positions   [{t_ms, type, seq, source: 0..4, lat_e7, lon_e7,
                  accuracy_m|None, age_s|None, error_m|None}]
    route       [{t_ms, lat_e7, lon_e7, condition}]   ground truth samples
    receiver    {raised: [{t_ms, device_id, seq, type, duress}],
                 silent_alarms: [{t_ms, device_id}],
                 positions: [{t_ms, role: "estimate"|"evidence", source (the
                   receiver's words: gnss, last_fix, cell, wifi, cell
                   (resolved), wifi (resolved)), seq, lat_e7, lon_e7,
                   accuracy_m, note, error_m}]  every position it showed,
                 marks: [{t_ms, kind, label, duress}]  what it raised,
                   TRACKs aside,
                 events: [receiver event dicts]}
    battery     [{t_ms, soc_pct, cell_mv}]  the true battery over the run
    pins        [{t_ms, pin, value}]        output pin changes
    console     [{t_ms, text, authenticated}]
    events      [{t_ms, kind, detail}]      power cuts, coverage, resets...
    energy      EnergyModel.summary() plus "profiles": profile_tradeoff()
    summary     {low_battery: bool, device_dead: bool, ...}
    invariants  [invariant results]          (host_sim/invariants.py)
    expect      [{name, ok, expected, actual}]

Stays in sync with: host_sim/invariants.py, docs/scenarios.md ("Results").
"""

import html
import json
import math
import re
from typing import Any, Mapping, TypeGuard

from host_sim.errors import SimBug

FORMAT = "panic-sim-results/1"
SOURCES = {0: "none", 1: "GNSS live", 2: "GNSS last fix", 3: "cell", 4: "Wi-Fi"}
SOURCE_COLOURS = {0: "#888888", 1: "#1a7f37", 2: "#bf8700", 3: "#8250df", 4: "#0969da"}
_SECRETISH = re.compile(r"(^|_)(key|keys|secret|master|k_enc|k_mac|psk|password)($|_)", re.I)


class ReportError(SimBug):
    """A results structure that must not be written."""


def _scan(obj, path="results"):
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(k, str) and _SECRETISH.search(k):
                raise ReportError("refusing to write %s.%s: reports never carry keys or secrets" % (path, k))
            _scan(v, "%s.%s" % (path, k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _scan(v, "%s[%d]" % (path, i))


_INT = (int,)
_OPT_INT = (int, type(None))
_NUM_OPT = (int, float, type(None))
# list name -> {field: allowed types}; fields not named here are free
_LIST_FIELDS = {
    "frames": {"t_ms": _INT, "dir": (str,), "event": (str,)},
    "alerts": {"kind": (str,), "press_ms": _INT, "seq": _OPT_INT, "first_frame_ms": _OPT_INT,
               "committed_ms": _OPT_INT, "ack_ms": _OPT_INT},
    "positions": {"t_ms": _INT, "source": _INT, "lat_e7": _OPT_INT, "lon_e7": _OPT_INT,
                  "accuracy_m": _NUM_OPT, "age_s": _OPT_INT},
    "route": {"t_ms": _INT, "lat_e7": _INT, "lon_e7": _INT},
    "pins": {"t_ms": _INT},
    "console": {"t_ms": _INT},
    "events": {"t_ms": _INT, "kind": (str,)},
    "battery": {"t_ms": _INT, "soc_pct": (int, float)},
    "invariants": {"name": (str,), "ok": (bool,)},
    "expect": {"name": (str,), "ok": (bool,)},
}
_LIST_FIELDS["receiver.positions"] = {"t_ms": _INT, "lat_e7": _INT, "lon_e7": _INT, "accuracy_m": _NUM_OPT}
_LIST_FIELDS["receiver.marks"] = {"t_ms": _INT, "kind": (str,)}
_REQUIRED = {"frames": ("t_ms",), "alerts": ("kind", "press_ms"), "positions": ("t_ms", "source"),
             "route": ("t_ms", "lat_e7", "lon_e7"), "events": ("t_ms", "kind"), "invariants": ("name", "ok"),
             "battery": ("t_ms", "soc_pct"), "receiver.positions": ("t_ms", "lat_e7", "lon_e7"),
             "receiver.marks": ("t_ms", "kind")}


def validate(results):
    """Problems with a results structure, as ["path: problem", ...]
    (empty when it is fine to write). Never raises."""
    out = []
    if not isinstance(results, dict):
        return ["results: expected a dict, got %s" % type(results).__name__]
    for name in ("scenario", "energy", "summary"):
        if name in results and not isinstance(results[name], dict):
            out.append("%s: expected a dict" % name)
    rec = results.get("receiver")
    lists = [(k, results.get(k)) for k in _LIST_FIELDS]
    if rec is not None:
        if not isinstance(rec, dict):
            out.append("receiver: expected a dict")
        else:
            lists.append(("receiver.raised", rec.get("raised")))
            lists.append(("receiver.silent_alarms", rec.get("silent_alarms")))
            lists.append(("receiver.positions", rec.get("positions")))
            lists.append(("receiver.marks", rec.get("marks")))
    for name, val in lists:
        if val is None:
            continue
        if not isinstance(val, list):
            out.append("%s: expected a list" % name)
            continue
        spec = _LIST_FIELDS.get(name, {"t_ms": _INT})
        req = _REQUIRED.get(name, ())
        for i, item in enumerate(val):
            if not isinstance(item, dict):
                out.append("%s[%d]: expected a dict" % (name, i))
                continue
            for f in req:
                if f not in item:
                    out.append("%s[%d]: missing %s" % (name, i, f))
            for f, types in spec.items():
                if f in item and (not isinstance(item[f], types) or (isinstance(item[f], bool) and bool not in types)):
                    out.append("%s[%d].%s: expected %s" % (name, i, f, "/".join(t.__name__ for t in types)))
            if len(out) > 50:
                return out + ["..."]
    return out


def _check(results):
    _scan(results)
    bad = validate(results)
    if bad:
        raise ReportError("results do not follow %s: %s" % (FORMAT, "; ".join(bad[:5])))


def to_json(results):
    _check(results)
    return json.dumps(results, indent=1, sort_keys=True, allow_nan=False) + "\n"


def write_json(results, path):
    text = to_json(results)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def write_html(results, path):
    text = render_html(results)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


# -- HTML ----------------------------------------------------------------------------
_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1f2328;max-width:1100px}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #d0d7de}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #d0d7de;padding:2px 6px;text-align:left;vertical-align:top}
.ok{color:#1a7f37;font-weight:600}.bad{color:#cf222e;font-weight:600}.muted{color:#57606a}
svg{background:#fff;border:1px solid #d0d7de;margin:.4em 0}
"""
UNKNOWN_U16 = 0xFFFF
# what each invariant and expectation means, in words
INVARIANT_LABELS = {
    "well_formed": "Results are complete and well formed",
    "no_alert_lost": "No alert was lost",
    "no_duplicates": "No alert was raised twice",
    "positions_within_accuracy": "Every position shown was within its stated accuracy",
    "nothing_visible": "Nothing lit, sounded or showed",
    "nothing_printed": "Nothing was printed on the USB console",
    "alert_latency": "Each alert was on the air in time",
    "modem_left_alone": "A healthy modem was left alone",
}
EXPECT_LABELS = {
    "alerts": "Alerts raised at the receiver",
    "cancels": "Cancels raised (duress included)",
    "duress": "Duress cancels raised",
    "test_alerts": "Test alerts raised",
    "silent_alarm": "Silent-device alarm raised",
    "low_battery": "Low battery reported",
    "device_dead": "Device ran flat or was destroyed",
    "sms_used": "A frame went by SMS",
    "max_press_to_first_frame_s": "Press to first frame on air, at most (s)",
    "max_press_to_ack_s": "Press to ACK, at most (s)",
    "min_heartbeats": "Heartbeats, at least",
    "listen_in_calls": "Listen-in calls placed",
    "max_modem_power_cycles": "Forced modem power cycles, at most",
}
_DETAIL_WORDS = {
    "undelivered": "%s still queued on the device at the end",
    "unknown": "%s without a position (not judged)",
    "receiver_checked": "%s of them shown by the receiver",
    "bound_ms": None,
    "worst_ratio": None,
}
ENERGY_LABELS = (("used_mah", "Charge used", "mAh"), ("avg_ma", "Average current", "mA"),
                 ("soc_pct_end", "Battery left at the end", "%"), ("battery_mv_end", "Cell voltage at the end", "mV"),
                 ("capacity_mah", "Cell capacity", "mAh"), ("projected_days_at_avg", "Days on a charge at this average", "days"))
# the receiver's position sources (receiver/estimate.py) in words
SHOWN_SOURCES = {"gnss": "GNSS live", "last_fix": "GNSS last fix", "cell": "cell (from the device)",
                 "wifi": "Wi-Fi (from the device)", "cell (resolved)": "cell, resolved by the receiver",
                 "wifi (resolved)": "Wi-Fi, resolved by the receiver"}
SHOWN_COLOURS = {"cell (resolved)": SOURCE_COLOURS[3], "wifi (resolved)": SOURCE_COLOURS[4]}
_MARK_COLOURS = {"alert": "#cf222e", "test_alert": "#bf8700", "duress": "#82071e", "cancel": "#57606a",
                 "stood_down": "#57606a", "device_silent": "#8250df", "device_back": "#1a7f37",
                 "low_battery": "#d1242f", "battery_ok": "#1a7f37", "status": "#8c959f"}


def _e(x):
    return html.escape("" if x is None else str(x), quote=True)


def _fmt_ms(ms):
    if not isinstance(ms, (int, float)) or isinstance(ms, bool):
        return "-"
    s = ms / 1000.0
    h, rem = divmod(int(s), 3600)
    m, sec = divmod(rem, 60)
    frac = s - int(s)
    return "%d:%02d:%02d%s" % (h, m, sec, (".%d" % int(frac * 10)) if frac else "")


def _num(v, unit=""):
    """A number as a person reads it: whole numbers with separators, at
    most two decimals, never 65535 for "unknown"."""
    if v is None or v == UNKNOWN_U16:
        return "unknown"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        t = format(v, ",")
    elif isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            return "unknown"
        t = format(v, ",.0f") if abs(v) >= 100 else ("%.2f" % v).rstrip("0").rstrip(".")
    else:
        return str(v)
    return "%s %s" % (t, unit) if unit else t


_ACTIONS = {"sos": "SOS", "test": "TEST", "cancel": "Cancel", "duress_cancel": "Duress cancel"}


def _words(name):
    """snake_case -> "Snake case" (a button action by its name: SOS)."""
    if name in _ACTIONS:
        return _ACTIONS[name]
    s = str(name).replace("_", " ")
    return s[:1].upper() + s[1:]


def _okcell(ok):
    return '<td class="%s">%s</td>' % ("ok" if ok else "bad", "pass" if ok else "FAIL")


def _table(head, rows):
    out = ["<table><tr>", "".join("<th>%s</th>" % _e(h) for h in head), "</tr>"]
    for r in rows:
        out.append("<tr>%s</tr>" % "".join(c if isinstance(c, str) and c.startswith("<td") else "<td>%s</td>" % _e(c) for c in r))
    out.append("</table>")
    return "".join(out)


def _list(x):
    return x if isinstance(x, list) else []


def _dict(x):
    return x if isinstance(x, dict) else {}


def _int(x) -> TypeGuard[int]:
    return isinstance(x, int) and not isinstance(x, bool)


def _duration(results):
    """The run's length in ms for an axis: the scenario's, or 1 when it
    says none (or nonsense)."""
    dur = _dict(results.get("scenario")).get("duration_ms")
    return dur if _int(dur) and dur > 0 else 1


def _look(table: Mapping[Any, Any], key: object, default: object = None) -> Any:
    """table.get(key, default) for a key read from a results dict, whose
    values may be any JSON value (the tables' keys are of one type)."""
    return table.get(key, default)


def alert_timeline_svg(alert, frames, width=900):
    """One alert: press, first frame on air, committed, ACK, and every frame
    event with its seq, on a time axis starting at the press."""
    p = alert.get("press_ms") or 0
    marks = [("press", p, "#cf222e"), ("first frame on air", alert.get("first_frame_ms"), "#0969da"),
             ("committed", alert.get("committed_ms"), "#8250df"), ("ACK", alert.get("ack_ms"), "#1a7f37")]
    seq = alert.get("seq")
    fe = [f for f in frames if isinstance(f, dict) and seq is not None and f.get("seq") == seq and f.get("dir") == "up"
          and _int(f.get("t_ms"))]
    times = [t for _, t, _ in marks if _int(t)] + [f["t_ms"] for f in fe]
    end = max(times + [p + 1000])
    span = max(end - p, 1000) * 1.1
    x0, x1 = 20, width - 20
    h = 120

    def X(t):
        return x0 + (t - p) / span * (x1 - x0)

    o = ['<svg width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="alert timeline">' % (width, h, width, h)]
    o.append('<line x1="%d" y1="60" x2="%d" y2="60" stroke="#57606a"/>' % (x0, x1))
    step = _nice(span / 8)
    t = 0.0
    while t <= span:
        x = X(p + t)
        o.append('<line x1="%.1f" y1="57" x2="%.1f" y2="63" stroke="#57606a"/>' % (x, x))
        o.append('<text x="%.1f" y="76" font-size="10" text-anchor="middle" fill="#57606a">+%ss</text>' % (x, _e(_trim(t / 1000))))
        t += step
    for f in fe:
        x = X(f["t_ms"])
        col = _look({"tcp": "#0969da", "sms": "#bf8700"}, f.get("path"), "#8c959f")
        o.append('<rect x="%.1f" y="84" width="3" height="10" fill="%s"><title>%s</title></rect>'
                 % (x - 1.5, col, _e("%s %s %s at %s" % (f.get("type"), _words(f.get("event") or ""), f.get("path") or "",
                                                          _fmt_ms(f["t_ms"])))))
    for i, (label, tm, col) in enumerate(marks):
        if not _int(tm):
            o.append('<text x="%d" y="%d" font-size="11" fill="#cf222e">%s: never</text>' % (x1 - 160, 14 + 12 * i, _e(label)))
            continue
        x = X(tm)
        y = 22 + 9 * i
        o.append('<circle cx="%.1f" cy="60" r="5" fill="%s"/>' % (x, col))
        o.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="55" stroke="%s" stroke-dasharray="2,2"/>' % (x, y + 2, x, col))
        o.append('<text x="%.1f" y="%d" font-size="11" fill="%s">%s +%ss</text>' % (x + 3, y, col, _e(label), _e(_trim((tm - p) / 1000))))
    o.append("</svg>")
    return "".join(o)


def _trim(x):
    return ("%.2f" % x).rstrip("0").rstrip(".")


def _nice(x):
    if x <= 0:
        return 1.0
    e = 10 ** math.floor(math.log10(x))
    for m in (1, 2, 5, 10):
        if m * e >= x:
            return m * e
    return 10 * e


def run_timeline_svg(results, width=900):
    """The whole run, one lane each: button presses, frames up (on air and
    received), ACKs down (sent by the receiver, accepted by the device),
    coverage, the receiver (outages, and what it raised: alerts, duress,
    cancels, silent device, low battery, status), power, sky."""
    dur = _duration(results)
    x0, x1 = 110, width - 10
    lanes = ["presses", "frames up", "ACKs down", "coverage", "receiver", "power", "sky"]
    lh = 18
    h = 20 + lh * len(lanes) + 34

    def X(t):
        return x0 + max(0, min(t, dur)) / dur * (x1 - x0)

    def Y(lane):
        return 10 + lh * lanes.index(lane)

    o = ['<svg width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="run timeline">' % (width, h, width, h)]
    for ln in lanes:
        o.append('<text x="4" y="%d" font-size="11" fill="#57606a">%s</text>' % (Y(ln) + 12, ln))
        o.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#eaeef2"/>' % (x0, Y(ln) + lh - 1, x1, Y(ln) + lh - 1))
    cov_col = {"data+sms": "#dafbe1", "lte-only": "#dafbe1", "sms-only": "#fff8c5", "none": "#ffebe9"}
    for ev in _list(results.get("events")):
        if not isinstance(ev, dict) or not _int(ev.get("t_ms")):
            continue
        k = ev.get("kind")
        t = ev["t_ms"]
        end = ev.get("end_ms", t) if _int(ev.get("end_ms", t)) else t
        if k == "coverage":
            o.append('<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"><title>%s</title></rect>'
                     % (X(t), Y("coverage"), max(1, X(end) - X(t)), lh - 2, _look(cov_col, ev.get("detail"), "#eee"), _e(ev.get("detail"))))
        elif k == "receiver_down":
            o.append('<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="#ffcecb"><title>receiver down</title></rect>' % (X(t), Y("receiver"), max(1, X(end) - X(t)), lh - 2))
        elif k == "receiver_fault":
            o.append('<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="#ffcecb"><title>%s</title></rect>'
                     % (X(t), Y("receiver"), max(1, X(end) - X(t)), lh - 2, _e("receiver node %s" % (ev.get("detail") or ""))))
        elif k in ("power_cut", "brownout", "reset", "power_off", "device_dead", "watchdog_reset"):
            o.append('<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="#cf222e"><title>%s</title></rect>' % (X(t), Y("power"), max(2, X(end) - X(t)), lh - 2, _e("%s %s" % (_words(k), ev.get("detail") or ""))))
        elif k == "sky":
            col = _look({"open": "#dafbe1", "urban": "#fff8c5", "indoor": "#d0d7de"}, ev.get("detail"), "#eee")
            o.append('<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"><title>%s</title></rect>' % (X(t), Y("sky"), max(1, X(end) - X(t)), lh - 2, col, _e(ev.get("detail"))))
    for a in _list(results.get("alerts")):
        if not isinstance(a, dict) or not _int(a.get("press_ms")):
            continue
        t = a["press_ms"]
        o.append('<circle cx="%.1f" cy="%d" r="4" fill="#cf222e"><title>%s</title></circle>' % (X(t), Y("presses") + 8, _e("%s pressed at %s" % (_words(a.get("kind") or "?"), _fmt_ms(t)))))
    for f in _list(results.get("frames")):
        if not isinstance(f, dict) or not _int(f.get("t_ms")):
            continue
        if f.get("dir") == "up" and f.get("event") in ("on_air", "received"):
            lane, col = "frames up", "#0969da" if f.get("path") != "sms" else "#bf8700"
        elif f.get("dir") == "down" and f.get("event") in ("built", "received"):
            lane, col = "ACKs down", "#8c959f"  # the receiver sent it
        elif f.get("dir") == "down" and f.get("event") == "acked":
            lane, col = "ACKs down", "#1a7f37"  # the device accepted it
        else:
            continue
        what = "ACK of seq %s %s" % (f.get("acked_seq", "?"), "accepted by the device" if f.get("event") == "acked"
                                      else "sent by the receiver") if lane == "ACKs down" else \
            "%s seq %s %s" % (f.get("type"), f.get("seq"), _words(f.get("event") or ""))
        o.append('<rect x="%.1f" y="%d" width="2" height="%d" fill="%s"><title>%s</title></rect>'
                 % (X(f["t_ms"]), Y(lane) + 2, lh - 6, col, _e("%s %s at %s" % (what, f.get("path") or "", _fmt_ms(f["t_ms"])))))
    rec = _dict(results.get("receiver"))
    marks = [m for m in _list(rec.get("marks")) if isinstance(m, dict) and _int(m.get("t_ms"))]
    if not marks:  # results written before the receiver's marks: what it raised and its silent alarms
        marks = [{"t_ms": r["t_ms"], "kind": ("duress" if r.get("duress") else str(r.get("type") or "").lower()),
                  "label": r.get("type")} for r in _list(rec.get("raised")) if isinstance(r, dict) and _int(r.get("t_ms"))]
        marks += [{"t_ms": r["t_ms"], "kind": "device_silent", "label": "DEVICE SILENT"}
                  for r in _list(rec.get("silent_alarms")) if isinstance(r, dict) and _int(r.get("t_ms"))]
    for m in marks:
        kind = "duress" if m.get("duress") else m.get("kind")
        col = _look(_MARK_COLOURS, kind, "#8c959f")
        x = X(m["t_ms"])
        y = Y("receiver") + 8
        o.append('<path d="M %.1f %d l 5 5 l -5 5 l -5 -5 z" fill="%s"><title>%s</title></path>'
                 % (x, y - 5, col, _e("receiver: %s at %s" % (m.get("label") or _words(kind or "?"), _fmt_ms(m["t_ms"])))))
    step = _nice(dur / 8)
    t = 0
    while t <= dur:
        o.append('<text x="%.1f" y="%d" font-size="10" text-anchor="middle" fill="#57606a">%s</text>' % (X(t), h - 22, _e(_fmt_ms(t))))
        t += step
    key = [("#0969da", "frame by TCP"), ("#bf8700", "by SMS"), ("#8c959f", "ACK sent"), ("#1a7f37", "ACK accepted"),
           ("#cf222e", "alert raised"), ("#82071e", "duress"), ("#8250df", "device silent"), ("#d1242f", "low battery")]
    x = x0
    for col, label in key:
        o.append('<rect x="%d" y="%d" width="8" height="8" fill="%s"/><text x="%d" y="%d" font-size="10" fill="#57606a">%s</text>'
                 % (x, h - 12, col, x + 11, h - 4, _e(label)))
        x += 16 + 6 * len(label)
    o.append("</svg>")
    return "".join(o)


def _placeholder(p):
    return p.get("source") in (3, 4) and p.get("lat_e7") == 0 and p.get("lon_e7") == 0


def map_positions(results):
    """(device positions, receiver-resolved positions) the map plots: only
    known places (source 0 and (0, 0) placeholders are never plotted)."""
    dev = [p for p in _list(results.get("positions")) if isinstance(p, dict) and p.get("source")
           and _int(p.get("lat_e7")) and _int(p.get("lon_e7")) and _int(p.get("t_ms")) and not _placeholder(p)]
    res = [p for p in _list(_dict(results.get("receiver")).get("positions")) if isinstance(p, dict)
           and str(p.get("source") or "").endswith("(resolved)") and _int(p.get("lat_e7")) and _int(p.get("lon_e7"))
           and (p["lat_e7"], p["lon_e7"]) != (0, 0) and _int(p.get("t_ms"))]
    return dev, res


def _route_at(route, t):
    """The route sample nearest t (the first of equals); route is not empty."""
    return min(route, key=lambda r: abs(r["t_ms"] - t))


def route_svg(results, width=900, height=560):
    """The route (grey and dashed when indoors) with its start and end, the
    place of every press, each position a frame reported (dot in its
    source's colour, a circle of the accuracy it claimed, a line to where
    the person truly was; an ALERT's labelled with its source and
    accuracy), and each position the receiver resolved itself (dashed
    circle, labelled "resolved"). The drawn extent is in data-bbox
    ("lat_min,lon_min,lat_max,lon_max")."""
    route = [r for r in _list(results.get("route")) if isinstance(r, dict) and _int(r.get("t_ms"))
             and _int(r.get("lat_e7")) and _int(r.get("lon_e7"))]
    dev, res = map_positions(results)
    pts = [(r["lat_e7"] / 1e7, r["lon_e7"] / 1e7) for r in route] + [(p["lat_e7"] / 1e7, p["lon_e7"] / 1e7) for p in dev + res]
    o = []
    if not pts:
        return ('<svg width="%d" height="60" viewBox="0 0 %d 60" role="img" aria-label="route and positions">'
                '<text x="20" y="30" fill="#57606a">no route and no known position</text></svg>' % (width, width))
    lat0 = sum(p[0] for p in pts) / len(pts)
    k = math.cos(math.radians(lat0))
    m_per_deg = 111320.0
    xs = [p[1] * k * m_per_deg for p in pts]
    ys = [p[0] * m_per_deg for p in pts]
    span_x = max(xs) - min(xs)
    span_y = max(ys) - min(ys)
    pad = max(30.0, 0.08 * max(span_x, span_y))
    minx, maxx, miny, maxy = min(xs) - pad, max(xs) + pad, min(ys) - pad, max(ys) + pad
    # room for accuracy circles, capped: a 3 km cell circle must not shrink the route to a dot
    cap = max(250.0, 0.5 * max(span_x, span_y))
    for p in dev + res:
        acc = p.get("accuracy_m")
        if isinstance(acc, (int, float)) and acc != UNKNOWN_U16 and 0 < acc <= cap:
            px, py = p["lon_e7"] / 1e7 * k * m_per_deg, p["lat_e7"] / 1e7 * m_per_deg
            minx, maxx = min(minx, px - acc), max(maxx, px + acc)
            miny, maxy = min(miny, py - acc), max(maxy, py + acc)
    scale = min((width - 20) / max(maxx - minx, 1), (height - 40) / max(maxy - miny, 1))
    bbox = (miny / m_per_deg, minx / (k * m_per_deg), maxy / m_per_deg, maxx / (k * m_per_deg))
    o.append('<svg width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="route and positions" '
             'data-bbox="%.6f,%.6f,%.6f,%.6f">' % ((width, height, width, height) + bbox))

    def P(lat, lon):
        return 10 + (lon * k * m_per_deg - minx) * scale, 10 + (maxy - lat * m_per_deg) * scale

    segs = []
    cur = None
    for r in route:
        ind = r.get("condition") == "indoor"
        x, y = P(r["lat_e7"] / 1e7, r["lon_e7"] / 1e7)
        if cur is None or cur[0] != ind:
            if cur is not None:
                cur[1].append((x, y))
            cur = (ind, [(x, y)])
            segs.append(cur)
        else:
            cur[1].append((x, y))
    for ind, ps in segs:
        if len(ps) == 1:
            o.append('<circle cx="%.1f" cy="%.1f" r="4" fill="%s"/>' % (ps[0][0], ps[0][1], "#8c959f" if ind else "#57606a"))
            continue
        o.append('<polyline fill="none" stroke="%s" stroke-width="%d" %s points="%s"/>'
                 % ("#8c959f" if ind else "#57606a", 2 if ind else 3, 'stroke-dasharray="4,3"' if ind else "", " ".join("%.1f,%.1f" % q for q in ps)))
    for p in res:  # resolved at the receiver: dashed circle of the data's range
        x, y = P(p["lat_e7"] / 1e7, p["lon_e7"] / 1e7)
        col = SHOWN_COLOURS.get(p["source"], "#8250df")
        acc = p.get("accuracy_m")
        if isinstance(acc, (int, float)) and acc > 0:
            o.append('<circle cx="%.1f" cy="%.1f" r="%.1f" fill="none" stroke="%s" stroke-dasharray="6,4" stroke-opacity="0.8"/>'
                     % (x, y, max(1.0, acc * scale), col))
        o.append('<rect x="%.1f" y="%.1f" width="7" height="7" fill="%s"><title>%s</title></rect>' % (
            x - 3.5, y - 3.5, col, _e("%s at %s (%s, seq %s): accuracy %s; %s" % (
                SHOWN_SOURCES.get(p["source"], p["source"]), _fmt_ms(p["t_ms"]), p.get("role"), p.get("seq"),
                _num(acc, "m"), p.get("note") or ""))))
    labelled = set()
    for p in dev:
        x, y = P(p["lat_e7"] / 1e7, p["lon_e7"] / 1e7)
        col = SOURCE_COLOURS.get(p["source"], "#888")
        acc = p.get("accuracy_m")
        if isinstance(acc, (int, float)) and acc != UNKNOWN_U16:
            o.append('<circle cx="%.1f" cy="%.1f" r="%.1f" fill="%s" fill-opacity="0.08" stroke="%s" stroke-opacity="0.6"/>' % (x, y, max(1.0, acc * scale), col, col))
        tlat, tlon = p.get("true_lat_e7"), p.get("true_lon_e7")
        if _int(tlat) and _int(tlon):
            tx, ty = P(tlat / 1e7, tlon / 1e7)
            o.append('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="1"/>' % (x, y, tx, ty, col))
        o.append('<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s"><title>%s</title></circle>'
                 % (x, y, col, _e("%s seq %s at %s: %s, accuracy %s, age %s, error %s" % (
                     p.get("type"), p.get("seq"), _fmt_ms(p.get("t_ms")), SOURCES.get(p["source"], p["source"]),
                     _num(acc, "m"), _num(p.get("age_s"), "s"), _num(p.get("error_m"), "m")))))
        if p.get("type") == "ALERT" and p.get("seq") not in labelled:
            labelled.add(p.get("seq"))
            o.append('<text x="%.1f" y="%.1f" font-size="11" fill="%s">ALERT: %s, %s</text>' % (
                x + 6, y + 14, col, _e(SOURCES.get(p["source"], p["source"])), _e("+/-" + _num(acc, "m"))))
    if route:
        for r, label in ((route[0], "start"), (route[-1], "end")):
            x, y = P(r["lat_e7"] / 1e7, r["lon_e7"] / 1e7)
            o.append('<path d="M %.1f %.1f l 6 10 l -12 0 z" fill="%s"/>' % (x, y - 6, "#1a7f37" if label == "start" else "#57606a"))
            o.append('<text x="%.1f" y="%.1f" font-size="11" fill="#1f2328">%s</text>' % (x + 8, y - 6, label))
        for a in _list(results.get("alerts")):
            if not isinstance(a, dict) or not _int(a.get("press_ms")):
                continue
            r = _route_at(route, a["press_ms"])
            x, y = P(r["lat_e7"] / 1e7, r["lon_e7"] / 1e7)
            o.append('<path d="M %.1f %.1f l 6 6 l -6 6 l -6 -6 z" fill="#cf222e" stroke="#fff"><title>%s</title></path>'
                     % (x, y - 6, _e("%s pressed at %s, here" % (_words(a.get("kind") or "?"), _fmt_ms(a["press_ms"])))))
            o.append('<text x="%.1f" y="%.1f" font-size="11" fill="#cf222e">%s pressed %s</text>' % (
                x + 8, y + 4, _e(_words(a.get("kind") or "?")), _e(_fmt_ms(a["press_ms"]))))
    bar_m = _nice((width / scale) / 6)
    o.append('<line x1="20" y1="%d" x2="%.1f" y2="%d" stroke="#1f2328" stroke-width="2"/>' % (height - 15, 20 + bar_m * scale, height - 15))
    o.append('<text x="20" y="%d" font-size="11">%s m</text>' % (height - 20, _e(_num(bar_m))))
    lx = width - 190
    legend = [(SOURCE_COLOURS[s], "circle", name) for s, name in SOURCES.items() if s] + [
        (SHOWN_COLOURS["cell (resolved)"], "rect", "cell, resolved by the receiver"), ("#cf222e", "path", "button pressed")]
    for i, (col, shape, name) in enumerate(legend):
        y = 16 + 15 * i
        if shape == "circle":
            o.append('<circle cx="%d" cy="%d" r="4" fill="%s"/>' % (lx, y, col))
        elif shape == "rect":
            o.append('<rect x="%d" y="%d" width="7" height="7" fill="%s"/>' % (lx - 3, y - 3, col))
        else:
            o.append('<path d="M %d %d l 5 5 l -5 5 l -5 -5 z" fill="%s"/>' % (lx, y - 5, col))
        o.append('<text x="%d" y="%d" font-size="11">%s</text>' % (lx + 8, y + 4, _e(name)))
    o.append("</svg>")
    return "".join(o)


def battery_svg(results, width=900, height=180):
    """The true state of charge over the run (line) and the battery the
    device reported to the receiver (dots)."""
    dur = _duration(results)
    samples = [b for b in _list(results.get("battery")) if isinstance(b, dict) and _int(b.get("t_ms"))
               and isinstance(b.get("soc_pct"), (int, float)) and not isinstance(b.get("soc_pct"), bool)]
    t0 = _dict(results.get("scenario")).get("start_utc_ms")
    reported = []
    for e in _list(_dict(results.get("receiver")).get("events")):
        if isinstance(e, dict) and _int(e.get("battery")) and isinstance(e.get("time"), (int, float)) and _int(t0):
            reported.append((int(e["time"] * 1000 - t0), e["battery"]))
    if not samples and not reported:
        return ""
    x0, x1, y0, y1 = 50, width - 10, 10, height - 30

    def X(t):
        return x0 + max(0, min(t, dur)) / dur * (x1 - x0)

    def Y(pct):
        return y1 - max(0.0, min(100.0, pct)) / 100.0 * (y1 - y0)

    o = ['<svg width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="battery over time">' % (width, height, width, height)]
    for pct in (0, 25, 50, 75, 100):
        o.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#eaeef2"/>' % (x0, Y(pct), x1, Y(pct)))
        o.append('<text x="%d" y="%.1f" font-size="10" text-anchor="end" fill="#57606a">%d%%</text>' % (x0 - 4, Y(pct) + 3, pct))
    if len(samples) > 1:
        o.append('<polyline fill="none" stroke="#1a7f37" stroke-width="2" points="%s"><title>state of charge</title></polyline>'
                 % " ".join("%.1f,%.1f" % (X(b["t_ms"]), Y(b["soc_pct"])) for b in samples))
    for t, pct in reported:
        o.append('<circle cx="%.1f" cy="%.1f" r="3" fill="#0969da"><title>%s</title></circle>'
                 % (X(t), Y(pct), _e("the device reported %d%% at %s" % (pct, _fmt_ms(t)))))
    step = _nice(dur / 8)
    t = 0
    while t <= dur:
        o.append('<text x="%.1f" y="%d" font-size="10" text-anchor="middle" fill="#57606a">%s</text>' % (X(t), height - 16, _e(_fmt_ms(t))))
        t += step
    o.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#1a7f37" stroke-width="2"/><text x="%d" y="%d" font-size="10">true state of charge</text>'
             % (x0, height - 5, x0 + 16, height - 5, x0 + 20, height - 2))
    o.append('<circle cx="%d" cy="%d" r="3" fill="#0969da"/><text x="%d" y="%d" font-size="10">what the device reported</text>'
             % (x0 + 160, height - 5, x0 + 166, height - 2))
    o.append("</svg>")
    return "".join(o)


def _inv_details(i):
    if i.get("violations"):
        return "; ".join(str(v) for v in i["violations"])
    parts = []
    if _int(i.get("checked")):
        parts.append("%s checked" % _num(i["checked"]))
    for k, words in _DETAIL_WORDS.items():
        v = i.get(k)
        if k == "worst_ratio" and isinstance(v, (int, float)) and not isinstance(v, bool):
            parts.append("worst error %d%% of the stated radius" % round(100 * v))
        elif k == "bound_ms" and _int(v):
            parts.append("bound %s s" % _num(v / 1000.0))
        elif words and _int(v) and v:
            parts.append(words % _num(v))
    return ", ".join(parts)


def _credits(res):
    """Whom a resolved position's data credits ("OpenCellID, CC BY-SA 4.0"),
    from the notes the receiver wrote (receiver/locations.py)."""
    out = set()
    for p in res:
        note = str(p.get("note") or "")
        if not note.endswith(")"):
            continue
        depth, i = 0, len(note) - 1
        while i >= 0:  # the opening bracket of the last group (it may hold brackets itself)
            depth += {")": 1, "(": -1}.get(note[i], 0)
            if depth == 0:
                break
            i -= 1
        parts = [x.strip() for x in note[i + 1:-1].split(";")]
        out.update(x for x in parts if x and x not in ("GSM", "UMTS", "LTE", "CDMA", "NR"))
    return sorted(out)


def render_html(results):
    """The whole report as one self-contained HTML string."""
    _check(results)
    sc = _dict(results.get("scenario"))
    inv = [i for i in _list(results.get("invariants")) if isinstance(i, dict)]
    exp = [e for e in _list(results.get("expect")) if isinstance(e, dict)]
    all_ok = all(i.get("ok") for i in inv) and all(e.get("ok") for e in exp)
    o = ["<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
         "<title>%s</title><style>%s</style></head><body>" % (_e("sim report: %s" % sc.get("name", "?")), _CSS)]
    o.append("<h1>%s</h1>" % _e(sc.get("name", "simulation run")))
    if sc.get("description"):
        o.append("<p>%s</p>" % _e(sc["description"]))
    o.append('<p>verdict: <span class="%s">%s</span> <span class="muted">seed %s, %s simulated, %s power profile, file %s</span></p>'
             % ("ok" if all_ok else "bad", "PASS" if all_ok else "FAIL", _e(sc.get("seed")), _e(_fmt_ms(sc.get("duration_ms"))),
                _e(sc.get("profile")), _e(sc.get("file"))))
    o.append("<h2>What must always hold</h2>")
    o.append(_table(["", "result", "details"],
                    [[_look(INVARIANT_LABELS, i.get("name"), _words(i.get("name") or "?")), _okcell(i.get("ok")), _inv_details(i)]
                     for i in inv]))
    if exp:
        o.append("<h2>What this scenario expects</h2>")
        o.append(_table(["", "result", "expected", "seen"],
                        [[_look(EXPECT_LABELS, e.get("name"), _words(e.get("name") or "?")), _okcell(e.get("ok")),
                          _num(e.get("expected")), _num(e.get("actual"))] for e in exp]))
    o.append("<h2>The run</h2>")
    o.append(run_timeline_svg(results))
    o.append("<h2>Alerts</h2>")
    alerts = [a for a in _list(results.get("alerts")) if isinstance(a, dict)]
    if not alerts:
        o.append('<p class="muted">no button actions in this run</p>')
    frames = [f for f in _list(results.get("frames")) if isinstance(f, dict)]
    for a in alerts:
        p = a.get("press_ms") if _int(a.get("press_ms")) else 0

        def lat(k, a=a, p=p):
            return "never" if not _int(a.get(k)) else "+%s s" % _trim((a[k] - p) / 1000)

        o.append("<h3>%s pressed at %s (frame seq %s)</h3>" % (_e(_words(a.get("kind") or "?")), _e(_fmt_ms(p)), _e(a.get("seq"))))
        o.append(_table(["pressed", "first frame on air", "stored by the receiver", "ACK accepted", "still queued at the end"],
                        [[_fmt_ms(p), lat("first_frame_ms"), lat("committed_ms"), lat("ack_ms"), "yes" if a.get("pending_at_end") else "no"]]))
        o.append(alert_timeline_svg(a, frames))
    o.append("<h2>Where the person was, and what was reported</h2>")
    o.append(route_svg(results))
    dev, res = map_positions(results)
    credits = _credits(res)
    if credits:
        o.append('<p class="muted">Positions resolved by the receiver from its location database: %s.</p>' % _e("; ".join(credits)))
    pos = [p for p in _list(results.get("positions")) if isinstance(p, dict)]
    if pos:
        o.append("<h3>Positions the device sent</h3>")
        o.append(_table(["time", "frame", "seq", "source", "accuracy", "age", "error"],
                        [[_fmt_ms(p.get("t_ms")), p.get("type"), p.get("seq"),
                          "unknown (not a position)" if _placeholder(p) else
                          ("unknown" if not p.get("source") else _look(SOURCES, p.get("source"), p.get("source"))),
                          _num(p.get("accuracy_m"), "m"), _num(p.get("age_s"), "s"),
                          "-" if p.get("error_m") is None else _num(p.get("error_m"), "m")] for p in pos[:300]]))
    shown = [p for p in _list(_dict(results.get("receiver")).get("positions")) if isinstance(p, dict)]
    if shown:
        o.append("<h3>Positions the receiver showed an operator</h3>")
        o.append(_table(["first shown", "as", "source", "seq", "accuracy", "error", "from"],
                        [[_fmt_ms(p.get("t_ms")), "where the person is" if p.get("role") == "estimate" else "evidence beside it",
                          _look(SHOWN_SOURCES, p.get("source"), p.get("source")), p.get("seq"), _num(p.get("accuracy_m"), "m"),
                          "-" if p.get("error_m") is None else _num(p.get("error_m"), "m"), p.get("note") or ""]
                         for p in shown[:300]]))
    bat = battery_svg(results)
    if bat:
        o.append("<h2>Battery</h2>")
        o.append(bat)
    en = _dict(results.get("energy"))
    if en:
        o.append("<h2>Energy</h2>")
        rows = [[label, _num(en[k], unit)] for k, label, unit in ENERGY_LABELS if k in en]
        rows += [["Used by the %s" % k, _num(v, "mAh")] for k, v in sorted(_dict(en.get("by_part_mah")).items())]
        o.append(_table(["", "value"], rows))
        prof = [p for p in _list(en.get("profiles")) if isinstance(p, dict)]
        if prof:
            o.append("<h3>Power profiles: standby life against time to first frame</h3>")
            rows = []
            for p in prof:
                ff = _dict(p.get("first_frame_extra_s"))
                rows.append([p.get("profile"), _num(p.get("avg_ma"), "mA"), _num(p.get("standby_days"), "days"),
                             "%s / %s / %s" % (_num(ff.get("min")), _num(ff.get("typ")), _num(ff.get("max"))), p.get("doc", "")])
            o.append(_table(["profile", "standby current", "standby life", "extra seconds to first frame (min / typ / max)",
                             "what it is"], rows))
    if frames:
        o.append("<h2>Frames</h2>")
        o.append(_table(["time", "direction", "what happened", "path", "type", "seq", "bytes", "note"],
                        [[_fmt_ms(f.get("t_ms")), f.get("dir"), _words(f.get("event") or ""), f.get("path") or "-", f.get("type"),
                          f.get("seq"), f.get("size"), f.get("note")] for f in frames[:1000]]))
        if len(frames) > 1000:
            o.append('<p class="muted">%d more frame events in the JSON report</p>' % (len(frames) - 1000))
    ev = [e for e in _list(results.get("events")) if isinstance(e, dict)]
    if ev:
        o.append("<h2>Events</h2>")
        o.append(_table(["time", "what", "detail"], [[_fmt_ms(e.get("t_ms")), _words(e.get("kind") or ""), e.get("detail")] for e in ev[:500]]))
    o.append("</body></html>\n")
    return "".join(o)
