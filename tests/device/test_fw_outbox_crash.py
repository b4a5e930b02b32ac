"""Cut the power at every single flash step (open, write, close, rename,
remove) of an alert's life, restart from the same flash, and prove that no
ALERT (or CANCEL) is lost, none is raised twice under different seqs, and
no seq is ever reused for different bytes."""

from fw_child import IN_PLACE, delegate
from fw_world import FakeReceiver, make_app, presses, run_until

from protocol import frame as F

if IN_PLACE:  # else the tests run in a child VM (fw_child.py)
    from firmware import alert as A
    from firmware.fs import MemFs, PowerCut


def life(fs, rx, tr=None):
    """Boot, SOS, lose one ACK, track, cancel, settle. Returns the app."""
    app, board, tr = make_app(fs, rx, tr=tr)
    run_until(app, board, 900)  # boot STATUS goes out and is ACKed
    tr.drop_acks = 1  # the ALERT's first ACK is lost
    now = presses(app, board, 3, 1000)
    run_until(app, board, now + 40000)
    now = presses(app, board, 3, board.now)
    run_until(app, board, now + 20000)
    return app


def committed(fs, ftype):
    from firmware.outbox import PERSISTED  # noqa: F401

    for name, raw in fs.files.items():
        if name.startswith("o") and len(name) == 9 and raw and raw[1] == ftype:
            return True
    return False


def test_clean_life_for_reference():
    fs = MemFs()
    rx = FakeReceiver()
    app = life(fs, rx)
    assert app.ctl.state == A.IDLE
    assert [f.name for f in rx.frames if f.ftype in (F.ALERT, F.CANCEL)] == ["ALERT", "ALERT", "CANCEL"]
    assert not [n for n in fs.files if n.startswith("o")]
    assert fs.steps <= 30, fs.steps  # the whole flash budget of one alert at boot


def test_power_cut_at_every_step_loses_and_duplicates_nothing():
    fs = MemFs()
    life(fs, FakeReceiver())
    total = fs.steps
    for cut in range(total):
        fs = MemFs()
        fs.cut_at = cut
        rx = FakeReceiver()
        try:
            life(fs, rx)
            raise AssertionError("cut %d never happened" % cut)
        except PowerCut:
            pass
        alert_known = committed(fs, F.ALERT) or bool(rx.of(F.ALERT))
        cancel_known = committed(fs, F.CANCEL) or bool(rx.of(F.CANCEL))
        before = max(rx.by_seq) if rx.by_seq else 0
        fs.revive()
        app, board, tr = make_app(fs, rx, now=0)
        run_until(app, board, 60000)
        if not alert_known:
            # the cut came before the ALERT reached flash: nothing was sent;
            # the wearer presses again and gets a fresh, higher seq
            assert not rx.of(F.ALERT), cut
            presses(app, board, 3, board.now)
            run_until(app, board, board.now + 30000)
        alerts = set(f.seq for f in rx.of(F.ALERT))
        assert len(alerts) == 1, (cut, alerts)
        if not alert_known:
            assert min(alerts) > before, (cut, alerts, before)
        if cancel_known:
            assert rx.of(F.CANCEL), cut
            assert app.ctl.state == A.IDLE, (cut, app.ctl.state)
        assert rx.reused == [], (cut, rx.reused)
        assert app.outbox.count(F.ALERT) == 0 and app.outbox.count(F.CANCEL) == 0, cut
        seqs = [f.seq for f in rx.frames]
        assert max(seqs) < app.seqs.next, cut


def test_reset_without_cut_mid_alert_resumes_tracking():
    fs = MemFs()
    rx = FakeReceiver()
    app, board, tr = make_app(fs, rx)
    now = presses(app, board, 3, 1000)
    run_until(app, board, now + 5000)
    assert app.ctl.state == A.TRACKING
    n_tracks = len(rx.of(F.TRACK))
    app2, board2, tr2 = make_app(fs, rx, now=0)  # reset: RAM gone, flash kept
    assert app2.ctl.state == A.TRACKING
    run_until(app2, board2, 1000)
    assert len(rx.of(F.TRACK)) > n_tracks  # a fresh position right after boot
    assert len(set(f.seq for f in rx.of(F.ALERT))) == 1


delegate(globals(), "test_fw_outbox_crash")
