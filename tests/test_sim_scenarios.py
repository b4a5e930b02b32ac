"""Every shipped scenario runs in virtual time (real App, real modem engine
against the emulator, real receiver core) and its invariants and [expect]
hold; the runner's own promises (repeatable, records what the invariants
need, catches a firmware that breaks the rules) and the `panic sim` CLI."""

import json
import os
import re
import subprocess
import sys

import pytest

from host_sim import runner, scenario
from host_sim.cli import summary_lines

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCEN = os.path.join(ROOT, "host_sim", "scenarios")
SHIPPED = sorted(f for f in os.listdir(SCEN) if f.endswith(".toml"))


def run_file(name, **kw):
    return runner.run(scenario.load(os.path.join(SCEN, name)), **kw)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_scenario_holds_its_invariants_and_expectations(name):
    res = run_file(name)
    assert runner.failures(res) == []
    assert [i["name"] for i in res["invariants"]] == ["well_formed", "no_alert_lost", "no_duplicates",
                                                      "positions_within_accuracy", "nothing_visible", "nothing_printed",
                                                      "alert_latency", "modem_left_alone"]
    # the board LED (GPIO12 on the T-SIM7600E) is driven low at boot and never high
    led = [p for p in res["pins"] if p["pin"] == "led"]
    assert led and led[0]["t_ms"] == 0 and all(p["value"] == 0 for p in led)
    assert res["expect"], "every shipped scenario says what it must show"
    assert res["summary"]["haptic_calls"] == 0
    # the device's main loop feeds the watchdog well inside its period while powered
    assert res["summary"]["max_watchdog_gap_ms"] <= 30000 or res["summary"]["boots"] > 1


def test_walk_home_alert_goes_at_once_with_the_last_fix_and_an_honest_accuracy():
    res = run_file("walk_home_indoor_attack.toml")
    (a,) = [a for a in res["alerts"] if a["kind"] == "sos"]
    assert a["first_frame_ms"] - a["press_ms"] < 5000 and a["ack_ms"] > a["first_frame_ms"]
    (p,) = [p for p in res["positions"] if p["seq"] == a["seq"]]
    assert p["source"] == 2 and p["age_s"] > 500  # last fix, from before going indoors at 19m15s
    assert p["error_m"] <= p["accuracy_m"]
    ups = {(f["type"], f["event"]) for f in res["frames"] if f["dir"] == "up"}
    assert {("ALERT", "built"), ("ALERT", "committed"), ("ALERT", "on_air"), ("ALERT", "received"), ("TRACK", "received")} <= ups


def test_the_first_node_dies_mid_alert_the_second_acks_the_same_frame_and_it_is_raised_once():
    res = run_file("receiver_failover.toml")
    ups = [f for f in res["frames"] if f["dir"] == "up" and f["event"] == "received"]
    (a,) = res["alerts"]
    alert = [f for f in ups if f["seq"] == a["seq"]]
    # sent to arc1 as it died (lost there), then the same seq to arc2, stored and ACKed there once
    assert [(f["node"], f["note"]) for f in alert] == [("arc2", "accepted")]
    on_air = [f for f in res["frames"] if f["dir"] == "up" and f["event"] == "on_air" and f["seq"] == a["seq"]]
    assert len(on_air) == 2 and on_air[0]["t_ms"] < 301200 < on_air[1]["t_ms"]  # the first went out before the kill
    acks = [f for f in res["frames"] if f["dir"] == "down" and f["event"] == "built" and f.get("acked_seq") == a["seq"]]
    assert [f["node"] for f in acks] == ["arc2"] and a["ack_ms"] is not None
    assert [r["type"] for r in res["receiver"]["raised"]].count("ALERT") == 1
    # every frame the device made was stored exactly once, on one node or the other
    built = sorted(f["seq"] for f in res["frames"] if f["dir"] == "up" and f["event"] == "built")
    stored = sorted(f["seq"] for f in ups if f["note"] == "accepted")
    assert set(built) <= set(stored) and len(set(stored)) == len(stored)  # (the boot STATUS is built before the recorder looks)
    # arc2 cut off at 9m: the next TRACK waits one ACK timeout (10 s), then goes to arc1 (back since 8m)
    later = [f for f in ups if f["t_ms"] >= 540000]
    assert later and all(f["node"] == "arc1" for f in later)
    first = later[0]
    made = [f["t_ms"] for f in res["frames"] if f["dir"] == "up" and f["event"] == "built" and f["seq"] == first["seq"]][0]
    assert 10000 <= first["t_ms"] - made <= 10000 + 3000, (made, first["t_ms"])
    kinds = [(e["kind"], e["detail"]) for e in res["events"] if e["kind"] == "receiver_fault"]
    assert kinds == [("receiver_fault", "kill arc1"), ("receiver_fault", "cut arc2")]


def test_power_cut_mid_alert_boots_again_and_the_alert_is_raised_once():
    res = run_file("power_cut_mid_alert.toml")
    assert res["summary"]["boots"] == 3
    assert [r["type"] for r in res["receiver"]["raised"]].count("ALERT") == 1
    kinds = [e["kind"] for e in res["events"]]
    assert kinds.count("power_cut") == 2


def test_sms_fallback_in_the_gap_and_no_second_raise_when_data_returns():
    res = run_file("coverage_gap_sms_only.toml")
    (a,) = [a for a in res["alerts"] if a["kind"] == "sos"]
    up = [f for f in res["frames"] if f["dir"] == "up" and f["seq"] == a["seq"] and f["event"] == "received"]
    assert {f["path"] for f in up} == {"sms", "tcp"}  # first by SMS in the gap, then the TCP retry ACKed
    assert len([r for r in res["receiver"]["raised"] if r["seq"] == a["seq"]]) == 1


def test_runs_repeat_exactly():
    a = run_file("duress_cancel.toml")
    b = run_file("duress_cancel.toml")
    strip = lambda r: [(f["t_ms"], f["dir"], f["event"], f["type"], f["seq"]) for f in r["frames"]]  # noqa: E731
    assert strip(a) == strip(b)


def test_a_firmware_that_buzzes_or_prints_fails_the_run(monkeypatch):
    from firmware.app import App

    orig = App._on_button

    def loud(self, ev, now):
        self.board.haptic(200)
        print("SOS!")
        return orig(self, ev, now)

    monkeypatch.setattr(App, "_on_button", loud)
    res = run_file("duress_cancel.toml")
    bad = {i["name"] for i in res["invariants"] if not i["ok"]}
    assert bad == {"nothing_visible", "nothing_printed"}


def test_a_lost_alert_is_caught(monkeypatch):
    from firmware.app import App

    monkeypatch.setattr(App, "_on_button", lambda self, ev, now: None)  # presses never reach the controller
    res = run_file("duress_cancel.toml")
    lost = next(i for i in res["invariants"] if i["name"] == "no_alert_lost")
    assert not lost["ok"] and "LOST" in lost["violations"][0]


def test_unrecognised_pattern_counts_as_a_lost_alert(monkeypatch):
    from firmware.button import ButtonDetector

    monkeypatch.setattr(ButtonDetector, "update", lambda self, level, now: None)
    res = run_file("duress_cancel.toml")
    assert any("LOST" in v for i in res["invariants"] for v in i["violations"])


def test_summary_names_the_alert_position_source_and_latency():
    res = run_file("walk_home_indoor_attack.toml")
    text = "\n".join(summary_lines(res))
    assert "VERIFIED ALERT" in text and "source last_fix" in text and "openstreetmap.org" in text
    assert re.search(r"press -> first frame on air \d+\.\d+ s, press -> ACK \d+\.\d+ s", text)


def panic(*args):
    p = subprocess.run([sys.executable, "-m", "tools", *args], cwd=ROOT, capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


def test_panic_sim_demo_prints_the_verified_alert_with_location_source_and_latency():
    rc, out, err = panic("sim", "demo")
    assert rc == 0, err
    assert "VERIFIED ALERT from device 1001" in out
    m = re.search(r"position: lat (-?\d+\.\d{7}) lon (-?\d+\.\d{7}), source (\w+), accuracy (\d+) m", out)
    assert m and abs(float(m.group(1)) - 54.32) < 0.01 and abs(float(m.group(2)) + 2.75) < 0.01
    assert m.group(3) == "last_fix"
    assert re.search(r"press -> first frame on air \d+\.\d+ s, press -> ACK \d+\.\d+ s", out)
    assert "TRACKs received:" in out and "mAh used" in out


def test_panic_sim_run_writes_reports_and_fails_on_a_broken_expectation(tmp_path):
    src = open(os.path.join(SCEN, "duress_cancel.toml")).read().replace("alerts = 1", "alerts = 2")
    bad = tmp_path / "bad.toml"
    bad.write_text(src)
    out_json, out_html = tmp_path / "r.json", tmp_path / "r.html"
    rc, out, err = panic("sim", "run", str(bad), "--json", str(out_json), "--report", str(out_html))
    assert rc == 1 and "expect alerts: wanted 2, got 1" in err
    res = json.loads(out_json.read_text())
    assert res["format"] == "panic-sim-results/1" and res["alerts"]
    assert out_html.read_text().lstrip().lower().startswith("<!doctype html")


def test_panic_sim_run_rejects_a_bad_file_with_one_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[scenario]\nname = "x"\nduration = "1m"\n[route]\npoints = [ { at = 0, lat = 54.0, lon = -2.0 } ]\n[[action]]\nat = 1\nkind = "sso"\n')
    rc, out, err = panic("sim", "run", str(bad))
    assert rc == 2 and "kind" in err and "Traceback" not in err
    rc, out, err = panic("sim", "run", str(tmp_path / "missing.toml"))
    assert rc == 3 and "cannot read" in err  # a file that is not there: environment (docs/tools.md, exit codes)


def test_wifi_access_points_from_the_scenario_reach_the_alert():
    from protocol import frame as F

    text = open(os.path.join(SCEN, "duress_cancel.toml")).read() + (
        '\n[[wifi]]\nbssid = "02:11:22:33:44:55"\nrssi = -48\n\n[[wifi]]\nbssid = "02:aa:bb:cc:dd:ee"\nrssi = -80\nto = "1m"\n')
    sc = scenario.loads(text, os.path.join(SCEN, "wifi.toml"))
    assert sc.wifi_at(0) == [(bytes.fromhex("021122334455"), -48), (bytes.fromhex("02aabbccddee"), -80)]
    assert sc.wifi_at(120_000) == [(bytes.fromhex("021122334455"), -48)]
    r = runner.Runner(sc)
    seen = []
    orig = r.receiver.core.handle_frames

    def spy(items):
        for raw, _, _ in items:
            fr = F.decode(r.keys, raw, F.UPLINK)
            seen.extend(v for t, v in fr.body.tlvs if t == F.T_WIFI)
        return orig(items)

    r.receiver.core.handle_frames = spy
    res = r.run()
    assert runner.failures(res) == []
    assert (bytes.fromhex("021122334455"), -48) in seen
    with pytest.raises(scenario.ScenarioError, match="bssid"):
        scenario.loads(text.replace("02:11:22:33:44:55", "02:11:22"), "w.toml")
