"""Which receiver (or SMS number) of the configured list the device uses.

Owns: the failover rule, as one transition table over two states, for a
list of n peers in order of preference. Sans-I/O: never opens a socket,
never reads a clock; the caller reports what happened (with `now`, ms)
and reads `i`, the index to use. One small object per list, a few ints,
no allocation per send (the App keeps one for `receivers` and the outbox
one for `sms_numbers`, each only when its list has more than one entry).

Events:
  E_FAILED    the peer could not be reached (the modem's AT+CIPOPEN failed:
              refused, timed out, error; a send_failed whose reason starts
              with "open", firmware/transport.py), or an SMS to it failed
  E_TIMEOUT   a frame went out (the transport's "sent") and no authenticated
              ACK came from anyone within ack_timeout_ms (poll() raises it:
              a node cut off, or a half-open TCP connection to a dead one)
  E_ACKED     an authenticated ACK arrived: the peer in use works
  E_RETURN    return_ms after the last move, with nothing awaiting an ACK
              (poll() raises it): back to the first, the preferred one

States: FIRST (i == 0), OTHER (i > 0). NEXT moves to i + 1, wrapping to 0
after the last (then the state is FIRST again: a list whose every peer
failed is tried round and round, never abandoned).

Why a move never loses or repeats an alert: the rule only chooses where the
next transmission goes. The outbox keeps every unacknowledged frame (ALERT
and CANCEL on flash) and retransmits it byte for byte, same seq; the
receiving centre's nodes share one store whose replay window answers a
frame seen by either node with an ACK and never raises it twice
(docs/receiver.md). The App asks the outbox to retry at once after a move
(Outbox.retry_now) so the other node gets the frame without a back-off.

A node that is up again is found by E_RETURN: a device stays on a
secondary at most return_ms while the first is healthy. E_RETURN waits
while an ACK is awaited, so a frame in flight is never moved back to a
node that may still be dead.

Must stay in sync with: firmware/app.py and firmware/outbox.py (the two
users), firmware/config.py (receivers, sms_numbers, ack_timeout_s,
failover_return_s), docs/firmware.md ("Receiver failover": the table,
tests/test_docs_firmware.py checks it).
"""

from protocol.errors import LocalError

try:
    from micropython import const  # pyright: ignore[reportAssignmentType]
except ImportError:  # CPython

    def const(x):
        return x


FIRST = const(0)
OTHER = const(1)
STATE_NAMES = ("FIRST", "OTHER")

E_FAILED = const(1)
E_TIMEOUT = const(2)
E_ACKED = const(3)
E_RETURN = const(4)
EVENT_NAMES = ("", "FAILED", "TIMEOUT", "ACKED", "RETURN")

A_STAY = const(0)
A_NEXT = const(1)
A_FIRST = const(2)
ACTION_NAMES = ("stay", "next", "first")

# (state, event) -> action; the new state follows from the new index.
# Anything absent is illegal (our misuse: protocol.errors.LocalError).
TABLE = {
    (FIRST, E_FAILED): A_NEXT,
    (FIRST, E_TIMEOUT): A_NEXT,
    (FIRST, E_ACKED): A_STAY,
    (OTHER, E_FAILED): A_NEXT,
    (OTHER, E_TIMEOUT): A_NEXT,
    (OTHER, E_ACKED): A_STAY,
    (OTHER, E_RETURN): A_FIRST,
}

_NEVER = const(-1)


def transitions():
    """The table as (state, event, action) name rows, sorted: docs/firmware.md
    holds it, tests/test_docs_firmware.py checks the two are the same."""
    return [(STATE_NAMES[s], EVENT_NAMES[e], ACTION_NAMES[a]) for (s, e), a in sorted(TABLE.items())]


class Failover:
    def __init__(self, n, ack_timeout_ms, return_ms, peers=()):
        if n < 1:
            raise LocalError("no peers")
        self.peers = peers  # type: list | tuple  # the list itself, for a user that keeps nothing else (the outbox)
        self.n = n
        self.i = 0
        self.state = FIRST
        self.ack_timeout = ack_timeout_ms
        self.return_ms = return_ms
        self.waiting = _NEVER  # when the oldest send still without any ACK went
        self.moved_at = 0  # when i last changed
        self.moves = 0  # moves made (the App notes each in its event log; tests read this)

    def fire(self, ev, now):
        """Apply one event; True when `i` changed."""
        a = TABLE.get((self.state, ev))
        if a is None:
            raise LocalError("event %d is illegal in state %s" % (ev, STATE_NAMES[self.state]))
        if ev == E_ACKED:
            self.waiting = _NEVER
        if a == A_STAY:
            return False
        old = self.i
        self.i = (old + 1) % self.n if a == A_NEXT else 0
        self.state = FIRST if self.i == 0 else OTHER
        self.waiting = _NEVER  # the next send to the new peer starts its own wait
        self.moved_at = now
        if self.i == old:
            return False
        self.moves += 1
        return True

    # the events by name, so a user need not import the E_* names (the
    # App and the outbox load this module only for a list of two or more)
    def failed(self, now):
        return self.fire(E_FAILED, now)

    def timed_out(self, now):
        return self.fire(E_TIMEOUT, now)

    def acked(self, now):
        return self.fire(E_ACKED, now)

    def sent(self, now):
        """A frame left (the transport's "sent"): start the ACK wait unless
        an older send is already waiting."""
        if self.waiting == _NEVER:
            self.waiting = now

    def poll(self, now):
        """Raise the timed events; True when `i` changed."""
        if self.waiting != _NEVER:
            if now - self.waiting >= self.ack_timeout:
                return self.fire(E_TIMEOUT, now)
        elif self.state == OTHER and now - self.moved_at >= self.return_ms:
            return self.fire(E_RETURN, now)
        return False

    def next_deadline(self, now):
        """ms until poll() may have something to do (3600000: nothing)."""
        if self.waiting != _NEVER:
            d = self.waiting + self.ack_timeout - now
        elif self.state == OTHER:
            d = self.moved_at + self.return_ms - now
        else:
            return 3600000
        return d if d > 0 else 0
