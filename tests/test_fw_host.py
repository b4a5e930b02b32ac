"""Host-only firmware checks: the power-cut proof on a real directory (the
filesystem the CPython simulator uses), and a property test of the whole
device against random network misbehaviour."""

import os
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "device"))

from fw_world import FakeReceiver, make_app, presses, run_until  # noqa: E402

from firmware import alert as A  # noqa: E402
from firmware.fs import Fs, PowerCut  # noqa: E402
from protocol import frame as F  # noqa: E402

MAX_EXAMPLES = int(os.environ.get("FW_EXAMPLES", "25"))


def life(fs, rx):
    app, board, tr = make_app(fs, rx)
    run_until(app, board, 900)
    tr.drop_acks = 1
    t = presses(app, board, 3, 1000)
    run_until(app, board, t + 40000)
    t = presses(app, board, 3, board.now)
    run_until(app, board, t + 20000)
    return app


def test_power_cut_at_every_step_on_a_real_directory(tmp_path):
    ref = Fs(str(tmp_path / "ref"))
    life(ref, FakeReceiver())
    total = ref.steps
    assert total >= 20
    for cut in range(total):
        fs = Fs(str(tmp_path / ("c%d" % cut)))
        fs.cut_at = cut
        rx = FakeReceiver()
        try:
            life(fs, rx)
        except PowerCut:
            pass
        on_flash = [n for n in fs.listdir() if n.startswith("o") and len(n) == 9]
        alert_known = bool(rx.of(F.ALERT)) or any(fs.read(n)[1] == F.ALERT for n in on_flash)
        fs.cut_at = -1
        app, board, tr = make_app(fs, rx)
        assert not [n for n in fs.listdir() if n.endswith(".tmp")]  # cleaned at boot
        run_until(app, board, 60000)
        if not alert_known:
            t = presses(app, board, 3, board.now)
            run_until(app, board, t + 30000)
        assert len(set(f.seq for f in rx.of(F.ALERT))) == 1, cut
        assert rx.reused == [], cut
        assert app.outbox.count(F.ALERT) == 0, cut


@settings(max_examples=MAX_EXAMPLES, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["drop_frames", "drop_acks", "fail_sends", "data_down", "data_up",
                                           "garbage", "sms_down", "sms_up", "reset"]),
                          st.integers(1, 5), st.integers(1000, 20000)), max_size=12),
       st.integers(0, 2 ** 16))
def test_any_network_misbehaviour_still_delivers_one_alert_and_its_cancel(script, seed):
    import random

    from firmware.fs import MemFs

    rnd = random.Random(seed)
    fs = MemFs()
    rx = FakeReceiver()
    app, board, tr = make_app(fs, rx)
    app.outbox.rand = lambda n: rnd.randrange(n) if n > 1 else 0
    t = presses(app, board, 3, 1000)
    run_until(app, board, t + 1100)  # the pattern is complete: an ALERT exists
    cancelled = False
    for i, (what, n, dt) in enumerate(script):
        if what == "data_down":
            tr.data_up = False
        elif what == "data_up":
            tr.data_up = True
        elif what == "sms_down":
            tr.sms_up = False
        elif what == "sms_up":
            tr.sms_up = True
        elif what == "garbage":
            tr.inject(bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(0, 300))), board.now)
        elif what == "reset":
            state = app.ctl.state
            app, board, tr2 = make_app(fs, rx, now=board.now, tr=tr)
            assert app.ctl.state == state
        else:
            setattr(tr, what, n)
        run_until(app, board, board.now + dt)
        if i == len(script) // 2 and app.ctl.state in (A.ALERTING, A.TRACKING):
            t = presses(app, board, 3, board.now)
            run_until(app, board, t + 1100)
            cancelled = True
    tr.data_up = True
    tr.drop_frames = tr.drop_acks = tr.fail_sends = 0
    run_until(app, board, board.now + 200000, dt=1000)
    assert len(set(f.seq for f in rx.of(F.ALERT))) == 1
    assert rx.reused == []
    assert app.outbox.count(F.ALERT) == 0 and app.outbox.count(F.CANCEL) == 0
    app.step(board.now)
    assert app.step(board.now) > 0  # settled: nothing overdue, the loop may sleep
    if cancelled:
        assert rx.of(F.CANCEL) and app.ctl.state == A.IDLE
    else:
        assert app.ctl.state == A.TRACKING
