"""The receiver as the simulator sees it: frames and SMS in, in virtual time.

Owns: the adapter between a network model that delivers bytes at a virtual
time `now` and the sans-I/O core. It sets the core's clock to `now` before
each call, so arrival times, ACK times and supervision all run in virtual
time. Never opens sockets, never sleeps.

    ep = Endpoint.in_memory({1001: key_bytes}, person_refs={1001: "URN 01/1234/26"})
    replies = ep.on_tcp_frame(raw, now)        # list of ACK frames (no length prefix)
    outcome = ep.on_sms("+447700900123", "PNC1 ...", now)   # core.Outcome
    ep.tick(now)                               # supervision (device silent)
    ep.events                                  # every event raised, in order
    ep.store                                   # the store, for assertions
    ep2 = ep.another_node()                    # a second node on the same PostgreSQL store

Must stay in sync with: core.Receiver (handle_frame / handle_sms / tick).
"""

import os
from typing import TYPE_CHECKING

from receiver import core, masterkey
from receiver import store as S

if TYPE_CHECKING:
    from receiver import contracts


class VirtualClock:
    def __init__(self, now=0.0):
        self.now = now

    def __call__(self):
        return self.now


class Endpoint:
    def __init__(self, receiver, clock):
        self.receiver = receiver
        self.clock = clock
        self.events = []
        self.sms_log = []  # (now, sender, outcome)
        receiver.on_event = self.events.append

    @classmethod
    def in_memory(cls, devices, person_refs=None, now=0.0, path=":memory:", **receiver_options):
        """A receiver over a fresh store (in memory unless `path` is given)
        with `devices` ({device_id: 32-byte key}) registered."""
        clock = VirtualClock(now)
        st = S.open_store(path, masterkey.MasterKey(os.urandom(32)), clock=clock)
        for dev, key in devices.items():
            ref = (person_refs or {}).get(dev, "device %d" % dev)
            st.add_device(dev, key, ref)
        return cls(core.Receiver(st, clock=clock, **receiver_options), clock)

    def another_node(self):
        """A second receiver node on this endpoint's store (a PostgreSQL
        URL given as `path`): a connection of its own, the same master key
        and virtual clock, its own events. A device that fails over sends
        the same frame to it; it is stored once and both ACK
        (docs/deployment.md)."""
        st = self.store
        if not S.is_pg(st):
            raise ValueError("another node needs a PostgreSQL store (path='postgresql://...')")
        other = S.open_store(st.url, st._master, clock=self.clock)
        return Endpoint(core.Receiver(other, clock=self.clock), self.clock)

    @property
    def store(self):
        return self.receiver.store

    @property
    def counters(self):
        return self.receiver.counters

    def _at(self, now):
        if now is not None:
            self.clock.now = now

    def on_tcp_frame(self, raw, now=None, peer="sim"):
        self._at(now)
        return self.receiver.handle_frame(raw, "tcp", peer)

    def on_sms(self, sender, text, now=None):
        self._at(now)
        out = self.receiver.handle_sms(sender, text)
        self.sms_log.append((self.clock.now, sender, out))
        return out

    def tick(self, now=None):
        self._at(now)
        return self.receiver.tick(self.clock.now)

    def command(self, device_id, kind, value=None, actor="sim-operator"):
        """Queue an operator command (store.CMD_TRACK / CMD_STAND_DOWN /
        CMD_LISTEN_IN) for the device's next ACK."""
        return core.operator_command(self.store, device_id, kind, value, actor, clock=self.clock,
                                     on_event=self.events.append)


if TYPE_CHECKING:  # the contract Endpoint keeps (receiver/contracts.py), proved by pyright
    def _keeps(e: Endpoint) -> contracts.Endpoint:
        return e
