"""Faithful mode: the real firmware in the MicroPython VM (unix port),
peripherals over sockets in real time, the real receiver over TCP.

`make test` runs a short, time-scaled window of EVERY shipped scenario (a
prefix of its duration that holds its key moment: the press, the cut, the
gap, the heartbeat), each ~15-25 s of wall time; every shipped scenario in
full runs from tests/faithful_full.py (`make test-full`).

A window may end with an alert still queued on the device's flash: the
results then say pending_at_end (host_sim/invariants.py counts it as
undelivered, not lost). Each window below is long enough that its key
alert reaches the receiver, and the test asserts that it did.

Scales: above ~20x a firmware step of a few wall ms is a large slice of
device time (the VM's clock is scaled), so modem pulses and retry timers
can misbehave in ways the device never sees; windows that need a modem
boot stay at or below 40x. walk_home ran at 75x until a machine 40 % slower
than usual put its press -> first frame at 5.0-5.9 s of device time (about
70 wall ms of VM work, times 75) against the ready profile's 5 s bound, and
its first AT+CSCLK=1 past the 3 s command timeout: it runs at 40x (about
2.5 s). idle_then_sos_ready and _saver ran at 60x and measured 3.7-4.9 s
(bound 5 s) and 26.6-30.6 s (bound 30 s) on that machine: 40x too.
"""

import json
import os

import pytest

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
    assert pins and pins <= {"led", "modem_pwrkey", "modem_dtr", "modem_flight"}
    # the board LED driven low at boot, never high
    assert [p["value"] for p in res["pins"] if p["pin"] == "led"] == [0]
    assert (tmp_path / "r.json").stat().st_size > 0 and (tmp_path / "r.html").read_text().startswith("<!")


def _run_window(tmp_path, name, duration_ms, time_scale):
    res = run_faithful(os.path.join(SCEN, name + ".toml"), json_out=str(tmp_path / "r.json"),
                       duration_ms=duration_ms, time_scale=time_scale)
    bad = [(i["name"], i["violations"]) for i in res["invariants"] if not i["ok"]]
    assert bad == [], bad
    f = res["faithful"]
    assert f["console_bytes_unauth"] == 0 and f["notes"] == [], f
    return res


def _expect(res, *names):
    got = {e["name"]: e for e in res["expect"]}
    for n in names:
        assert got[n]["ok"], got[n]


def _raised(res, typ):
    return [r for r in res["receiver"]["raised"] if r["type"] == typ]


def _committed_paths(res, seq):
    return {f["path"] for f in res["frames"] if f["dir"] == "up" and f["event"] == "committed" and f["seq"] == seq}


def _check_duress_cancel(res):
    # SOS at 3 min, duress cancel at 5 min: the ALERT is ACKed, the CANCEL
    # reaches the receiver flagged duress, and the device does not say so
    sos, dc = res["alerts"]
    assert sos["kind"] == "sos" and sos["ack_ms"] is not None
    assert dc["kind"] == "duress_cancel" and dc["ack_ms"] is not None
    (cancel,) = _raised(res, "CANCEL")
    assert cancel["duress"] is True
    _expect(res, "alerts", "cancels", "duress")


def _check_coverage_gap(res):
    # data lost at 5 min, SOS at 8 min: the ALERT reaches the receiver by
    # SMS while there is no data path, raised once
    (a,) = res["alerts"]
    (al,) = _raised(res, "ALERT")
    assert al["seq"] == a["seq"] and 480000 < al["t_ms"] < 540000
    assert "sms" in _committed_paths(res, a["seq"])
    _expect(res, "alerts", "sms_used")


def _check_flat_battery(res):
    # 6 % battery: the SOS at 5 min gets through (ACKed) and the frames say
    # battery low; the brown-out and silence come later (make test-full)
    (a,) = res["alerts"]
    assert a["kind"] == "sos" and a["ack_ms"] is not None and a["ack_ms"] < 340000
    assert res["summary"]["low_battery"] is True
    _expect(res, "alerts", "low_battery")


def _check_heartbeat(res):
    # heartbeat every 900 s (+-20 s jitter), saver profile (modem off between
    # them): the first HEARTBEAT boots the modem and reaches the receiver
    hb = _raised(res, "HEARTBEAT")
    assert len(hb) == 1 and 880000 <= hb[0]["t_ms"] < 1000000, hb
    assert _raised(res, "STATUS")  # the boot status
    assert res["alerts"] == [] and not _raised(res, "ALERT")


def _check_power_cut(res):
    # SOS at 2 min; the power goes at the 2nd atomic flash write after it
    # (the ALERT is already on flash), back 10 s later; a plain cut at
    # 2m45s: the ALERT survives, is sent from flash and raised once
    ev = res["events"]
    (torn,) = [e for e in ev if e["kind"] == "flash_cut"]
    (cut,) = [e for e in ev if e["kind"] == "power_cut" and e["detail"] == "at flash write"]
    assert torn["t_ms"] == cut["t_ms"] and 120000 < cut["t_ms"] < 130000
    assert cut["end_ms"] - cut["t_ms"] == 10000
    (a,) = res["alerts"]
    (al,) = _raised(res, "ALERT")
    assert al["seq"] == a["seq"] and a["committed_ms"] is not None
    built = [f for f in res["frames"] if f["event"] == "built" and f["seq"] == a["seq"]]
    assert built and built[0]["t_ms"] <= torn["t_ms"]  # on flash before the cut
    assert res["faithful"]["boots"] == 3
    assert res["faithful"]["flash"]["atomic_writes"] >= 3
    _expect(res, "alerts")


def _check_walk_home(res):
    # indoors from 19m15s, SOS at 29 min: the ALERT goes with the last
    # known fix, its age honest (older than the time indoors) and within its
    # claimed accuracy of where the fix was taken (the invariant)
    (a,) = res["alerts"]
    assert a["kind"] == "sos" and a["ack_ms"] is not None
    (pos,) = [p for p in res["positions"] if p["seq"] == a["seq"]]
    assert pos["source"] != 0 and pos["error_m"] is not None and pos["error_m"] <= pos["accuracy_m"]
    assert pos["age_s"] * 1000 >= a["press_ms"] - 19 * 60000 - 15000


def _check_idle_then_sos(bound_s):
    def check(res):
        # forty minutes asleep, then SOS at 41 min: on the air within the
        # profile's bound (the alert_latency invariant also holds), ACKed,
        # and the modem never forced off
        (a,) = res["alerts"]
        assert a["kind"] == "sos" and a["ack_ms"] is not None
        assert a["first_frame_ms"] - a["press_ms"] <= bound_s * 1000
        assert res["summary"]["modem_forced_offs"] == []
        _expect(res, "alerts")
    return check


def _check_duress_during_scan(res):
    sos, dc = res["alerts"]
    assert sos["kind"] == "sos" and dc["kind"] == "duress_cancel"
    (cancel,) = _raised(res, "CANCEL")
    assert cancel["duress"] is True


def _check_hung_modem(res):
    # hung at 5 min, SOS at 10 min: one real power cycle (PWRKEY hold), then the ALERT
    (a,) = res["alerts"]
    assert a["ack_ms"] is not None
    assert len(res["summary"]["modem_forced_offs"]) == 1
    _expect(res, "alerts", "max_modem_power_cycles")


def _check_lte_only(res):
    # LTE-only: the ALERT by SMS while the receiver's TCP port is down, then
    # the listen-in request of 6 min becomes a call
    (a,) = res["alerts"]
    assert a["ack_ms"] is not None and "sms" in _committed_paths(res, a["seq"])
    assert res["summary"]["listen_in_calls"] == 1
    _expect(res, "alerts", "sms_used", "listen_in_calls")


def _check_failover(res):
    # two nodes, the device's list names both; arc1 dies at 5m1.2s (about
    # when the ALERT goes): the ALERT is raised once and ACKed, and what the
    # device sends after arc1's death goes to arc2 (arc1 refuses)
    (a,) = res["alerts"]
    assert a["kind"] == "sos" and a["ack_ms"] is not None
    assert len(_raised(res, "ALERT")) == 1
    on_air = [f for f in res["frames"] if f["dir"] == "up" and f["event"] == "on_air"]
    assert {f.get("node") for f in on_air if f["t_ms"] < 300000} == {"arc1"}
    late = [f for f in on_air if f["t_ms"] > a["ack_ms"]]
    assert late and {f["node"] for f in late} == {"arc2"}, late
    assert [f["node"] for f in on_air if f["seq"] == a["seq"]][-1] == "arc2"
    _expect(res, "alerts")


# name -> (window ms, time scale, check); test_alert_clock_unknown has its own test above
WINDOWS = {
    "idle_then_sos_ready": (2490000, 40, _check_idle_then_sos(5)),
    "idle_then_sos_saver": (2500000, 40, _check_idle_then_sos(30)),
    "duress_cancel_during_wifi_scan": (300000, 20, _check_duress_during_scan),
    "hung_modem_power_cycle": (700000, 20, _check_hung_modem),
    "lte_only_network": (420000, 20, _check_lte_only),
    "duress_cancel": (320000, 20, _check_duress_cancel),
    "coverage_gap_sms_only": (540000, 30, _check_coverage_gap),
    "flat_battery": (340000, 20, _check_flat_battery),
    "heartbeat_silent": (1000000, 40, _check_heartbeat),
    "power_cut_mid_alert": (170000, 10, _check_power_cut),
    "walk_home_indoor_attack": (1800000, 40, _check_walk_home),
    "receiver_failover": (400000, 20, _check_failover),
}


def test_every_shipped_scenario_has_a_faithful_window():
    names = {os.path.splitext(os.path.basename(p))[0] for p in SC.shipped()}
    assert names == set(WINDOWS) | {"test_alert_clock_unknown"}


@pytest.mark.parametrize("name", sorted(WINDOWS))
def test_shipped_scenario_window_in_the_vm(tmp_path, name):
    dur, scale, check = WINDOWS[name]
    res = _run_window(tmp_path, name, dur, scale)
    check(res)


def test_device_config_maps_scenario_overrides_and_refuses_unknown_keys(tmp_path):
    sc = SC.loads('[scenario]\nname="x"\nduration="5m"\n[route]\npoints=[{at="0s",lat=1.0,lon=2.0}]\n'
                  '[device]\nheartbeat_s=900\napn="pp"\nsos_hold_ms=4000\n[[action]]\nat="1m"\nkind="test"\n')
    cfg, _ = device_config(sc, b"\x01" * 32, device_id=7, engineer_key=b"\x02" * 32)
    assert cfg["timings"] == {"heartbeat_s": 900} and cfg["apn"] == "pp"
    assert cfg["test_enabled"] is True and cfg["button"] == {"test_enabled": True, "sos_hold_ms": 4000}
    sc.device = {"no_such_thing": 1}
    try:
        device_config(sc, b"\x01" * 32, device_id=7, engineer_key=b"\x02" * 32)
    except ValueError as e:
        assert "no_such_thing" in str(e)
    else:
        raise AssertionError("an unknown [device] key was accepted")


def test_a_scenario_means_the_same_device_in_both_modes(tmp_path):
    # one setup (host_sim/setup.py) for the virtual-time runner and the VM:
    # [device] sos_hold_ms was honoured by one and refused by the other
    from host_sim.faithful import Rig
    from host_sim.runner import Runner

    sc = SC.loads('[scenario]\nname="x"\nduration="5m"\n[route]\npoints=[{at="0s",lat=1.0,lon=2.0}]\n'
                  '[device]\nsos_hold_ms=4000\nheartbeat_s=900\n')
    r = Runner(sc)
    rig = Rig(sc)
    try:
        keys = ("device_id", "key_hex", "engineer_key_hex")
        a = {k: v for k, v in r.cfg_dict.items() if k not in keys}
        b = {k: v for k, v in rig.cfg.items() if k not in keys}
        assert a == b and a["button"]["sos_hold_ms"] == 4000
        assert r.patterns == rig.patterns
    finally:
        rig.stop()


def test_button_patterns_are_what_the_detector_recognises():
    from firmware.button import ButtonConfig, ButtonDetector
    from firmware.button import EV_DURESS_CANCEL, EV_SOS, EV_TEST

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
