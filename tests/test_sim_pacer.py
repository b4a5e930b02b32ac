"""Pacer: virtual time follows a (fake) wall clock at the scenario's scale."""

import pytest

from host_sim.clock import Clock
from host_sim.pacer import Pacer


class FakeWall:
    def __init__(self):
        self.t = 100.0
        self.slept = 0.0

    def monotonic(self):
        return self.t

    def sleep(self, s):
        self.t += s
        self.slept += s


def test_events_fire_when_the_wall_clock_reaches_them_scaled():
    w = FakeWall()
    c = Clock()
    fired = []
    c.at(10_000, lambda: fired.append(w.t))
    p = Pacer(c, time_scale=10.0, monotonic=w.monotonic, sleep=w.sleep)
    assert p.wait_s() == pytest.approx(1.0)  # 10 s of sim time at 10x
    p.run_until(20_000)
    assert fired and fired[0] == pytest.approx(101.0, abs=0.06)
    assert w.slept == pytest.approx(2.0, abs=0.06)
    assert c.now == 20_000


def test_a_late_pacer_fires_overdue_events_in_order_and_reports_lag():
    w = FakeWall()
    c = Clock()
    seen = []
    for t in (1000, 2000, 3000):
        c.at(t, seen.append, t)
    p = Pacer(c, monotonic=w.monotonic, sleep=w.sleep)
    w.t += 5.0  # the host stalled for 5 s
    assert p.wait_s() == 0.0
    p.tick()
    assert seen == [1000, 2000, 3000]
    assert p.max_lag_ms == 4000


def test_poll_replaces_sleep_so_sockets_can_be_served():
    w = FakeWall()
    c = Clock()
    polls = []

    def poll(timeout):
        polls.append(timeout)
        w.t += timeout

    Pacer(c, monotonic=w.monotonic, sleep=w.sleep).run_until(200, poll=poll, max_block_s=0.05)
    assert polls and max(polls) <= 0.05 and w.slept == 0


def test_bad_scale_is_refused():
    with pytest.raises(ValueError):
        Pacer(Clock(), time_scale=0)


def test_a_paused_pacer_holds_simulated_time_until_resumed():
    # faithful mode pauses until the VM says hello: its start-up is not device time
    w = FakeWall()
    c = Clock()
    seen = []
    c.at(0, seen.append, 0)
    c.at(5000, seen.append, 5000)
    p = Pacer(c, time_scale=10.0, monotonic=w.monotonic, sleep=w.sleep, paused=True)
    w.t += 3.0  # the interpreter took 3 s of wall time to start (30 s of sim time at 10x)
    assert p.wait_s(60_000) is None
    p.tick()
    assert seen == [0] and p.sim_now() == 0
    p.resume()
    w.t += 0.4
    p.tick()
    assert seen == [0] and p.sim_now() == 4000
    w.t += 0.1
    p.tick()
    assert seen == [0, 5000] and p.max_lag_ms == 0


def test_set_scale_keeps_the_time_so_far_and_runs_faster_from_now():
    w = FakeWall()
    c = Clock()
    p = Pacer(c, time_scale=10.0, monotonic=w.monotonic, sleep=w.sleep)
    w.t += 2.0
    assert p.sim_now() == 20_000
    p.set_scale(1000.0)  # e.g. the device died: only the receiver's supervision is left
    assert p.sim_now() == 20_000
    w.t += 1.0
    assert p.sim_now() == 1_020_000
    with pytest.raises(ValueError):
        p.set_scale(0)
