"""Energy model: integration, battery voltage, brown-out, profiles."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from host_sim import energy as E

H = 3_600_000


def quiet(**kw):
    kw.setdefault("self_discharge_pct_month", 0.0)
    return E.EnergyModel(**kw)


def test_an_hour_of_ready_standby_uses_sleep_currents():
    e = quiet()
    e.set_state("esp32", "deep_sleep", 0)
    e.set_state("modem", "sleep", 0)
    e.advance(H)
    s = e.summary()
    assert s["used_mah"] == pytest.approx(4.61, abs=1e-3)
    assert s["by_part_mah"]["modem"] == pytest.approx(4.6)
    assert s["time_in_state_ms"]["modem.sleep"] == H


def test_tx_bursts_dominate_and_are_counted_per_part():
    e = quiet()
    e.set_state("esp32", "active", 0)
    e.set_state("modem", "tx", 0)
    e.set_state("modem", "idle", 2000)
    e.advance(4000)
    assert e.by_part_mah["modem"] == pytest.approx((575 * 2 + 17.5 * 2) / 3600, rel=1e-9)
    assert e.by_part_mah["esp32"] == pytest.approx(68 * 4 / 3600, rel=1e-9)


def test_battery_voltage_falls_with_charge_and_sags_under_tx():
    e = quiet(start_pct=100)
    full = e.battery_mv(0)
    assert 4150 <= full <= 4200
    e.set_state("modem", "tx", 0)
    sag = e.battery_mv(0)
    assert full - sag == pytest.approx(575 * 0.15 + 68 * 0.15 - 68 * 0.15, abs=2)
    assert quiet(start_pct=20).battery_mv(0) < quiet(start_pct=50).battery_mv(0) < full


def test_firmware_reads_through_the_two_to_one_divider():
    e = quiet(start_pct=50)
    assert e.adc_pin_mv(0) == e.battery_mv(0) // 2
    assert e.board_battery_mv(0) % 2 == 0
    assert abs(e.board_battery_mv(0) - e.battery_mv(0)) <= 1


def test_ocv_curve_is_monotonic_and_invertible():
    last = 0
    for pct in range(0, 101):
        v = E.ocv_mv(pct)
        assert v >= last
        last = v
        assert E.soc_from_mv(v) == pytest.approx(pct, abs=1e-6)


def test_brownout_time_predicts_when_the_cell_gives_out():
    e = quiet(start_pct=8, capacity_mah=100)
    e.set_state("modem", "idle", 0)
    e.set_state("esp32", "active", 0)
    ms = e.ms_until_brownout(0)
    assert ms is not None and ms > 0
    e.advance(ms - 60_000)
    assert not e.browned_out()
    e.advance(ms + 1)
    assert e.browned_out()


def test_tx_on_a_nearly_flat_cell_browns_out_at_once():
    e = quiet(start_pct=4)
    assert not e.browned_out(0)
    e.set_state("modem", "tx", 0)
    assert e.browned_out(0)
    assert e.ms_until_brownout(0) == 0


def test_power_cut_stops_the_drain_but_not_self_discharge():
    e = E.EnergyModel(self_discharge_pct_month=2.0)
    e.set_state("modem", "idle", 0)
    e.set_connected(False, 0)
    e.advance(30 * 24 * H)
    assert e.soc_pct() == pytest.approx(98.0, abs=0.01)
    assert e.by_part_mah["modem"] == 0


def test_misuse_is_a_named_error():
    e = quiet()
    with pytest.raises(E.EnergyError, match="modem state 'transmit'"):
        e.set_state("modem", "transmit", 0)
    with pytest.raises(E.EnergyError, match="part"):
        e.set_state("wifi", "on", 0)
    e.advance(10)
    with pytest.raises(E.EnergyError, match="backwards"):
        e.advance(5)
    with pytest.raises(E.EnergyError):
        E.EnergyModel(start_pct=120)


def test_ready_profile_costs_weeks_of_standby_but_saves_tens_of_seconds():
    rows = {r["profile"]: r for r in E.profile_tradeoff(capacity_mah=2000, heartbeat_s=4 * 3600)}
    ready, saver = rows["ready"], rows["saver"]
    assert 10 < ready["standby_days"] < 25  # ~4.7 mA on 2000 mAh
    assert saver["standby_days"] > 5 * ready["standby_days"]
    assert saver["first_frame_extra_s"]["typ"] - ready["first_frame_extra_s"]["typ"] >= 15
    assert ready["standby_days"] == pytest.approx(2000 / ready["avg_ma"] / 24, rel=0.01)


def test_sim7080g_psm_makes_the_ready_profile_cheap():
    a = E.profile_average_ma("ready", modem="sim7600")
    b = E.profile_average_ma("ready", modem="sim7080g")
    assert b < a / 3


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["esp32", "modem", "gnss"]), st.integers(0, 4), st.integers(0, 600_000)), max_size=30))
def test_total_charge_is_the_sum_of_the_parts(steps):
    e = quiet()
    t = 0
    for part, si, dt in steps:
        states = list(E.CURRENTS["sim7600" if part == "modem" else part])
        t += dt
        e.set_state(part, states[si % len(states)], t)
    e.advance(t + 1000)
    assert e.used_mah == pytest.approx(sum(e.by_part_mah.values()), rel=1e-9, abs=1e-9)
