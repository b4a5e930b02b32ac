"""The whole device as one object: App(board, config, transport, now).

`now` is a monotonic ms count that never wraps (main.py accumulates it
from the board's wrapping ticks); every part compares times by plain
subtraction.

Owns: the wiring and the order of work in one step. Each step: read GNSS
bytes into the fix tracker, sample the button, poll the transport and route
its events (downlink frames to the outbox, authenticated ACKs to the alert
controller), run the controller's timers, pump the outbox, scan Wi-Fi if
an alert wants it (after the ALERT has been handed to the transport),
carry out controller actions (listen-in call), top up the seq reservation.
step() returns the ms until something next needs doing; the caller sleeps
that long (or less) and calls step() again. Never sleeps, never touches
`machine`: the board does.

Faults never crash-loop: a config without a usable key leaves the App
"dead" (it only records the fault on flash and idles); any other config
error, an unreadable store file or a fault left by a crash (the "fault"
file written by main.py) is reported in the boot STATUS frame.

Covert: nothing here lights, sounds or buzzes; haptic() is never called.

Must stay in sync with: firmware/main.py (fault file, sleep choice),
docs/firmware.md, the simulator (host_sim) which drives this API.
"""

from protocol import frame as F
from protocol.crypto import DeviceKeys

from firmware import alert as A
from firmware.board import RESET_WATCHDOG
from firmware.fs import Fs
from firmware.outbox import Outbox
from firmware.store import SeqStore, StateStore, StoreError

FAULT_FILE = "fault"
_GNSS_CHUNK = 256
_GNSS_CHUNKS = 8  # at most 2 KB of NMEA per step (the UART rxbuf size)
# NMEA fills the 1 KB UART buffer in about 2 s; bytes read after a longer
# gap may have waited there since the last read, so they count as that old
_GNSS_BACKLOG_MS = 2000
_BATTERY_EVERY_MS = 60000
_IDLE_MAX_MS = 60000
# button events (firmware/button.py)
EV_SOS = 1
EV_CANCEL = 2
EV_DURESS_CANCEL = 3
EV_TEST = 4
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
        self.t = transport
        self.fs = fs if fs is not None else Fs(board.flash_dir)
        self.dead = False
        self.ignored_events = 0
        self.gnss_errors = 0
        self.gnss_read_at = None  # ticks of the last GNSS read
        self.gnss_backlog = 0  # reads after a gap, stamped with the gap's start
        self.pending_call = None
        self.asleep = False
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
        keys = DeviceKeys(config.key)
        tm = config.t
        self.outbox = Outbox(self.fs, keys, transport, config.sms_number, tm("backoff_base_ms"),
                             tm("backoff_max_ms"), tm("sms_fallback_s") * 1000, rand=rand,
                             device_id=config.device_id)
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

    def cell(self):
        try:
            return self.t.cell()
        except Exception:
            return None

    def csq(self):
        try:
            return self.t.csq()
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
        self._read_gnss(now)
        ev = self.button.update(b.button_level(), now)
        if ev is not None:
            self._on_button(ev, now)
        t_wait = self.t.poll(now)
        for e in self.t.events():
            self._on_transport(e, now)
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
            self.ctl.on_scan(b.wifi_scan(), now)
            c_wait = self.ctl.step(now)
            o_wait = self.outbox.pump(now)
        self._actions(now)
        try:
            self.seqs.maintain()
        except StoreError:
            pass  # seq space exhausted: take() reports it when it matters
        self.button.set_alert_active(self.ctl.looks_active())
        quiet = self.outbox.count() == 0 and not self.ctl.active() and self.pending_call is None
        if quiet and not self.asleep and not self.t.busy():
            self.asleep = True
            self.t.sleep(now)
        elif not quiet and self.asleep:
            self.asleep = False
            self.t.wake(now)
        # what this step queued (a send, a wake, an SMS) starts now, not at
        # the next step: that could be a retry back-off later, making the
        # first ALERT late and its retry a duplicate right behind it
        t_wait = min(t_wait, self.t.poll(now))
        wait = min(t_wait, c_wait, o_wait, _IDLE_MAX_MS, self.next_battery - now)
        bd = self.button.next_deadline(now)
        if bd is not None and bd < wait:
            wait = bd
        if wait > 1000 and (self.pending_call is not None or self.ctl.active()):
            wait = 1000  # during an alert GNSS is read while fresh (see _read_gnss)
        return wait if wait > 0 else 0

    def can_light_sleep(self):
        """True when nothing but the button can need us before the next
        deadline (no alert, empty outbox, transport idle)."""
        return (not self.dead and self.outbox.count() == 0 and not self.ctl.active()
                and not self.t.busy() and self.pending_call is None)

    def _read_gnss(self, now):
        s = self.board.gnss
        if s is None:
            return
        # after a long gap (the loop idled) the buffered sentences may be
        # that old: stamp them with the gap's start, so a stale position is
        # never reported live and never sets the clock
        last = self.gnss_read_at
        self.gnss_read_at = now
        stamp = now
        if last is not None and now - last > _GNSS_BACKLOG_MS:
            stamp = last
        for _ in range(_GNSS_CHUNKS):
            data = s.read(_GNSS_CHUNK)
            if not data:
                break
            try:
                self.fix.feed(data, stamp)
            except Exception:
                self.gnss_errors += 1  # the tracker should count, not raise
        if stamp != now:
            self.gnss_backlog += 1
            return
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
            self.t.wake(now)
        self.ctl.fire(a, now)

    def _on_transport(self, e, now):
        kind = e[0]
        if kind == "frame":
            res = self.outbox.on_frame(e[1], now)
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

    def _actions(self, now):
        while self.ctl.actions:
            act = self.ctl.actions.pop(0)
            if act[0] == "call":
                self.pending_call = act[1]
        if self.pending_call is not None and not self.t.busy():
            if self.t.start_call(self.pending_call, now):
                self.pending_call = None
