"""Discrete-event virtual clock for the simulated world.

Owns: simulated time (`now`, integer milliseconds from the start of a run)
and the queue of callbacks scheduled at future times. Time never ticks: it
jumps from one scheduled event to the next, so a device that sleeps for an
hour costs one event, and a 24 h day with a 1 Hz GNSS is ~86,400 events.

Never does: real sleeping, threads, wall-clock reads, randomness. Two runs
that schedule the same callbacks in the same order fire them in the same
order (ties at one instant fire in scheduling order), so every run is
reproducible.

Rules:
- Scheduling in the past is our own bug and raises ClockError (LocalError
  root of host_sim); scheduling at `now` is fine and fires in the current
  `run_until` pass, after every event already due at `now`.
- A callback may schedule or cancel others, including at `now`.
- `run_until(t)` fires every event with time <= t and then sets now = t.
- A callback that raises stops the run with the exception; the clock stays
  at that event's time, and the remaining events are still queued.

Stays in sync with: nothing else; the scenario runner and the chip model build on it.
"""

import heapq

from host_sim.errors import SimBug


class ClockError(SimBug):
    """Misuse of the clock by simulator code (a bug on our side)."""


class Timer:
    """Handle for a scheduled callback; `cancel()` it, check `active`."""

    __slots__ = ("at", "fn", "args", "period", "active", "name")

    def __init__(self, at, fn, args, period, name):
        self.at = at
        self.fn = fn
        self.args = args
        self.period = period
        self.active = True
        self.name = name

    def cancel(self):
        self.active = False

    def __repr__(self):
        return "Timer(%s at %d ms%s%s)" % (
            self.name or getattr(self.fn, "__name__", "fn"),
            self.at,
            ", every %d ms" % self.period if self.period else "",
            "" if self.active else ", cancelled",
        )


class Clock:
    """Virtual time in integer ms. `now` starts at `start_ms` (default 0)."""

    def __init__(self, start_ms=0):
        self.now = int(start_ms)
        self._q = []  # (at, order, Timer)
        self._order = 0
        self.fired = 0  # callbacks run, for benches and reports

    # -- scheduling -----------------------------------------------------
    def at(self, t_ms, fn, *args, name=None):
        """Run fn(*args) at absolute time t_ms. Returns a Timer."""
        t_ms = int(t_ms)
        if t_ms < self.now:
            raise ClockError("cannot schedule %s at %d ms: now is %d ms" % (name or getattr(fn, "__name__", "fn"), t_ms, self.now))
        tm = Timer(t_ms, fn, args, 0, name)
        self._push(tm)
        return tm

    def after(self, delay_ms, fn, *args, name=None):
        """Run fn(*args) delay_ms from now (delay >= 0)."""
        if delay_ms < 0:
            raise ClockError("negative delay %r for %s" % (delay_ms, name or getattr(fn, "__name__", "fn")))
        return self.at(self.now + int(delay_ms), fn, *args, name=name)

    def every(self, period_ms, fn, *args, first_ms=None, name=None):
        """Run fn(*args) every period_ms, first at first_ms (default now +
        period). Cancel the returned Timer to stop it."""
        period_ms = int(period_ms)
        if period_ms <= 0:
            raise ClockError("period must be > 0 ms, got %r" % period_ms)
        first = self.now + period_ms if first_ms is None else int(first_ms)
        if first < self.now:
            raise ClockError("first firing at %d ms is before now (%d ms)" % (first, self.now))
        tm = Timer(first, fn, args, period_ms, name)
        self._push(tm)
        return tm

    def _push(self, tm):
        self._order += 1
        heapq.heappush(self._q, (tm.at, self._order, tm))

    # -- running --------------------------------------------------------
    def next_time(self):
        """Time of the next live event, or None if nothing is queued."""
        q = self._q
        while q and not q[0][2].active:
            heapq.heappop(q)
        return q[0][0] if q else None

    def pending(self):
        """Number of live events queued."""
        return sum(1 for e in self._q if e[2].active)

    def run_until(self, t_ms):
        """Fire every event due at or before t_ms, in order; then now = t_ms."""
        t_ms = int(t_ms)
        if t_ms < self.now:
            raise ClockError("cannot run back to %d ms: now is %d ms" % (t_ms, self.now))
        q = self._q
        pop = heapq.heappop
        while q and q[0][0] <= t_ms:
            at, _o, tm = pop(q)
            if not tm.active:
                continue
            self.now = at
            if tm.period:
                tm.at = at + tm.period
                self._push(tm)
            else:
                tm.active = False
            self.fired += 1
            tm.fn(*tm.args)
        self.now = t_ms
        return self.now

    def run_for(self, delay_ms):
        return self.run_until(self.now + int(delay_ms))

    def step(self):
        """Jump to the next event time and fire everything due then.
        Returns the new now, or None if the queue is empty."""
        t = self.next_time()
        if t is None:
            return None
        return self.run_until(t)

    def run(self, limit_ms=None):
        """Run until the queue is empty (or until limit_ms). Returns now.
        A repeating timer never empties the queue: pass limit_ms."""
        while True:
            t = self.next_time()
            if t is None or (limit_ms is not None and t > limit_ms):
                break
            self.run_until(t)
        if limit_ms is not None and self.now < limit_ms:
            self.now = int(limit_ms)
        return self.now
