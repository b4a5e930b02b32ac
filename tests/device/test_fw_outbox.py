"""Outbox: retry until an authenticated ACK, priorities, coalescing, the
drop policy, SMS fallback."""

from fw_fakes import DEV, KEYS, T0

from fw_world import FakeReceiver

from fake_transport import FakeTransport
from firmware.fs import MemFs
from firmware.outbox import Outbox
from protocol import frame as F
from protocol.crypto import DeviceKeys
from protocol.sms import SMS_MAX_FRAME, from_sms

OTHER = DeviceKeys(bytes(range(1, 33)))


def seal(ftype, seq, tlvs=None, keys=KEYS):
    r = F.Report(F.SRC_GNSS, 515007292, -1246254, 5, 0, 80, 20, tlvs=F.sms_order(tlvs or []))
    return F.encode(keys, F.Frame(ftype, DEV, seq, T0, r))


def make(rx=None, **kw):
    t = FakeTransport(rx.deliver if rx else None, rx.deliver_sms if rx else None)
    fs = MemFs()
    ob = Outbox(fs, KEYS, t, kw.pop("sms", "+447700900001"), rand=lambda n: n // 2, device_id=DEV, **kw)
    return ob, t, fs


def run(ob, t, now):
    t.poll(now)
    for e in t.events():
        if e[0] == "frame":
            ob.on_frame(e[1], now)
        else:
            ob.on_event(e, now)
    return ob.pump(now)


def test_alert_is_on_flash_before_it_is_sent_and_gone_after_ack():
    rx = FakeReceiver()
    ob, t, fs = make(rx)
    ob.add(F.ALERT, 5, seal(F.ALERT, 5), 0)
    assert "o00000005" in fs.files and t.sent == []
    run(ob, t, 0)
    assert len(t.sent) == 1
    run(ob, t, 10)  # the ACK event
    assert ob.count() == 0 and "o00000005" not in fs.files


def test_track_and_heartbeat_stay_in_ram():
    ob, t, fs = make()
    ob.add(F.TRACK, 1, seal(F.TRACK, 1), 0)
    ob.add(F.HEARTBEAT, 2, seal(F.HEARTBEAT, 2), 0)
    assert fs.writes == 0 and ob.count() == 2


def test_retries_back_off_exponentially_until_an_ack():
    rx = FakeReceiver()
    ob, t, fs = make(rx, backoff_base_ms=1000, backoff_max_ms=8000, sms_after_ms=10 ** 9)
    rx.ack_types = ()  # the receiver never answers
    ob.add(F.ALERT, 9, seal(F.ALERT, 9), 0)
    for now in range(0, 60000, 100):
        run(ob, t, now)
    times = [s[0] for s in t.sent]
    gaps = [times[i + 1] - times[i] for i in range(len(times) - 1)]
    # equal jitter with rand = n//2: 3/4 of the nominal delay, capped at 8 s
    assert gaps[:4] == [800, 1500, 3000, 6000], gaps
    assert all(g == 6000 for g in gaps[4:])
    rx.ack_types = None
    for now in range(60000, 80000, 100):
        run(ob, t, now)
    assert ob.count() == 0


def test_jitter_stays_within_half_to_full_delay():
    import random

    ob, t, fs = make(backoff_base_ms=2000, backoff_max_ms=60000)
    ob.rand = lambda n: random.getrandbits(16) % n
    for n in range(1, 12):
        for _ in range(20):
            d = ob._backoff(n)
            nominal = min(2000 << (n - 1), 60000)
            assert nominal // 2 <= d <= nominal, (n, d)


def test_garbage_forged_and_foreign_acks_never_stop_a_retry():
    rx = FakeReceiver()
    rx.ack_types = ()
    ob, t, fs = make(rx, backoff_base_ms=1000, sms_after_ms=10 ** 9)
    ob.add(F.ALERT, 7, seal(F.ALERT, 7), 0)
    run(ob, t, 0)
    good = rx.ack_for(7)
    forged = rx.ack_for(7, keys=OTHER)
    flipped = bytearray(good)
    flipped[20] ^= 1
    wrong_seq = rx.ack_for(8)
    uplink = seal(F.ALERT, 7)  # a valid frame, wrong direction
    for junk in (b"", b"\x00" * 40, forged, bytes(flipped), good[:-1], wrong_seq, uplink, good + b"x"):
        t.inject(junk, 1)
        run(ob, t, 1)
    assert ob.count() == 1
    assert ob.rejected == 7 and ob.unmatched == 1
    n = len(t.sent)
    run(ob, t, 5000)
    assert len(t.sent) == n + 1  # still retrying
    t.inject(good, 5001)
    run(ob, t, 5001)
    assert ob.count() == 0


def test_ack_from_another_device_id_is_rejected():
    ob, t, fs = make()
    ob.add(F.ALERT, 3, seal(F.ALERT, 3), 0)
    other = F.encode(KEYS, F.Frame(F.ACK, DEV + 1, 1, T0, F.Ack(3)))
    t.inject(other, 0)
    run(ob, t, 0)
    assert ob.count() == 1 and ob.rejected == 1


def test_priorities_alert_cancel_then_track_status_heartbeat():
    ob, t, fs = make()
    t.data_up = False
    ob.add(F.HEARTBEAT, 1, seal(F.HEARTBEAT, 1), 0)
    ob.add(F.STATUS, 2, seal(F.STATUS, 2), 0)
    ob.add(F.TRACK, 3, seal(F.TRACK, 3), 0)
    ob.add(F.ALERT, 4, seal(F.ALERT, 4), 0)
    ob.add(F.CANCEL, 5, seal(F.CANCEL, 5), 0)
    ob.add(F.TEST, 6, seal(F.TEST, 6), 0)
    t.data_up = True
    t.sms_up = False
    t.latency_ms = 10  # one frame at a time
    for now in range(0, 100, 10):
        run(ob, t, now)
    order = [F.peek(raw)[2] for _, raw in t.sent]
    assert order == [4, 5, 3, 2, 6, 1], order


def test_new_track_replaces_older_tracks():
    ob, t, fs = make()
    t.data_up = False
    for s in (1, 2, 3):
        ob.add(F.TRACK, s, seal(F.TRACK, s), s)
    assert [e.seq for e in ob.entries] == [3]


def test_ack_of_a_replaced_but_transmitted_track_still_carries_commands():
    rx = FakeReceiver()
    rx.ack_types = ()
    ob, t, fs = make(rx)
    ob.add(F.TRACK, 1, seal(F.TRACK, 1), 0)
    run(ob, t, 0)
    ob.add(F.TRACK, 2, seal(F.TRACK, 2), 100)
    t.inject(rx.ack_for(1, [(F.C_TRACKING, 10)]), 200)
    t.poll(200)
    got = [ob.on_frame(e[1], 200) for e in t.events() if e[0] == "frame"]
    assert got[0][0] == F.TRACK and got[0][1].body.commands == [(F.C_TRACKING, 10)]


def test_replayed_old_ack_commands_are_ignored():
    rx = FakeReceiver()
    rx.ack_types = ()
    ob, t, fs = make(rx)
    ob.add(F.ALERT, 1, seal(F.ALERT, 1), 0)
    ob.add(F.CANCEL, 2, seal(F.CANCEL, 2), 0)
    late = rx.ack_for(2, [(F.C_LISTEN_IN, None)], down=500)
    early = rx.ack_for(1, [(F.C_LISTEN_IN, None)], down=400)
    assert ob.on_frame(late, 0)[1].body.commands == [(F.C_LISTEN_IN, None)]
    ftype, fr = ob.on_frame(early, 0)  # still removes the ALERT
    assert ftype == F.ALERT and fr.body.commands == [] and ob.count() == 0


def test_commands_on_the_ack_of_a_retransmission_are_acted_on_once():
    # the ALERT was sent twice (slow first ACK); the receiver put a listen-in
    # on its ACK of the second copy: the device must still place the call
    rx = FakeReceiver()
    rx.ack_types = ()
    ob, t, fs = make(rx)
    ob.add(F.ALERT, 1, seal(F.ALERT, 1), 0)
    first = rx.ack_for(1, [], down=10)
    second = rx.ack_for(1, [(F.C_LISTEN_IN, None)], down=11)
    assert ob.on_frame(first, 0)[0] == F.ALERT and ob.count() == 0
    ftype, fr = ob.on_frame(second, 0)
    assert ftype is None and fr.body.commands == [(F.C_LISTEN_IN, None)]
    # the same ACK again (a replay) acts on nothing; one without commands is unmatched
    assert ob.on_frame(second, 0) is None
    assert ob.on_frame(rx.ack_for(1, [], down=12), 0) is None and ob.unmatched == 2


def test_bound_drops_heartbeat_then_status_then_track_never_alert_or_cancel():
    ob, t, fs = make(limit=4)
    t.data_up = False
    ob.add(F.HEARTBEAT, 1, seal(F.HEARTBEAT, 1), 0)
    ob.add(F.STATUS, 2, seal(F.STATUS, 2), 0)
    ob.add(F.STATUS, 3, seal(F.STATUS, 3), 0)
    ob.add(F.TRACK, 4, seal(F.TRACK, 4), 0)
    ob.add(F.ALERT, 5, seal(F.ALERT, 5), 0)  # full: the heartbeat goes
    assert sorted(e.seq for e in ob.entries) == [2, 3, 4, 5]
    ob.add(F.CANCEL, 6, seal(F.CANCEL, 6), 0)  # the oldest STATUS goes
    assert sorted(e.seq for e in ob.entries) == [3, 4, 5, 6]
    ob.add(F.ALERT, 7, seal(F.ALERT, 7), 0)
    ob.add(F.CANCEL, 8, seal(F.CANCEL, 8), 0)  # STATUS, then TRACK went
    assert sorted(e.seq for e in ob.entries) == [5, 6, 7, 8]
    ob.add(F.ALERT, 9, seal(F.ALERT, 9), 0)  # only critical left: admitted above the bound
    assert sorted(e.seq for e in ob.entries) == [5, 6, 7, 8, 9]
    assert ob.add(F.HEARTBEAT, 10, seal(F.HEARTBEAT, 10), 0) is None  # nothing less important to drop
    assert ob.add(F.TRACK, 11, seal(F.TRACK, 11), 0) is None
    assert ob.dropped == 6
    assert all(("o%08x" % s) in fs.files for s in (5, 6, 7, 8, 9))


def test_sms_fallback_after_timeout_while_data_retries_go_on():
    rx = FakeReceiver()
    rx.ack_types = ()  # data reaches the receiver but ACKs never come back
    ob, t, fs = make(rx, sms_after_ms=20000, backoff_base_ms=4000)
    wifi = [(F.T_WIFI, (bytes([i] * 6), -60 - i)) for i in range(3)]
    cells = [(F.T_CELL, (234, 15, 1, 100 + i, -90)) for i in range(3)]
    raw = seal(F.ALERT, 11, cells + wifi + [(F.T_GNSS, (7, 12))])
    assert len(raw) > SMS_MAX_FRAME
    ob.add(F.ALERT, 11, raw, 0, sms=True)
    for now in range(0, 19900, 100):
        run(ob, t, now)
    assert t.sms == []
    for now in range(19900, 40000, 100):
        run(ob, t, now)
    assert len(t.sms) == 1  # once, not every retry
    assert t.sms[0][1] == "+447700900001"
    fr = rx.sms_frames[0]
    full = F.decode(KEYS, raw, F.UPLINK)
    assert fr.seq == 11 and fr.ftype == F.ALERT
    # the SMS body is a prefix of the full body: same first cell, motion/gnss kept
    assert fr.body.tlvs == full.body.tlvs[: len(fr.body.tlvs)]
    assert fr.body.tlv_values(F.T_CELL)[0] == (234, 15, 1, 100, -90)
    n = len(t.sent)
    for now in range(40000, 80000, 100):
        run(ob, t, now)
    assert len(t.sent) > n and ob.count() == 1  # data retries continue


def test_sms_only_when_data_refused():
    rx = FakeReceiver()
    ob, t, fs = make(rx, sms_after_ms=20000)
    t.data_up = False
    ob.add(F.ALERT, 1, seal(F.ALERT, 1), 0, sms=True)
    ob.add(F.HEARTBEAT, 2, seal(F.HEARTBEAT, 2), 0)
    for now in range(0, 30000, 500):
        run(ob, t, now)
    assert t.sent == [] and len(t.sms) == 1
    assert from_sms(t.sms[0][2]) == seal(F.ALERT, 1)
    t.data_up = True
    for now in range(30000, 40000, 500):
        run(ob, t, now)
    assert ob.count() == 0  # data came back: both delivered and ACKed


def test_failed_sms_is_retried():
    rx = FakeReceiver()
    ob, t, fs = make(rx, sms_after_ms=1000, backoff_base_ms=2000)
    t.data_up = False
    t.fail_sms = 2
    ob.add(F.CANCEL, 1, seal(F.CANCEL, 1), 0, sms=True)
    for now in range(0, 30000, 250):
        run(ob, t, now)
    assert len(t.sms) == 1 and ob.sms_sent == 1 and len(rx.sms_frames) == 1


def test_coalesced_track_hands_its_sms_fallback_on():
    rx = FakeReceiver()
    ob, t, fs = make(rx, sms_after_ms=20000)
    t.data_up = False
    ob.add(F.TRACK, 1, seal(F.TRACK, 1), 0, sms=True)
    for s in (2, 3):  # tracking every 10 s replaces it before its SMS is due
        ob.add(F.TRACK, s, seal(F.TRACK, s), s * 10000 - 10000)
        run(ob, t, s * 10000 - 10000)
    run(ob, t, 20000)
    assert [F.decode(KEYS, from_sms(x[2])).seq for x in t.sms] == [3]


def test_no_sms_number_means_no_sms():
    ob, t, fs = make(sms="")
    t.data_up = False
    ob.add(F.ALERT, 1, seal(F.ALERT, 1), 0, sms=True)
    for now in range(0, 60000, 1000):
        run(ob, t, now)
    assert t.sms == []


def test_reload_after_reset_keeps_every_persisted_entry():
    ob, t, fs = make()
    t.data_up = False
    ob.add(F.ALERT, 20, seal(F.ALERT, 20), 0, sms=True)
    ob.add(F.TRACK, 21, seal(F.TRACK, 21), 0)
    ob.add(F.CANCEL, 22, seal(F.CANCEL, 22), 0, sms=True)
    ob.add(F.TEST, 23, seal(F.TEST, 23), 0)
    ob2 = Outbox(fs, KEYS, t, "+1234", device_id=DEV)
    assert ob2.load(5) == 23
    assert sorted((e.seq, e.ftype) for e in ob2.entries) == [(20, F.ALERT), (22, F.CANCEL), (23, F.TEST)]
    assert ob2.find(20).raw == seal(F.ALERT, 20)
    assert ob2.find(20).sms_at == 5 + ob2.sms_after


def test_corrupt_entry_file_is_counted_and_left_alone():
    fs = MemFs({"o00000009": b"\x01" * 50, "o0000000a": seal(F.ALERT, 11), "other": b"x"})
    ob = Outbox(fs, KEYS, FakeTransport(), device_id=DEV)
    assert ob.load(0) == 10
    assert ob.corrupt == 2 and ob.count() == 0
    assert "o00000009" in fs.files


def test_busy_transport_is_never_hammered():
    ob, t, fs = make()
    t.latency_ms = 5000
    ob.add(F.ALERT, 1, seal(F.ALERT, 1), 0)
    ob.add(F.ALERT, 2, seal(F.ALERT, 2), 0)
    run(ob, t, 0)
    run(ob, t, 100)
    assert len(t.sent) == 1



def test_a_due_frame_with_no_path_waits_for_the_link_not_a_one_second_recheck():
    # no data link and no SMS: nothing to try, so the outbox does not ask to
    # run again within the second (an alert in a coverage gap woke the
    # device every second for nothing); the link coming back is a transport
    # event, and the step that sees it pumps and sends at once
    rx = FakeReceiver()
    ob, t, fs = make(rx)
    t.data_up = False
    t.sms_up = False
    ob.add(F.ALERT, 5, seal(F.ALERT, 5), 0)
    assert run(ob, t, 0) >= 10000 and t.sent == []
    t.set_link(True, 2500)
    run(ob, t, 2500)
    assert len(t.sent) == 1
