"""The incident rules are data (receiver/rules.py): docs/receiver.md shows
exactly that table, the table covers every case, and the receiver core does
what each row says, through the endpoint, from a real store."""

import os

import pytest

from protocol import frame as F
from receiver import rules as R
from receiver import store as S
from receiver.endpoint import Endpoint
from recv_helpers import T0, Dev

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_docs_table_is_the_rules_table():
    doc = open(os.path.join(ROOT, "docs", "receiver.md")).read()
    a = doc.index("<!-- rules.markdown() begins -->\n") + len("<!-- rules.markdown() begins -->\n")
    b = doc.index("<!-- rules.markdown() ends -->")
    assert doc[a:b] == R.markdown()


def test_every_case_has_exactly_one_rule():
    want = {(t, False, s) for t in R.INCIDENT_TYPES for s in R.SITUATIONS}
    want |= {(F.CANCEL, True, s) for s in R.SITUATIONS}
    assert set(R.RULES) == want
    for eff, kind, label, tkind, tlabel in R.RULES.values():
        assert eff in (R.E_OPEN, R.E_JOIN, R.E_CLOSE, R.E_DURESS, R.E_NONE)
        assert (kind is None) == (label is None) == (tkind is None) == (tlabel is None)
        assert kind != "cancel" or eff in (R.E_CLOSE, R.E_NONE)  # a duress is never raised as a cancel


def _situated(sit, test):
    """An endpoint and a device whose latest incident (test or real) is in
    situation `sit`; returns (endpoint, device, seq for the next frame)."""
    d = Dev(7)
    ep = Endpoint.in_memory({d.id: d.key}, {d.id: "URN 7"}, now=T0)
    first = F.TEST if test else F.ALERT
    if sit == R.NONE:
        return ep, d, None
    if sit == R.LATE:
        ep.on_tcp_frame(d.frame(first, seq=10), T0)
        ep.on_tcp_frame(d.frame(F.CANCEL, seq=20, **_test(test)), T0 + 1)
        return ep, d, 15  # below the seq that closed it
    ep.on_tcp_frame(d.frame(first, seq=10), T0)
    if sit == R.DURESS:
        ep.on_tcp_frame(d.frame(F.CANCEL, seq=11, duress=True, **_test(test)), T0 + 1)
    return ep, d, 30


def _test(test):
    return {"source": F.SRC_NONE, "test": True} if test else {}


@pytest.mark.parametrize("test", [False, True], ids=["real", "test"])
@pytest.mark.parametrize("key", sorted(R.RULES, key=repr), ids=lambda k: "%s-%s-%s" % (
    F.TYPE_NAMES[k[0]], "duress" if k[1] else "plain", k[2]))
def test_the_core_does_what_each_row_says(key, test):
    ftype, duress, sit = key
    eff, kind, label, tkind, tlabel = R.RULES[key]
    if test:
        kind, label = tkind, tlabel
    ep, d, seq = _situated(sit, test or ftype == F.TEST)
    before = ep.store.incidents()
    n_events = len(ep.events)
    opts = dict(_test(test))
    if duress:
        opts["duress"] = True
    if ftype == F.TEST:
        opts.pop("test", None)
    ep.on_tcp_frame(d.frame(ftype, seq=seq, **opts) if opts else d.frame(ftype, seq=seq), T0 + 5)
    after = ep.store.incidents()
    raised = [e for e in ep.events[n_events:] if e["kind"] not in ("low_battery", "battery_ok", "device_back")]
    if kind is None:
        assert raised == []
    else:
        assert [(e["kind"], e["label"]) for e in raised] == [(kind, label)]
    if eff == R.E_OPEN:
        assert len(after) == len(before) + 1 and after[-1]["state"] == S.OPEN
    elif eff == R.E_CLOSE:
        assert len(after) == len(before) and after[-1]["state"] == S.CANCELLED
    elif eff == R.E_DURESS:
        assert len(after) == max(1, len(before)) and after[-1]["state"] == S.DURESS
    else:
        assert [i["state"] for i in after] == [i["state"] for i in before]


def test_the_core_follows_a_changed_table(monkeypatch):
    """The table drives the code: a row changed here changes what the
    receiver raises (no second copy of the rule in core.py)."""
    monkeypatch.setitem(R.RULES, (F.TRACK, False, R.OPEN), (R.E_JOIN, "track", "TRACK (changed)", "track", "TEST TRACK"))
    ep, d, seq = _situated(R.OPEN, False)
    ep.on_tcp_frame(d.frame(F.TRACK, seq=seq), T0 + 5)
    assert ep.events[-1]["label"] == "TRACK (changed)"
