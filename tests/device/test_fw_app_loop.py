"""The whole device's main-loop step: sentences that waited in the UART
buffer while the loop idled are never reported as a live fix, and a request
the step queued for the transport starts in that same step. (Its own file so
each fits the MicroPython heap; the alert's life is in test_fw_app.py.)"""

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


def test_a_fix_that_waited_in_the_uart_is_dated_by_its_sentences_never_younger_nor_the_whole_gap_older():
    # read at 2.75 s; then the loop idles while the module sends an epoch a
    # second (arriving at 4, 5, ... 11 s), a fix up to 12:00:06 and none
    # after (indoors). An SOS at 12 s reads them all at once: the last fix
    # arrived at 9 s, and the ALERT must say so (not "9 s old": the gap)
    from firmware.fix import FixTracker
    from nmeautil import ck

    rx = FakeReceiver()
    app, board, _ = make_app(MemFs(), rx, fix=FixTracker())

    def epoch(s, fix):
        hms = "1200%02d" % s
        if fix:
            return (ck("GPGGA,%s.00,5130.%04d,N,00007.5000,W,1,08,0.9,35.0,M,45.0,M,," % (hms, s * 10))
                    + ck("GPRMC,%s.00,A,5130.%04d,N,00007.5000,W,0.0,0.0,281126,,,A" % (hms, s * 10)))
        return ck("GPGGA,%s.00,,,,,0,00,99.9,,,,,," % hms) + ck("GPRMC,%s.00,V,,,,,,,281126,,,N" % hms)

    board.gnss.feed(epoch(0, True))
    run_until(app, board, 3000)  # read while fresh (the last step at 2.75 s)
    for s in range(1, 9):
        board.now = 3000 + s * 1000
        board.gnss.feed(epoch(s, s <= 6))  # nobody reads: the loop idles
    now = presses(app, board, 3, 12000)
    run_until(app, board, now + 2000)
    (alert,) = rx.of(F.ALERT)
    b = alert.body
    assert b.source == F.SRC_LAST_FIX and b.lat == 515001000, (b.source, b.lat)  # the 12:00:06 fix
    # sealed when the detector decides, 1 s after the last release (now - 100)
    true_age = (now - 100 + 1000 - 9000) // 1000
    assert true_age <= b.age <= true_age + 2, (b.age, true_age)  # was 10 s: the whole gap
    assert app.gnss_backlog == 1


def test_an_alert_queued_in_a_step_starts_on_the_transport_in_that_step():
    # the modem engine starts a queued request only when polled: a step that
    # queues the ALERT and then sleeps its whole wait would put it on the air
    # a retry back-off late, and its retry right behind it
    from fake_transport import FakeTransport

    class Engine(FakeTransport):
        """Queues sends as the engine does; poll() starts them."""

        def __init__(self, rx):
            FakeTransport.__init__(self, rx.deliver, rx.deliver_sms)
            self.queued = []
            self.started = []

        def send_frame(self, raw, now):
            self.queued.append(bytes(raw))
            return True

        def poll(self, now):
            while self.queued:
                raw = self.queued.pop(0)
                self.started.append((now, raw))
                FakeTransport.send_frame(self, raw, now)
            return FakeTransport.poll(self, now)

    rx = FakeReceiver()
    t = Engine(rx)
    app, board, _ = make_app(MemFs(), rx, tr=t)
    run_until(app, board, 3000)
    n = len(t.started)
    board.level = 0
    end = presses(app, board, 3, 5000)
    sos = end - 100 + 1000  # the detector decides 1 s after the last release
    board.now = sos
    app.step(sos)  # the step in which the SOS fires and the ALERT is queued
    started = [(at, raw) for at, raw in t.started[n:] if F.peek(raw)[0] == F.ALERT]
    assert started and started[0][0] == sos, (started[:1], sos)


def test_a_module_sending_more_than_the_tracker_uses_is_asked_for_less_and_asked_again_when_it_forgets():
    # an NMEA module's GSV, VTG and GLL are parsed or framed and never
    # needed: the App asks for RMC, GGA and GSA only (PMTK314 for an MTK
    # module, PUBX,40 for a u-blox one, each with a checksum the module
    # checks), again when they come back (a module power-off), and ever less
    # often from a module that obeys neither form
    from firmware.fix import FixTracker
    from nmeautil import ck

    ask = (ck("PMTK314,0,1,0,1,1,0,0,0,0,0,0,0,0,0,0,0,0,0,0")  # GLL off, RMC on, VTG off, GGA on, GSA on, GSV off
           + ck("PUBX,40,GSV,0,0,0,0,0,0") + ck("PUBX,40,VTG,0,0,0,0,0,0") + ck("PUBX,40,GLL,0,0,0,0,0,0"))

    rx = FakeReceiver()
    app, board, _ = make_app(MemFs(), rx, fix=FixTracker())

    def epoch(s, spare):
        hms = "12%04d" % (s // 60 * 100 + s % 60)
        e = (ck("GPGGA,%s.00,5130.0000,N,00007.5000,W,1,08,0.9,35.0,M,45.0,M,," % hms)
             + ck("GPRMC,%s.00,A,5130.0000,N,00007.5000,W,0.0,0.0,281126,,,A" % hms)
             + ck("GPGSA,A,3,02,05,06,09,12,13,15,17,,,,,1.6,0.9,1.3"))
        if spare:
            e += (ck("GPGSV,3,1,10,02,79,145,42,05,40,205,40,06,20,300,38,09,60,080,44")
                  + ck("GPVTG,0.0,T,,M,0.0,N,0.0,K,A")
                  + ck("GPGLL,5130.0000,N,00007.5000,W,%s.00,A,A" % hms))
        return e

    asked = []

    def seconds(a, b, spare):
        for s in range(a, b):
            board.gnss.feed(epoch(s, spare))
            run_until(app, board, (s + 1) * 1000)
            if board.gnss.tx:
                assert bytes(board.gnss.tx) == ask
                asked.append(s)
                board.gnss.tx = bytearray()

    seconds(0, 3, True)
    assert asked == [0]  # at the first read that saw them
    seconds(3, 30, False)  # it obeyed
    assert asked == [0]
    seconds(30, 33, True)  # switched off and on: full output again
    assert asked == [0, 30]
    seconds(33, 400, True)  # it ignores both forms: asked again after 10, 20, 40, 80, 160 s
    gaps = [b - a for a, b in zip(asked[1:], asked[2:])]
    assert gaps == [10, 20, 40, 80, 160], asked
    assert app.fix.has_live_fix(board.now)  # its positions are used all along
    assert app.gnss_rx[5] == len(asked) and app.gnss_errors == 0  # times asked, every write went out


delegate(globals(), "test_fw_app_loop")
