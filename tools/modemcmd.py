"""`panic modem`: one ALERT through the firmware's modem engine and the
SIM7600 emulator in virtual time, with any emulator fault, printing what
happened (and with --transcript the AT dialogue).

    panic modem --fault garbage_p=0.1 --fault 'coverage=[[0,"none"],[60000,"full"]]' --transcript

Fault values are JSON (numbers, strings, lists); names are those of
host_sim/modem.py DEFAULTS. Network: --latency, --jitter, --loss, --outage.
"""

import json

from host_sim.endpoint import VerifyingEndpoint
from host_sim.modem import DEFAULTS, Sim7600
from host_sim.modem_rig import AlertDriver, Rig
from host_sim.network import Network
from protocol import frame as F
from protocol.crypto import DeviceKeys
from panic.argtypes import number


def _fault(text):
    from tools.cli import UsageError

    name, sep, value = text.partition("=")
    if not sep or name not in DEFAULTS:
        raise UsageError("unknown fault %r (known: %s)" % (name, ", ".join(sorted(DEFAULTS))))
    try:
        v = json.loads(value)
    except ValueError:
        v = value  # a bare word: a string such as sim=missing
    if isinstance(v, list):
        v = [tuple(x) if isinstance(x, list) else x for x in v]
    return name, v


def _outage(text):
    from tools.cli import UsageError

    try:
        a, b = (int(x) for x in text.split(","))
    except ValueError:
        raise UsageError("--outage wants START_MS,END_MS, got %r" % text)
    return (a, b)


def cmd_modem(args):
    from tools.cli import UsageError

    faults = dict(_fault(f) for f in args.fault)
    try:
        net = Network(seed=args.seed, up_ms=args.latency, down_ms=args.latency, jitter_ms=args.jitter,
                      loss=args.loss, outages=[_outage(o) for o in args.outage])
    except ValueError as e:
        raise UsageError(str(e))
    keys = DeviceKeys(bytes(range(32)))  # a demonstration key, never a device's
    ep = VerifyingEndpoint(keys)
    try:
        emu = Sim7600(ep, net, seed=args.seed, **faults)
    except (ValueError, TypeError) as e:
        raise UsageError(str(e))
    rig = Rig(emu, {"apn": "internet", "receiver_host": "203.0.113.5", "receiver_port": 5000,
                    "pin": args.pin})
    rep = F.Report(F.SRC_GNSS, 515007292, -1246254, 4, 0, 87, 21)
    frame = F.Frame(F.ALERT, 1001, 1, 800000000, rep)
    d = AlertDriver(rig, keys, frame, sms_after_ms=args.sms_after)
    d.run(args.limit * 1000)
    if args.transcript:
        for t, way, data in emu.transcript:
            print("%9.3f %s %r" % (t / 1000.0, "->" if way == ">" else "<-", data))
    for t, ev in rig.events:
        if ev[0] == "frame":
            ev = ("frame", "%d bytes" % len(ev[1]))
        print("%9.3f engine %s" % (t / 1000.0, ev))
    for e in emu.events:
        print("%9.3f modem  %s" % (e[0] / 1000.0, e[1:]))
    print("stats: %s" % rig.transport.stats())
    if d.acked_at is not None:
        print("ALERT delivered by TCP, ACK verified after %.3f s" % (d.acked_at / 1000.0))
        return 0
    if ep.verified:
        print("ALERT delivered by SMS after %.3f s" % (ep.verified[0][0] / 1000.0))
        return 0
    print("ALERT not delivered within %d s" % args.limit)
    return 1


def register(sub):
    p = sub.add_parser("modem", help="run an ALERT through the modem engine and the SIM7600 emulator")
    p.add_argument("--fault", action="append", default=[], metavar="NAME=VALUE", help="emulator fault (JSON value)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--latency", type=number(int, 0, unit="milliseconds"), default=60, help="one-way network latency, ms")
    p.add_argument("--jitter", type=number(int, 0, unit="milliseconds"), default=20, help="ms")
    p.add_argument("--loss", type=number(float, 0.0, 1.0), default=0.0, help="segment loss probability")
    p.add_argument("--outage", action="append", default=[], metavar="START_MS,END_MS")
    p.add_argument("--pin", default=None, help="SIM PIN to configure")
    p.add_argument("--sms-after", type=number(int, 0, unit="milliseconds"), default=90000, help="ms before falling back to SMS")
    p.add_argument("--limit", type=number(int, 1, unit="seconds"), default=900, help="virtual seconds to run")
    p.add_argument("--transcript", action="store_true", help="print the AT dialogue")
    p.set_defaults(func=cmd_modem)
