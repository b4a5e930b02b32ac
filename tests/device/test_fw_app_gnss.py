"""The whole device's GNSS reading: sentences that waited in the UART buffer
while the loop idled are never reported as a live fix. (Its own file so each
fits the MicroPython heap; the alert's life is in test_fw_app.py.)"""

from fw_child import IN_PLACE, delegate
from fw_world import FakeReceiver, make_app, presses, run_until

from protocol import frame as F

if IN_PLACE:  # else the tests run in a child VM (fw_child.py)
    from firmware.fs import MemFs


def test_sentences_that_waited_in_the_uart_while_idle_are_never_reported_live():
    # the loop idled 40 s; the UART buffer kept the sentences of that gap's
    # start. An SOS then must report them as a last fix of that age, not live.
    from firmware.fix import FixTracker
    from nmeautil import ck

    rx = FakeReceiver()
    app, board, tr = make_app(MemFs(), rx, fix=FixTracker())
    def epoch(hms):
        return (ck("GPGGA,%s.00,5130.0000,N,00007.5000,W,1,08,0.9,35.0,M,45.0,M,," % hms)
                + ck("GPRMC,%s.00,A,5130.0000,N,00007.5000,W,0.0,0.0,281126,,,A" % hms))

    board.gnss.feed(epoch("120000"))
    run_until(app, board, 3000)  # boot, fix read while fresh
    board.gnss.feed(epoch("120003"))  # the next epoch, then nothing read for 40 s
    now = presses(app, board, 3, 43000)
    run_until(app, board, now + 2000)
    (alert,) = rx.of(F.ALERT)
    b = alert.body
    assert b.source == F.SRC_LAST_FIX and b.age >= 38, (b.source, b.age)
    assert app.gnss_backlog >= 1


delegate(globals(), "test_fw_app_gnss")
