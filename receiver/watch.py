"""The operator's view: incidents and supervision events as text, and the
same events as JSON lines for other systems.

Owns: how an event looks to a person. Rules that must never break:
a duress cancel is shown as DURESS (never as a cancel), and anything from a
test is labelled TEST. Reads the store's event feed only (any number of
watchers can follow one receiver, or every node of a PostgreSQL store;
they never write).
Must stay in sync with: the event dicts built in core.py.
"""

import json
import time

from receiver.estimate import STALE_S

_LOUD = {"alert": "ALERT", "duress": "DURESS", "device_silent": "DEVICE SILENT", "low_battery": "LOW BATTERY"}


def _ts(t):
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(t)) if t is not None else "-"


def headline(ev):
    """The first word(s) an operator reads. Duress and test win over
    anything else in the event."""
    kind = ev.get("kind")
    test = ev.get("test") or ev.get("incident_kind") == "test"
    if ev.get("duress") or kind == "duress" or ev.get("incident_state") == "duress":
        word = "DURESS"
        if kind == "track":
            word = "DURESS (track)"
        elif kind == "stood_down":
            word = "DURESS incident stood down"
    else:
        word = ev.get("label") or kind.upper()
    if test and not word.startswith("TEST"):
        word = "TEST " + word
    return word


_SOURCE_WORDS = {
    "gnss": "GNSS fix",
    "last_fix": "last GNSS fix",
    "cell": "cell position from the device",
    "wifi": "Wi-Fi position from the device",
    "cell (resolved)": "cell (resolved): by the receiver from the serving cell, not a device fix",
    "wifi (resolved)": "wifi (resolved): by the receiver from the Wi-Fi seen, not a device fix",
}


def _hm(t):
    return time.strftime("%H:%M:%SZ", time.gmtime(t)) if t is not None else None


def _age(age_s, t):
    if age_s is None:
        return "age unknown"
    return "%d s old, %s" % (age_s, _hm(t)) if t is not None else "%d s old" % age_s


def format_position(pos):
    """The estimate of where the person is (receiver/estimate.py): source
    in words, accuracy, age and time, what it rests on (a resolved
    position names its cell or BSSIDs and the data's licence), and
    whether it is stale."""
    if not pos:
        return "unknown (no fix, and no cell or Wi-Fi the location database knows)"
    acc = "" if pos.get("accuracy_m") is None else ", +/-%d m" % pos["accuracy_m"]
    src = _SOURCE_WORDS.get(pos["source"], pos["source"])
    line = "%.7f, %.7f (%s%s, %s)  %s" % (pos["lat"], pos["lon"], src, acc, _age(pos.get("age_s"), pos.get("fix_time")),
                                         pos["map"])
    if pos.get("note"):
        line += "\n        from %s" % pos["note"]
    if pos.get("stale"):
        line += "\n        STALE: older than %d s, and nothing newer is as fine" % STALE_S
    return line


def format_evidence(item):
    """One line of evidence beside the estimate: newer coarse evidence (a
    resolved cell, an observation the database does not know, a
    placeholder ignored), or the finer fix the estimate has moved on from."""
    if item.get("lat") is None:
        return "%s%s (%s)" % ("newer: " if item.get("newer") else "", item.get("note") or item.get("source"),
                              _age(item.get("age_s"), item.get("time")))
    acc = "" if item.get("accuracy_m") is None else ", +/-%d m" % item["accuracy_m"]
    return "%s %.7f, %.7f (%s%s, %s)%s" % (
        "newer coarse evidence:" if item.get("newer") else "older, finer:",
        item["lat"], item["lon"], _SOURCE_WORDS.get(item["source"], item["source"]), acc,
        _age(item.get("age_s"), item.get("time")), ("\n        from %s" % item["note"]) if item.get("note") else "")


def format_event(ev):
    who = "receiver" if ev.get("device_id") is None else "device %d  person %s" % (ev["device_id"], ev.get("person_ref"))
    lines = ["%s  %-14s %s%s" % (
        _ts(ev.get("time")), headline(ev), who,
        "" if ev.get("incident_id") is None else "  incident #%d" % ev["incident_id"])]
    kind = ev.get("kind")
    if "position" in ev:
        lines.append("    position %s" % format_position(ev.get("position")))
        for item in ev.get("evidence") or ():
            lines.append("      %s" % format_evidence(item))
    if kind in ("alert", "test_alert", "alert_repeat", "track", "duress", "cancel", "low_battery", "status"):
        bat = ev.get("battery")
        csq = ev.get("csq")
        fr = ev.get("frame") or {}
        lines.append("    battery %s  signal %s  %s" % (
            "unknown" if bat is None else "%d%%" % bat,
            "unknown" if csq is None else "csq %d" % csq,
            ("via %s, %s seq %s" % (fr.get("transport"), fr.get("type"), fr.get("seq"))) if fr.get("transport") else ""))
    if kind == "device_silent":
        lines.append("    no frame for %d s (heartbeat every %d s); last seen %s" % (
            ev["silent_for_s"], ev["heartbeat_s"], _ts(ev.get("last_seen"))))
    if kind == "status":
        lines.append("    device reports %s (detail %s)" % (ev.get("status"), ev.get("detail")))
    if kind == "forward_unavailable":
        lines.append("    %s; ARC messages wait in the queue" % ev.get("reason"))
    if kind in ("forward_path_down", "forward_path_up", "forward_refused"):  # receiver/forward/
        lines.append("    target %s %s%s" % (ev.get("target"), ev.get("path") or "seq %s (%s)" % (ev.get("seq"), ev.get("event")),
                                            "" if not ev.get("reason") else ": " + ev["reason"]))
    return "\n".join(lines)


def format_incident(inc, person_ref=None, now=None):
    """An incident row as `watch` lists it at start-up: its estimate at
    `now` (receiver/estimate.py view: the rules depend on the time) with
    the evidence beside it."""
    from receiver import estimate

    word = "DURESS" if inc["duress"] else inc["state"].upper()
    if inc["kind"] == "test":
        word = "TEST " + word
    shown = estimate.view(inc, time.time() if now is None else now)
    lines = ["incident #%d  %-12s device %d  person %s  opened %s by %s" % (
        inc["id"], word, inc["device_id"], person_ref, _ts(inc["opened_at"]), inc["opened_by"]),
        "    position %s" % format_position(shown["position"])]
    lines += ["      %s" % format_evidence(item) for item in shown["evidence"]]
    if shown["placeholders"]:
        lines.append("      %d frame(s) carried (0, 0) as a cell or Wi-Fi position (older firmware): ignored"
                     % shown["placeholders"])
    lines.append("    battery %s  signal %s" % ("unknown" if inc["battery"] is None else "%d%%" % inc["battery"],
                                                "unknown" if inc["csq"] is None else "csq %d" % inc["csq"]))
    return "\n".join(lines)


def format_device(d):
    flags = []
    if d["silent"]:
        flags.append("SILENT")
    if d["battery_low"]:
        flags.append("LOW BATTERY")
    return "device %d  %-7s person %s  registered %s  last seen %s  battery %s%s" % (
        d["device_id"], d["status"], d["person_ref"], _ts(d["created"]), _ts(d["last_seen"]),
        "unknown" if d["battery"] is None else "%d%%" % d["battery"], ("  " + " ".join(flags)) if flags else "")


class Watcher:
    """Follows the store's feed through its cursor (store.feed_start /
    feed_after): on SQLite the last id; on PostgreSQL, where several nodes
    commit side by side, the last (transaction, id) below the horizon of
    finished transactions (store_pg.py). wait(timeout) sleeps until the
    next poll: on PostgreSQL it returns as soon as any node commits events
    (LISTEN/NOTIFY), on SQLite after the timeout."""

    def __init__(self, store, human=None, feed=None):
        self.store = store
        self.human = human
        self.feed = feed
        self.cursor = store.feed_start(from_start=True)

    def start(self, from_start=False):
        if from_start:
            return
        if self.human is not None:
            open_incs = self.store.incidents(open_only=True)
            refs = {d["device_id"]: d["person_ref"] for d in self.store.list_devices()}
            print("open incidents: %d" % len(open_incs), file=self.human)
            for inc in open_incs:
                print(format_incident(inc, refs.get(inc["device_id"])), file=self.human)
            self.human.flush()
        self.cursor = self.store.feed_start()

    def wait(self, timeout):
        wait = getattr(self.store, "wait_events", None)
        if wait is None:
            time.sleep(timeout)
            return False
        return wait(timeout)

    def poll(self):
        evs, self.cursor = self.store.feed_after(self.cursor)
        for ev in evs:
            if self.feed is not None:
                self.feed.write(json.dumps(ev, sort_keys=True) + "\n")
            if self.human is not None:
                print(format_event(ev), file=self.human)
        if evs:
            if self.feed is not None:
                self.feed.flush()
            if self.human is not None:
                self.human.flush()
        return evs
