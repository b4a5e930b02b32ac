"""The network model: latency, jitter, loss as retransmission delay, outages,
SMS; repeatable from its seed."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from host_sim.network import DOWN, UP, Network


def test_latency_and_jitter_bounds_and_same_seed_same_run():
    a = Network(seed=4, up_ms=50, down_ms=80, jitter_ms=30)
    b = Network(seed=4, up_ms=50, down_ms=80, jitter_ms=30)
    ta = [a.transit(UP, 1000 * i) - 1000 * i for i in range(50)]
    tb = [b.transit(UP, 1000 * i) - 1000 * i for i in range(50)]
    assert ta == tb and all(50 <= t <= 80 for t in ta) and len(set(ta)) > 1
    assert a.transit(DOWN, 0) >= 80 and a.floor(DOWN) == 80


def test_outage_delays_until_a_retransmission_after_it_ends():
    n = Network(seed=1, jitter_ms=0, outages=[(1000, 4000)])
    assert not n.up(1000) and not n.up(3999) and n.up(4000)
    # sent at 1000: retries at 2000, 4000 (RTO 1 s then 2 s) -> arrives 4060
    assert n.transit(UP, 1000) == 4060
    assert n.retransmits == 2


def test_long_outage_kills_the_connection():
    n = Network(seed=1, outages=[(0, 10**9)])
    assert n.transit(UP, 0) is None and n.dead == 1
    ok, when = n.connect(5)
    assert not ok and when == 5 + n.connect_timeout_ms


def test_sms_delay_and_loss():
    n = Network(seed=2, sms_ms=3000, sms_jitter_ms=0)
    assert n.sms(100) == 3100
    assert Network(seed=2, sms_loss=1.0).sms(0) is None


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError):
        Network(loss=1.0)
    with pytest.raises(ValueError):
        Network(outages=[(5, 5)])


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**20), st.floats(0, 0.6), st.integers(0, 10**6))
def test_nothing_arrives_before_the_floor_or_during_an_outage(seed, loss, now):
    n = Network(seed=seed, loss=loss, outages=[(now + 10, now + 3000)])
    t = n.transit(UP, now + 10)
    # sent inside the outage: only a retransmission after its end can arrive
    assert t is None or t >= now + 3000 + n.floor(UP)
