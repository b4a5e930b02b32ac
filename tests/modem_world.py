"""Shared set-up for the host tests of the modem engine against the emulator."""

from host_sim.endpoint import VerifyingEndpoint
from host_sim.modem import Sim7600
from host_sim.modem_rig import AlertDriver, Rig
from host_sim.network import Network
from protocol import frame as F
from protocol.crypto import DeviceKeys

KEYS = DeviceKeys(bytes(range(32)))
CFG = {"apn": "internet", "receiver_host": "203.0.113.5", "receiver_port": 5000}
DEVICE = 1001


def alert(seq=1, ftype=F.ALERT):
    rep = F.Report(F.SRC_GNSS, 515007292, -1246254, 4, 0, 87, 21,
                   tlvs=F.sms_order([(F.T_CELL, (234, 15, 0x1A2B, 0x01C2D3E4, -97)), (F.T_GNSS, (9, 11))]))
    return F.Frame(ftype, DEVICE, seq, 800000000 + seq, rep)


class World:
    def __init__(self, net=None, cfg=None, seed=7, **faults):
        self.ep = VerifyingEndpoint(KEYS)
        self.net = net if net is not None else Network(seed=seed)
        self.emu = Sim7600(self.ep, self.net, seed=seed, **faults)
        c = dict(CFG)
        c.update(cfg or {})
        self.rig = Rig(self.emu, c)
        self.t = self.rig.transport

    def deliver(self, frame=None, limit_ms=600000, **kw):
        d = AlertDriver(self.rig, KEYS, frame or alert(), **kw)
        d.run(limit_ms)
        return d

    def assert_delivered(self, d):
        assert d.acked_at is not None, ("no ACK", d.failures, self.rig.events[-10:], self.t.stats())
        got = [f for (_, via, f) in self.ep.verified if f.seq == d.frame.seq]
        assert got and got[0] == d.frame
        return d.acked_at - d.start

    def sent_lines(self):
        return [b for (_, d, b) in self.emu.transcript if d == ">"]

    def events(self, kind):
        return [e for e in self.emu.events if e[1] == kind]
