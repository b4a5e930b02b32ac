"""The tables in docs/firmware.md, docs/firmware-sensing.md and
docs/modem.md that copy firmware code say what the code holds: a change to
one without the other fails here.

Each checked table sits between `<!-- checked: WHAT -->` and
`<!-- /checked -->`; its columns that copy code are compared with the code
(the alert and button transition tables, fault codes, outbox treatment,
config fields and timings, the failover table, button events and settings, the modem engine's
request builders, result indices, bring-up steps, timings, the dialect
interface and the outcomes). Prose columns are the docs' own.
"""

import inspect
import os
import re

from firmware import alert, button, button_events, config, failover, outbox
from firmware.modem import at, engine
from firmware.modem.sim7600 import Sim7600
from protocol import frame as F

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs")


def _table(doc, what):
    """The rows (lists of stripped cells, header and rule left out) of the
    table checked as `what` in docs/<doc>."""
    text = open(os.path.join(DOCS, doc)).read()
    start = "<!-- checked: %s -->" % what
    assert text.count(start) == 1, "%s: no single table marked %r" % (doc, start)
    block = text.split(start, 1)[1].split("<!-- /checked -->", 1)[0]
    lines = [r for r in block.splitlines() if r.startswith("|")]
    assert len(lines) >= 3, "%s: the table %r has no rows" % (doc, what)
    return [[c.strip() for c in r.strip().strip("|").split("|")] for r in lines[2:]]


def _code(cell):
    """The text between the first pair of backticks."""
    m = re.search(r"`([^`]*)`", cell)
    assert m, cell
    return m.group(1)


def _range(cell):
    lo, hi = cell.split("..")
    return int(lo), int(hi)


def _seconds(cell):
    n, unit = cell.split()
    assert unit == "s", cell
    return int(round(float(n) * 1000))


def _names(module, prefix):
    return {k for k in dir(module) if k.startswith(prefix) and isinstance(getattr(module, k), int)}


# ---- docs/firmware.md -------------------------------------------------------


def test_the_alert_state_table_is_the_controllers():
    rows = _table("firmware.md", "alert.transitions()")
    doc = [(s, e, n, a.strip("`")) for s, e, n, a, _ in rows]
    assert doc == alert.transitions()


def test_the_failover_table_is_the_rules():
    rows = _table("firmware.md", "failover.transitions()")
    assert [(st, ev, act) for st, ev, act, _ in rows] == failover.transitions()


def test_the_alert_diagram_draws_every_transition():
    lines = alert.diagram()
    assert len(lines) == len(alert.TABLE)
    assert any("IDLE" in x and "SOS" in x and "ALERTING" in x and "alert" in x for x in lines)


def test_the_fault_codes_are_the_controllers():
    rows = _table("firmware.md", "alert.FAULT_*")
    doc = {_code(name): int(code) for code, name, _ in rows}
    assert doc == {k: getattr(alert, k) for k in _names(alert, "FAULT_")}


def test_what_each_frame_type_gets_in_the_outbox_is_the_outboxs():
    rows = _table("firmware.md", "outbox.PRIORITY, outbox.PERSISTED, outbox.COALESCED")
    doc = {getattr(F, name): (int(prio), flash == "yes", coal == "yes") for name, prio, flash, coal in rows}
    code = {t: (p, t in outbox.PERSISTED, t in outbox.COALESCED) for t, p in outbox.PRIORITY.items()}
    assert doc == code  # every frame the device sends (an ACK is the receiver's)


def test_the_config_fields_are_the_ones_config_reads():
    rows = _table("firmware.md", "config fields")
    doc = [n.strip() for r in rows for n in r[0].split("/")]
    assert sorted(doc) == sorted(config._FIELDS)
    boards = [r for r in rows if r[0] == "board"][0]
    assert re.findall(r'"([^"]+)"', boards[1]) == list(config.BOARDS)


def test_the_timings_table_is_config_timings():
    rows = _table("firmware.md", "config.TIMINGS")
    doc = {name: (int(default),) + _range(rng) for name, default, rng, _ in rows}
    assert doc == config.TIMINGS


# ---- docs/firmware-sensing.md -----------------------------------------------


def test_the_button_events_are_the_codes_the_detector_returns():
    rows = _table("firmware-sensing.md", "button_events.EV_*")
    named = {}
    for r in rows:
        for name, code in re.findall(r"`(EV_[A-Z_]+)` \((\d+)\)", r[2]):
            named[name] = int(code)
    used = {_code(r[2]) for r in rows}
    code = {k: getattr(button_events, k) for k in _names(button_events, "EV_")}
    assert named == code
    assert used == set(code)
    assert {k: getattr(button, k) for k in code} == code  # the detector returns the same codes


def test_the_button_state_table_is_the_detectors():
    rows = _table("firmware-sensing.md", "button.transitions()")
    doc = sorted((s, i.split()[0], n) for s, i, n in rows)
    assert doc == button.transitions()


def test_the_button_settings_table_is_the_detectors():
    rows = _table("firmware-sensing.md", "button._FIELDS")
    doc = {}
    for key, default, rng in rows:
        keys = [k.strip(" `") for k in key.split("/")]
        defaults = [d.strip() for d in default.split("/")]
        ranges = [x.strip() for x in rng.split("/")]
        assert len(keys) == len(defaults) == len(ranges), key
        for k, d, x in zip(keys, defaults, ranges):
            if x == "bool":
                doc[k] = ({"true": True, "false": False}[d], None, None)
            else:
                doc[k] = (int(d),) + _range(x)
    assert doc == {f[0]: tuple(f[1:]) for f in button._FIELDS}


# ---- docs/modem.md ----------------------------------------------------------


def test_the_request_builders_are_the_engines():
    rows = _table("modem.md", "Engine request builders")
    for r in rows:
        m = re.fullmatch(r"e\.(\w+)\(([^)]*)\)", _code(r[0]))
        assert m, r[0]
        method = getattr(engine.Engine, m.group(1))
        params = list(inspect.signature(method).parameters)[1:]
        assert [p.strip() for p in m.group(2).split(",")] == params, m.group(1)
    builders = {_code(r[0]).split("(")[0][2:] for r in rows}
    assert builders == {"cmd", "payload", "wait", "pin"}


def test_the_result_indices_are_the_channels():
    rows = _table("modem.md", "at.R_*")
    doc = {_code(name): int(value) for name, value, _ in rows}
    assert doc == {k: getattr(at, k) for k in _names(at, "R_")}


class _Cfg:
    """What a dialect's step command reads: the engine's config and timings."""

    cfg = {"apn": "<apn>"}
    timings = engine.DEFAULTS


def test_the_bring_up_steps_are_the_engines_and_the_dialects():
    rows = _table("modem.md", "engine.BOOT_STEPS + Sim7600.steps")
    steps = [(s, False) for s in engine.BOOT_STEPS] + [(s, True) for s in Sim7600("h", 1).steps]
    assert len(rows) == len(steps)
    for r, (s, dialect) in zip(rows, steps):
        name, cmd, _info, timeout, tries, interval, _judge = s
        text = cmd(_Cfg) if callable(cmd) else cmd
        assert r[0] == name + (" (dialect)" if dialect else ""), r
        assert _code(r[1]) == text, r
        assert (_seconds(r[2]), int(r[3]), _seconds(r[4])) == (timeout, tries, interval), r


def test_the_modem_timings_table_is_the_engines_defaults():
    rows = _table("modem.md", "engine.DEFAULTS")
    doc = {_code(name): int(default) for name, default, _ in rows}
    assert doc == engine.DEFAULTS


def test_the_dialect_interface_is_what_the_engine_asks_and_the_sim7600_answers():
    rows = _table("modem.md", "the dialect interface")
    doc = {_code(r[0]).split("(")[0] for r in rows}
    src = inspect.getsource(engine)
    asked = set(re.findall(r"\b(?:self\.d|dialect)\.(\w+)", src))
    assert doc == asked
    d = Sim7600("h", 1)
    for name in doc:
        assert hasattr(d, name), name
    for r in rows:
        m = re.fullmatch(r"(\w+)\(([^)]*)\)", _code(r[0]))
        if m:  # a method: the same parameters as the docs give
            params = list(inspect.signature(getattr(d, m.group(1))).parameters)
            assert [p.strip() for p in m.group(2).split(",") if p.strip()] == params, r[0]


def test_the_outcomes_table_is_the_channels():
    rows = _table("modem.md", "at.O_*")
    doc = [_code(r[0]) for r in rows]
    assert sorted(doc) == sorted(_names(at, "O_"))
    values = [getattr(at, k) for k in doc]
    assert all(v & (v - 1) == 0 for v in values) and len(set(values)) == len(values)  # one bit each
