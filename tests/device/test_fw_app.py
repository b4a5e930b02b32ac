"""The whole device: button levels, GNSS bytes and a scripted network
through an ALERT, a lost ACK, SMS fallback, a reset in the middle, TRACK
updates and a duress cancel. Every frame the receiver gets (TCP or SMS) is
checked with protocol.frame.decode."""

from fw_child import IN_PLACE, delegate
from fw_fakes import make_config
from fw_world import FakeReceiver, make_app, presses, run_until

from protocol import frame as F

if IN_PLACE:  # else the tests run in a child VM (fw_child.py)
    from firmware import alert as A
    from firmware.fs import MemFs

HOME = b"FIX 515007292 -1246254\n"


def ack_cmd(rx, cmds):
    rx.commands = cmds


def test_whole_alert_life_through_lost_ack_sms_reset_tracking_and_duress():
    fs = MemFs()
    rx = FakeReceiver()
    app, board, tr = make_app(fs, rx)
    tr.board = board
    # outdoors first: a live fix, then indoors (the fix goes stale)
    board.gnss.feed(HOME[:7])
    run_until(app, board, 300)
    board.gnss.feed(HOME[7:])
    run_until(app, board, 5000)
    board.gnss.feed(b"NOFIX\n")
    run_until(app, board, 65000)
    assert rx.types() == ["STATUS"]  # boot STATUS, nothing else while idle
    boot = rx.frames[0].body.tlv_values(F.T_EVENT)
    assert boot[0][0] == F.EV_BOOT
    pins_before = board.output_pins()

    # SOS: 3 presses. The network takes the frame but every ACK is lost for 25 s
    tr.drop_acks = 1000
    t_sos = presses(app, board, 3, 65000)
    run_until(app, board, t_sos + 1500)
    alerts = rx.of(F.ALERT)
    assert len(alerts) == 1, rx.types()
    a = alerts[0].body
    assert a.source == F.SRC_LAST_FIX and (a.lat, a.lon) == (515007292, -1246254)
    assert 60 <= a.age <= 70 and a.tlv_values(F.T_CELL) == [tr.cell_info]
    alert_seq = alerts[0].seq
    run_until(app, board, t_sos + 26000)
    assert len(rx.of(F.ALERT)) >= 3  # data retries go on, same frame
    assert len(set(f.seq for f in rx.of(F.ALERT))) == 1
    assert [f.seq for f in rx.sms_frames if f.ftype == F.ALERT] == [alert_seq]  # SMS after 20 s, once
    sms_t = [s[0] for s in tr.sms]
    assert t_sos + 20000 <= sms_t[0] <= t_sos + 22000
    assert app.ctl.state == A.ALERTING

    # the network recovers: the next retry is ACKed, with a tracking command
    tr.drop_acks = 0
    ack_cmd(rx, [(F.C_TRACKING, 10)])
    run_until(app, board, t_sos + 60000)
    assert app.ctl.state == A.TRACKING and app.ctl.interval == 10
    assert app.outbox.count(F.ALERT) == 0
    assert not app.can_light_sleep()  # during an alert the UARTs must keep receiving

    # a reset in the middle: RAM gone, same flash
    n_before = len(rx.frames)
    board1 = board
    app, board, tr = make_app(fs, rx, now=0)
    tr.board = board
    board.gnss.feed(HOME)
    assert app.ctl.state == A.TRACKING and app.ctl.interval == 10
    run_until(app, board, 35000)
    after = rx.frames[n_before:]
    kinds = [f.name for f in after]
    assert kinds[0] in ("STATUS", "TRACK") and "ALERT" not in kinds
    tracks = [f for f in after if f.ftype == F.TRACK]
    assert len(tracks) >= 3  # one at boot, then every 10 s
    assert tracks[-1].body.source == F.SRC_GNSS
    assert all(t.seq > alert_seq for t in tracks)

    # duress cancel: 5 presses. Looks like a cancel; tracking goes on, silently
    t_d = presses(app, board, 5, 40000)
    run_until(app, board, t_d + 2000)
    cancels = rx.of(F.CANCEL)
    assert len(cancels) == 1 and cancels[0].body.duress
    assert app.ctl.state == A.COVERT and not app.button.active
    n = rx.count(F.TRACK)
    run_until(app, board, t_d + 40000)
    later = rx.of(F.TRACK, n)
    assert len(later) >= 3 and all(t.body.duress for t in later)

    # nothing a person could see or feel, ever: only modem control pins moved
    for b in (board1, board):
        assert b.haptics == 0
        assert b.output_pins()["led"] == pins_before["led"] == 0
    changed = set(name for _, name, _ in board1.pin_log + board.pin_log)
    assert "modem_dtr" in changed and changed <= set(board.modem_pins())
    # no seq was ever used for two different frames
    assert rx.reused == []
    seqs = [F.peek(r)[2] for r in rx.frames.raw]  # peeked: every frame decoded at once does not fit the heap
    assert max(seqs) < app.seqs.next


def test_forged_and_garbage_downlink_never_stop_the_alert():
    from protocol.crypto import DeviceKeys

    fs = MemFs()
    rx = FakeReceiver()
    rx.ack_types = ()  # the real receiver is silent
    app, board, tr = make_app(fs, rx)
    t = presses(app, board, 3, 1000)
    run_until(app, board, t + 1000)
    seq = rx.of(F.ALERT)[0].seq
    evil = DeviceKeys(bytes(32))
    for junk in (b"\x01\x80", bytes(300), rx.ack_for(seq, [(F.C_STAND_DOWN, None)], keys=evil)):
        tr.inject(junk, board.now)
    run_until(app, board, t + 60000)
    assert app.ctl.state == A.ALERTING and app.outbox.count(F.ALERT) == 1
    assert app.outbox.rejected == 3
    assert len(rx.of(F.ALERT)) >= 4


def test_stand_down_and_listen_in_from_the_operator():
    fs = MemFs()
    rx = FakeReceiver()
    app, board, tr = make_app(fs, rx)
    ack_cmd(rx, [])
    t = presses(app, board, 3, 1000)
    rx.commands = [(F.C_LISTEN_IN, None)]
    run_until(app, board, t + 2000)
    assert tr.calls and tr.calls[0][1] == "+447700900002"
    rx.commands = [(F.C_STAND_DOWN, None)]
    run_until(app, board, t + 40000)  # the next TRACK's ACK carries it
    assert app.ctl.state == A.IDLE and not app.button.active


def test_test_pattern_only_when_enabled():
    for enabled in (True, False):
        rx = FakeReceiver()
        app, board, tr = make_app(MemFs(), rx, cfg=make_config(test_enabled=enabled))
        t = presses(app, board, 4, 1000)
        run_until(app, board, t + 2000)
        tests = rx.of(F.TEST)
        assert len(tests) == (1 if enabled else 0)
        if enabled:
            assert tests[0].body.test
        assert not rx.of(F.ALERT) and app.ctl.state == A.IDLE


def test_clock_from_gnss_or_ack_time():
    rx = FakeReceiver()
    app, board, tr = make_app(MemFs(), rx)
    assert board.time() is None
    run_until(app, board, 2000)  # boot STATUS ACKed: its time sets the clock
    assert board.time() is not None and abs(board.time() - 1795900000) < 5
    app2, board2, tr2 = make_app(MemFs(), rx)
    board2.gnss.feed(b"TIME 1795000000\n")
    run_until(app2, board2, 100)
    assert abs(board2.time() - 1795000000) < 2


def test_a_failing_flash_never_silences_an_alert():
    class FullFs(MemFs):
        full = False

        def write_atomic(self, name, data):
            if self.full:
                raise OSError(28)  # ENOSPC
            MemFs.write_atomic(self, name, data)

    fs = FullFs()
    rx = FakeReceiver()
    app, board, tr = make_app(fs, rx)
    run_until(app, board, 900)
    fs.full = True
    t = presses(app, board, 3, 1000)
    run_until(app, board, t + 120000)
    assert len(set(f.seq for f in rx.of(F.ALERT))) == 1 and app.ctl.state == A.TRACKING
    assert app.outbox.flash_errors >= 1 and len(rx.of(F.TRACK)) >= 3
    seqs = [F.peek(r)[2] for r in rx.frames.raw]  # peeked: every frame decoded at once does not fit the heap
    assert len(seqs) == len(set(seqs))  # no retries needed here, so each seq arrives once


delegate(globals(), "test_fw_app")
