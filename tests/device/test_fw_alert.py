"""Alert controller: the transition table, what each frame carries, timers
and ACK commands. Every frame is checked with protocol.frame.decode."""

from fw_fakes import DEV, IN_PLACE, KEYS, Position, delegate, make_config
from mpcheck import raises

from protocol import frame as F

if IN_PLACE:
    from firmware import alert as A
    from firmware.fake_transport import FakeTransport
    from firmware.fs import MemFs
    from firmware.outbox import Outbox
    from firmware.store import SeqStore, StateStore

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

    def cell(self):
        return self.cell_v

    def csq(self):
        return 17

    def battery_pct(self):
        return self.batt

    def unix(self, now):
        return 1795900000 + now // 1000


def make(env=None, fs=None, **cfg):
    fs = fs or MemFs()
    c = make_config(**cfg)
    t = FakeTransport()
    t.data_up = False
    ob = Outbox(fs, KEYS, t, c.sms_number, device_id=DEV, rand=lambda n: n // 2)
    ctl = A.AlertController(c, KEYS, SeqStore(fs), ob, StateStore(fs), env or Env(), rand=lambda n: n // 2)
    return ctl, ob, fs


def frames(ob, ftype=None):
    out = [F.decode(KEYS, e.raw, F.UPLINK) for e in ob.entries]
    return [f for f in out if ftype is None or f.ftype == ftype]


def test_every_illegal_pair_raises_naming_state_and_event():
    ctl, ob, fs = make()
    n = 0
    for st in range(4):
        for ev in range(1, 7):
            if (st, ev) in A.TABLE:
                continue
            ctl.state = st
            e = raises(A.LocalError, ctl.fire, ev, 0)
            assert A.STATE_NAMES[st] in str(e) and A.EVENT_NAMES[ev] in str(e)
            n += 1
    assert n == 24 - len(A.TABLE)


def test_table_diagram_lists_every_transition():
    lines = A.diagram()
    assert len(lines) == len(A.TABLE)
    assert any("IDLE" in ln and "SOS" in ln and "ALERTING" in ln for ln in lines)


def test_alert_with_live_fix_carries_position_motion_quality_and_cell():
    ctl, ob, fs = make(Env(LIVE))
    ctl.fire(A.SOS, 1000)
    (fr,) = frames(ob, F.ALERT)
    r = fr.body
    assert fr.device_id == DEV and fr.time == 1795900001
    assert (r.source, r.lat, r.lon, r.accuracy, r.age) == (F.SRC_GNSS, 515007292, -1246254, 4, 0)
    assert r.tlv_values(F.T_CELL) == [CELL]
    assert r.tlv_values(F.T_MOTION) == [(35, 120, 9000)]
    assert r.tlv_values(F.T_GNSS) == [(7, 12)]
    assert r.battery == 80 and r.csq == 17 and not r.duress and not r.test
    assert ob.find(fr.seq).sms == 1  # asks for SMS fallback
    assert "o%08x" % fr.seq in fs.files  # on flash


def test_alert_with_last_fix_says_so_and_its_age():
    ctl, ob, fs = make(Env(LAST))
    ctl.fire(A.SOS, 0)
    r = frames(ob, F.ALERT)[0].body
    assert (r.source, r.age, r.accuracy) == (F.SRC_LAST_FIX, 310, 9)


def test_alert_without_gnss_uses_the_cell_and_never_waits():
    ctl, ob, fs = make(Env(None))
    ctl.fire(A.SOS, 0)
    r = frames(ob, F.ALERT)[0].body
    assert r.source == F.SRC_CELL and (r.lat, r.lon) == (0, 0) and r.tlv_values(F.T_CELL) == [CELL]


def test_alert_with_nothing_known_still_goes():
    ctl, ob, fs = make(Env(None, None))
    ctl.fire(A.SOS, 0)
    r = frames(ob, F.ALERT)[0].body
    assert r.source == F.SRC_NONE and r.tlvs == []


def test_broken_sensor_values_never_cost_the_alert():
    for cell in ((234, 15, 1, 2, -99999), (1, 2), "garbage", (None,) * 5):
        ctl, ob, fs = make(Env(LIVE, cell))
        ctl.fire(A.SOS, 0)
        r = frames(ob, F.ALERT)[0].body
        assert r.source == F.SRC_GNSS and r.tlv_values(F.T_CELL) == []
        assert r.tlv_values(F.T_MOTION) == [(35, 120, 9000)]  # the rest survives
    wild = Position(F.SRC_GNSS, 515007292, -1246254, 70000, 99999, 40000, 70000, 36000, 300, 999)
    ctl, ob, fs = make(Env(wild))
    ctl.fire(A.SOS, 0)
    r = frames(ob, F.ALERT)[0].body
    assert (r.accuracy, r.age) == (0xFFFE, 0xFFFE)
    assert r.tlv_values(F.T_MOTION) == [(32767, 65535, 35999)] and r.tlv_values(F.T_GNSS) == [(255, 255)]
    assert r.tlv_values(F.T_CELL) == [CELL]
    bad = Position(F.SRC_GNSS, 10 ** 10, 0)  # a position no frame can carry
    ctl, ob, fs = make(Env(bad))
    ctl.fire(A.SOS, 0)
    r = frames(ob, F.ALERT)[0].body
    assert r.source == F.SRC_CELL and r.tlv_values(F.T_CELL) == [CELL] and ctl.state == A.ALERTING


def test_wifi_only_during_an_alert_three_strongest_then_a_track():
    ctl, ob, fs = make(Env(None))
    assert not ctl.want_scan(0)
    ctl.fire(A.SOS, 0)
    assert ctl.want_scan(0)
    scan = [(bytes([i] * 6), -90 + 10 * i) for i in range(5)] + [(b"short", -10), ("x", "y")]
    ctl.on_scan(scan, 10)
    assert not ctl.want_scan(20)
    ctl.step(10)
    (tr,) = frames(ob, F.TRACK)
    assert [w[0] for w in tr.body.tlv_values(F.T_WIFI)] == [bytes([4] * 6), bytes([3] * 6), bytes([2] * 6)]
    assert tr.body.tlvs[0][0] == F.T_CELL  # SMS order: wifi last
    assert ctl.want_scan(10 + 120000)
    ctl.fire(A.CANCEL, 200000)
    assert not ctl.want_scan(400000)
    assert frames(ob, F.CANCEL)[0].body.tlv_values(F.T_WIFI)  # still part of the alert


def test_wifi_disabled_by_config():
    ctl, ob, fs = make(Env(None), wifi_scan=False)
    ctl.fire(A.SOS, 0)
    assert not ctl.want_scan(0)
    ctl2, ob2, _ = make(Env(None), fs=fs, wifi_scan=False)
    ctl2.restore(ctl2.states.load(), 1000)  # after a reset mid-alert
    assert ctl2.active() and not ctl2.want_scan(1000)
    ctl2.step(1000)
    assert ctl2.step(1001) > 0  # no timer stuck in the past: the loop can sleep


def test_track_every_interval_and_ack_command_changes_it():
    ctl, ob, fs = make(Env(LIVE))
    ctl.fire(A.SOS, 0)
    seqs = []
    for now in range(0, 95000, 1000):
        ctl.step(now)
        seqs += [f.seq for f in frames(ob, F.TRACK) if f.seq not in seqs]
    assert len(seqs) == 3  # 30, 60, 90 s
    ack = F.decode(KEYS, F.encode(KEYS, F.Frame(F.ACK, DEV, 5, 0, F.Ack(seqs[-1], [(F.C_TRACKING, 10)]))))
    ctl.on_ack(F.TRACK, ack, 95000)
    assert ctl.interval == 10 and fs.files["state"].split()[3] == b"10"
    for now in range(95000, 126000, 1000):
        ctl.step(now)
        seqs += [f.seq for f in frames(ob, F.TRACK) if f.seq not in seqs]
    assert len(seqs) == 6
    stop = F.Frame(F.ACK, DEV, 6, 0, F.Ack(seqs[-1], [(F.C_TRACKING, 0)]))
    ctl.on_ack(F.TRACK, stop, 126000)
    for now in range(126000, 300000, 1000):
        ctl.step(now)
        seqs += [f.seq for f in frames(ob, F.TRACK) if f.seq not in seqs]
    assert len(seqs) == 6 and ctl.state == A.ALERTING


def test_first_live_fix_after_a_blind_alert_is_sent_at_once():
    env = Env(None)
    ctl, ob, fs = make(env)
    ctl.fire(A.SOS, 0)
    ctl.step(1000)
    assert frames(ob, F.TRACK) == []
    env.pos = LIVE
    ctl.step(2000)
    assert frames(ob, F.TRACK)[0].body.source == F.SRC_GNSS


def test_ack_of_the_alert_moves_to_tracking_then_stand_down_to_idle():
    ctl, ob, fs = make(Env(LIVE))
    ctl.fire(A.SOS, 0)
    ack = F.Frame(F.ACK, DEV, 1, 0, F.Ack(ctl.alert_seq))
    ctl.on_ack(F.ALERT, ack, 100)
    assert ctl.state == A.TRACKING and ctl.looks_active()
    ctl.on_ack(F.TRACK, F.Frame(F.ACK, DEV, 2, 0, F.Ack(99, [(F.C_STAND_DOWN, None)])), 200)
    assert ctl.state == A.IDLE and not ctl.active()
    # a late stand-down in idle is remote input: ignored, never raises
    ctl.on_ack(F.TRACK, F.Frame(F.ACK, DEV, 3, 0, F.Ack(99, [(F.C_STAND_DOWN, None)])), 300)
    assert ctl.state == A.IDLE


def test_listen_in_only_during_an_alert():
    ctl, ob, fs = make(Env(LIVE))
    cmd = F.Frame(F.ACK, DEV, 1, 0, F.Ack(1, [(F.C_LISTEN_IN, None)]))
    ctl.on_ack(F.STATUS, cmd, 0)
    assert ctl.actions == []
    ctl.fire(A.SOS, 0)
    ctl.on_ack(F.ALERT, cmd, 10)
    assert ctl.actions == [("call", "+447700900002")]


def test_duress_cancel_looks_like_a_cancel_and_keeps_tracking():
    plain, ob1, _ = make(Env(LIVE))
    plain.fire(A.SOS, 0)
    plain.fire(A.CANCEL, 5000)
    duress, ob2, fs = make(Env(LIVE))
    duress.fire(A.SOS, 0)
    duress.fire(A.DURESS, 5000)
    c1 = [e.raw for e in ob1.entries if e.ftype == F.CANCEL][0]
    c2 = [e.raw for e in ob2.entries if e.ftype == F.CANCEL][0]
    assert len(c1) == len(c2) and c1[:2] == c2[:2]
    assert not F.decode(KEYS, c1).body.duress and F.decode(KEYS, c2).body.duress
    assert plain.state == A.IDLE and duress.state == A.COVERT
    assert not duress.looks_active() and duress.active()
    for now in range(5000, 70000, 1000):
        plain.step(now)
        duress.step(now)
    assert frames(ob1, F.TRACK) == []
    tracks = frames(ob2, F.TRACK)
    assert tracks and all(t.body.duress for t in tracks)
    # a fresh SOS from the covert state is a new alert
    duress.fire(A.SOS, 80000)
    assert duress.state == A.ALERTING and len(frames(ob2, F.ALERT)) == 2


def test_heartbeat_in_idle_with_jitter_never_during_an_alert():
    for r, want in ((lambda n: 0, 3600 - 60), (lambda n: n - 1, 3600 + 60)):
        ctl, ob, fs = make(Env(None))
        ctl.rand = r
        ctl.restore(None, 0)
        for now in range(0, 3700000, 10000):
            ctl.step(now)
            if frames(ob, F.HEARTBEAT):
                break
        assert now // 1000 == want, (now, want)
        hb = frames(ob, F.HEARTBEAT)[0].body
        assert hb.tlv_values(F.T_WIFI) == []
    ctl, ob, fs = make(Env(None))
    ctl.restore(None, 0)
    ctl.fire(A.SOS, 1000)
    for now in range(0, 8000000, 60000):
        ctl.step(now)
    assert frames(ob, F.HEARTBEAT) == []


def test_low_battery_status_once_per_crossing():
    ctl, ob, fs = make(Env(None))
    for mv in (3600, 3490, 3450, 3550, 3610, 3400):
        ctl.check_battery(mv, 0)
    st = frames(ob, F.STATUS)
    assert [s.body.tlv_values(F.T_EVENT) for s in st] == [[(F.EV_LOW_BATTERY, 349)], [(F.EV_LOW_BATTERY, 340)]]
    assert all(s.body.battery_low for s in st)


def test_test_frame_is_marked_test():
    ctl, ob, fs = make(Env(LIVE))
    ctl.fire(A.TEST, 0)
    (t,) = frames(ob, F.TEST)
    assert t.body.test and ctl.state == A.IDLE


def test_restore_reconciles_a_reset_between_entry_and_state_record():
    fs = MemFs()
    ctl, ob, _ = make(Env(LIVE), fs=fs)
    ctl.fire(A.SOS, 0)
    del fs.files["state"]  # as if the reset came before the state write
    ctl2, ob2, _ = make(Env(LIVE), fs=fs)
    ob2.load(0)
    assert ctl2.restore(ctl2.states.load(), 0) and ctl2.state == A.ALERTING
    ctl2.fire(A.DURESS, 10)
    fs.files["state"] = b"A 1 0 30 %d\n" % ctl2.alert_seq  # CANCEL written, state not
    ctl3, ob3, _ = make(Env(LIVE), fs=fs)
    ob3.load(0)
    ctl3.restore(ctl3.states.load(), 0)
    assert ctl3.state == A.COVERT and ctl3.duress


delegate(globals(), "test_fw_alert")
