"""Faithful mode: the real firmware in the MicroPython VM (unix port),
peripherals over sockets in real time, the real receiver over TCP.

`make test` runs a short, time-scaled subset of one shipped scenario; every
shipped scenario in full runs from tests/faithful_full.py (`make test-full`).
"""

import json
import os

from host_sim import scenario as SC
from host_sim.faithful import button_patterns, device_config, run_faithful

SCEN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "host_sim", "scenarios")


def test_test_alert_after_cold_boot_subset_passes_invariants_in_the_vm(tmp_path):
    # first 2 simulated minutes at 10x: near-miss raw presses at 5 s, a TEST press at 20 s
    res = run_faithful(os.path.join(SCEN, "test_alert_clock_unknown.toml"), json_out=str(tmp_path / "r.json"),
                       report_out=str(tmp_path / "r.html"), duration_ms=120000, time_scale=10)
    bad = [(i["name"], i["violations"]) for i in res["invariants"] if not i["ok"]]
    assert bad == []
    assert all(e["ok"] for e in res["expect"]), res["expect"]
    # the TEST really went through the VM's outbox, the emulated modem and the receiver
    (a,) = res["alerts"]
    assert a["kind"] == "test" and a["seq"] is not None and a["ack_ms"] is not None
    assert 20000 <= a["first_frame_ms"] < a["ack_ms"] < 60000
    raised = res["receiver"]["raised"]
    assert [r["type"] for r in raised if r["seq"] == a["seq"]] == ["TEST"]
    assert raised[0]["type"] == "STATUS"  # the boot status, sealed with time 0 (no clock yet)
    # the near-miss raw presses raised nothing: one TEST, no ALERT
    assert not [r for r in raised if r["type"] == "ALERT"]
    f = res["faithful"]
    assert f["boots"] == 1 and f["console_bytes_unauth"] == 0
    assert f["notes"] == []  # reg_ms and the timed garbage_p are emulator settings: all applied
    pins = {p["pin"] for p in res["pins"]}
    assert pins and pins <= {"modem_power", "modem_pwrkey", "modem_dtr"}
    assert (tmp_path / "r.json").stat().st_size > 0 and (tmp_path / "r.html").read_text().startswith("<!")


def test_device_config_maps_scenario_overrides_and_refuses_unknown_keys(tmp_path):
    sc = SC.loads('[scenario]\nname="x"\nduration="5m"\n[route]\npoints=[{at="0s",lat=1.0,lon=2.0}]\n'
                  '[device]\nheartbeat_s=900\napn="pp"\n[[action]]\nat="1m"\nkind="test"\n')
    cfg = device_config(sc, 7, b"\x01" * 32, b"\x02" * 32)
    assert cfg["timings"] == {"heartbeat_s": 900} and cfg["apn"] == "pp"
    assert cfg["test_enabled"] is True and cfg["button"] == {"test_enabled": True}
    sc.device = {"no_such_thing": 1}
    try:
        device_config(sc, 7, b"\x01" * 32, b"\x02" * 32)
    except SC.ScenarioError as e:
        assert "no_such_thing" in str(e)
    else:
        raise AssertionError("an unknown [device] key was accepted")


def test_button_patterns_are_what_the_detector_recognises():
    from firmware.button import ButtonConfig, ButtonDetector
    from firmware.app import EV_DURESS_CANCEL, EV_SOS, EV_TEST

    def events(cfg, presses, active=False):
        d = ButtonDetector(cfg)
        d.set_alert_active(active)
        end = max(o + h for o, h in presses) + 5000
        out = []
        for t in range(0, end, 20):  # sampled every 20 ms, as a slow faithful step might
            level = 0 if any(o <= t < o + h for o, h in presses) else 1  # active low
            ev = d.update(level, t)
            if ev is not None:
                out.append(ev)
        return out

    cfg = ButtonConfig(test_enabled=True)
    p = button_patterns(cfg)
    assert events(cfg, p["sos"]) == [EV_SOS]
    assert events(cfg, p["test"]) == [EV_TEST]
    assert events(cfg, p["duress_cancel"], active=True) == [EV_DURESS_CANCEL]


def test_panic_sim_run_faithful_runs_the_vm(tmp_path, capsys):
    from tools import cli

    f = tmp_path / "short.toml"
    f.write_text('[scenario]\nname = "short"\nduration = "50s"\ntime_scale = 10\n'
                 '[gnss]\nstart = "hot"\n[route]\npoints = [ { at = "0s", lat = 54.3212, lon = -2.7535 } ]\n'
                 '[[action]]\nat = "30s"\nkind = "sos"\n[expect]\nalerts = 1\n')
    rc = cli.main(["sim", "run", str(f), "--faithful", "--json", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    assert rc == 0, out
    res = json.loads((tmp_path / "r.json").read_text())
    assert res["faithful"]["boots"] == 1 and res["faithful"]["time_scale"] == 10
    (a,) = res["alerts"]
    assert a["kind"] == "sos" and a["ack_ms"] is not None and a["ack_ms"] - a["press_ms"] < 10000
