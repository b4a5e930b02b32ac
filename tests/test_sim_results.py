"""Recorder: a run's record becomes results that report and invariants accept."""

from host_sim import energy as E
from host_sim import report as R
from host_sim import scenario as S
from host_sim.results import Recorder

SC = """
[scenario]
name = "rec"
duration = "10m"

[route]
points = [ { at = 0, lat = 54.3321, lon = -2.7399 }, { at = "10m", lat = 54.3212, lon = -2.7535 } ]

[[action]]
at = "2m"
kind = "sos"

[expect]
alerts = 1
max_press_to_ack_s = 3
"""


def recorded(ack=True, raise_twice=False):
    sc = S.loads(SC, "rec.toml")
    rec = Recorder(sc)
    press = 120_000 + 700
    a = rec.press("sos", press, device_id=7)
    rec.frame(press + 50, "up", "built", "ALERT", 41, 7)
    rec.frame(press + 900, "up", "on_air", "ALERT", 41, 7, path="tcp", size=65)
    rec.frame(press + 1200, "up", "committed", "ALERT", 41, 7, path="tcp")
    rec.raise_(press + 1200, 7, 41, "ALERT")
    if raise_twice:
        rec.raise_(press + 9000, 7, 41, "ALERT")
    if ack:
        rec.frame(press + 1500, "down", "acked", "ACK", 3, 7, path="tcp", acked_seq=41)
    la, lo = rec.route.true_position(press - 2000)
    rec.position(press + 50, "ALERT", 41, 2, la, lo, 12, 2)
    rec.position(press + 50, "ALERT", 41, 0, None, None, 0xFFFF, 0xFFFF)
    rec.pin(0, "modem_pwrkey", 1)
    en = E.EnergyModel()
    en.advance(600_000)
    return a, rec.finish(energy=en, profiles=E.profile_tradeoff())


def test_press_is_tied_to_its_frames_by_inferred_seq():
    a, res = recorded()
    assert a["seq"] == 41
    assert a["first_frame_ms"] - a["press_ms"] == 900
    assert a["committed_ms"] - a["press_ms"] == 1200
    assert a["ack_ms"] - a["press_ms"] == 1500
    assert all(i["ok"] for i in res["invariants"])
    assert all(e["ok"] for e in res["expect"])
    assert res["positions"][0]["error_m"] < 1.0
    assert R.validate(res) == []
    R.render_html(res)
    R.to_json(res)


def test_missing_ack_and_duplicate_raise_show_up_as_failures():
    _a, res = recorded(ack=False, raise_twice=True)
    inv = {i["name"]: i for i in res["invariants"]}
    assert not inv["no_duplicates"]["ok"]
    exp = {e["name"]: e for e in res["expect"]}
    assert not exp["max_press_to_ack_s"]["ok"] and exp["max_press_to_ack_s"]["actual"] is None


def test_pending_alert_is_marked():
    sc = S.loads(SC, "rec.toml")
    rec = Recorder(sc)
    rec.press("sos", 120_700, seq=50)
    res = rec.finish(pending_seqs={50})
    assert res["alerts"][0]["pending_at_end"]
    inv = {i["name"]: i for i in res["invariants"]}
    assert inv["no_alert_lost"]["ok"] and inv["no_alert_lost"]["undelivered"] == 1
    exp = {e["name"]: e for e in res["expect"]}
    assert not exp["alerts"]["ok"]


def test_planned_context_events_are_included_for_the_timeline():
    _a, res = recorded()
    kinds = {e["kind"] for e in res["events"]}
    assert {"coverage", "sky"} <= kinds
