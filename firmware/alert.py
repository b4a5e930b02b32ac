"""The alert controller: what the device says, when, and in which state.

Owns: the alert state machine (one transition table), building and
sealing every uplink frame (ALERT, TRACK, CANCEL, HEARTBEAT, TEST, STATUS)
with the device keys, TRACK / heartbeat / Wi-Fi-scan timing, reacting to
authenticated ACKs and their operator commands, and the persisted state
record. Never reads a pin, a UART or a clock: the app passes `now` (ms)
and an `env` with position(now), cell(now), csq(), battery_pct(), unix(now).
Never waits for GNSS: an ALERT is sealed with whatever is known at once.

States: IDLE, ALERTING (ALERT not yet ACKed), TRACKING (ALERT ACKed),
COVERT (duress-cancelled: looks exactly like IDLE to the wearer and the
button, keeps sending TRACKs with the duress flag inside the encryption).

Position provenance, best first: live GNSS fix, last known fix (with its
age); beside it the serving cell (a cell TLV) and Wi-Fi BSSIDs (up to
three, only during an alert, only if config allows). Coordinates go out
only from a position the device holds (docs/protocol.md, "Position
semantics"): with only cell or Wi-Fi observations the frame is source 0,
flag clear, with the TLVs, and the receiver resolves them itself. A scan
takes seconds, so it is done right after the ALERT has been handed to the
transport; its BSSIDs go into an immediate TRACK.

Write order (crash safety, see docs/firmware.md): the outbox entry first
(the commit point), then the state record; restore() reconciles a reset
between the two from what the outbox holds.

Must stay in sync with: firmware/outbox.py (priorities, SMS flags),
firmware/store.py (state record), docs/firmware.md (transition table and
fault codes: tests/test_docs_firmware.py checks them against this code).
"""

from protocol import frame as F
from protocol.errors import EncodeError, LocalError  # LocalError: an illegal transition (our bug)

try:
    from micropython import const  # pyright: ignore[reportAssignmentType]
except ImportError:  # CPython

    def const(x):
        return x


IDLE = const(0)
ALERTING = const(1)
TRACKING = const(2)
COVERT = const(3)
STATE_NAMES = ("IDLE", "ALERTING", "TRACKING", "COVERT")

SOS = const(1)
CANCEL = const(2)
DURESS = const(3)
TEST = const(4)
ACKED = const(5)
STAND_DOWN = const(6)
EVENT_NAMES = ("", "SOS", "CANCEL", "DURESS", "TEST", "ACKED", "STAND_DOWN")

# (state, event) -> (new state, action). Anything absent is illegal.
TABLE = {
    (IDLE, SOS): (ALERTING, "alert"),
    (IDLE, TEST): (IDLE, "test"),
    (ALERTING, SOS): (ALERTING, "track"),
    (ALERTING, ACKED): (TRACKING, None),
    (ALERTING, CANCEL): (IDLE, "cancel"),
    (ALERTING, DURESS): (COVERT, "duress"),
    (ALERTING, STAND_DOWN): (IDLE, "stand_down"),
    (TRACKING, SOS): (TRACKING, "track"),
    (TRACKING, CANCEL): (IDLE, "cancel"),
    (TRACKING, DURESS): (COVERT, "duress"),
    (TRACKING, STAND_DOWN): (IDLE, "stand_down"),
    (COVERT, SOS): (ALERTING, "alert"),
    (COVERT, ACKED): (COVERT, None),
    (COVERT, STAND_DOWN): (IDLE, "stand_down"),
}

ACTIVE = (ALERTING, TRACKING, COVERT)

FAULT_CONFIG = const(1)
FAULT_EXCEPTION = const(2)
FAULT_SEQ_STORE = const(3)
FAULT_STATE_STORE = const(4)
FAULT_OUTBOX_CORRUPT = const(5)
FAULT_BUTTON_CONFIG = const(6)

_NEVER = const(-1)


def transitions():
    """The table as (state, event, next state, action) name rows, by state
    then event: docs/firmware.md holds it, tests/test_docs_firmware.py
    checks the two are the same."""
    return [(STATE_NAMES[s], EVENT_NAMES[e], STATE_NAMES[n], a or "") for (s, e), (n, a) in sorted(TABLE.items())]


def diagram():
    """The transition table as text lines."""
    return ["%-9s + %-10s -> %-9s %s" % row for row in transitions()]


def _clip(v, lo, hi):
    return lo if v < lo else hi if v > hi else v


def _cell_ok(c):
    try:
        mcc, mnc, tac, cid, rsrp = c
        return (0 <= mcc < 65536 and 0 <= mnc < 65536 and 0 <= tac < 1 << 32 and 0 <= cid < 1 << 32
                and -32768 <= rsrp < 32768)
    except (TypeError, ValueError):
        return False


def _clip_u16(v):
    if v is None or v < 0:
        return F.UNKNOWN_U16
    return v if v < F.UNKNOWN_U16 else F.UNKNOWN_U16 - 1


class AlertController:
    def __init__(self, cfg, keys, seqs, outbox, states, env, rand=None):
        self.cfg = cfg
        self.keys = keys
        self.seqs = seqs
        self.outbox = outbox
        self.states = states
        self.env = env
        self.rand = rand if rand is not None else outbox.rand
        self.state = IDLE
        self.duress = False
        self.interval = cfg.t("track_interval_s")
        self.alert_seq = 0
        self.next_track = _NEVER
        self.had_live_fix = False
        self.wifi = []
        self.next_scan = _NEVER
        self.last_track_sms = _NEVER
        self.next_hb = _NEVER
        self.battery_low = False
        self.actions = []  # ("call", number) for the app
        self.frames_made = 0

    # ------------------------------------------------------------ table
    def allowed(self, ev):
        return (self.state, ev) in TABLE

    def fire(self, ev, now):
        key = (self.state, ev)
        if key not in TABLE:
            raise LocalError("event %s is illegal in state %s" % (
                EVENT_NAMES[ev] if 0 <= ev < len(EVENT_NAMES) else ev, STATE_NAMES[self.state]))
        new, action = TABLE[key]
        old = self.state
        if action is not None:
            getattr(self, "_do_" + action)(now, old)
        self.state = new
        self._save()
        return new

    def looks_active(self):
        """What the wearer and the button may know: COVERT looks idle."""
        return self.state in (ALERTING, TRACKING)

    def active(self):
        return self.state in ACTIVE

    def _save(self):
        self.states.save(self.state, self.duress, self.interval, self.alert_seq)

    # ------------------------------------------------------------ restore
    def restore(self, rec, now):
        """After a reset: take the saved record and reconcile it with the
        outbox. Returns True if an alert is running again."""
        if rec is not None:
            st, du, iv, aseq = rec
            if 0 <= st < len(STATE_NAMES):
                self.state, self.duress, self.interval, self.alert_seq = st, bool(du), iv, aseq
        ob = self.outbox
        alerts = [e.seq for e in ob.entries if e.ftype == F.ALERT]
        if alerts and max(alerts) > self.alert_seq:
            # reset between writing the ALERT and the state record
            self.state, self.duress, self.alert_seq = ALERTING, False, max(alerts)
            self.interval = self.cfg.t("track_interval_s")
        for e in ob.entries:
            if e.ftype == F.CANCEL and e.seq > self.alert_seq and self.state in (ALERTING, TRACKING):
                # reset between writing the CANCEL and the state record
                try:
                    du = getattr(F.decode(self.keys, e.raw, F.UPLINK).body, "duress", False)
                except Exception:
                    du = False
                self.state, self.duress = (COVERT, True) if du else (IDLE, False)
        if self.state == ALERTING and not ob.pending(F.ALERT):
            self.state = TRACKING  # its ACK arrived before the reset
        self._save()
        if self.active():
            self.next_track = now  # a fresh position at once
            self.next_scan = now if self.cfg.wifi_scan else _NEVER
        else:
            self._plan_heartbeat(now)
        return self.active()

    # ------------------------------------------------------------ actions
    def _do_alert(self, now, old):
        self.duress = False
        self.interval = self.cfg.t("track_interval_s")
        self.wifi = []
        seq, pos = self._send(F.ALERT, now, sms=True)
        self.alert_seq = seq
        self.had_live_fix = pos is not None and pos.source == F.SRC_GNSS
        self.next_track = now + self.interval * 1000 if self.interval else _NEVER
        self.next_scan = now if self.cfg.wifi_scan else _NEVER
        self.next_hb = _NEVER

    def _do_track(self, now, old):
        self.next_track = now

    def _do_cancel(self, now, old):
        self._send(F.CANCEL, now, sms=True)
        self._end(now)

    def _do_duress(self, now, old):
        self.duress = True
        self._send(F.CANCEL, now, sms=True)  # same type and size as a plain cancel

    def _do_stand_down(self, now, old):
        self._end(now)

    def _do_test(self, now, old):
        self._send(F.TEST, now)

    def _end(self, now):
        self.duress = False
        self.next_track = _NEVER
        self.next_scan = _NEVER
        self.wifi = []
        self._plan_heartbeat(now)

    # ------------------------------------------------------------ inputs
    def on_ack(self, ftype, fr, now):
        """An authenticated ACK for one of our frames (from the outbox)."""
        if ftype == F.ALERT and self.allowed(ACKED) and fr.body.acked_seq == self.alert_seq:
            self.fire(ACKED, now)
        for t, v in fr.body.commands:
            if t == F.C_TRACKING and self.active():
                self.interval = v
                self.next_track = now + v * 1000 if v else _NEVER
                self._save()
            elif t == F.C_STAND_DOWN and self.allowed(STAND_DOWN):
                self.fire(STAND_DOWN, now)
            elif t == F.C_LISTEN_IN and self.active() and self.cfg.listen_number:
                self.actions.append(("call", self.cfg.listen_number))

    def want_scan(self, now):
        return self.active() and self.cfg.wifi_scan and self.next_scan != _NEVER and now - self.next_scan >= 0

    def on_scan(self, results, now):
        """Keep the three strongest BSSIDs; a TRACK carries them at once."""
        best = []
        for item in results or ():
            try:
                bssid, rssi = bytes(item[0]), int(item[1])
            except (TypeError, ValueError, IndexError):
                continue
            if len(bssid) == 6 and -128 <= rssi <= 127:
                best.append((rssi, bssid))
        best.sort(reverse=True)
        self.wifi = [(b, r) for r, b in best[: F.MAX_WIFI]]
        self.next_scan = now + self.cfg.t("wifi_rescan_s") * 1000
        if self.wifi and self.active():
            self.next_track = now

    def check_battery(self, mv, now):
        low = self.cfg.t("low_battery_mv")
        if mv is None:
            return
        if not self.battery_low and mv < low:
            self.battery_low = True
            self.status(now, [(F.EV_LOW_BATTERY, mv // 10)])
        elif self.battery_low and mv > low + 100:
            self.battery_low = False

    def status(self, now, events):
        """A STATUS frame carrying (code, detail) events."""
        self._send(F.STATUS, now, events=events)

    # ------------------------------------------------------------ timers
    def step(self, now):
        """Run due timers; returns ms until the next one."""
        if self.active():
            pos = self.env.position(now)
            if not self.had_live_fix and pos is not None and pos.source == F.SRC_GNSS:
                self.had_live_fix = True  # first live fix since the alert: send it now
                self.next_track = now
            if self.next_track != _NEVER and now - self.next_track >= 0:
                self._send(F.TRACK, now, sms=self._track_sms(now))
                self.next_track = now + self.interval * 1000 if self.interval else _NEVER
        elif self.next_hb != _NEVER and now - self.next_hb >= 0:
            self._send(F.HEARTBEAT, now)
            self._plan_heartbeat(now)
        wait = 3600000
        scan = self.next_scan if self.active() and self.cfg.wifi_scan else _NEVER
        for t in (self.next_track, self.next_hb, scan):
            if t != _NEVER and t - now < wait:
                wait = t - now
        return wait if wait > 0 else 0

    def _track_sms(self, now):
        gap = self.cfg.t("sms_track_s") * 1000
        if self.last_track_sms == _NEVER or now - self.last_track_sms >= gap:
            self.last_track_sms = now
            return True
        return False

    def _plan_heartbeat(self, now):
        period = self.cfg.t("heartbeat_s")
        jit = self.cfg.t("heartbeat_jitter_s")
        off = self.rand(2 * jit + 1) - jit if jit else 0
        self.next_hb = now + (period + off) * 1000

    # ------------------------------------------------------------ frames
    def _report(self, ftype, now, events):
        env = self.env
        pos = env.position(now)
        try:
            cell = env.cell(now)  # None when not read recently (firmware/app.py)
        except Exception:
            cell = None
        tlvs = []
        if not _cell_ok(cell):
            cell = None  # a garbled modem answer: no cell rather than no frame
        if cell is not None:
            tlvs.append((F.T_CELL, tuple(cell)))
        r = F.Report()
        if pos is not None:
            r.source = pos.source
            r.lat = pos.lat
            r.lon = pos.lon
            r.accuracy = _clip_u16(pos.accuracy_m)
            r.age = _clip_u16(pos.age_s)
            if pos.alt_m is not None and pos.speed_cms is not None and pos.course_cdeg is not None:
                tlvs.append((F.T_MOTION, (_clip(pos.alt_m, -32768, 32767), _clip(pos.speed_cms, 0, 65535),
                                          _clip(pos.course_cdeg, 0, 35999))))
            if pos.sats is not None and pos.hdop_x10 is not None:
                tlvs.append((F.T_GNSS, (_clip(pos.sats, 0, 255), _clip(pos.hdop_x10, 0, 255))))
        # else: source 0 with the cell and Wi-Fi TLVs (observations, not a
        # position: the device never sends placeholder coordinates)
        for ev in events or ():
            tlvs.append((F.T_EVENT, ev))
        if self.active():
            for w in self.wifi:
                tlvs.append((F.T_WIFI, w))
        r.tlvs = F.sms_order(tlvs)
        b = env.battery_pct()
        r.battery = F.UNKNOWN_BATTERY if b is None else b
        q = env.csq()
        r.csq = q if isinstance(q, int) and 0 <= q <= 31 else F.UNKNOWN_CSQ
        r.duress = self.duress and ftype in (F.CANCEL, F.TRACK)
        r.battery_low = self.battery_low
        r.test = ftype == F.TEST
        return r, pos

    def _seal(self, ftype, seq, t, r):
        """Encode; a value out of range (a broken sensor) must never cost the
        frame: drop the GNSS position and its TLVs, then every TLV but the
        events, before giving up (values are range-checked when the report is
        built, so this is the last line, not the normal path)."""
        fr = F.Frame(ftype, self.cfg.device_id, seq, t, r)
        try:
            return F.encode(self.keys, fr)
        except EncodeError:
            pass
        r.tlvs = [x for x in r.tlvs if x[0] not in (F.T_MOTION, F.T_GNSS)]
        r.source, r.lat, r.lon, r.accuracy, r.age = F.SRC_NONE, None, None, F.UNKNOWN_U16, F.UNKNOWN_U16
        try:
            return F.encode(self.keys, fr)
        except EncodeError:
            pass
        r.tlvs = [x for x in r.tlvs if x[0] == F.T_EVENT]
        return F.encode(self.keys, fr)

    def _send(self, ftype, now, sms=False, events=None):
        r, pos = self._report(ftype, now, events)
        t = self.env.unix(now) or 0
        seq = self.seqs.take()
        raw = self._seal(ftype, seq, t, r)
        self.outbox.add(ftype, seq, raw, now, sms=sms)
        self.frames_made += 1
        return seq, pos
