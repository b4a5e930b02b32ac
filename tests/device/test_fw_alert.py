"""Alert controller: the transition table and what each frame carries
(position and its provenance, cell, Wi-Fi, broken sensors). Every frame is
checked with protocol.frame.decode. Timers, ACK commands and restore are in
test_fw_alert_timers.py (two files, so each fits the 96 KB MicroPython heap)."""

from alert_env import CELL, LAST, LIVE, Env, frames, make
from fw_fakes import DEV, Position
from mpcheck import raises

from firmware import alert as A
from protocol import frame as F


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


def test_alert_without_gnss_carries_the_cell_and_never_waits():
    ctl, ob, fs = make(Env(None))
    ctl.fire(A.SOS, 0)
    r = frames(ob, F.ALERT)[0].body
    assert r.source == F.SRC_NONE and r.tlv_values(F.T_CELL) == [CELL]  # an observation, not a position


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
    assert r.source == F.SRC_NONE and r.tlv_values(F.T_CELL) == [CELL] and ctl.state == A.ALERTING


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
