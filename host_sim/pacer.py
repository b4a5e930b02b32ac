"""Pacer: drives a virtual Clock against the wall clock, for the faithful
mode (firmware in the real MicroPython VM, peripherals over sockets).

Owns: the mapping sim_ms = (wall - wall_at_start) * time_scale * 1000 and
the waiting. Composes with a select()/asyncio loop: ask `wait_s()` how
long the loop may block before the next world event, block on sockets for
at most that, then `tick()` to fire every event now due. `run_until()` is
the simple loop for callers with nothing else to wait on.

Never does: change the order of events (the Clock owns that); catch up by
skipping: a late pacer fires the overdue events at once, in order, and
counts how late it was (`max_lag_ms`).

Stays in sync with: host_sim/clock.py; docs/scenarios.md (time_scale).
"""

import time


class Pacer:
    def __init__(self, clock, time_scale=1.0, monotonic=time.monotonic, sleep=time.sleep, paused=False):
        if time_scale <= 0:
            raise ValueError("time_scale must be > 0, got %r" % time_scale)
        self.clock = clock
        self.time_scale = float(time_scale)
        self._mono = monotonic
        self._sleep = sleep
        self._wall0 = monotonic()
        self._sim0 = clock.now
        self.max_lag_ms = 0
        self.paused = paused

    def resume(self):
        """Start (or restart) simulated time from the clock's now, at the
        wall clock's now: a paused pacer holds simulated time still."""
        self._wall0 = self._mono()
        self._sim0 = self.clock.now
        self.paused = False

    def set_scale(self, time_scale):
        """Run faster (or slower) from now on; simulated time so far is kept."""
        if time_scale <= 0:
            raise ValueError("time_scale must be > 0, got %r" % time_scale)
        if not self.paused:
            self._sim0 = self.sim_now()
            self._wall0 = self._mono()
        self.time_scale = float(time_scale)

    def sim_now(self):
        """Simulated ms that correspond to the wall clock now (the clock's
        now while paused)."""
        if self.paused:
            return self._sim0
        return self._sim0 + int((self._mono() - self._wall0) * 1000 * self.time_scale)

    def wait_s(self, until_ms=None):
        """Wall seconds until the next event (or until_ms), 0 if overdue,
        None if nothing is scheduled and no limit given."""
        nxt = self.clock.next_time()
        if until_ms is not None:
            nxt = until_ms if nxt is None else min(nxt, until_ms)
        if nxt is None or self.paused:
            return None
        return max(0.0, (nxt - self.sim_now()) / 1000.0 / self.time_scale)

    def tick(self, until_ms=None):
        """Fire everything due by the wall clock (capped at until_ms)."""
        target = self.sim_now()
        if until_ms is not None:
            target = min(target, until_ms)
        if target < self.clock.now:
            return self.clock.now
        nxt = self.clock.next_time()
        if nxt is not None and nxt <= target:
            self.max_lag_ms = max(self.max_lag_ms, target - nxt)
        return self.clock.run_until(target)

    def run_until(self, until_ms, poll=None, max_block_s=0.05):
        """Run in real time to until_ms. poll(timeout_s) is called instead of
        sleeping when given (e.g. a select on the device sockets)."""
        while self.clock.now < until_ms:
            w = self.wait_s(until_ms)
            w = max_block_s if w is None else min(w, max_block_s)
            if poll is not None:
                poll(w)
            elif w > 0:
                self._sleep(w)
            self.tick(until_ms)
        return self.clock.now
