"""The receiver's incident rules as data: what a new frame does to the
person's incident, by frame type, duress flag and where the frame finds
its incident. receiver/core.py (`Receiver._apply`) is driven by RULES and
adds no rule of its own; docs/receiver.md's "Incident rules" table is
`markdown()` of it, held to it by tests/test_receiver_rules.py.

Situations (where a frame finds the incident of its kind, test or real):
  none    no incident is open, and none was closed by a later frame
  open    the open incident
  duress  the open incident, marked DURESS by an earlier duress cancel
  late    the incident a later frame closed (this frame's seq is below the
          seq that closed it): the frame is evidence of it, nothing more

Effects:
  open    open a new incident; the frame belongs to it
  join    the frame belongs to the incident (state unchanged)
  close   join it and close it (state cancelled)
  duress  mark the latest incident DURESS, reopening it if it was closed,
          or open one: a duress cancel is never lost or shown as a cancel
  none    no incident

A TEST frame, or any frame with the test flag, follows the same rules on a
separate *test* incident and raises the test event and label.

Must stay in sync with: receiver/core.py (_apply applies the effects),
docs/receiver.md (the table), receiver/forward/events.py (the event kinds
it forwards), watch.py (the labels it prints).
"""

from protocol import frame as F

NONE = "none"
OPEN = "open"
DURESS = "duress"
LATE = "late"
SITUATIONS = (NONE, OPEN, DURESS, LATE)

E_OPEN = "open"
E_JOIN = "join"
E_CLOSE = "close"
E_DURESS = "duress"
E_NONE = "none"

_SILENT = (E_JOIN, None, None, None, None)  # a late frame: evidence, no event


def _alert(name, opened_label):
    """ALERT and TEST (an ALERT with the test flag is a TEST)."""
    repeat = (E_JOIN, "alert_repeat", "ALERT (repeat)", "alert_repeat", "TEST ALERT (repeat)")
    return {
        (name, False, NONE): (E_OPEN, "alert", opened_label, "test_alert", "TEST ALERT"),
        (name, False, OPEN): repeat,
        (name, False, DURESS): repeat,
        (name, False, LATE): _SILENT,
    }


# (frame type, duress flag, situation) ->
#     (effect, event kind, label, event kind if test, label if test)
# An event kind of None raises no event.
RULES = {}
RULES.update(_alert(F.ALERT, "ALERT"))
# a TEST frame is always a test: its columns are the test ones
RULES.update({k: (v[0], v[3], v[4], v[3], v[4]) for k, v in _alert(F.TEST, "ALERT").items()})
RULES.update({
    (F.TRACK, False, NONE): (E_OPEN, "alert", "ALERT (opened by TRACK)", "test_alert", "TEST ALERT"),
    (F.TRACK, False, OPEN): (E_JOIN, "track", "TRACK", "track", "TEST TRACK"),
    (F.TRACK, False, DURESS): (E_JOIN, "track", "TRACK", "track", "TEST TRACK"),
    (F.TRACK, False, LATE): _SILENT,
    (F.CANCEL, False, NONE): (E_NONE, "cancel", "CANCEL (no open incident)", "cancel", "TEST CANCEL"),
    (F.CANCEL, False, OPEN): (E_CLOSE, "cancel", "CANCELLED by user", "cancel", "TEST CANCELLED"),
    (F.CANCEL, False, DURESS): (E_JOIN, "duress", "DURESS (a later cancel does not lift duress)",
                                "duress", "DURESS (a later cancel does not lift duress)"),
    (F.CANCEL, False, LATE): _SILENT,
})
for _s in SITUATIONS:
    RULES[(F.CANCEL, True, _s)] = (E_DURESS, "duress", "DURESS", "duress", "TEST DURESS")

# frame types the rules cover; HEARTBEAT and STATUS never touch an incident
INCIDENT_TYPES = (F.ALERT, F.TEST, F.TRACK, F.CANCEL)

_EFFECT_WORDS = {
    E_OPEN: "opens an incident",
    E_JOIN: "joins the incident",
    E_CLOSE: "closes the incident (cancelled)",
    E_DURESS: "marks the latest incident DURESS, reopening it, or opens one",
    E_NONE: "no incident",
}
_SITUATION_WORDS = {NONE: "none open", OPEN: "open", DURESS: "open, in DURESS", LATE: "closed by a later frame (this one is late)"}


def markdown():
    """The rules as docs/receiver.md shows them: one row per rule."""
    rows = ["| frame | incident | effect | event (`kind`) | operator sees | test: event | test: operator sees |",
            "|---|---|---|---|---|---|---|"]
    for (ftype, duress, sit), (eff, kind, label, tkind, tlabel) in RULES.items():
        frame = F.TYPE_NAMES[ftype] + (" with duress flag" if duress else "")
        rows.append("| %s | %s | %s | %s | %s | %s | %s |" % (
            frame, _SITUATION_WORDS[sit], _EFFECT_WORDS[eff], "`%s`" % kind if kind else "-", label or "-",
            "`%s`" % tkind if tkind else "-", tlabel or "-"))
    return "\n".join(rows) + "\n"
