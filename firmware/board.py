"""The Board: everything the firmware needs from hardware, as one object.

Owns: the contract between the sans-I/O firmware and a concrete board (the
ESP32 board in board_esp32.py, the simulator's emulated board, the fake
board of the tests). Never holds policy: the app decides what to do, the
board only does it.

A stream (gnss, modem, console) has read(n) -> bytes or None (never
blocks; None or b"" when nothing is waiting) and write(b) -> int.

Covert rule: no method here may light, sound or show anything while an
alert runs. haptic() exists for boards that have a motor; the app never
calls it during an alert (a buzz could be felt by someone holding the
wearer). output_pins() lets a test prove that no output pin other than the
modem's control pins changes during an alert; which pins are lights is in
the board's table (firmware/boards/).

The button is read two ways: button_level() now, and button_edges(), the
edges an interrupt latched since the last call with the tick each happened
at, so a press during anything that blocks (a Wi-Fi scan, a flash write,
light sleep) is seen with its true timing, never swallowed.

Sleep: idle(ms) keeps every peripheral running; light_sleep(ms) stops the
CPU and, on the ESP32, the UART clocks: bytes that arrive are lost
(esp-idf#8098), and only the timer, the button and the modem's RI wake it.
take_ri_wake() says once that the last light sleep ended on RI (the URC
that pulsed it was lost).

Wall clock: time() is Unix seconds (UTC) or None when unknown. MicroPython
on ESP32 counts from 2000-01-01, the unix port from 1970-01-01:
EPOCH_OFFSET (from gmtime(0)) converts, so the rest of the firmware only
ever sees Unix time.

Must stay in sync with: firmware/board_esp32.py, tests/device/board_fake.py,
docs/firmware.md.
"""

import time as _time

UNIX_2000 = 946684800  # seconds from 1970-01-01 to 2000-01-01
IDLE_SLICE_MS = 10  # button sampling while idle (debounce is ~30 ms)
# The hardware watchdog's period on every board; the main loop never
# sleeps or backs off for more than half of it (firmware/loop.py).
WATCHDOG_MS = 60000
# Where the firmware keeps its files on every board: config.json (written
# there by tools/provision.py as /data/config.json), the outbox, the stores.
FLASH_DIR = "/data"


def epoch_offset():
    """Seconds to add to this interpreter's time.time() to get Unix time."""
    try:
        return UNIX_2000 if _time.gmtime(0)[0] == 2000 else 0
    except Exception:
        return 0


EPOCH_OFFSET = epoch_offset()
# A clock before this (2024-01-01) was never set: report "unknown".
CLOCK_VALID_AFTER = 1704067200

# reset causes (STATUS boot detail); boards map their own codes to these
RESET_POWER_ON = 1
RESET_HARD = 2
RESET_WATCHDOG = 3
RESET_DEEP_SLEEP = 4
RESET_SOFT = 5
RESET_BROWNOUT = 6
RESET_UNKNOWN = 0


class Board:
    """Documented base class. Every method has a safe default so a partial
    board (a test double) only overrides what it needs."""

    flash_dir = FLASH_DIR
    gnss = None  # stream from the GNSS receiver
    modem = None  # stream to/from the modem UART
    console = None  # USB serial, for the diagnostics console

    # --- inputs
    def button_level(self):
        """Raw level of the hidden button pin (0 or 1; the button config
        says which level is pressed)."""
        return 1

    def battery_mv(self):
        """Battery voltage in mV, or None if unknown."""
        return None

    def reset_cause(self):
        """One of the RESET_* codes for the last reset."""
        return RESET_UNKNOWN

    def wifi_scan(self):
        """List of (bssid 6 bytes, rssi dBm), strongest first. Radio on only
        for the scan, off again before returning. Only called during an
        alert. Default: nothing."""
        return []

    def button_edges(self):
        """[(level, ticks_ms)] latched since the last call, oldest first.
        Default: none (a board without an interrupt is only sampled)."""
        return ()

    def take_ri_wake(self):
        """True once after a light sleep that the modem's RI ended."""
        return False

    # --- modem control
    def modem_status(self):
        """The modem's STATUS line (1 on, 0 off), or None when the board
        does not wire it."""
        return None

    def modem_pwrkey(self, level):
        """Drive the modem PWRKEY line: level 1 = key pressed (the board
        hides any inverting transistor)."""

    def modem_dtr(self, level):
        """Drive the modem DTR line (SIM7600: high lets it sleep, low wakes
        it)."""

    # --- time
    def ticks_ms(self):
        return _time.ticks_ms()  # type: ignore[attr-defined]

    def ticks_diff(self, a, b):
        """a - b for ticks that wrap (MicroPython ticks_diff semantics)."""
        return _time.ticks_diff(a, b)  # type: ignore[attr-defined]

    def time(self):
        """Unix seconds UTC, or None when the clock was never set."""
        t = int(_time.time()) + EPOCH_OFFSET
        return t if t >= CLOCK_VALID_AFTER else None

    def set_time(self, unix):
        """Set the wall clock from Unix seconds (GNSS or an ACK)."""

    # --- power, watchdog
    def feed_watchdog(self):
        pass

    def idle(self, ms):
        """Wait up to ms with every peripheral running (UARTs receive).
        Returns early when the button level changes (a press during a wait
        must reach the pattern detector at once) or when the modem stream
        has bytes waiting (its optional waiting() method), so an AT answer
        is handled when it comes, not when the engine's timeout ends."""
        lvl = self.button_level()
        end = _time.ticks_add(_time.ticks_ms(), ms)  # type: ignore[attr-defined]
        m = self.modem
        waiting = getattr(m, "waiting", None) if m is not None else None
        while True:
            left = _time.ticks_diff(end, _time.ticks_ms())  # type: ignore[attr-defined]
            if left <= 0 or self.button_level() != lvl:
                return
            if waiting is not None and waiting():
                return  # a modem answer: the engine must not sit out its timeout
            _time.sleep_ms(left if left < IDLE_SLICE_MS else IDLE_SLICE_MS)  # type: ignore[attr-defined]

    def light_sleep(self, ms):
        """CPU light sleep up to ms, woken early by the button."""
        self.idle(ms)

    def deep_sleep(self, ms):
        """Deep sleep (a reset on wake), woken early by the button."""
        self.idle(ms)

    def haptic(self, ms):
        """Optional vibration; default none. Never used during an alert."""

    def output_pins(self):
        """{pin name: level} of every output pin the firmware drives."""
        return {}

    def modem_pins(self):
        """Names in output_pins() that belong to modem control."""
        return ()
