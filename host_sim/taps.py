"""Faithful mode's taps: the emulated modem's real sockets, tapped both
ways so every frame that crosses the air is seen, and its SMS handed on.

Owns: `TapTcp(host)` (a host_sim/tcp.py SocketTcp whose every connection
goes where the host says, `host.rx_addr_for(host, port)`: the receiver, or
a refusing or silent port while it or its node is down), `TapConn` (one
such connection: uplink and downlink bytes through their own
protocol/stream.py Deframer, each whole frame handed to the host, the
bytes of a node cut off since the connection opened sent nowhere),
`SmsEndpoint(host)` (the emulator's far end for SMS: each one goes to
`host.deliver_sms`; no TCP frames come this way) and `TapHost`, what they
need of the host (the faithful Rig).

Never: decodes, verifies or records a frame (the host does, with the
device key); changes a byte that passes; reads a clock (the caller's
`now` rides along).

Stays in sync with: host_sim/tcp.py (SocketTcp, its conn's send/poll),
host_sim/modem.py (Sim7600's tcp= and endpoint contracts, README "Modem
and network emulator"), protocol/stream.py (u16 framing), and
host_sim/faithful.py (the Rig is the TapHost).
"""

from typing import Protocol

from protocol.errors import ProtocolError
from protocol.stream import Deframer

from host_sim.tcp import SocketTcp


class TapHost(Protocol):
    """What the taps need of the rig that owns them."""

    node_state: dict  # [[receiver]] node name -> "up", "kill" or "cut"

    def rx_addr_for(self, host: str, port: int) -> tuple: ...

    def node_at(self, host: str, port: int) -> "str | None": ...

    def on_air_up(self, raw: bytes, now: int, path: str, node: "str | None" = None) -> None: ...

    def on_air_down(self, raw: bytes, now: int) -> None: ...

    def note(self, t: int, text: str) -> None: ...

    def deliver_sms(self, sender: str, text: str, now: int) -> None: ...


class TapTcp(SocketTcp):
    def __init__(self, rig: TapHost):
        super().__init__({})
        self.rig = rig

    def connect(self, host, port, now):
        addr = self.rig.rx_addr_for(host, port)
        self.redirect = {(host, port): addr}
        return TapConn(super().connect(host, port, now), self.rig, self.rig.node_at(host, port))


class TapConn:
    def __init__(self, inner, rig: TapHost, node=None):
        self.i = inner
        self.rig = rig
        self.node = node  # the [[receiver]] node it was opened to (None: a centre of one)
        self.up = Deframer()
        self.down = Deframer()

    def __getattr__(self, name):
        return getattr(self.i, name)

    def send(self, data, now):
        try:
            for raw in self.up.feed(data):
                self.rig.on_air_up(raw, now, "tcp", self.node)
        except ProtocolError:
            self.rig.note(now, "uplink stream broken")
        if self.node is not None and self.rig.node_state[self.node] != "up":
            return None  # a node cut off (or dead) since this connection opened: the bytes go nowhere
        return self.i.send(data, now)

    def poll(self, now):
        evs = self.i.poll(now)
        for _t, kind, value in evs:
            if kind == "data":
                try:
                    for raw in self.down.feed(value):
                        self.rig.on_air_down(raw, now)
                except ProtocolError:
                    self.rig.note(now, "downlink stream broken")
        return evs


class SmsEndpoint:
    def __init__(self, rig: TapHost):
        self.rig = rig

    def on_sms(self, sender, text, now):
        self.rig.deliver_sms(sender, text, now)

    def on_tcp_frame(self, raw, now):
        return []
