"""Hidden button pattern detector.

Owns: debouncing the raw pin level and recognising the patterns that raise
and end an alert. Fed (level, now_ms) at any sample rate; returns at most
one event per call. Never reads a pin or a clock, never gives feedback:
nothing here lights, buzzes or prints, and a duress cancel leaves the
detector in exactly the state a cancel does.

Debounce: a level counts only once it has been seen unchanged at two
samples at least debounce_ms apart (so a spike shorter than debounce_ms is
never a press, whatever the sample rate). The edge time is the first
sample of the new level. Active-low pins are handled as level ^ sense.

Patterns (defaults; all configurable):
  alert not active
    SOS     3 presses whose press-downs fall within 2.5 s (fires on the
            release of the 3rd), or one hold of >= 3 s (fires at 3 s,
            without waiting for the release)
    TEST    only with test_enabled: 2 presses, then a hold of >= 2 s
            (test_presses / test_hold_ms). With test enabled this hold
            wins over the 3 s SOS hold; it is off in production.
  alert active
    CANCEL  a hold of >= 6 s
    DURESS_CANCEL  5 presses within 4 s (fires on the 5th release)
A press is counted on its release, only if no hold event fired during it
and it was no longer than press_max_ms (1.5 s); a longer one clears the
count (pocket pressure is long, deliberate taps are short). Only the active-alert state needs the 5-press pattern and there SOS
is not wanted, so 3 and 5 never compete. Patterns fire as soon as they
are complete (nothing waits: an alert must leave at once); the count is
then final because every event is followed by a re-arm period: the button
must be released and left alone for rearm_ms (default 2 s) before any
press counts again, and each press during it restarts it. So a panicked
burst of 8 presses raises one SOS and never becomes a duress cancel, and
the hold that raised SOS can never run on into a 6 s CANCEL.

Transitions (the table _T below; anything else raises LocalError naming
the state and the input):
    IDLE  --press-->          DOWN
    DOWN  --release-->        IDLE    (a press counted, maybe an event)
    DOWN  --release_fire-->   QUIET   (the press completed a pattern)
    DOWN  --hold_fire-->      SPENT   (a hold threshold was reached)
    SPENT --release-->        QUIET
    QUIET --press-->          SPENT   (absorbed, re-arm restarts on release)
    QUIET --rearm-->          IDLE
Must stay in sync with: firmware/config.py (ButtonConfig.from_dict keys),
docs/firmware-sensing.md (pattern, transition and settings tables:
tests/test_docs_firmware.py checks them), firmware/button_events.py (the
event codes, kept there so the App maps them without loading this module).
"""

from firmware.button_events import EV_CANCEL, EV_DURESS_CANCEL, EV_SOS, EV_TEST
from protocol.errors import LocalError  # an illegal transition: our bug, never bad input

try:
    from micropython import const  # pyright: ignore[reportAssignmentType]
except ImportError:  # CPython

    def const(x):
        return x


EVENT_NAMES = {EV_SOS: "SOS", EV_CANCEL: "CANCEL", EV_DURESS_CANCEL: "DURESS_CANCEL", EV_TEST: "TEST"}

# states
S_IDLE = const(0)
S_DOWN = const(1)
S_SPENT = const(2)
S_QUIET = const(3)
STATE_NAMES = ("IDLE", "DOWN", "SPENT", "QUIET")

# inputs of the state table
I_PRESS = const(0)
I_RELEASE = const(1)
I_RELEASE_FIRE = const(2)
I_HOLD_FIRE = const(3)
I_REARM = const(4)
INPUT_NAMES = ("press", "release", "release_fire", "hold_fire", "rearm")

_T = {
    (S_IDLE, I_PRESS): S_DOWN,
    (S_DOWN, I_RELEASE): S_IDLE,
    (S_DOWN, I_RELEASE_FIRE): S_QUIET,
    (S_DOWN, I_HOLD_FIRE): S_SPENT,
    (S_SPENT, I_RELEASE): S_QUIET,
    (S_QUIET, I_PRESS): S_SPENT,
    (S_QUIET, I_REARM): S_IDLE,
}


def transitions():
    """The table as (state name, input name, next state name) rows, for docs."""
    return sorted((STATE_NAMES[s], INPUT_NAMES[i], STATE_NAMES[n]) for (s, i), n in _T.items())


# name: (default, min, max); booleans have min None
_FIELDS = (
    ("active_low", True, None, None),
    ("debounce_ms", 30, 1, 500),
    ("sos_presses", 3, 2, 10),
    ("sos_window_ms", 2500, 200, 20000),
    ("sos_hold_ms", 3000, 500, 60000),
    ("cancel_hold_ms", 6000, 500, 60000),
    ("duress_presses", 5, 2, 10),
    ("duress_window_ms", 4000, 200, 20000),
    ("test_enabled", False, None, None),
    ("test_presses", 2, 1, 10),
    ("test_hold_ms", 2000, 500, 60000),
    ("rearm_ms", 2000, 0, 30000),
    ("press_max_ms", 1500, 100, 10000),
)


class ButtonConfig:
    """Pattern settings. Build from JSON with from_dict (validated)."""

    # set from _FIELDS by __init__; declared here for the type checker
    active_low: bool
    debounce_ms: int
    sos_presses: int
    sos_window_ms: int
    sos_hold_ms: int
    cancel_hold_ms: int
    duress_presses: int
    duress_window_ms: int
    test_enabled: bool
    test_presses: int
    test_hold_ms: int
    rearm_ms: int
    press_max_ms: int

    def __init__(self, **kw):
        for name, default, _, _ in _FIELDS:
            setattr(self, name, kw.pop(name, default))
        if kw:
            raise ValueError("button: unknown setting %r" % sorted(kw)[0])
        self.validate()

    @classmethod
    def from_dict(cls, d):
        if not isinstance(d, dict):
            raise ValueError("button: settings must be an object")
        for k in d:
            if not isinstance(k, str):
                raise ValueError("button: setting names must be strings")
        return cls(**d)

    def to_dict(self):
        return {name: getattr(self, name) for name, _, _, _ in _FIELDS}

    def validate(self):
        for name, _, lo, hi in _FIELDS:
            v = getattr(self, name)
            if lo is None:
                if v is not True and v is not False:
                    raise ValueError("button: %s must be true or false" % name)
            elif type(v) is not int:
                raise ValueError("button: %s must be an integer" % name)
            elif not lo <= v <= hi:  # pyright: ignore[reportOperatorIssue]
                raise ValueError("button: %s must be %d..%d, not %d" % (name, lo, hi, v))
        d = self.debounce_ms
        if self.sos_window_ms < (self.sos_presses - 1) * 4 * d:
            raise ValueError("button: sos_window_ms too short for sos_presses presses at debounce_ms")
        if self.duress_window_ms < (self.duress_presses - 1) * 4 * d:
            raise ValueError("button: duress_window_ms too short for duress_presses presses at debounce_ms")
        for name in ("sos_hold_ms", "cancel_hold_ms", "test_hold_ms"):
            if getattr(self, name) <= 4 * d:
                raise ValueError("button: %s must be longer than 4 x debounce_ms" % name)
        if self.test_enabled and self.test_hold_ms >= self.sos_hold_ms:
            raise ValueError("button: test_hold_ms must be shorter than sos_hold_ms")


class ButtonDetector:
    def __init__(self, cfg=None):
        self.cfg = cfg if cfg is not None else ButtonConfig()
        self._sense = 1 if self.cfg.active_low else 0
        self.state = S_IDLE
        self.alert_active = False
        self._raw = 0  # last sampled pressed-ness (0/1)
        self._raw_since = None  # time of the first sample at _raw
        self._pressed = 0  # debounced
        self._down_ms = 0  # debounced press-down time of the current press
        self._quiet_ms = 0  # start of the re-arm period
        self._downs = []  # press-down times of counted presses (newest last)

    # ---- inputs ---------------------------------------------------------

    def set_alert_active(self, active):
        active = bool(active)
        if active != self.alert_active:
            self.alert_active = active
            self._downs = []

    def update(self, level, now_ms):
        """Feed one raw pin sample. Returns EV_* or None."""
        raw = (1 if level else 0) ^ self._sense
        if self._raw_since is None:
            # first sample ever: taken as settled. A press seen here is
            # the press that woke the device from deep sleep: it counts,
            # from this sample on (a hold-SOS from sleep must work).
            self._raw = raw
            self._raw_since = now_ms
            self._pressed = raw
            if raw:
                self._go(I_PRESS)
                self._down_ms = now_ms
            return None
        ev = None
        if raw != self._raw:
            self._raw = raw
            self._raw_since = now_ms
        elif raw != self._pressed and now_ms - self._raw_since >= self.cfg.debounce_ms:
            self._pressed = raw
            ev = self._edge(raw, self._raw_since)
        if ev is None:
            ev = self._timers(now_ms)
        return ev

    def _go(self, inp):
        nxt = _T.get((self.state, inp))
        if nxt is None:
            raise LocalError("button: no transition from %s on %s" % (STATE_NAMES[self.state], INPUT_NAMES[inp]))
        self.state = nxt

    def _edge(self, pressed, t):
        if pressed:
            self._go(I_PRESS)
            self._down_ms = t
            return None
        if self.state == S_SPENT:
            self._go(I_RELEASE)
            self._quiet_ms = t
            return None
        c = self.cfg
        if t - self._down_ms > c.press_max_ms:
            # too long for a press, too short for a hold: not a pattern
            # element, and it breaks any count in progress
            self._downs = []
            self._go(I_RELEASE)
            return None
        # a counted press
        ds = self._downs
        ds.append(self._down_ms)
        if self.alert_active:
            n, w, ev = c.duress_presses, c.duress_window_ms, EV_DURESS_CANCEL
        else:
            n, w, ev = c.sos_presses, c.sos_window_ms, EV_SOS
        keep = max(c.sos_presses, c.duress_presses, c.test_presses)
        if len(ds) > keep:
            del ds[0]
        if len(ds) >= n and ds[-1] - ds[-n] <= w:
            self._downs = []
            self._go(I_RELEASE_FIRE)
            self._quiet_ms = t
            return ev
        self._go(I_RELEASE)
        return None

    def _hold_plan(self):
        """(threshold ms, event) for the press now down, or None."""
        c = self.cfg
        if self.alert_active:
            return c.cancel_hold_ms, EV_CANCEL
        if c.test_enabled and self._test_prefix():
            return c.test_hold_ms, EV_TEST
        return c.sos_hold_ms, EV_SOS

    def _test_prefix(self):
        c = self.cfg
        ds = self._downs
        n = c.test_presses
        if len(ds) < n:
            return False
        # exactly test_presses presses, all within the SOS window of this press
        if len(ds) > n and self._down_ms - ds[-n - 1] <= c.sos_window_ms:
            return False
        return self._down_ms - ds[-n] <= c.sos_window_ms

    def _timers(self, now_ms):
        st = self.state
        if st == S_DOWN:
            thr, ev = self._hold_plan()
            # a release being debounced ends the hold at its first sample
            end = now_ms if self._raw else self._raw_since
            if end - self._down_ms >= thr:  # pyright: ignore[reportOptionalOperand]
                self._downs = []
                self._go(I_HOLD_FIRE)
                return ev
        elif st == S_QUIET and not self._raw and now_ms - self._raw_since >= self.cfg.rearm_ms \
                and now_ms - self._quiet_ms >= self.cfg.rearm_ms:
            self._go(I_REARM)
        return None

    def pattern_idle(self, now_ms):
        """True when no press is down and none that could still belong to a
        pattern was counted: a blocking job (a Wi-Fi scan) may start without
        sitting in the middle of someone's presses. (Edges that come during
        it are latched by the board and fed afterwards with their times.)"""
        if self.state != S_IDLE or self._raw:
            return False
        ds = self._downs
        if not ds:
            return True
        c = self.cfg
        w = c.duress_window_ms if self.alert_active else c.sos_window_ms
        return now_ms - ds[-1] > w

    # ---- scheduling -------------------------------------------------------

    def next_deadline(self, now_ms):
        """Milliseconds from now_ms until the detector needs another sample
        even if the pin does not change (0 = now), or None when only a pin
        edge can matter (the main loop may sleep until the button wakes it).
        Feed the sample at (or after) the deadline: early is harmless."""
        if self._raw_since is None:
            return None
        due = None
        if self._raw != self._pressed:
            due = self._raw_since + self.cfg.debounce_ms
        st = self.state
        if st == S_DOWN:
            thr, _ = self._hold_plan()
            t = self._down_ms + thr
            due = t if due is None or t < due else due
        elif st == S_QUIET:
            t = max(self._quiet_ms, self._raw_since) + self.cfg.rearm_ms
            due = t if due is None or t < due else due
        if due is None:
            return None
        d = due - now_ms
        return d if d > 0 else 0
