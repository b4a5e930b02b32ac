"""The HTML report a person reads (issue 14, item 5), on the shipped
power-cut scenario: the map's extent lies around the route (on main before
issue 14 two reports drew a 5,000,000 m scale bar: a (0, 0) position
stretched the map to the Gulf of Guinea), unknowns read "unknown", ACKs and
the receiver's alarms are on the timeline, the battery is drawn, the labels
are words."""

import re
import xml.etree.ElementTree as ET

from host_sim import report as R
from host_sim import runner
from host_sim import scenario as S
from host_sim.route import distance_m
from host_sim.sample import synthetic_results


def _svg(text, label):
    return ET.fromstring(next(s for s in re.findall(r"<svg\b.*?</svg>", text, re.S) if 'aria-label="%s"' % label in s))


def _bbox(svg):
    return [float(x) for x in svg.get("data-bbox").split(",")]


def _around(bbox, route, slack_m):
    lat_min, lon_min, lat_max, lon_max = bbox
    la = [r["lat_e7"] / 1e7 for r in route]
    lo = [r["lon_e7"] / 1e7 for r in route]
    assert lat_min <= min(la) and max(la) <= lat_max and lon_min <= min(lo) and max(lo) <= lon_max
    mid = (min(la) + max(la)) / 2
    assert distance_m(lat_min, min(lo), min(la), min(lo)) <= slack_m and distance_m(max(la), lo[0], lat_max, lo[0]) <= slack_m
    assert distance_m(mid, lon_min, mid, min(lo)) <= slack_m and distance_m(mid, max(lo), mid, lon_max) <= slack_m


def _power_cut():
    sc = S.load(next(p for p in S.shipped() if p.endswith("power_cut_mid_alert.toml")))
    return runner.run(sc)


def test_the_power_cut_report_maps_the_route_not_the_gulf_of_guinea():
    res = _power_cut()
    text = R.render_html(res)
    mp = _svg(text, "route and positions")
    # the extent is the route's, padded for the accuracy circles (capped at 250 m past half the route's span)
    _around(_bbox(mp), res["route"], 600)
    bar = next(t.text for t in mp.iter("text") if t.text and t.text.endswith(" m") and t.get("y") == str(560 - 20))
    assert float(bar[:-2].replace(",", "")) <= 200
    labels = [t.text for t in mp.iter("text")]
    assert "start" in labels and "end" in labels and any(x and x.startswith("SOS pressed 0:02:00") for x in labels)
    assert any(x and x.startswith("ALERT: GNSS last fix, +/-") for x in labels)  # the alert's position, its source and radius
    resolved = [r for r in mp.iter("rect") if "resolved by the receiver" in (r.findtext("title") or "")]
    assert resolved and all("simulated towers of the scenario" in r.findtext("title") for r in resolved)
    assert "Positions resolved by the receiver from its location database: simulated towers of the scenario." in text


def test_unknowns_read_unknown_and_labels_are_words():
    res = _power_cut()
    text = R.render_html(res)
    assert "65535" not in text and "65,535" not in text
    assert "<td>unknown</td>" in text  # the TRACKs sent with no fix
    assert "No alert was lost" in text and "Every position shown was within its stated accuracy" in text
    for snake in ("no_alert_lost", "positions_within_accuracy", "worst_ratio", "used_mah", "power_off"):
        assert ">%s<" % snake not in text and " %s " % snake not in text
    assert re.search(r"worst error \d+% of the stated radius", text)


def test_acks_and_the_receivers_alarms_are_on_the_timeline_and_the_battery_is_drawn():
    res = _power_cut()
    tl = _svg(R.render_html(res), "run timeline")
    titles = [e.findtext("title") or "" for e in tl.iter() if e.find("title") is not None]
    assert any("accepted by the device" in t for t in titles) and any("sent by the receiver" in t for t in titles)
    assert any(t.startswith("receiver: ALERT at") for t in titles)
    bat = _svg(R.render_html(res), "battery over time")
    line = next(bat.iter("polyline"))
    assert len(line.get("points").split()) >= 19  # a sample a minute over 20 minutes
    assert any("the device reported" in (c.findtext("title") or "") for c in bat.iter("circle"))


def test_a_zero_zero_placeholder_from_old_firmware_is_not_plotted():
    """Results of a run with firmware older than the position rule: a cell
    source at (0, 0). It is listed as unknown, and the map stays on the
    route."""
    r = synthetic_results()
    r["positions"].append({"t_ms": 1900000, "type": "TRACK", "seq": 131, "source": 3, "lat_e7": 0, "lon_e7": 0,
                           "accuracy_m": 0xFFFF, "age_s": 0xFFFF, "error_m": None})
    r["receiver"]["positions"] = [{"t_ms": 1900000, "role": "estimate", "source": "cell", "seq": 131, "lat_e7": 0,
                                   "lon_e7": 0, "accuracy_m": None, "note": None, "error_m": None}]
    text = R.render_html(r)
    _around(_bbox(_svg(text, "route and positions")), r["route"], 1200)
    assert "unknown (not a position)" in text
