"""Network model between the emulated modem and the receiver, in virtual time.

Owns: how long a TCP segment or an SMS takes to cross the network, whether it
gets there at all, and the schedule of outages. Never sleeps and never reads
a clock: every call takes `now` (ms) and answers with an arrival time.
All randomness comes from one seeded random.Random, so a run is repeatable.

TCP is reliable, so loss and outages show up as delay: a segment lost (with
probability `loss`) or sent during an outage is retransmitted after the
retransmission timeout, which doubles each time (1 s, 2 s, 4 s ...); after
`max_retries` the connection is dead (transit() returns None). Jitter is
uniform in [0, jitter_ms] on top of the one-way latency; times are whole ms. Arrival order
within one connection is kept by the connection (host_sim/modem.py).

SMS does not use the packet core: data outages do not stop it; it takes
sms_ms plus up to sms_jitter_ms, and is lost with probability sms_loss.

Must stay in sync with: host_sim/modem.py (the only caller), bench/bench_modem.py
(which reads floor()).
"""

import math
import random

UP = "up"
DOWN = "down"


class Network:
    def __init__(self, seed=0, up_ms=60, down_ms=60, jitter_ms=20, loss=0.0, outages=(), rto_ms=1000,
                 max_retries=6, connect_timeout_ms=7000, sms_ms=3000, sms_jitter_ms=2000, sms_loss=0.0):
        if not 0.0 <= loss < 1.0 or not 0.0 <= sms_loss <= 1.0:
            raise ValueError("loss must be in [0, 1)")
        self.rng = random.Random(seed)
        self.latency = {UP: up_ms, DOWN: down_ms}
        self.jitter_ms = jitter_ms
        self.loss = loss
        self.outages = sorted((int(a), int(b)) for a, b in outages)
        for a, b in self.outages:
            if b <= a:
                raise ValueError("outage (%d, %d) ends before it starts" % (a, b))
        self.rto_ms = rto_ms
        self.max_retries = max_retries
        self.connect_timeout_ms = connect_timeout_ms
        self.sms_ms = sms_ms
        self.sms_jitter_ms = sms_jitter_ms
        self.sms_loss = sms_loss
        self.sent = {UP: 0, DOWN: 0}
        self.retransmits = 0
        self.dead = 0

    def up(self, now):
        """False while an outage is on."""
        for a, b in self.outages:
            if a <= now < b:
                return False
        return True

    def floor(self, direction):
        """The least one segment can take: latency without jitter or loss."""
        return self.latency[direction]

    def _one_way(self, direction):
        j = self.rng.uniform(0, self.jitter_ms) if self.jitter_ms else 0
        return int(math.ceil(self.latency[direction] + j))  # whole ms, like every clock here

    def transit(self, direction, now):
        """Arrival time of a segment sent at `now`, or None if TCP gives up."""
        self.sent[direction] += 1
        t = now
        rto = self.rto_ms
        for _ in range(self.max_retries + 1):
            if self.up(t) and not (self.loss and self.rng.random() < self.loss):
                return t + self._one_way(direction)
            self.retransmits += 1
            t += rto
            rto *= 2
        self.dead += 1
        return None

    def connect(self, now):
        """(ok, when): a TCP handshake started at `now` completes or fails."""
        t = self.transit(UP, now)
        if t is not None:
            t2 = self.transit(DOWN, t)
            if t2 is not None and t2 - now <= self.connect_timeout_ms:
                return True, t2
        return False, now + self.connect_timeout_ms

    def sms(self, now):
        """Arrival time of an SMS submitted at `now`, or None if lost."""
        if self.sms_loss and self.rng.random() < self.sms_loss:
            return None
        return now + int(math.ceil(self.sms_ms + (self.rng.uniform(0, self.sms_jitter_ms) if self.sms_jitter_ms else 0)))
