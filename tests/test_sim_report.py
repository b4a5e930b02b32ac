"""Reports: JSON round trip, self-contained HTML with well-formed SVG,
escaping, and no secrets."""

import json
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest

from host_sim import report as R
from host_sim.sample import synthetic_results


class _Tags(HTMLParser):
    VOID = {"meta", "br", "img", "input", "link", "hr", "circle", "line", "rect", "polyline", "path"}

    def __init__(self):
        super().__init__()
        self.stack = []
        self.errors = []
        self.tags = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append("unexpected </%s> with open %s" % (tag, self.stack[-3:]))
        else:
            self.stack.pop()


def parse(text):
    p = _Tags()
    p.feed(text)
    p.close()
    return p


def svgs(text):
    return re.findall(r"<svg\b.*?</svg>", text, re.S)


def test_json_round_trips_and_is_stable():
    r = synthetic_results()
    a = R.to_json(r)
    assert json.loads(a) == json.loads(json.dumps(r))
    assert R.to_json(json.loads(a)) == a


def test_html_is_self_contained_and_well_formed(tmp_path):
    r = synthetic_results()
    out = tmp_path / "r.html"
    R.write_html(r, out)
    text = out.read_text(encoding="utf-8")
    p = parse(text)
    assert p.errors == [] and p.stack == []
    tags = {t for t, _ in p.tags}
    assert "script" not in tags and "link" not in tags and "img" not in tags and "iframe" not in tags
    for _t, attrs in p.tags:
        for k, v in attrs.items():
            assert k not in ("src", "href"), (k, v)
    assert "http://" not in text and "https://" not in text and "url(" not in text
    for s in svgs(text):
        ET.fromstring(s)  # every SVG is well-formed XML


def test_alert_timeline_shows_press_first_frame_committed_and_ack():
    r = synthetic_results()
    text = R.render_html(r)
    a = r["alerts"][0]
    assert "press +0s" in text
    assert "first frame on air +%ss" % R._trim((a["first_frame_ms"] - a["press_ms"]) / 1000) in text
    assert "committed +" in text and "ACK +" in text


def test_missing_ack_is_shown_as_never():
    r = synthetic_results()
    r["alerts"][0]["ack_ms"] = None
    svg = R.alert_timeline_svg(r["alerts"][0], r["frames"])
    ET.fromstring(svg)
    assert "ACK: never" in svg


def test_route_map_draws_a_circle_per_position_with_known_accuracy():
    r = synthetic_results()
    svg = R.route_svg(r)
    root = ET.fromstring(svg)
    known = [p for p in r["positions"] if p["source"] and p["accuracy_m"] not in (None, 0xFFFF)]
    circles = [c for c in root.iter("circle") if c.get("fill-opacity") == "0.08"]
    assert len(circles) == len(known)
    # circle radii scale with the claimed accuracy
    radii = sorted(float(c.get("r")) for c in circles)
    assert radii[-1] > 10 * radii[0]
    assert len(list(root.iter("polyline"))) >= 2  # outdoor walk and indoor part


def test_untrusted_text_is_escaped():
    r = synthetic_results()
    r["scenario"]["name"] = "<script>alert(1)</script>"
    r["frames"][0]["note"] = '"><img src=x>'
    text = R.render_html(r)
    assert "<script>" not in text and "<img" not in text
    assert "&lt;script&gt;" in text
    assert parse(text).errors == []


def test_failing_invariant_makes_the_verdict_fail_and_lists_the_violation():
    r = synthetic_results()
    r["invariants"][0] = {"name": "no_alert_lost", "ok": False, "checked": 1, "violations": ["sos pressed at 5 ms LOST"]}
    text = R.render_html(r)
    assert "FAIL" in text and "sos pressed at 5 ms LOST" in text


def test_reports_refuse_anything_named_like_a_key():
    r = synthetic_results()
    r["scenario"]["master_key"] = "00" * 32
    with pytest.raises(R.ReportError, match="master_key"):
        R.to_json(r)
    with pytest.raises(R.ReportError):
        R.render_html(r)
    r = synthetic_results()
    r["frames"][0]["k_mac"] = "x"
    with pytest.raises(R.ReportError):
        R.to_json(r)


def test_empty_results_still_render():
    text = R.render_html({"scenario": {"name": "empty"}})
    assert parse(text).errors == []
    for s in svgs(text):
        ET.fromstring(s)


def test_malformed_results_are_refused_with_the_path_named():
    r = synthetic_results()
    r["positions"][1]["t_ms"] = "soon"
    with pytest.raises(R.ReportError, match=r"positions\[1\]\.t_ms"):
        R.render_html(r)
    r = synthetic_results()
    del r["route"][3]["lat_e7"]
    assert R.validate(r) == ["route[3]: missing lat_e7"]
    assert R.validate(synthetic_results()) == []
    assert R.validate([]) == ["results: expected a dict, got list"]


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(["t_ms", "kind", "lat_e7", "lon_e7", "source", "accuracy_m", "age_s", "press_ms", "seq", "ok", "name", "pin", "value", "dir", "event", "raised"]), inner, max_size=6),
    max_leaves=20,
)


@settings(max_examples=80, deadline=None)
@given(st.dictionaries(st.sampled_from(["scenario", "frames", "alerts", "positions", "route", "receiver", "pins", "console", "events", "energy", "invariants", "expect", "summary"]), _json, max_size=6))
def test_any_results_shape_renders_or_is_refused_never_crashes(results):
    try:
        text = R.render_html(results)
    except R.ReportError:
        return
    assert text.startswith("<!DOCTYPE html>")
    for s in svgs(text):
        ET.fromstring(s)
