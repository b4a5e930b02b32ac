"""Alert controller: timers (TRACK interval, first live fix, heartbeat,
low battery), ACK commands (tracking, stand-down, listen-in), duress, TEST,
and restore after a reset. Every frame is checked with
protocol.frame.decode."""

from alert_env import LIVE, Env, frames, make
from fw_fakes import DEV, KEYS

from firmware import alert as A
from firmware.fs import MemFs
from protocol import frame as F


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
