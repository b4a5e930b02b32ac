"""The whole device as one object: App(board, config, transport, now).

`now` is a monotonic ms count that never wraps (loop.py accumulates it
from the board's wrapping ticks); every part compares times by plain
subtraction.

Owns: the wiring and the order of work in one step. Each step: tell the
transport when the board woke on the modem's RI (a URC was lost), read
GNSS (an NMEA UART, or the modem's own GNSS through the transport) into
the fix tracker, feed the button's latched edges (with their own times)
and its level to the pattern detector, poll the transport and route its
events (downlink frames to the outbox, authenticated ACKs to the alert
controller), run the controller's timers, pump the outbox, scan Wi-Fi if
an alert wants it (after the ALERT has been handed to the transport, and
never in the middle of someone's presses), carry out controller actions
(listen-in call), switch the modem's GNSS on for an alert and off after,
top up the seq reservation. With two or more receivers configured, the
failover rule (firmware/failover.py) hears of every send, unreachable
receiver and authenticated ACK; when it moves, the transport is pointed at
the next receiver and the outbox retries at once (same frames, same seqs).
step() returns the ms until something next needs doing; the caller sleeps
that long (or less) and calls step() again. Never sleeps, never touches
`machine`: the board does.

Faults never crash-loop: a config without a usable key leaves the App
"dead" (it only records the fault on flash and idles); any other config
error, an unreadable store file or a fault left by a crash (the "fault"
file written by loop.py) is reported in the boot STATUS frame.

Covert: nothing here lights, sounds or buzzes; haptic() is never called.

Must stay in sync with: firmware/loop.py (fault file, sleep choice),
docs/firmware.md, the simulator (host_sim) which drives this API.
"""

from protocol import frame as F
from protocol.crypto import DeviceKeys

from firmware import alert as A
from firmware.board import RESET_WATCHDOG
from firmware.button_events import EV_CANCEL, EV_DURESS_CANCEL, EV_SOS, EV_TEST
from firmware.fs import Fs
from firmware.outbox import Outbox
from firmware.store import SeqStore, StateStore, StoreError
from firmware.transport import EV_FRAME, EV_SEND_FAILED, EV_SENT

FAULT_FILE = "fault"
# an NMEA UART is read into one buffer allocated at its first read (no
# garbage per read: the read runs every _GNSS_READ_MS for the whole life of
# the device), a chunk at a time, at most the UART's rxbuf (4 KB) per step
_GNSS_CHUNK = 512
_GNSS_CHUNKS = 8
# an NMEA UART is read this often while its GNSS runs: a 1 Hz receiver's
# few hundred bytes a second wait in the 4 KB buffer (board_esp32
# GNSS_RXBUF) meanwhile, and each sentence is dated by its own UTC time
# against the newest one read (_read_gnss)
_GNSS_READ_MS = 3000
# bytes read after a longer gap may have waited there since the last read
# (the buffer keeps the oldest when full): such a read is dated by the span
# of its sentences' times (_read_gnss)
_GNSS_BACKLOG_MS = 4000
# An NMEA module is asked to send only what the fix tracker needs (RMC, GGA,
# GSA) when it is seen sending more (GSV, VTG, GLL, anything unknown): less
# UART traffic, fewer wakes and parses for the life of the device
# (_read_gnss). The module type is not configured, so both families are
# sent; each ignores the other's (an unknown sentence is dropped). MTK
# (Quectel L76/L80): PMTK314 field order GLL,RMC,VTG,GGA,GSA,GSV,...
# (Quectel L80 GPS Protocol Specification 3.19 PMTK_API_SET_NMEA_OUTPUT;
# answered $PMTK001,314,3). u-blox M8: $PUBX,40,msg,rddc,rus1,rus2,rusb,
# rspi,res per message, all ports 0 (u-blox 8/M8 Receiver Description,
# PUBX,40 RATE; no answer). Neither is assumed to survive a module power-off
# (not documented for the L76: the pessimistic case), so it is sent again
# whenever spare sentences come back, backing off from 10 s to an hour
# while they keep coming (a module that obeys neither: ~160 bytes an hour).
# Its bytes, limits and state are literals and one list, not module or App
# names: each name is an interned string in RAM, and three more names
# crossed a step of MicroPython's string pool (a new pool, 9 KB on 32-bit,
# at the bench_firmware scenario's peak: 66.4 KB against its 64 KB target).
_BATTERY_EVERY_MS = 60000
_IDLE_MAX_MS = 60000
# a standby GNSS session ends at its first live fix, or after this: a cold
# start takes < 35 s under open sky (SIM7600 Hardware Design 3.12); indoors
# it never comes
_REFRESH_MAX_MS = 90000
# the modem's GNSS reports every second for this long into a session or
# until its first fix, then every gnss_report_s: a hot start fixes in < 1 s
# (HD 3.12), and the standby sessions every fix_refresh_s keep it hot;
# without a fix by then (indoors, or a cold start: < 35 s) a fix that comes
# later is seen within gnss_report_s
_GNSS_FAST_MS = 10000
_SCAN_LATER_MS = 200  # a Wi-Fi scan put off by presses in progress
_BUTTON_TO_ALERT = {EV_SOS: A.SOS, EV_CANCEL: A.CANCEL, EV_DURESS_CANCEL: A.DURESS, EV_TEST: A.TEST}
_LOG_LINES = 32  # event log kept in RAM for the diagnostics console


def record_fault(fs, code):
    """Leave a fault code on flash for the next boot's STATUS. Writes only
    if it differs from what is there (a crash loop costs no extra wear)."""
    data = b"F %d\n" % code
    if fs.read(FAULT_FILE) != data:
        fs.write_atomic(FAULT_FILE, data)


def _read_fault(fs):
    raw = fs.read(FAULT_FILE)
    if raw is None:
        return None
    try:
        txt = raw.decode()
        return int(txt[2:].strip()) if txt.startswith("F ") else A.FAULT_EXCEPTION
    except (ValueError, UnicodeError):
        return A.FAULT_EXCEPTION


def battery_pct(mv):
    """Li-ion single cell, linear between 3300 mV (0 %) and 4150 mV (100 %)."""
    if mv is None:
        return None
    if mv <= 3300:
        return 0
    if mv >= 4150:
        return 100
    return (mv - 3300) * 100 // 850


class App:
    def __init__(self, board, config, transport, now, fix=None, button=None, fs=None, rand=None):
        self.board = board
        self.cfg = config
        self.transport = transport
        self.fs = fs if fs is not None else Fs(board.flash_dir)
        self.dead = False
        self.ignored_events = 0
        self.gnss_errors = 0
        self.gnss_read_at = None  # ticks of the last GNSS read
        self.gnss_backlog = 0  # reads after a gap (dated by their sentences' times, _read_gnss)
        # an NMEA UART's reading (_read_gnss): [the buffer it is read into
        # (None until a GNSS UART reads), spare sentences the module had sent
        # (FixTracker.spare + unknown), when that count last grew, when the
        # module was last asked to send less, how long to wait before asking
        # again, times asked, the buffer's first 64 bytes as a view (the
        # small reads after a gap)]. One list: as attributes, the App's attribute
        # table grew from 37 slots to 47 (MicroPython's map sizes), which the
        # 96 KB whole-App MicroPython test could not allocate (752 bytes)
        self.gnss_rx = [None, 0, None, None, 0, 0, None]
        self.pending_call = None
        self.asleep = False
        self.btn_at = None  # time of the last button sample fed (edges never go back before it)
        self.btn_level = None  # the level it had
        # GNSS from the modem (no NMEA UART on this board, and a transport that has one)
        self.modem_gnss = board.gnss is None and getattr(transport, "gnss", None) is not None
        self.gnss_want = False
        self.gnss_every = 1  # the modem's GNSS reports every this many s
        self.gnss_fixed = False  # this session of the modem's GNSS has had a live fix
        self.gnss_since = now  # when this session began
        self.refresh_at = now  # the next standby GNSS session (one at boot)
        self.refresh_until = None  # the current one ends by then
        self.gnss_hold = None  # the console keeps the modem's GNSS on until then (an engineer is testing)
        self.next_battery = now
        self.now = now  # the latest `now` step() saw (for the console provider)
        self.evlog = []  # "<s> <what>" lines, oldest first, RAM only
        self.faults = []  # fault codes reported at boot
        self.ack_hook = None  # fn(ftype, ack_frame, now): the console's TEST round trip
        self.fs.cleanup()
        if not config.usable:
            # no key: nothing can be signed. Record, idle, never crash.
            self.dead = True
            self.faults = [A.FAULT_CONFIG]
            self.note("config unusable: idle")
            record_fault(self.fs, A.FAULT_CONFIG)
            return
        faults = []
        if config.errors:
            faults.append(A.FAULT_CONFIG)
        if button is None:
            from firmware.button import ButtonConfig, ButtonDetector  # pyright: ignore[reportMissingImports]

            try:
                bcfg = ButtonConfig.from_dict(config.button)
            except ValueError:
                faults.append(A.FAULT_BUTTON_CONFIG)
                bcfg = ButtonConfig.from_dict({})
            button = ButtonDetector(bcfg)
        if fix is None:
            from firmware.fix import FixTracker  # pyright: ignore[reportMissingImports]

            fix = FixTracker()
        self.button = button
        self.fix = fix
        if self.modem_gnss:
            # a report every gnss_report_s once fixed: a position is live
            # until the next report is late (2 s of slack, as at 1 s)
            fix.live_ms = (config.t("gnss_report_s") + 2) * 1000
        keys = DeviceKeys(config.key)
        tm = config.t
        self.outbox = Outbox(self.fs, keys, transport, config.sms_numbers or config.sms_number,
                             tm("backoff_base_ms"), tm("backoff_max_ms"), tm("sms_fallback_s") * 1000, rand=rand,
                             device_id=config.device_id, sms_return_ms=tm("failover_return_s") * 1000)
        self.fo = None  # the receiver failover rule: only with two or more receivers
        if len(config.receivers) > 1:
            from firmware.failover import Failover

            self.fo = Failover(len(config.receivers), tm("ack_timeout_s") * 1000, tm("failover_return_s") * 1000)
        high = self.outbox.load(now)
        if self.outbox.corrupt:
            faults.append(A.FAULT_OUTBOX_CORRUPT)
        self.seqs = SeqStore(self.fs, floor=high + 1)
        if self.seqs.fault:
            faults.append(A.FAULT_SEQ_STORE)
        states = StateStore(self.fs)
        rec = states.load()
        if states.fault:
            faults.append(A.FAULT_STATE_STORE)
        self.ctl = A.AlertController(config, keys, self.seqs, self.outbox, states, self, rand=rand)
        self.ctl.restore(rec, now)
        self.button.set_alert_active(self.ctl.looks_active())
        cause = board.reset_cause()
        events = [(F.EV_BOOT, cause)]
        if cause == RESET_WATCHDOG:
            events.append((F.EV_WATCHDOG, 0))
        left = _read_fault(self.fs)
        if left is not None:
            faults.append(left)
        self.faults = faults[:4]
        self.note("boot, reset cause %d" % cause)
        for code in faults[:4]:
            events.append((F.EV_FAULT, code))
            self.note("fault %d" % code)
        self.ctl.status(now, events)
        if left is not None:
            self.fs.remove(FAULT_FILE)

    def note(self, what):
        """Add a line to the RAM event log (read by an authenticated
        engineer only; never printed, never on flash)."""
        log = self.evlog
        log.append("%d %s" % (self.now // 1000, what))
        if len(log) > _LOG_LINES:
            log.pop(0)

    # ------------------------------------------------------------ env for the controller
    def position(self, now):
        return self.fix.position(now)

    def cell(self, now=None):
        """The serving cell. With `now` (a frame being built): only one read
        within the last 90 s, else None. The engine refreshes it every
        status_ms (60 s, firmware/modem/engine.py) while awake, never while
        asleep: after a standby a frame must not carry the cell of where the
        person was hours ago (the receiver resolves it to a position "now":
        docs/protocol.md). 90000 is a literal, not a module name: a global
        more grows the module's dict on a heap with no room to spare."""
        try:
            c = self.transport.cell()
            if c is not None and now is not None:
                at = getattr(self.transport, "cell_read_at", None)
                at = at() if at is not None else now
                if at is None or now - at > 90000:
                    return None
            return c
        except Exception:
            return None

    def csq(self):
        try:
            return self.transport.csq()
        except Exception:
            return None

    def battery_pct(self):
        try:
            return battery_pct(self.board.battery_mv())
        except Exception:  # an ADC glitch must not restart the device
            return None

    def unix(self, now):
        t = self.board.time()
        if t is None:
            t = self.fix.utc_seconds(now)
        return t

    # ------------------------------------------------------------ the loop body
    def step(self, now):
        """Do everything due at `now`; return ms until the next step."""
        self.now = now
        if self.dead:
            return _IDLE_MAX_MS
        b = self.board
        if b.take_ri_wake():
            fn = getattr(self.transport, "ri_wake", None)
            if fn is not None:
                fn(now)
        self._read_gnss(now)
        self._sample_button(now)
        t_wait = self.transport.poll(now)
        if self.modem_gnss:
            # what this poll fed the engine, now: taken before it, a report's
            # last sentence waited for the next wake (a report later, 5 s)
            # and its position was dated then
            self._read_modem_gnss(now)
        for e in self.transport.events():
            self._on_transport(e, now)
        fo = self.fo
        if fo is not None:
            if fo.poll(now):
                self._moved(fo, now)
            f_wait = fo.next_deadline(now)
            if f_wait < t_wait:
                t_wait = f_wait
        if now - self.next_battery >= 0:
            self.next_battery = now + _BATTERY_EVERY_MS
            try:
                mv = b.battery_mv()
            except Exception:
                mv = None
            self.ctl.check_battery(mv, now)
        c_wait = self.ctl.step(now)
        o_wait = self.outbox.pump(now)
        if self.ctl.want_scan(now):
            if self.button.pattern_idle(now):
                self.ctl.on_scan(b.wifi_scan(), now)
                c_wait = self.ctl.step(now)
                o_wait = self.outbox.pump(now)
            elif c_wait < _SCAN_LATER_MS:
                c_wait = _SCAN_LATER_MS  # someone is pressing: look again shortly
        self._actions(now)
        try:
            self.seqs.maintain()
        except StoreError:
            pass  # seq space exhausted: take() reports it when it matters
        self.button.set_alert_active(self.ctl.looks_active())
        if self.modem_gnss:
            want = self._refreshing(now) or self.ctl.active() or self.pending_call is not None \
                or (self.gnss_hold is not None and now - self.gnss_hold < 0)
            if want and not self.gnss_want:
                self.gnss_fixed = False  # a new session: every second until its first fix
                self.gnss_since = now
            every = 1
            if self.gnss_fixed or now - self.gnss_since >= _GNSS_FAST_MS:
                every = self.cfg.t("gnss_report_s")
            if want != self.gnss_want or every != self.gnss_every:
                self.gnss_want = want
                self.gnss_every = every
                self.transport.gnss(want, every)  # pyright: ignore[reportAttributeAccessIssue]
        quiet = self.outbox.count() == 0 and not self.ctl.active() and self.pending_call is None
        # a modem that is awake stays awake while someone is pressing: in
        # the saver profile sleep is a power-off (AT+CPOF, up to 26 s before
        # it can be switched on again), so an SOS whose presses began as the
        # last exchange ended would wait for a whole off and on (45 s seen)
        if quiet and not self.asleep and not self.transport.busy() and self.button.pattern_idle(now):
            self.asleep = True
            self.transport.sleep(now)
        elif not quiet and self.asleep:
            self.asleep = False
            self.transport.wake(now)
        # what this step queued (a send, a wake, an SMS) starts now, not at
        # the next step: that could be a retry back-off later, making the
        # first ALERT late and its retry a duplicate right behind it
        t_wait = min(t_wait, self.transport.poll(now))
        wait = min(t_wait, c_wait, o_wait, _IDLE_MAX_MS, self.next_battery - now)
        bd = self.button.next_deadline(now)
        if bd is not None and bd < wait:
            wait = bd
        if wait > _GNSS_READ_MS and self.board.gnss is not None \
                and (self.pending_call is not None or self.ctl.active() or self.gnss_want):
            wait = _GNSS_READ_MS  # an NMEA UART is read while fresh (see _read_gnss); the
            # modem's GNSS wakes the loop by itself (its UART is polled)
        return wait if wait > 0 else 0

    def can_light_sleep(self):
        """True when nothing but the button (or the modem's RI) can need us
        before the next deadline: no alert, empty outbox, no call to place,
        and no AT command outstanding or queued (light sleep stops the
        UART's clock: a reply arriving then would be lost)."""
        if self.dead or self.outbox.count() or self.ctl.active() or self.pending_call is not None or self.gnss_want:
            return False  # (GNSS on the modem: its NMEA comes every second, and pulses RI)
        q = getattr(self.transport, "quiet", None)
        return q() if q is not None else not self.transport.busy()

    def _refreshing(self, now):
        """A standby GNSS session (the modem's GNSS is off otherwise): due
        every fix_refresh_s, over at the first live fix or _REFRESH_MAX_MS."""
        until = self.refresh_until
        if until is None:
            every = self.cfg.t("fix_refresh_s")
            if every and now - self.refresh_at >= 0:
                self.refresh_until = now + _REFRESH_MAX_MS
                return True
            return False
        pos = self.fix.position(now)
        if now - until >= 0 or (pos is not None and pos.source == F.SRC_GNSS):
            self.refresh_until = None
            self.refresh_at = now + self.cfg.t("fix_refresh_s") * 1000
            return False
        return True

    def _sample_button(self, now):
        """Latched edges first, each at its own time (never before the last
        sample: an edge latched after that sample was already seen in it),
        then the level now. Before each edge the level it ends is sampled
        once more at the edge's time: the detector debounces by two samples
        of a level (button.py), and a press seen only as its two edges would
        otherwise never count, however long it was."""
        b = self.board
        bu = self.button
        edges = b.button_edges()
        last = self.btn_at
        prev = self.btn_level
        if edges:
            tk = b.ticks_ms()
            for level, at in edges:
                t = now - b.ticks_diff(tk, at)
                if last is not None and t < last:
                    t = last
                if t > now:
                    t = now
                last = t
                if prev is not None and prev != level:
                    ev = bu.update(prev, t)
                    if ev is not None:
                        self._on_button(ev, now)
                ev = bu.update(level, t)
                if ev is not None:
                    self._on_button(ev, now)
                prev = level
        self.btn_at = now
        level = b.button_level()
        self.btn_level = level
        ev = bu.update(level, now)
        if ev is not None:
            self._on_button(ev, now)

    def _read_modem_gnss(self, now):
        data = self.transport.nmea()  # pyright: ignore[reportAttributeAccessIssue]
        if data:
            try:
                self.fix.feed(data, now)
            except Exception:
                self.gnss_errors += 1
            if not self.gnss_fixed and self.fix.has_live_fix(now):
                self.gnss_fixed = True
            self._gnss_clock(now)

    def _read_gnss(self, now):
        s = self.board.gnss
        if s is None:
            return  # (the modem's GNSS: _read_modem_gnss, after the transport's poll)
        # after a long gap (the loop idled) the buffered sentences waited up
        # to the whole gap, and a full buffer keeps the oldest: the newest
        # one read did not arrive now. The first sentence read came after
        # the last read, so the newest came at least their UTC times' span
        # after that: it is given that age (no younger than it is, about
        # as old as it is; FixTracker.redate). A position in a read with no
        # sentence time is never live and dated at the gap's start, and a
        # read after a gap never sets the clock.
        last = self.gnss_read_at
        self.gnss_read_at = now
        fx = self.fix
        gap = last is not None and now - last > _GNSS_BACKLOG_MS
        before = fx.time_ms
        first = None  # UTC time of the first timed sentence read (within a small read)
        got = False
        rx = self.gnss_rx
        buf = rx[0]
        if buf is None:  # allocated once, at the first read (512 bytes)
            buf = rx[0] = bytearray(_GNSS_CHUNK)
            rx[6] = memoryview(buf)[:64]
        k = _GNSS_CHUNKS
        while k:
            if gap and first is None:
                # after a gap, 64-byte reads until a sentence time is read:
                # it dates the read (below), so it must be the first
                # sentence's or the next one's, not a whole chunk's later
                n = s.readinto(rx[6])
            else:
                n = s.readinto(buf)
                k -= 1
            if not n:
                break
            got = True
            try:
                fx.feed(buf, now, n)
            except Exception:
                self.gnss_errors += 1  # the tracker should count, not raise
            if first is None and fx.time_ms != before:
                first = fx.time_ms  # within a small read of the first sentence's
        if got:
            # the module sent sentences the tracker does not use: ask it for
            # RMC, GGA and GSA only (see the note at the top), at once the
            # first time and after it had obeyed (10 s of sentences read and
            # none spare), then after 10, 20, 40 s ... up to an hour
            spare = fx.spare + fx.reader.unknown
            if spare == rx[1]:
                if rx[2] is not None and now - rx[2] >= 10000:
                    rx[4] = 0  # it obeyed: no back-off when it forgets
            else:
                rx[1] = spare
                rx[2] = now
                if rx[3] is None or now - rx[3] >= rx[4]:
                    rx[4] = min(rx[4] * 2, 3600000) if rx[4] else 10000
                    rx[3] = now
                    rx[5] += 1
                    try:
                        s.write(b"$PMTK314,0,1,0,1,1,0,0,0,0,0,0,0,0,0,0,0,0,0,0*29\r\n"
                                b"$PUBX,40,GSV,0,0,0,0,0,0*59\r\n"
                                b"$PUBX,40,VTG,0,0,0,0,0,0*5E\r\n"
                                b"$PUBX,40,GLL,0,0,0,0,0,0*5C\r\n")
                    except Exception:
                        self.gnss_errors += 1
            # up to _GNSS_READ_MS of epochs came in this read (more after a
            # gap): the position and clock are dated by their sentences'
            # times (FixTracker.redate)
            if gap and first is None:  # no sentence time to date it by: as old as it can be, never live
                if fx.fix_ms == now:
                    fx.valid = False
                if fx.last_ms == now:
                    fx.last_ms = last
            elif last is None:
                fx.redate(now, 0)
            else:
                age = 0
                if first is not None and gap:
                    age = max(0, now - last - (fx.time_ms - first) % 86400000)
                fx.redate(now, now - last, age)
        if gap:
            self.gnss_backlog += 1
            return
        self._gnss_clock(now)

    def _gnss_clock(self, now):
        if self.board.time() is None:
            utc = self.fix.utc_seconds(now)
            if utc:
                self.board.set_time(utc)

    def _on_button(self, ev, now):
        a = _BUTTON_TO_ALERT.get(ev)
        if a is None or (a == A.TEST and not self.cfg.test_enabled) or not self.ctl.allowed(a):
            self.ignored_events += 1
            return
        self.note("button %s" % A.EVENT_NAMES[a])
        if self.asleep:
            self.asleep = False
            self.transport.wake(now)
        self.ctl.fire(a, now)

    def _on_transport(self, e, now):
        kind = e[0]
        if kind == EV_FRAME:
            ob = self.outbox
            n = ob.unmatched
            res = ob.on_frame(e[1], now)
            if self.fo is not None and (res is not None or ob.unmatched != n):
                self.fo.acked(now)  # any authenticated ACK (a late one too) proves the receiver alive
            if res is not None:
                ftype, fr = res
                if self.board.time() is None and fr.time:
                    self.board.set_time(fr.time)
                # on_frame returns only verified ACK frames: the body is an Ack
                self.note("ack %s %d" % (F.TYPE_NAMES.get(ftype or 0, "?"), fr.body.acked_seq))  # pyright: ignore[reportAttributeAccessIssue]
                self.ctl.on_ack(ftype, fr, now)
                if self.ack_hook is not None:
                    self.ack_hook(ftype, fr, now)
        else:
            self.note(str(kind))
            self.outbox.on_event(e, now)
            fo = self.fo
            if fo is not None:
                if kind == EV_SENT:
                    fo.sent(now)
                elif kind == EV_SEND_FAILED and str(e[1]).startswith("open") and self.transport.data_ready() \
                        and fo.failed(now):
                    self._moved(fo, now)  # (with the data path gone too, the network failed, not the receiver)

    def _moved(self, fo, now):
        """The failover rule chose another receiver: point the transport at
        it and send every waiting frame there now."""
        host, port = self.cfg.receivers[fo.i]
        self.note("receiver %d" % fo.i)
        self.transport.set_receiver(host, port)  # pyright: ignore[reportAttributeAccessIssue]
        self.outbox.retry_now(now)

    def _actions(self, now):
        while self.ctl.actions:
            act = self.ctl.actions.pop(0)
            if act[0] == "call":
                self.pending_call = act[1]
        if self.pending_call is not None and not self.transport.busy():
            if self.transport.start_call(self.pending_call, now):
                self.pending_call = None
