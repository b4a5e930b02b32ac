"""Run reports: the JSON results file and a self-contained HTML report.

Owns: the results format (below), its JSON writer, and the HTML report
(inline SVG: a whole-run timeline, one timeline per alert with press, first
frame on air, committed and ACK, and the route with every reported position
and a circle of the accuracy it claimed). The HTML needs no network: no
scripts, no styles or fonts fetched, no external links.

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
                 silent_alarms: [{t_ms, device_id}]}
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

FORMAT = "panic-sim-results/1"
SOURCES = {0: "none", 1: "GNSS live", 2: "GNSS last fix", 3: "cell", 4: "Wi-Fi"}
SOURCE_COLOURS = {0: "#888888", 1: "#1a7f37", 2: "#bf8700", 3: "#8250df", 4: "#0969da"}
_SECRETISH = re.compile(r"(^|_)(key|keys|secret|master|k_enc|k_mac|psk|password)($|_)", re.I)


class ReportError(ValueError):
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
    "invariants": {"name": (str,), "ok": (bool,)},
    "expect": {"name": (str,), "ok": (bool,)},
}
_REQUIRED = {"frames": ("t_ms",), "alerts": ("kind", "press_ms"), "positions": ("t_ms", "source"),
             "route": ("t_ms", "lat_e7", "lon_e7"), "events": ("t_ms", "kind"), "invariants": ("name", "ok")}


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


def _e(x):
    return html.escape("" if x is None else str(x), quote=True)


def _fmt_ms(ms):
    if ms is None:
        return "-"
    s = ms / 1000.0
    h, rem = divmod(int(s), 3600)
    m, sec = divmod(rem, 60)
    frac = s - int(s)
    return "%d:%02d:%02d%s" % (h, m, sec, (".%d" % int(frac * 10)) if frac else "")


def _okcell(ok):
    return '<td class="%s">%s</td>' % ("ok" if ok else "bad", "pass" if ok else "FAIL")


def _table(head, rows):
    out = ["<table><tr>", "".join("<th>%s</th>" % _e(h) for h in head), "</tr>"]
    for r in rows:
        out.append("<tr>%s</tr>" % "".join(c if isinstance(c, str) and c.startswith("<td") else "<td>%s</td>" % _e(c) for c in r))
    out.append("</table>")
    return "".join(out)


def alert_timeline_svg(alert, frames, width=900):
    """One alert: press, first frame on air, committed, ACK, and every frame
    event with its seq, on a time axis starting at the press."""
    p = alert.get("press_ms") or 0
    marks = [("press", p, "#cf222e"), ("first frame on air", alert.get("first_frame_ms"), "#0969da"),
             ("committed", alert.get("committed_ms"), "#8250df"), ("ACK", alert.get("ack_ms"), "#1a7f37")]
    seq = alert.get("seq")
    fe = [f for f in frames if seq is not None and f.get("seq") == seq and f.get("dir") == "up"]
    times = [t for _, t, _ in marks if t is not None] + [f["t_ms"] for f in fe if f.get("t_ms") is not None]
    end = max(times + [p + 1000])
    span = max(end - p, 1000) * 1.1
    x0, x1 = 20, width - 20
    h = 120

    def X(t):
        return x0 + (t - p) / span * (x1 - x0)

    o = ['<svg width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="alert timeline">' % (width, h, width, h)]
    o.append('<line x1="%d" y1="60" x2="%d" y2="60" stroke="#57606a"/>' % (x0, x1))
    # ticks every "nice" step
    step = _nice(span / 8)
    t = 0.0
    while t <= span:
        x = X(p + t)
        o.append('<line x1="%.1f" y1="57" x2="%.1f" y2="63" stroke="#57606a"/>' % (x, x))
        o.append('<text x="%.1f" y="76" font-size="10" text-anchor="middle" fill="#57606a">+%ss</text>' % (x, _e(_trim(t / 1000))))
        t += step
    for f in fe:
        x = X(f["t_ms"])
        col = {"tcp": "#0969da", "sms": "#bf8700"}.get(f.get("path"), "#8c959f")
        o.append('<rect x="%.1f" y="84" width="3" height="10" fill="%s"><title>%s</title></rect>'
                 % (x - 1.5, col, _e("%s %s %s at %s" % (f.get("type"), f.get("event"), f.get("path") or "", _fmt_ms(f["t_ms"])))))
    for i, (label, tm, col) in enumerate(marks):
        if tm is None:
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
    """The whole run: coverage, sky, receiver outages, power cuts, button
    actions, frames up and down."""
    dur = (results.get("scenario") or {}).get("duration_ms") or 1
    x0, x1 = 110, width - 10
    lanes = ["actions", "uplink", "downlink", "coverage", "receiver", "power", "sky"]
    lh = 18
    h = 20 + lh * len(lanes) + 20

    def X(t):
        return x0 + max(0, min(t, dur)) / dur * (x1 - x0)

    def Y(lane):
        return 10 + lh * lanes.index(lane)

    o = ['<svg width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="run timeline">' % (width, h, width, h)]
    for ln in lanes:
        o.append('<text x="4" y="%d" font-size="11" fill="#57606a">%s</text>' % (Y(ln) + 12, ln))
        o.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#eaeef2"/>' % (x0, Y(ln) + lh - 1, x1, Y(ln) + lh - 1))
    cov_col = {"data+sms": "#dafbe1", "sms-only": "#fff8c5", "none": "#ffebe9"}
    for ev in results.get("events") or []:
        k = ev.get("kind")
        t = ev.get("t_ms") or 0
        end = ev.get("end_ms", t)
        if k == "coverage":
            o.append('<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"><title>%s</title></rect>'
                     % (X(t), Y("coverage"), max(1, X(end) - X(t)), lh - 2, cov_col.get(ev.get("detail"), "#eee"), _e(ev.get("detail"))))
        elif k == "receiver_down":
            o.append('<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="#ffcecb"><title>receiver down</title></rect>' % (X(t), Y("receiver"), max(1, X(end) - X(t)), lh - 2))
        elif k in ("power_cut", "brownout", "reset"):
            o.append('<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="#cf222e"><title>%s</title></rect>' % (X(t), Y("power"), max(2, X(end) - X(t)), lh - 2, _e("%s %s" % (k, ev.get("detail") or ""))))
        elif k == "sky":
            col = {"open": "#dafbe1", "urban": "#fff8c5", "indoor": "#d0d7de"}.get(ev.get("detail"), "#eee")
            o.append('<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"><title>%s</title></rect>' % (X(t), Y("sky"), max(1, X(end) - X(t)), lh - 2, col, _e(ev.get("detail"))))
    for a in results.get("alerts") or []:
        t = a.get("press_ms") or 0
        o.append('<circle cx="%.1f" cy="%d" r="4" fill="#cf222e"><title>%s</title></circle>' % (X(t), Y("actions") + 8, _e("%s at %s" % (a.get("kind"), _fmt_ms(t)))))
    for f in results.get("frames") or []:
        if f.get("event") not in ("on_air", "received"):
            continue
        lane = "uplink" if f.get("dir") == "up" else "downlink"
        col = "#0969da" if f.get("path") != "sms" else "#bf8700"
        o.append('<rect x="%.1f" y="%d" width="2" height="%d" fill="%s"><title>%s</title></rect>'
                 % (X(f.get("t_ms") or 0), Y(lane) + 2, lh - 6, col, _e("%s seq %s %s %s at %s" % (f.get("type"), f.get("seq"), f.get("event"), f.get("path") or "", _fmt_ms(f.get("t_ms"))))))
    step = _nice(dur / 8)
    t = 0
    while t <= dur:
        o.append('<text x="%.1f" y="%d" font-size="10" text-anchor="middle" fill="#57606a">%s</text>' % (X(t), h - 6, _e(_fmt_ms(t))))
        t += step
    o.append("</svg>")
    return "".join(o)


def route_svg(results, width=900, height=560):
    """True route (grey when indoors) and reported positions with circles of
    their claimed accuracy; a thin line joins each to its error."""
    route = results.get("route") or []
    pos = [p for p in results.get("positions") or [] if p.get("source") and p.get("lat_e7") is not None and p.get("lon_e7") is not None]
    pts = [(r["lat_e7"] / 1e7, r["lon_e7"] / 1e7) for r in route] + [(p["lat_e7"] / 1e7, p["lon_e7"] / 1e7) for p in pos]
    o = ['<svg width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="route and reported positions">' % (width, height, width, height)]
    if not pts:
        o.append('<text x="20" y="30" fill="#57606a">no route or positions</text></svg>')
        return "".join(o)
    lat0 = sum(p[0] for p in pts) / len(pts)
    k = math.cos(math.radians(lat0))
    m_per_deg = 111320.0
    xs = [p[1] * k * m_per_deg for p in pts]
    ys = [p[0] * m_per_deg for p in pts]
    # make room for accuracy circles (but cap: a 3 km cell circle should not shrink the map to a dot)
    span_x = max(xs) - min(xs)
    span_y = max(ys) - min(ys)
    pad = max(30.0, 0.08 * max(span_x, span_y))
    minx, maxx, miny, maxy = min(xs) - pad, max(xs) + pad, min(ys) - pad, max(ys) + pad
    cap = max(250.0, 0.5 * max(span_x, span_y))
    for p in pos:
        acc = p.get("accuracy_m")
        if acc is not None and acc != 0xFFFF and acc <= cap:
            px, py = p["lon_e7"] / 1e7 * k * m_per_deg, p["lat_e7"] / 1e7 * m_per_deg
            minx, maxx = min(minx, px - acc), max(maxx, px + acc)
            miny, maxy = min(miny, py - acc), max(maxy, py + acc)
    scale = min((width - 20) / max(maxx - minx, 1), (height - 40) / max(maxy - miny, 1))

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
    if route:
        sx, sy = P(route[0]["lat_e7"] / 1e7, route[0]["lon_e7"] / 1e7)
        o.append('<text x="%.1f" y="%.1f" font-size="11" fill="#57606a">start</text>' % (sx + 5, sy - 5))
    for p in pos:
        x, y = P(p["lat_e7"] / 1e7, p["lon_e7"] / 1e7)
        col = SOURCE_COLOURS.get(p["source"], "#888")
        acc = p.get("accuracy_m")
        if acc is not None and acc != 0xFFFF:
            o.append('<circle cx="%.1f" cy="%.1f" r="%.1f" fill="%s" fill-opacity="0.08" stroke="%s" stroke-opacity="0.6"/>' % (x, y, max(1.0, acc * scale), col, col))
        tp = p.get("true_lat_e7"), p.get("true_lon_e7")
        if tp[0] is not None and tp[1] is not None:
            tx, ty = P(tp[0] / 1e7, tp[1] / 1e7)
            o.append('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="1"/>' % (x, y, tx, ty, col))
        o.append('<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s"><title>%s</title></circle>'
                 % (x, y, col, _e("%s seq %s at %s: %s, accuracy %s m, age %s s, error %s m" % (
                     p.get("type"), p.get("seq"), _fmt_ms(p.get("t_ms")), SOURCES.get(p["source"], p["source"]),
                     acc, p.get("age_s"), None if p.get("error_m") is None else round(p["error_m"], 1)))))
    # scale bar
    bar_m = _nice((width / scale) / 6)
    o.append('<line x1="20" y1="%d" x2="%.1f" y2="%d" stroke="#1f2328" stroke-width="2"/>' % (height - 15, 20 + bar_m * scale, height - 15))
    o.append('<text x="20" y="%d" font-size="11">%s m</text>' % (height - 20, _e(_trim(bar_m))))
    lx = width - 150
    for i, (s, name) in enumerate(SOURCES.items()):
        if s == 0:
            continue
        o.append('<circle cx="%d" cy="%d" r="4" fill="%s"/><text x="%d" y="%d" font-size="11">%s</text>' % (lx, 16 + 15 * i, SOURCE_COLOURS[s], lx + 8, 20 + 15 * i, _e(name)))
    o.append("</svg>")
    return "".join(o)


def render_html(results):
    """The whole report as one self-contained HTML string."""
    _check(results)
    sc = results.get("scenario") or {}
    inv = results.get("invariants") or []
    exp = results.get("expect") or []
    all_ok = all(i.get("ok") for i in inv) and all(e.get("ok") for e in exp)
    o = ["<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
         "<title>%s</title><style>%s</style></head><body>" % (_e("sim report: %s" % sc.get("name", "?")), _CSS)]
    o.append("<h1>%s</h1>" % _e(sc.get("name", "simulation run")))
    if sc.get("description"):
        o.append("<p>%s</p>" % _e(sc["description"]))
    o.append('<p>verdict: <span class="%s">%s</span> <span class="muted">seed %s, duration %s, profile %s, file %s</span></p>'
             % ("ok" if all_ok else "bad", "PASS" if all_ok else "FAIL", _e(sc.get("seed")), _e(_fmt_ms(sc.get("duration_ms"))),
                _e(sc.get("profile")), _e(sc.get("file"))))
    o.append("<h2>Invariants</h2>")
    o.append(_table(["invariant", "result", "checked", "details"],
                    [[i.get("name"), _okcell(i.get("ok")), i.get("checked"), "; ".join(i.get("violations") or []) or
                      ", ".join("%s %s" % (k, v) for k, v in sorted(i.items()) if k not in ("name", "ok", "checked", "violations"))] for i in inv]))
    if exp:
        o.append("<h2>Expectations</h2>")
        o.append(_table(["expectation", "result", "expected", "actual"], [[e.get("name"), _okcell(e.get("ok")), e.get("expected"), e.get("actual")] for e in exp]))
    o.append("<h2>Run timeline</h2>")
    o.append(run_timeline_svg(results))
    o.append("<h2>Alerts</h2>")
    alerts = results.get("alerts") or []
    if not alerts:
        o.append('<p class="muted">no button actions in this run</p>')
    frames = results.get("frames") or []
    for a in alerts:
        p = a.get("press_ms") or 0

        def lat(k, a=a, p=p):
            return "-" if a.get(k) is None else "+%ss" % _trim((a[k] - p) / 1000)

        o.append("<h3>%s at %s (seq %s)</h3>" % (_e(a.get("kind")), _e(_fmt_ms(p)), _e(a.get("seq"))))
        o.append(_table(["press", "first frame on air", "committed", "ACK", "pending at end"],
                        [[_fmt_ms(p), lat("first_frame_ms"), lat("committed_ms"), lat("ack_ms"), "yes" if a.get("pending_at_end") else "no"]]))
        o.append(alert_timeline_svg(a, frames))
    o.append("<h2>Route and reported positions</h2>")
    o.append(route_svg(results))
    pos = results.get("positions") or []
    if pos:
        o.append(_table(["time", "frame", "seq", "source", "accuracy m", "age s", "error m"],
                        [[_fmt_ms(p.get("t_ms")), p.get("type"), p.get("seq"), SOURCES.get(p.get("source"), p.get("source")),
                          p.get("accuracy_m"), p.get("age_s"), None if p.get("error_m") is None else round(p["error_m"], 1)] for p in pos[:300]]))
    en = results.get("energy") or {}
    if en:
        o.append("<h2>Energy</h2>")
        rows = [[k, en[k]] for k in ("used_mah", "avg_ma", "soc_pct_end", "battery_mv_end", "capacity_mah", "projected_days_at_avg") if k in en]
        rows += [["%s mAh" % k, v] for k, v in sorted((en.get("by_part_mah") or {}).items())]
        o.append(_table(["quantity", "value"], rows))
        prof = en.get("profiles") or []
        if prof:
            o.append("<h3>Power profiles: standby life against time to first frame</h3>")
            o.append(_table(["profile", "standby avg mA", "standby days", "extra s to first frame (min / typ / max)", "what it is"],
                            [[p["profile"], p["avg_ma"], p["standby_days"],
                              "%s / %s / %s" % (p["first_frame_extra_s"]["min"], p["first_frame_extra_s"]["typ"], p["first_frame_extra_s"]["max"]), p.get("doc", "")]
                             for p in prof]))
    if frames:
        o.append("<h2>Frames</h2>")
        o.append(_table(["time", "dir", "event", "path", "type", "seq", "bytes", "note"],
                        [[_fmt_ms(f.get("t_ms")), f.get("dir"), f.get("event"), f.get("path"), f.get("type"), f.get("seq"), f.get("size"), f.get("note")] for f in frames[:1000]]))
        if len(frames) > 1000:
            o.append('<p class="muted">%d more frame events in the JSON report</p>' % (len(frames) - 1000))
    ev = results.get("events") or []
    if ev:
        o.append("<h2>Events</h2>")
        o.append(_table(["time", "kind", "detail"], [[_fmt_ms(e.get("t_ms")), e.get("kind"), e.get("detail")] for e in ev[:500]]))
    o.append("</body></html>\n")
    return "".join(o)
