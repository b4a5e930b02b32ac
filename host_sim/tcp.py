"""TCP backends for the modem emulator: where AT+CIPOPEN's socket really goes.

Owns: one connection's life on the far side of the modem. Two backends:

  ModelTcp(network, endpoint, nodes=None)   virtual time: segments cross
                                host_sim/network.py, the endpoint's
                                on_tcp_frame() answers. With nodes
                                ({(host, port): node}, a receiving centre of
                                several nodes) each connection goes to the
                                node at the address the firmware asked for;
                                a node has `state` ("up", "kill": its process
                                is dead, so the host answers a SYN with a
                                reset and resets open connections, "cut": it
                                is cut off, so nothing answers) and
                                on_tcp_frame(). An address no node has never
                                answers.
  SocketTcp(redirect=None)      real time: a real non-blocking socket to the
                                address the firmware asked for (optionally
                                redirected), for faithful runs against a real
                                receiver.

A backend has connect(host, port, now) -> conn. A conn has:
    send(data, now)          bytes the modem pushed into the stream
    poll(now) -> [(t, kind, value)]   what happened by `now`, in time order:
        ("open", ok)  ("data", bytes)  ("closed", reason)
    next_event_ms() -> int or None    when poll() next has something (None:
                                      real time, just poll again)
    remote_close(now)        the far end closes (fault injection)
    close(now)               the modem closes
Never used by firmware; the emulator (host_sim/modem.py) is the only caller.
"""

import heapq
import select
import socket

from protocol.errors import BadLength
from protocol.stream import Deframer, pack
from host_sim.network import DOWN, UP


class ModelTcp:
    def __init__(self, network, endpoint, nodes=None):
        self.network = network
        self.endpoint = endpoint
        self.nodes = nodes
        self.bytes_up = 0
        self.bytes_down = 0
        self.conns = []  # connections to nodes (a killed node resets them)

    def connect(self, host, port, now):
        if self.nodes is None:
            return _ModelConn(self, now)
        c = _ModelConn(self, now, self.nodes.get((host, port)), routed=True)
        self.conns = [x for x in self.conns if not x.closed] + [c]
        return c

    def node_failed(self, node, now):
        """A node failed (its `state` already says how). "kill": its host
        resets every connection to it, the reset crossing the network to the
        modem (a handshake under way fails at once). "cut": open
        connections go silent (host_sim/runner.py SimNode drops what
        arrives), and a handshake under way never completes: it times out."""
        t = now + self.network.floor(DOWN)
        for c in self.conns:
            if c.node is not node or c.closed:
                continue
            if node.state == "kill" and c.opened:
                c._push(t, "closed", 1)
            elif not c.opened:
                c._q = [e for e in c._q if e[2] != "open"]
                heapq.heapify(c._q)
                c._push(t if node.state == "kill" else c.t0 + self.network.connect_timeout_ms, "open", False)


class _ModelConn:
    virtual = True  # every event is queued with its time (next_event_ms); nothing comes by itself

    def __init__(self, backend, now, node=None, routed=False):
        self.b = backend
        self.node = node
        self.ep = node if node is not None else backend.endpoint
        self._q = []
        self._n = 0
        self.closed = False
        self.opened = False  # the "open" event was delivered
        self.t0 = now
        self._up_last = 0
        self._down_last = 0
        self._deframer = Deframer()
        net = backend.network
        state = node.state if node is not None else ("cut" if routed else "up")
        if state == "up":
            ok, t = net.connect(now)
            self._push(t, "open", ok)
        elif state == "kill":  # the SYN gets a reset: refused after one round trip
            ok, t = net.connect(now)
            self._push(t if ok else now + net.connect_timeout_ms, "open", False)
        else:  # cut off, or no such address: the handshake times out
            self._push(now + net.connect_timeout_ms, "open", False)

    def _push(self, t, kind, value):
        self._n += 1
        heapq.heappush(self._q, (t, self._n, kind, value))

    def next_event_ms(self):
        return self._q[0][0] if self._q else None

    def send(self, data, now):
        if self.closed:
            return
        t = self.b.network.transit(UP, now)
        if t is None:
            net = self.b.network
            self._push(now + net.rto_ms * (2 ** (net.max_retries + 1) - 1), "closed", 2)  # sending timeout
            return
        t = max(t, self._up_last)
        self._up_last = t
        self._push(t, "arrive", bytes(data))

    def remote_close(self, now):
        if not self.closed:
            self._push(now, "closed", 1)

    def close(self, now):
        self.closed = True
        # what is already in flight upstream still reaches the server
        self._q = [e for e in self._q if e[2] == "arrive"]
        heapq.heapify(self._q)

    def poll(self, now):
        out = []
        while self._q and self._q[0][0] <= now:
            t, _, kind, value = heapq.heappop(self._q)
            if kind == "arrive":
                self.b.bytes_up += len(value)
                try:
                    frames = self._deframer.feed(value)
                except BadLength:
                    if not self.closed:  # the server drops a garbage stream
                        self._push(t + self.b.network.floor(DOWN), "closed", 1)
                    continue
                if self.node is not None and self.node.state != "up":
                    continue  # a dead or cut-off node: the segment goes nowhere
                for raw in frames:
                    for reply in self.ep.on_tcp_frame(raw, t) or ():
                        if self.closed:
                            continue
                        t2 = self.b.network.transit(DOWN, t)
                        if t2 is None:
                            continue
                        t2 = max(t2, self._down_last)
                        self._down_last = t2
                        self._push(t2, "data", pack(reply))
                        if getattr(self.ep, "close_after_reply", False):
                            self._push(t2, "closed", 1)  # a server that answers, then hangs up
            elif not self.closed:
                if kind == "open":
                    self.opened = True
                if kind == "data":
                    self.b.bytes_down += len(value)
                if kind == "closed":
                    self.closed = True
                out.append((t, kind, value))
        return out


class SocketTcp:
    """Real sockets. redirect: optional {(host, port): (host, port)} so a
    device configured for the production receiver can be pointed at a local
    one without touching its configuration."""

    def __init__(self, redirect=None):
        self.redirect = redirect or {}

    def connect(self, host, port, now):
        return _SocketConn(self.redirect.get((host, port), (host, port)), now)


class _SocketConn:
    def __init__(self, addr, now):
        self.closed = False
        self._opened = False
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setblocking(False)
        self._pending = []
        self._remote_close = False
        try:
            self._sock.connect(addr)
            self._opened = True
            self._pending.append((now, "open", True))
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self._pending.append((now, "open", False))
            self.closed = True

    def next_event_ms(self):
        return None

    def send(self, data, now):
        if self.closed:
            return
        try:
            self._sock.setblocking(True)
            self._sock.settimeout(5)
            self._sock.sendall(data)
        except OSError:
            self._pending.append((now, "closed", 2))
            self.closed = True
        finally:
            if not self.closed:
                self._sock.setblocking(False)

    def remote_close(self, now):
        self._pending.append((now, "closed", 1))
        self.close(now)

    def close(self, now):
        if not self.closed:
            self.closed = True
            try:
                self._sock.close()
            except OSError:
                pass

    def poll(self, now):
        out, self._pending = self._pending, []
        if self.closed:
            return out
        if not self._opened:
            _, w, _ = select.select([], [self._sock], [], 0)
            if not w:
                return out
            err = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            self._opened = True
            out.append((now, "open", err == 0))
            if err:
                self.close(now)
                return out
        while True:
            try:
                data = self._sock.recv(4096)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                data = b""
            if not data:
                out.append((now, "closed", 1))
                self.close(now)
                break
            out.append((now, "data", data))
        return out
