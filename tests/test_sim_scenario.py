"""Scenario files: shipped ones load; mistakes name the line and field."""

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from host_sim import scenario as S

MIN = """
[scenario]
name = "t"
duration = "10m"

[route]
points = [ { at = 0, lat = 54.0, lon = -2.0 } ]
"""

REQUIRED = {
    "walk_home_indoor_attack.toml",
    "coverage_gap_sms_only.toml",
    "power_cut_mid_alert.toml",
    "duress_cancel.toml",
    "heartbeat_silent.toml",
    "flat_battery.toml",
}


def test_every_shipped_scenario_loads_builds_its_world_and_says_what_to_expect():
    paths = S.shipped()
    assert REQUIRED <= {os.path.basename(p) for p in paths}
    for p in paths:
        sc = S.load(p)
        assert sc.expect, p
        r = sc.build_route()
        g = sc.make_gnss(r)
        g.power(True, 0)
        assert g.read(5000)
        e = sc.make_energy()
        assert 0 <= e.soc_pct() <= 100


def test_walk_home_scenario_is_indoors_with_no_fix_when_sos_is_pressed():
    sc = S.load([p for p in S.shipped() if p.endswith("walk_home_indoor_attack.toml")][0])
    r = sc.build_route()
    press = sc.actions[0].at_ms
    assert r.condition(press) == "indoor"
    g = sc.make_gnss(r, start="hot")
    g.power(True, 0)
    g.advance(press)
    assert not g.has_fix()
    assert g.route.condition(10 * 60_000) == "open"


def test_coverage_gap_scenario_is_sms_only_at_the_press():
    sc = S.load([p for p in S.shipped() if p.endswith("coverage_gap_sms_only.toml")][0])
    c = sc.coverage_at(sc.actions[0].at_ms)
    assert c.mode == "sms-only" and c.csq == 6
    assert sc.coverage_at(25 * 60_000).mode == "data+sms"


def test_minimal_scenario_gets_defaults():
    sc = S.loads(MIN, "min.toml")
    assert sc.duration_ms == 600_000 and sc.profile == "ready"
    assert sc.coverage_at(0).mode == "data+sms"
    assert sc.receiver_up(0)
    assert sc.battery.start_pct == 100


def err(text):
    with pytest.raises(S.ScenarioError) as ei:
        S.loads(text, "bad.toml")
    return ei.value


def test_unknown_action_names_its_line_table_and_field():
    e = err(MIN + '\n[[action]]\nat = "1m"\nkind = "sos"\n\n[[action]]\nat = "2m"\nkind = "sso"\n')
    assert e.line == 15 and e.field == "kind"
    assert str(e).startswith("bad.toml:15: [[action]] #2: field 'kind': 'sso' is not one of sos")


def test_typo_in_a_field_name_is_an_error_not_ignored():
    e = err(MIN.replace('duration = "10m"', 'duration = "10m"\ndurtion = "5m"'))
    assert e.field == "durtion" and e.line == 5 and "unknown field" in str(e)


def test_unknown_table_is_named():
    e = err(MIN + "\n[[pres]]\nat = 1\n")
    assert "[pres]" in str(e) and e.line == 9


def test_bad_duration_says_how_to_write_one():
    e = err(MIN + '\n[[action]]\nat = "5 minutes"\nkind = "sos"\n')
    assert e.field == "at" and e.line == 10 and "90s" in str(e)


def test_toml_syntax_error_keeps_its_line():
    e = err(MIN + "\n[battery]\nstart_pct = = 3\n")
    assert e.line == 10 and "TOML syntax" in str(e)


def test_values_out_of_range_and_wrong_types():
    assert "above the maximum" in str(err(MIN + "\n[battery]\nstart_pct = 130\n"))
    assert "expected int" in str(err(MIN + '\n[device]\n\n[[coverage]]\nmode = "none"\ncsq = "x"\n'))
    assert "boolean" in str(err(MIN.replace('"10m"', "true")))


def test_missing_scenario_and_route_are_errors():
    assert "[scenario]" in str(err('[route]\npoints = [ { at = 0, lat = 1.0, lon = 1.0 } ]\n'))
    e = err('[scenario]\nname = "x"\nduration = 60\n')
    assert "gpx" in str(e)


def test_missing_gpx_file_is_named():
    e = err('[scenario]\nname = "x"\nduration = 60\n[route]\ngpx = "nowhere.gpx"\n')
    assert "nowhere.gpx" in str(e) and e.line == 5


def test_route_points_are_checked_one_by_one():
    e = err('[scenario]\nname = "x"\nduration = 60\n[route]\npoints = [ { at = 0, lat = 1.0, lon = 1.0 }, { at = 5, lat = 95.0, lon = 1.0 } ]\n')
    assert "point 2" in str(e) and "lat" in str(e)
    e = err('[scenario]\nname = "x"\nduration = 60\n[route]\npoints = [ { at = 9, lat = 1.0, lon = 1.0 }, { at = 5, lat = 1.0, lon = 1.0 } ]\n')
    assert "backwards" in str(e)


def test_raw_presses_must_not_overlap():
    e = err(MIN + "\n[[action]]\nat = 1\nkind = \"raw\"\npresses = [[0, 500], [300, 100]]\n")
    assert "press 2" in str(e)
    e = err(MIN + "\n[[action]]\nat = 1\nkind = \"sos\"\npresses = [[0, 100]]\n")
    assert "only raw" in str(e)


def test_coverage_must_be_in_time_order():
    e = err(MIN + '\n[[coverage]]\nfrom = "5m"\nmode = "none"\n\n[[coverage]]\nfrom = "1m"\nmode = "data+sms"\n')
    assert "[[coverage]] #2" in str(e) and e.field == "from"


def test_button_edges_follow_the_firmware_patterns():
    sc = S.loads(MIN + '\n[[action]]\nat = "1s"\nkind = "sos"\n\n[[action]]\nat = "10s"\nkind = "raw"\npresses = [[0, 100], [200, 100]]\n', "x.toml")
    pats = {"sos": [(0, 80), (300, 80), (600, 80)]}
    edges = sc.button_edges(pats)
    assert edges[:2] == [(1000, True), (1080, False)]
    assert edges[-2:] == [(10200, True), (10300, False)]
    assert len(edges) == 10
    with pytest.raises(S.ScenarioError, match="no button pattern"):
        sc.button_edges({})
    with pytest.raises(S.ScenarioError, match="overlaps"):
        sc.button_edges({"sos": [(0, 9500)]})


def test_windows_and_faults_by_time():
    sc = S.loads(
        MIN
        + '\n[[receiver_down]]\nfrom = "1m"\nto = "2m"\n'
        + '\n[modem_faults]\nno_rdy = true\n'
        + '\n[[modem_fault]]\nfrom = "3m"\nto = "4m"\nname = "cipsend_error"\nparams = { code = 4 }\n'
        + '\n[[power_cut]]\nat = "5m"\nduration = "never"\n',
        "x.toml",
    )
    assert sc.receiver_up(30_000) and not sc.receiver_up(90_000) and sc.receiver_up(120_000)
    assert sc.faults_at(0) == {"no_rdy": True}
    assert sc.faults_at(200_000) == {"no_rdy": True, "cipsend_error": {"code": 4}}
    assert sc.power_cuts[0].duration_ms is None


def test_receiver_nodes_and_their_faults():
    nodes = '\n[[receiver]]\nname = "a"\n\n[[receiver]]\nname = "b"\n'
    sc = S.loads(MIN + nodes + '\n[[receiver_fault]]\nnode = "a"\nfrom = "1m"\nto = "2m"\n'
                 + '\n[[receiver_fault]]\nnode = "b"\nfrom = "3m"\nmode = "cut"\n', "x.toml")
    assert sc.receivers == ["a", "b"]
    assert [(f.node, f.from_ms, f.to_ms, f.mode) for f in sc.receiver_faults] == [
        ("a", 60_000, 120_000, "kill"), ("b", 180_000, sc.duration_ms, "cut")]
    assert ("receiver_fault", "cut b") in [(e["kind"], e["detail"]) for e in sc.world_events()]
    bad = [
        (MIN + '\n[[receiver]]\nname = "a"\n[[receiver_fault]]\nnode = "a"\nfrom = "1m"\n', "two or more"),
        (MIN + nodes + '\n[[receiver_fault]]\nnode = "c"\nfrom = "1m"\n', "not one of a, b"),
        (MIN + nodes + '\n[[receiver_fault]]\nnode = "a"\nfrom = "1m"\nmode = "pause"\n', "not one of kill, cut"),
        (MIN + nodes + '\n[[receiver_fault]]\nnode = "a"\nfrom = "1m"\nto = "3m"\n'
         '\n[[receiver_fault]]\nnode = "a"\nfrom = "2m"\n', "overlaps"),
        (MIN + nodes + '\n[[receiver]]\nname = "a"\n', "given twice"),
        (MIN + nodes.replace('"b"', '"b c"'), "letters, digits"),
        (MIN + "".join('\n[[receiver]]\nname = "n%d"\n' % i for i in range(5)), "at most 4"),
    ]
    for text, msg in bad:
        with pytest.raises(S.ScenarioError, match=msg) as ei:
            S.loads(text, "x.toml")
        assert "x.toml:" in str(ei.value) and "[[receiver" in str(ei.value)


def test_a_centre_of_several_nodes_gives_the_device_the_lists():
    from host_sim.setup import device_config

    sc = S.loads(MIN + '\n[[receiver]]\nname = "a"\n\n[[receiver]]\nname = "b"\n', "x.toml")
    d, cfg = device_config(sc, b"\x01" * 32)
    assert d["receivers"] == ["203.0.113.5:5000", "203.0.113.6:5000"] and len(d["sms_numbers"]) == 2
    assert "receiver_host" not in d and "sms_number" not in d
    assert cfg.receivers == [("203.0.113.5", 5000), ("203.0.113.6", 5000)]
    one, _ = device_config(S.loads(MIN, "x.toml"), b"\x01" * 32)  # one node: the single-receiver form, as before
    assert one["receiver_host"] == "203.0.113.5" and "receivers" not in one


def test_unreadable_file_is_a_clear_error():
    with pytest.raises(S.ScenarioError, match="cannot read"):
        S.load("/nonexistent/x.toml")


@pytest.mark.parametrize(
    "text,ms",
    [(90, 90_000), (2.5, 2500), ("1h20m", 4_800_000), ("250ms", 250), ("1d", 86_400_000), ("1m30s", 90_000), ("0.5s", 500)],
)
def test_durations(text, ms):
    assert S.parse_duration_ms(text) == ms


@pytest.mark.parametrize("bad", ["", "5 minutes", "1x", "m", -3, "1h-2m", True, [1]])
def test_bad_durations(bad):
    with pytest.raises(ValueError):
        S.parse_duration_ms(bad)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 3), st.integers(0, 59), st.integers(0, 59), st.integers(0, 999))
def test_duration_strings_add_up(h, m, s, ms):
    text = "%dh%dm%ds%dms" % (h, m, s, ms)
    assert S.parse_duration_ms(text) == ((h * 60 + m) * 60 + s) * 1000 + ms


@settings(max_examples=40, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_is_a_scenario_error_or_a_scenario_never_a_crash(text):
    try:
        S.loads(text, "fuzz.toml")
    except S.ScenarioError:
        pass
