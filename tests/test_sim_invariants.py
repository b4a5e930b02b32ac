"""Each invariant passes on a good run and catches its own violation."""

import copy

from hypothesis import given, settings
from hypothesis import strategies as st

from host_sim import invariants as I
from host_sim.route import Route
from host_sim.sample import synthetic_results

ROUTE = Route([(0, 54.3321, -2.7399), (600_000, 54.3212, -2.7535)])


def base():
    return {
        "alerts": [{"kind": "sos", "press_ms": 1000, "device_id": 7, "seq": 10, "pending_at_end": False}],
        "receiver": {"raised": [{"t_ms": 2500, "device_id": 7, "seq": 10, "type": "ALERT", "duress": False}], "silent_alarms": []},
        "positions": [],
        "pins": [],
        "console": [],
        "frames": [],
    }


def names(results):
    return {r["name"]: r for r in I.check_all(results, ROUTE.true_position)}


def test_the_synthetic_run_passes_every_invariant():
    r = synthetic_results()
    assert all(x["ok"] for x in r["invariants"])


def test_good_run_passes():
    assert all(v["ok"] for v in names(base()).values())


def test_lost_alert_is_caught():
    r = base()
    r["receiver"]["raised"] = []
    res = I.no_alert_lost(r)
    assert not res["ok"] and "LOST" in res["violations"][0]


def test_alert_still_queued_on_the_device_is_undelivered_not_lost_unless_strict():
    r = base()
    r["receiver"]["raised"] = []
    r["alerts"][0]["pending_at_end"] = True
    assert I.no_alert_lost(r)["ok"] and I.no_alert_lost(r)["undelivered"] == 1
    assert not I.no_alert_lost(r, strict=True)["ok"]


def test_alert_raised_under_another_seq_does_not_count():
    r = base()
    r["receiver"]["raised"][0]["seq"] = 11
    assert not I.no_alert_lost(r)["ok"]


def test_test_press_must_be_raised_as_test_not_alert():
    r = base()
    r["alerts"][0]["kind"] = "test"
    assert not I.no_alert_lost(r)["ok"]
    r["receiver"]["raised"][0]["type"] = "TEST"
    assert I.no_alert_lost(r)["ok"]


def test_alert_without_a_known_seq_matches_a_raise_after_the_press():
    r = base()
    r["alerts"][0]["seq"] = None
    assert I.no_alert_lost(r)["ok"]
    r["receiver"]["raised"][0]["t_ms"] = 500  # raised before the press: not this one
    assert not I.no_alert_lost(r)["ok"]


def test_same_frame_raised_twice_is_caught():
    r = base()
    r["receiver"]["raised"].append(dict(r["receiver"]["raised"][0], t_ms=9000))
    res = I.no_duplicates(r)
    assert not res["ok"] and "raised twice" in res["violations"][0]


def test_two_alerts_for_one_press_are_caught():
    r = base()
    r["receiver"]["raised"].append({"t_ms": 9000, "device_id": 7, "seq": 12, "type": "ALERT"})
    res = I.no_duplicates(r)
    assert not res["ok"] and "for the one sos press" in res["violations"][0]
    # a second press makes the second ALERT legitimate
    r["alerts"].append({"kind": "sos", "press_ms": 8000, "device_id": 7, "seq": 12})
    assert I.no_duplicates(r)["ok"]


def _pos(t, lat_e7, lon_e7, acc, age=0, source=1):
    return {"t_ms": t, "type": "ALERT", "seq": 10, "source": source, "lat_e7": lat_e7, "lon_e7": lon_e7, "accuracy_m": acc, "age_s": age}


def test_position_outside_its_claimed_accuracy_is_caught():
    r = base()
    la, lo = ROUTE.true_position(100_000)
    r["positions"] = [_pos(100_000, la + 900, lo, 5)]  # ~10 m north, claims 5 m
    res = I.positions_within_accuracy(r, ROUTE.true_position)
    assert not res["ok"] and "claims 5 m" in res["violations"][0]
    r["positions"] = [_pos(100_000, la + 900, lo, 15)]
    assert I.positions_within_accuracy(r, ROUTE.true_position)["ok"]


def test_old_fix_is_judged_at_its_own_time_not_the_frame_time():
    r = base()
    la, lo = ROUTE.true_position(100_000)
    # 300 s later the person has walked ~400 m; the frame says the fix is 300 s old
    r["positions"] = [_pos(400_000, la, lo, 5, age=300, source=2)]
    assert I.positions_within_accuracy(r, ROUTE.true_position)["ok"]
    r["positions"] = [_pos(400_000, la, lo, 5, age=0, source=2)]  # claims to be fresh: wrong
    assert not I.positions_within_accuracy(r, ROUTE.true_position)["ok"]


def test_positions_marked_unknown_are_counted_not_judged():
    r = base()
    la, lo = ROUTE.true_position(1000)
    r["positions"] = [
        _pos(1000, None, None, None, None, source=0),
        _pos(1000, la, lo, 0xFFFF, 0),
        _pos(1000, la + 5000, lo, 10, 0xFFFF),
    ]
    res = I.positions_within_accuracy(r, ROUTE.true_position)
    assert res["ok"] and res["unknown"] == 3 and res["checked"] == 0


def test_a_position_at_zero_zero_is_never_unknown():
    """Issue 14: a cell source with (0, 0) and unknown accuracy was counted
    as "unknown" and passed. (0, 0) is a place (the Gulf of Guinea): shown
    where the person is not, it is a violation, from the device or from
    the receiver."""
    for p in (_pos(1000, 0, 0, 0xFFFF, 0xFFFF, source=3), _pos(1000, 0, 0, 0xFFFF, 0), _pos(1000, 0, 0, 10, 0xFFFF)):
        r = base()
        r["positions"] = [p]
        res = I.positions_within_accuracy(r, ROUTE.true_position)
        assert not res["ok"] and "at (0, 0)" in res["violations"][0]
    r = base()
    r["positions"] = [_pos(1000, 515000000, -1250000, 10, 0, source=0)]
    r["receiver"]["positions"] = [{"t_ms": 2000, "role": "estimate", "source": "cell (resolved)", "seq": 10,
                                   "lat_e7": 0, "lon_e7": 0, "accuracy_m": 1500}]
    res = I.positions_within_accuracy(r, ROUTE.true_position)
    assert not res["ok"] and "the receiver's estimate cell (resolved)" in res["violations"][0]
    on_null_island = Route([(0, 0.0, 0.0), (600_000, 0.0001, 0.0001)])
    r = base()
    r["positions"] = [_pos(1000, 0, 0, 10, 0)]
    assert I.positions_within_accuracy(r, on_null_island.true_position)["ok"]  # unless the person is there
    r = base()
    r["positions"] = [_pos(1000, 0, 0, 0xFFFF, 0xFFFF, source=0)]  # source 0: no position, its fields 0 by rule
    res = I.positions_within_accuracy(r, ROUTE.true_position)
    assert res["ok"] and res["unknown"] == 1


def test_a_position_the_receiver_resolved_is_judged_at_its_frame_against_its_range():
    r = base()
    la, lo = ROUTE.true_position(100_000)
    r["positions"] = [_pos(100_000, None, None, None, None, source=0)]  # the frame: observations only
    cell = {"t_ms": 100_500, "role": "estimate", "source": "cell (resolved)", "seq": 10, "lat_e7": la + 45000,
            "lon_e7": lo, "accuracy_m": 600}  # ~500 m north of the person
    r["receiver"]["positions"] = [cell]
    res = I.positions_within_accuracy(r, ROUTE.true_position)
    assert res["ok"] and res["receiver_checked"] == 1
    cell["accuracy_m"] = 400
    res = I.positions_within_accuracy(r, ROUTE.true_position)
    assert not res["ok"] and "claims 400 m but is" in res["violations"][0]


def test_malformed_position_is_a_violation_not_a_crash():
    r = base()
    r["positions"] = [{"source": 1, "lat_e7": 1, "lon_e7": 1, "accuracy_m": 5, "age_s": 0}]  # no t_ms
    assert not I.positions_within_accuracy(r, ROUTE.true_position)["ok"]


def test_visible_pin_is_caught_and_invisible_pins_are_fine():
    r = base()
    r["pins"] = [{"t_ms": 5, "pin": "modem_pwrkey", "value": 1}, {"t_ms": 6, "pin": "LED_STATUS", "value": 0}]
    assert I.nothing_visible(r)["ok"]
    r["pins"].append({"t_ms": 1200, "pin": "LED_STATUS", "value": 1})
    res = I.nothing_visible(r)
    assert not res["ok"] and "LED_STATUS" in res["violations"][0]
    # numbered pins: active-low LED on GPIO 12
    r["pins"] = [{"t_ms": 5, "pin": 12, "value": 0}]
    assert not I.nothing_visible(r, visible={12}, off_levels={12: 1})["ok"]
    assert I.nothing_visible(r, visible={12}, off_levels={12: 0})["ok"]


def test_console_output_without_authentication_is_caught():
    r = base()
    r["console"] = [{"t_ms": 5, "text": "engineer> selftest", "authenticated": True}]
    assert I.nothing_printed(r)["ok"]
    r["console"].append({"t_ms": 1100, "text": "ALERT sent"})
    assert not I.nothing_printed(r)["ok"]


def test_expectations_compare_counts_flags_and_latencies():
    r = synthetic_results()
    res = {e["name"]: e for e in I.check_expect(r, {"alerts": 1, "cancels": 1, "max_press_to_ack_s": 1.0, "sms_used": False})}
    assert res["alerts"]["ok"] and res["sms_used"]["ok"]
    assert not res["cancels"]["ok"] and res["cancels"]["actual"] == 0
    assert not res["max_press_to_ack_s"]["ok"] and res["max_press_to_ack_s"]["actual"] > 1.0


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=1, max_size=8), st.integers(0, 3))
def test_duplicate_detection_matches_a_brute_force_count(seqs, extra):
    r = base()
    r["alerts"] = []
    r["receiver"]["raised"] = [{"t_ms": i, "device_id": 7, "seq": s, "type": "TRACK"} for i, s in enumerate(seqs + seqs[:extra])]
    dup = len(seqs + seqs[:extra]) - len(set(seqs))
    res = I.no_duplicates(copy.deepcopy(r))
    assert res["ok"] == (dup == 0)
    assert len(res["violations"]) == dup


def test_malformed_results_fail_as_a_whole_instead_of_crashing():
    res = I.check_all({"alerts": "sos", "positions": [{"t_ms": "x"}]}, ROUTE.true_position)
    assert res[0]["name"] == "well_formed" and not res[0]["ok"]
    assert all(not r["ok"] for r in res)


def test_an_alert_held_back_by_an_outage_still_belongs_to_its_own_press():
    # SOS (seq 10), cancel, SOS (seq 12); the receiver was down, so both ALERTs
    # are raised after the second press: one each, not two for the second
    r = base()
    r["alerts"] = [{"kind": "sos", "press_ms": 1000, "device_id": 7, "seq": 10},
                   {"kind": "sos", "press_ms": 30000, "device_id": 7, "seq": 12}]
    r["receiver"]["raised"] = [{"t_ms": 116000, "device_id": 7, "seq": 10, "type": "ALERT"},
                               {"t_ms": 116100, "device_id": 7, "seq": 12, "type": "ALERT"}]
    assert I.no_duplicates(r)["ok"]
    # a third ALERT built for the second press is still caught
    r["receiver"]["raised"].append({"t_ms": 117000, "device_id": 7, "seq": 13, "type": "ALERT"})
    res = I.no_duplicates(r)
    assert not res["ok"] and "2 ALERT frames raised for the one sos press at 30000 ms" in res["violations"][0]


def test_alert_latency_is_judged_with_every_node_up_and_excused_while_one_is_down():
    # a press at 120 s, first frame 6.7 s later (ready profile: 5 s bound)
    r = {"scenario": {"profile": "ready", "duration_ms": 600000},
         "alerts": [{"kind": "sos", "press_ms": 120000, "first_frame_ms": 126700}],
         "conditions": {"coverage": [[0, 600000, "data+sms"]], "receiver_faults": []}}
    assert not I.alert_latency(r)["ok"]
    # the device's first node was dead then: a refused connection came first
    r["conditions"]["receiver_faults"] = [[38000, 226000, "n0", "kill"]]
    res = I.alert_latency(r)
    assert res["ok"] and res["checked"] == 0
    r["conditions"]["receiver_faults"] = [[300000, 400000, "n0", "cut"]]  # later: judged again
    assert not I.alert_latency(r)["ok"]
