"""SimBoard: the firmware's Board (firmware/board.py) over the simulated world.

Owns: the board side of one virtual-time run. Inputs come from the world
(button level from the scenario's button edges, GNSS bytes from
world.gnss, battery from the energy model), the modem UART and pins go to
the Sim7600 emulator, the wall clock is the scenario's start_utc plus
virtual time (unknown after a cold boot when the scenario says so, or after
a power cut), flash is firmware.fs.Fs on a temporary directory with
power-cut injection wired to the world (arm_flash_cut -> the n-th flash
step from now raises PowerCut and the world cuts the power).

It records, for the invariants: every output pin change (modem pins
included, so a test can tell them apart), every haptic() call (must never
happen), everything written to the USB console (nothing may be), the
watchdog feeds and the longest gap between them, and the ESP32 power state
it reports to the energy model (active while stepping; idle or light sleep
between steps, as main.py chooses).

Never does: sleep or block. light_sleep()/idle()/deep_sleep() only note the
state and the requested wake time; the runner (host_sim/runner.py) moves
the clock and wakes the App early on a button edge.

Must stay in sync with: firmware/board.py (the contract), firmware/main.py
(the sleep choice), host_sim/world.py, host_sim/modem.py.
"""

from firmware.board import RESET_POWER_ON, Board
from firmware.fs import Fs, PowerCut


class _Gnss:
    """The GNSS UART: bytes the emulator has put on the wire by now."""

    def __init__(self, board):
        self.b = board
        self._buf = b""

    def read(self, n=256):
        if not self.b.world.powered:
            return None
        if not self._buf:
            self._buf = self.b.world.gnss.read(self.b.now())
        if not self._buf:
            return None
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def write(self, data):
        self.b.world.gnss.write(bytes(data), self.b.now())
        return len(data)

    def drop(self):
        self._buf = b""


class _Modem:
    """The modem UART: the emulator's output due by now."""

    def __init__(self, board):
        self.b = board
        self._buf = b""

    def read(self, n=512):
        if not self._buf:
            self._buf = self.b.emu.read(self.b.now())
        if not self._buf:
            return None
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def write(self, data):
        self.b.emu.write(bytes(data), self.b.now())
        return len(data)

    def drop(self):
        self._buf = b""


class _Console:
    """USB serial: anything written is recorded (the invariant says: nothing)."""

    def __init__(self, board):
        self.b = board

    def read(self, n=256):
        return None

    def write(self, data):
        self.b.printed(bytes(data).decode("utf-8", "replace"))
        return len(data)


class _SimFs(Fs):
    """Fs on a host directory with the scenario's `at_flash_write` cut: the
    n-th atomic write after arming is torn (power goes at its "write" step,
    after the temp file was opened) and the world cuts the power."""

    def __init__(self, root, on_cut):
        super().__init__(root)
        self._on_cut = on_cut
        self.cut_in = 0  # atomic writes to go before the torn one (0: none armed)

    def write_atomic(self, name, data):
        if self.cut_in > 0:
            self.cut_in -= 1
            if self.cut_in == 0:
                self.cut_at = self.steps + 1
        try:
            super().write_atomic(name, data)
        except PowerCut:
            self._on_cut()
            raise

    def remove(self, name):
        try:
            return super().remove(name)
        except PowerCut:
            self._on_cut()
            raise


class SimBoard(Board):
    MODEM_PINS = ("modem_pwrkey", "modem_power", "modem_dtr")

    def __init__(self, world, emu, flash_dir, recorder=None, wifi=None, clock_known=True):
        self.world = world
        self.emu = emu
        self.rec = recorder
        self.flash_dir = flash_dir
        self.gnss = _Gnss(self)
        self.modem = _Modem(self)
        self.console = _Console(self)
        self.wifi = list(wifi or [])
        self.level = 1  # active-low button, released
        self.cause = RESET_POWER_ON
        self.boot_ms = 0  # virtual time of the last boot (ticks_ms counts from it)
        self._unix0 = (world.scenario.start_utc_ms // 1000) if clock_known else None  # wall clock at now == 0
        self.pins = {"modem_pwrkey": 0, "modem_power": 1, "modem_dtr": 0, "led": 0}
        self.haptics = 0
        self.scans = 0
        self.feeds = 0
        self.last_feed = 0
        self.max_feed_gap_ms = 0
        self.esp32 = None
        self.wake_at = None
        self.fs = _SimFs(flash_dir, self._flash_cut)

    # -- the clock of the run
    def now(self):
        return self.world.clock.now

    # -- inputs
    def button_level(self):
        return self.level

    def battery_mv(self):
        return self.world.battery_mv()

    def reset_cause(self):
        return self.cause

    def wifi_scan(self):
        """The scenario's access points in range now (none by default)."""
        self.scans += 1
        if self.wifi:
            return list(self.wifi)
        return self.world.scenario.wifi_at(self.now())

    # -- modem control (pins recorded, then to the emulator)
    def _set(self, name, level):
        if self.pins.get(name) != level:
            self.pins[name] = level
            if self.rec is not None:
                self.rec.pin(self.now(), name, level)

    def modem_power(self, on):
        self._set("modem_power", 1 if on else 0)
        self.emu.power(bool(on) and self.world.powered, self.now())

    def modem_pwrkey(self, level):
        self._set("modem_pwrkey", level)
        self.emu.pwrkey(level, self.now())

    def modem_dtr(self, level):
        self._set("modem_dtr", level)
        self.emu.dtr(level, self.now())

    # -- time
    def ticks_ms(self):
        return self.now() - self.boot_ms

    def ticks_diff(self, a, b):
        return a - b

    def time(self):
        if self._unix0 is None:
            return None
        return self._unix0 + self.now() // 1000

    def set_time(self, unix):
        self._unix0 = int(unix) - self.now() // 1000

    def unix_now(self):
        """The true wall clock (for the receiver), whatever the device knows."""
        return self.world.scenario.start_utc_ms / 1000.0 + self.now() / 1000.0

    # -- power, watchdog
    def feed_watchdog(self):
        now = self.now()
        self.feeds += 1
        gap = now - self.last_feed
        if gap > self.max_feed_gap_ms:
            self.max_feed_gap_ms = gap
        self.last_feed = now

    def set_esp32(self, state):
        if state != self.esp32:
            self.esp32 = state
            self.world.set_state("esp32", state)

    def idle(self, ms):
        self.set_esp32("idle")
        self.wake_at = self.now() + ms

    def light_sleep(self, ms):
        self.set_esp32("light_sleep")
        self.wake_at = self.now() + ms

    def deep_sleep(self, ms):
        self.set_esp32("deep_sleep")
        self.wake_at = self.now() + ms

    def haptic(self, ms):
        self.haptics += 1
        if self.rec is not None:
            self.rec.pin(self.now(), "haptic", 1)

    def output_pins(self):
        return dict(self.pins)

    def modem_pins(self):
        return self.MODEM_PINS

    def printed(self, text):
        if self.rec is not None and text:
            self.rec.print_(self.now(), text)

    # -- power cuts
    def arm_flash_cut(self, n):
        """Tear the n-th atomic flash write from now (n >= 1)."""
        self.fs.cut_in = max(1, int(n))

    def _flash_cut(self):
        if self.world.powered:
            self.world.flash_cut()

    def power_lost(self):
        """Battery removed: RAM and RTC gone; flash keeps what was committed."""
        self._unix0 = None
        self.gnss.drop()
        self.modem.drop()
        self.esp32 = None

    def power_back(self):
        self.fs.cut_at = -1
        self.fs.steps = 0
        self.cause = RESET_POWER_ON
        self.boot_ms = self.now()
        self.pins = {"modem_pwrkey": 0, "modem_power": 1, "modem_dtr": 0, "led": 0}
