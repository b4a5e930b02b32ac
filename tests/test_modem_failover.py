"""The modem engine and the SIM7600 emulator with a centre of two receiver
nodes (host_sim/tcp.py ModelTcp with nodes): a dead or cut-off node's
connection fails with a reason the failover rule reads ("open..."), and
set_receiver() moves the next delivery to the other node, closing the old
socket first (AT+CIPCLOSE before AT+CIPOPEN)."""

from host_sim.endpoint import VerifyingEndpoint
from host_sim.modem import Sim7600
from host_sim.modem_rig import AlertDriver, Rig
from host_sim.network import Network
from host_sim.tcp import ModelTcp
from modem_world import CFG, KEYS, alert

A = ("203.0.113.5", 5000)
B = ("203.0.113.6", 5000)


class Node:
    def __init__(self):
        self.ep = VerifyingEndpoint(KEYS)
        self.state = "up"

    def on_tcp_frame(self, raw, now):
        return self.ep.on_tcp_frame(raw, now) if self.state == "up" else []


def world():
    net = Network(seed=3)
    nodes = {A: Node(), B: Node()}
    tcp = ModelTcp(net, None, nodes)
    emu = Sim7600(None, net, tcp=tcp, seed=3)
    rig = Rig(emu, dict(CFG))
    return rig, emu, tcp, nodes


def _lines(emu):
    return [b.decode("latin-1").strip() for (_, d, b) in emu.transcript if d == ">" and b.startswith(b"AT")]


def test_a_refused_connection_is_reported_as_an_open_failure():
    rig, emu, tcp, nodes = world()
    d = AlertDriver(rig, KEYS, alert(1))
    d.run(rig.now + 120000)
    assert d.acked_at is not None and nodes[A].ep.verified  # the first node, as configured
    nodes[A].state = "kill"
    tcp.node_failed(nodes[A], rig.now)  # its host resets the open connection
    assert rig.run_until(lambda: not rig.transport.engine.sock, rig.now + 5000)  # +IPCLOSE seen
    d2 = AlertDriver(rig, KEYS, alert(2))
    assert rig.run_until(lambda: (d2.tick(), d2.failures)[1], rig.now + 5000)
    assert d2.acked_at is None
    assert d2.failures[0][1].startswith("open"), d2.failures  # refused: the receiver, not the network
    assert rig.transport.data_ready()


def test_a_cut_off_node_times_the_open_out_as_an_open_failure():
    rig, emu, tcp, nodes = world()
    nodes[A].state = "cut"
    d = AlertDriver(rig, KEYS, alert(1), retry_ms=2000)
    d.run(rig.now + 30000)
    assert d.acked_at is None and d.failures and d.failures[0][1].startswith("open"), d.failures
    assert rig.transport.data_ready()  # the data path itself is fine: only this receiver is unreachable


def test_set_receiver_closes_the_old_socket_and_the_same_frame_reaches_the_other_node():
    rig, emu, tcp, nodes = world()
    d = AlertDriver(rig, KEYS, alert(1))
    d.run(rig.now + 120000)
    assert d.acked_at is not None
    n = len(_lines(emu))
    nodes[A].state = "cut"  # silence on the open connection: frames vanish, no reset
    rig.transport.set_receiver(*B)
    d2 = AlertDriver(rig, KEYS, alert(2))
    d2.run(rig.now + 60000)
    assert d2.acked_at is not None, d2.failures
    after = _lines(emu)[n:]
    close = after.index("AT+CIPCLOSE=0")
    opened = after.index('AT+CIPOPEN=0,"TCP","%s",%d' % B)
    assert close < opened  # the socket to A closed before the one to B opened
    assert [f.seq for (_, _, f) in nodes[B].ep.verified] == [2]
    assert [f.seq for (_, _, f) in nodes[A].ep.verified] == [1]
    rig.transport.set_receiver(*B)  # the same receiver again: nothing to close
    d3 = AlertDriver(rig, KEYS, alert(3))
    m = len(_lines(emu))
    d3.run(rig.now + 60000)
    assert d3.acked_at is not None and "AT+CIPCLOSE=0" not in _lines(emu)[m:]
