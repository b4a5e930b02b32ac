"""Shared by the alert controller's device tests (test_fw_alert*.py): the
controller's environment (position, cell, battery, clock) as a fake, and a
controller wired to a real outbox and stores on a RAM filesystem."""

from fw_fakes import DEV, KEYS, Position, make_config

from firmware import alert as A
from firmware.fs import MemFs
from firmware.outbox import Outbox
from firmware.store import SeqStore, StateStore
from protocol import frame as F

CELL = (234, 15, 0x1A2B, 0x01234567, -95)
LIVE = Position(F.SRC_GNSS, 515007292, -1246254, 4, 0, 35, 120, 9000, 7, 12)
LAST = Position(F.SRC_LAST_FIX, 515000000, -1240000, 9, 310)


class Env:
    def __init__(self, pos=None, cell=CELL):
        self.pos = pos
        self.cell_v = cell
        self.batt = 80

    def position(self, now):
        return self.pos

    def cell(self, now=None):
        return self.cell_v

    def csq(self):
        return 17

    def battery_pct(self):
        return self.batt

    def unix(self, now):
        return 1795900000 + now // 1000


class Offline:
    """A transport with no network (firmware/transport.py): these tests look
    at what the controller queues in the outbox, never at transmissions."""

    def data_ready(self):
        return False

    def sms_ready(self):
        return False

    def busy(self):
        return False


def make(env=None, fs=None, **cfg):
    fs = fs or MemFs()
    c = make_config(**cfg)
    t = Offline()
    ob = Outbox(fs, KEYS, t, c.sms_number, device_id=DEV, rand=lambda n: n // 2)
    ctl = A.AlertController(c, KEYS, SeqStore(fs), ob, StateStore(fs), env or Env(), rand=lambda n: n // 2)
    return ctl, ob, fs


def frames(ob, ftype=None):
    out = [F.decode(KEYS, e.raw, F.UPLINK) for e in ob.entries]
    return [f for f in out if ftype is None or f.ftype == ftype]
