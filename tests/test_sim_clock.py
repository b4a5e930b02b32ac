"""Virtual clock: order, ties, periodic timers, misuse errors."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from host_sim.clock import Clock, ClockError


def test_fires_in_time_order_and_ties_in_scheduling_order():
    c = Clock()
    seen = []
    c.at(50, seen.append, "b")
    c.at(10, seen.append, "a")
    c.at(50, seen.append, "c")
    c.run_until(100)
    assert seen == ["a", "b", "c"]
    assert c.now == 100


def test_run_until_stops_before_later_events_and_keeps_them():
    c = Clock()
    seen = []
    c.at(10, seen.append, 1)
    c.at(200, seen.append, 2)
    c.run_until(100)
    assert seen == [1] and c.now == 100
    assert c.next_time() == 200
    c.run_until(200)
    assert seen == [1, 2]


def test_callback_sees_its_own_time_and_can_schedule_at_now():
    c = Clock()
    seen = []

    def first():
        seen.append(("first", c.now))
        c.after(0, lambda: seen.append(("chained", c.now)))

    c.at(30, first)
    c.run_until(30)
    assert seen == [("first", 30), ("chained", 30)]


def test_every_repeats_until_cancelled():
    c = Clock()
    seen = []
    tm = c.every(1000, lambda: seen.append(c.now))
    c.run_until(3500)
    assert seen == [1000, 2000, 3000]
    tm.cancel()
    c.run_until(10000)
    assert seen == [1000, 2000, 3000]
    assert c.pending() == 0


def test_cancelled_one_shot_never_fires():
    c = Clock()
    seen = []
    tm = c.after(5, seen.append, "x")
    tm.cancel()
    c.run_until(10)
    assert seen == []


def test_scheduling_in_the_past_is_a_named_error():
    c = Clock(start_ms=100)

    def poll_firmware():
        pass

    with pytest.raises(ClockError, match="poll_firmware at 50 ms: now is 100 ms"):
        c.at(50, poll_firmware)
    with pytest.raises(ClockError):
        c.after(-1, poll_firmware)
    with pytest.raises(ClockError):
        c.run_until(99)
    with pytest.raises(ClockError):
        c.every(0, poll_firmware)


def test_step_jumps_straight_to_the_next_event():
    c = Clock()
    c.at(3_600_000, lambda: None)
    assert c.step() == 3_600_000
    assert c.step() is None


def test_a_raising_callback_stops_the_run_at_its_time():
    c = Clock()
    seen = []

    def boom():
        raise RuntimeError("device crashed")

    c.at(10, boom)
    c.at(20, seen.append, 1)
    with pytest.raises(RuntimeError):
        c.run_until(100)
    assert c.now == 10
    c.run_until(100)
    assert seen == [1]


def test_run_with_limit_leaves_repeating_timers_queued():
    c = Clock()
    n = []
    c.every(100, lambda: n.append(1))
    assert c.run(limit_ms=1000) == 1000
    assert len(n) == 10


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=10_000), max_size=60), st.integers(min_value=0, max_value=10_000))
def test_order_is_a_stable_sort_of_the_schedule(times, cut):
    c = Clock()
    seen = []
    for i, t in enumerate(times):
        c.at(t, seen.append, (t, i))
    c.run_until(cut)
    expect = sorted(((t, i) for i, t in enumerate(times) if t <= cut))
    assert seen == expect
    c.run_until(10_000)
    assert seen == sorted((t, i) for i, t in enumerate(times))
