"""The whole device at boot and in its main loop: unusable or broken
config, faults and resets reported in the boot STATUS, light sleep and the
watchdog, crash recovery, and the ticks wraparound. (The alert's life is in
test_fw_app.py; split so each file fits the 96 KB MicroPython heap.)"""

from fw_child import IN_PLACE, delegate
from fw_fakes import DEV, make_config
from fw_world import FakeFix, FakeReceiver, make_app, run_until

from protocol import frame as F

if IN_PLACE:  # else the tests run in a child VM (fw_child.py)
    from firmware import alert as A
    from firmware.fs import MemFs

HOME = b"FIX 515007292 -1246254\n"


def test_unusable_config_idles_records_the_fault_once_and_never_crashes():
    from firmware.app import FAULT_FILE, App
    from board_fake import FakeBoard
    from fake_transport import FakeTransport

    cfg = make_config()
    cfg.usable = False
    fs = MemFs()
    for _boot in range(3):
        board = FakeBoard()
        app = App(board, cfg, FakeTransport(), 0, fix=FakeFix(), fs=fs)
        assert app.dead and app.step(0) == 60000 and not app.can_light_sleep()
    assert fs.files[FAULT_FILE] == b"F %d\n" % A.FAULT_CONFIG
    assert fs.writes == 1


def test_config_errors_and_crash_faults_reach_the_boot_status():
    from firmware.app import FAULT_FILE, record_fault

    fs = MemFs()
    record_fault(fs, A.FAULT_EXCEPTION)
    cfg = make_config()
    cfg.errors = ["timings.track_interval_s: must be an integer 0..65535"]
    rx = FakeReceiver()
    app, board, tr = make_app(fs, rx, cfg=cfg)
    run_until(app, board, 1000)
    ev = rx.of(F.STATUS)[0].body.tlv_values(F.T_EVENT)
    assert (F.EV_FAULT, A.FAULT_CONFIG) in ev and (F.EV_FAULT, A.FAULT_EXCEPTION) in ev
    assert FAULT_FILE not in fs.files


def test_watchdog_reset_is_reported():
    from firmware.board import RESET_WATCHDOG
    from board_fake import FakeBoard

    rx = FakeReceiver()
    b = FakeBoard()
    b.cause = RESET_WATCHDOG
    app, board, tr = make_app(MemFs(), rx, board=b)
    run_until(app, board, 1000)
    ev = rx.of(F.STATUS)[0].body.tlv_values(F.T_EVENT)
    assert ev[:2] == [(F.EV_BOOT, RESET_WATCHDOG), (F.EV_WATCHDOG, 0)]


def test_main_loop_light_sleeps_when_idle_and_feeds_the_watchdog():
    from firmware import loop as M
    from board_fake import FakeBoard
    from fake_transport import FakeTransport

    fs = MemFs()
    import json

    from fw_fakes import KEY_HEX

    fs.files["config.json"] = json.dumps({"device_id": DEV, "key_hex": KEY_HEX, "sms_number": "+447700900001"}).encode()
    rx = FakeReceiver()
    board = FakeBoard()
    made = []

    def factory(b, cfg):
        t = FakeTransport(rx.deliver, rx.deliver_sms)
        made.append(t)
        return t

    from fw_world import FakeButton

    M.run(board, fs, factory, steps=40, app_kw={"fix": FakeFix(), "button": FakeButton()})
    kinds = set(k for k, _ in board.sleeps)
    assert "light" in kinds  # idle, outbox empty after the boot STATUS ACK
    assert max(ms for _, ms in board.sleeps) <= M.MAX_SLEEP_MS
    assert board.feeds >= 40
    assert rx.types() == ["STATUS"]


def test_main_loop_restarts_after_an_exception_and_reports_it():
    import json

    from fw_fakes import KEY_HEX

    from fw_world import FakeButton

    from firmware import loop as M
    from board_fake import FakeBoard
    from fake_transport import FakeTransport

    fs = MemFs()
    fs.files["config.json"] = json.dumps({"device_id": DEV, "key_hex": KEY_HEX}).encode()
    rx = FakeReceiver()

    class Flaky(FakeBoard):
        boom = 1

        def button_level(self):
            if self.boom:
                self.boom -= 1
                raise OSError("gpio")
            return 1

        def battery_mv(self):
            raise OSError("adc")  # a glitching ADC alone never restarts anything

    board = Flaky()
    M.run(board, fs, lambda b, c: FakeTransport(rx.deliver, rx.deliver_sms), steps=30,
          app_kw={"fix": FakeFix(), "button": FakeButton()})
    statuses = rx.of(F.STATUS)
    # first boot's STATUS died with the app; the restart reports the fault
    assert any((F.EV_FAULT, A.FAULT_EXCEPTION) in s.body.tlv_values(F.T_EVENT) for s in statuses)
    assert ("idle", 1000) in board.sleeps  # backed off before restarting
    assert "fault" not in fs.files  # reported, then cleared


def test_alert_keeps_tracking_across_a_ticks_wraparound():
    import json

    from fw_fakes import KEY_HEX

    from fw_world import FakeButton

    from firmware import loop as M
    from board_fake import FakeBoard
    from fake_transport import FakeTransport

    period = 1 << 30  # ESP32 ticks_ms wraps here (12.4 days)
    start = period - 20000

    class WrapBoard(FakeBoard):
        def ticks_ms(self):
            return self.now % period

        def ticks_diff(self, a, b):
            return ((a - b + period // 2) % period) - period // 2

        def button_level(self):
            t = self.now - start
            return 0 if t < 1200 and (t // 200) % 2 == 0 else 1  # 3 presses at boot


    fs = MemFs()
    fs.files["config.json"] = json.dumps({"device_id": DEV, "key_hex": KEY_HEX}).encode()
    rx = FakeReceiver()
    board = WrapBoard(now=start)
    board.wakes = [start + 200 * i for i in range(1, 7)] + [start + 2200]
    M.run(board, fs, lambda b, c: FakeTransport(rx.deliver, rx.deliver_sms), steps=120,
          app_kw={"fix": FakeFix(), "button": FakeButton()})
    assert board.now - start > 90000
    assert rx.count(F.ALERT) == 1 and rx.count(F.TRACK) >= 3
    assert rx.count(F.STATUS) == 1  # the boot STATUS only: the loop never crashed and restarted


def test_broken_config_file_never_crash_loops():
    from firmware import loop as M
    from board_fake import FakeBoard

    fs = MemFs()
    fs.files["config.json"] = b"{not json"
    board = FakeBoard()
    calls = []
    M.run(board, fs, lambda b, c: calls.append(1), steps=5)
    assert calls == []  # no transport without a key
    assert fs.files["fault"] == b"F %d\n" % A.FAULT_CONFIG
    assert all(ms == M.MAX_SLEEP_MS for _, ms in board.sleeps)


delegate(globals(), "test_fw_app_boot")
