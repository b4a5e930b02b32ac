"""What the console shows, as plain functions of store rows and a clock:
queue order, the words and classes of a row, the timeline, statistics and
their CSV. No I/O: app.py reads the rows and renders these through the
templates, and the tests call them directly.

Queue order (issue 17): DURESS first, then ALERT, then incidents opened
by a TRACK whose ALERT has not arrived, then those the device already
closed (a user's cancel, a stand-down without an outcome: still waiting
for one), TEST last; within a rank the oldest first.

Statistics follow BS 8484's call-handling marks: the share of alarms
claimed within 10 s (target 80%) and within 40 s (target 98.5%), counted
from the moment the receiver stored the alarm to the first claim.

Must stay in sync with: store_console.py (columns), templates/ (names),
docs/console.md (order, statistics).
"""

import csv
import io
import statistics
import time

from receiver import store as S
from receiver import watch
from receiver.console import position
from receiver.store_console import OUTCOMES

CLAIM_MARKS = ((10, 0.80), (40, 0.985))  # BS 8484: 80% within 10 s, 98.5% within 40 s

R_DURESS, R_ALERT, R_TRACK_ONLY, R_CLOSED_BY_DEVICE, R_TEST = range(5)
RANK_WORD = {R_DURESS: "DURESS", R_ALERT: "ALERT", R_TRACK_ONLY: "ALERT (track only)",
             R_CLOSED_BY_DEVICE: "CLOSED", R_TEST: "TEST"}
OUTCOME_WORDS = {"genuine": "genuine", "false_accidental": "false - accidental", "false_malicious": "false - malicious",
                 "test": "test", "technical_fault": "technical fault", None: "no outcome"}


def rank(inc):
    if inc["kind"] == S.KIND_TEST:
        return R_TEST
    if inc["duress"] or inc["state"] == S.DURESS:
        return R_DURESS
    if inc["state"] not in S.OPEN_STATES:
        return R_CLOSED_BY_DEVICE
    if inc["opened_by"] == "TRACK":
        return R_TRACK_ONLY
    return R_ALERT


def sort_key(inc):
    return (rank(inc), inc["opened_at"], inc["id"])


def order_queue(rows):
    return sorted(rows, key=sort_key)


def headline(inc):
    """The word an operator reads first; TEST and DURESS are never hidden."""
    r = rank(inc)
    if r == R_TEST:
        return "TEST DURESS" if inc["duress"] else "TEST"
    if r == R_CLOSED_BY_DEVICE:
        return "CANCELLED by user" if inc["state"] == S.CANCELLED else "STOOD DOWN"
    return RANK_WORD[r]


def state_words(inc):
    if inc["outcome"] is not None:
        return "closed: " + OUTCOME_WORDS[inc["outcome"]]
    if inc["owner"]:
        return "claimed by " + inc["owner"]
    return "UNCLAIMED"


def row_view(inc, now):
    """What a queue row needs (also the incident page's header)."""
    shown = position.shown(inc, now)
    return {
        "inc": inc,
        "rank": rank(inc),
        "headline": headline(inc),
        "state": state_words(inc),
        "pos": shown["position"],
        "evidence": shown["evidence"],
        "placeholders": shown["placeholders"],
        "sort": "%d-%015.3f-%010d" % (rank(inc), inc["opened_at"], inc["id"]),
    }


def source_words(source):
    """A position source in words, as `panic receiver watch` says it (a
    resolved position is never called the device's fix)."""
    return watch._SOURCE_WORDS.get(source, source)  # one wording for both views


def fmt_time(t):
    return "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(t))


def fmt_age(s):
    if s is None:
        return "age unknown"
    s = int(s)
    if s < 120:
        return "%d s" % s
    if s < 7200:
        return "%d min" % (s // 60)
    return "%d h %02d min" % (s // 3600, s % 3600 // 60)


def dms(v, pos_word, neg_word):
    """Degrees, minutes, seconds of one coordinate, for a call handler
    who reads a position aloud."""
    w = pos_word if v >= 0 else neg_word
    v = abs(v)
    d = int(v)
    m = int((v - d) * 60)
    s = (v - d - m / 60) * 3600
    return "%d\u00b0 %02d' %04.1f\" %s" % (d, m, s, w)


def timeline(inc, frames, actions, escalations=()):
    """Every frame and operator action of the incident on one time line,
    oldest first: [{time, who, what, detail}]."""
    import json

    items = [{"time": inc["opened_at"], "who": "receiver", "what": "incident opened",
              "detail": "by %s seq %s" % (inc["opened_by"], inc["opened_seq"]), "cls": "rx"}]
    for f in frames:
        try:
            d = json.loads(f["decoded"])
        except (TypeError, ValueError):
            d = {}
        p = position.frame_position(d)
        if p is None:
            pos = ""
        elif p == position.PLACEHOLDER:
            pos = "%s (0, 0): a placeholder of older firmware, not a position" % d["source"]
        else:
            pos = "%.7f, %.7f (%s%s)" % (p["lat"], p["lon"], p["source"],
                                         "" if p["accuracy_m"] is None else ", +/-%d m" % p["accuracy_m"])
        flags = [w for w, k in (("DURESS", "duress"), ("TEST", "test"), ("battery low", "battery_low")) if d.get(k)]
        items.append({"time": f["arrival"], "who": "device", "what": "%s seq %d via %s" % (f["type"], f["seq"], f["transport"]),
                      "detail": "; ".join(x for x in (" ".join(flags), pos,
                                                      "" if d.get("battery") is None else "battery %d%%" % d["battery"],
                                                      "" if d.get("csq") is None else "csq %d" % d["csq"]) if x),
                      "cls": "frame duress" if d.get("duress") else "frame"})
    for a in actions:
        items.append({"time": a["time"], "who": a["actor"], "what": a["action"], "detail": a["detail"] or "",
                      "cls": "op"})
    if inc["closed_at"] is not None and not any(a["action"] == "command" and "stand_down" in (a["detail"] or "")
                                                for a in actions):
        items.append({"time": inc["closed_at"], "who": "receiver", "what": "closed on the device side",
                      "detail": "by %s" % inc["closed_by"], "cls": "rx"})
    items.sort(key=lambda x: x["time"])
    return items


# ---------------------------------------------------------------- statistics


def month_of(t):
    return time.strftime("%Y-%m", time.gmtime(t))


def statistics_by_month(rows):
    """rows: store.stats_rows. Per month, newest first: alarms (test
    incidents apart), by outcome, time to claim against the marks, median
    handling time (opened to outcome)."""
    months = {}
    for r in rows:
        m = months.setdefault(month_of(r["opened_at"]), {"alarms": 0, "tests": 0, "duress": 0,
                                                         "outcomes": {o: 0 for o in OUTCOMES + (None,)},
                                                         "claims": [], "handling": []})
        if r["kind"] == S.KIND_TEST:
            m["tests"] += 1
        else:
            m["alarms"] += 1
        if r["duress"]:
            m["duress"] += 1
        m["outcomes"][r["outcome"]] += 1
        if r["first_claimed_at"] is not None:
            m["claims"].append(max(0.0, r["first_claimed_at"] - r["opened_at"]))
        if r["outcome_at"] is not None:
            m["handling"].append(max(0.0, r["outcome_at"] - r["opened_at"]))
    out = []
    for month in sorted(months, reverse=True):
        m = months[month]
        claims = m["claims"]
        n = len(claims)
        marks = []
        for limit, target in CLAIM_MARKS:
            within = sum(1 for c in claims if c <= limit)
            share = within / n if n else None
            marks.append({"limit": limit, "target": target, "within": within, "share": share,
                          "met": None if share is None else share >= target})
        buckets = [("<= 10 s", sum(1 for c in claims if c <= 10)),
                   ("10-40 s", sum(1 for c in claims if 10 < c <= 40)),
                   ("40 s - 2 min", sum(1 for c in claims if 40 < c <= 120)),
                   ("> 2 min", sum(1 for c in claims if c > 120))]
        out.append({"month": month, "alarms": m["alarms"], "tests": m["tests"], "duress": m["duress"],
                    "outcomes": m["outcomes"], "claimed": n,
                    "claim_median_s": statistics.median(claims) if claims else None,
                    "marks": marks, "buckets": buckets,
                    "handling_median_s": statistics.median(m["handling"]) if m["handling"] else None})
    return out


def statistics_csv(months):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(["month", "alarms", "tests", "duress"] + ["outcome " + o for o in OUTCOMES] + ["no outcome", "claimed",
               "claimed within 10 s", "claimed within 40 s", "median time to claim s", "median handling s"])
    for m in months:
        w.writerow([m["month"], m["alarms"], m["tests"], m["duress"]] + [m["outcomes"][o] for o in OUTCOMES] +
                   [m["outcomes"][None], m["claimed"], m["marks"][0]["within"], m["marks"][1]["within"],
                    "" if m["claim_median_s"] is None else "%.1f" % m["claim_median_s"],
                    "" if m["handling_median_s"] is None else "%.1f" % m["handling_median_s"]])
    return buf.getvalue()


def false_alarm_level(n):
    """2 false alarms in 12 months: warn; 3: the police may withdraw their
    response (issue 17, from the police's false-alarm policy)."""
    if n >= 3:
        return "danger"
    if n >= 2:
        return "warn"
    return ""
