"""A board made of plain attributes, for tests and the in-process simulator.

Owns: nothing but recorded state. The test sets the button level, pushes
GNSS bytes, advances `now`; the board records every output pin change in
`pin_log` as (now, name, level) and the last 32 sleep requests in `sleeps`;
a sleep ends early at the next time listed in `wakes` (a button change).
Device-safe (no CPython-only modules).
"""

from firmware.board import Board, RESET_POWER_ON


class FakeStream:
    def __init__(self):
        self.rx = bytearray()
        self.tx = bytearray()

    def feed(self, b):
        self.rx.extend(b)

    def read(self, n=256):
        if not self.rx:
            return None
        out = bytes(self.rx[:n])
        self.rx = self.rx[n:]
        return out

    def readinto(self, buf):
        k = min(len(buf), len(self.rx))
        buf[:k] = memoryview(self.rx)[:k]
        self.rx[:k] = b""  # in place, as a UART's buffer: no copy of the rest
        return k

    def write(self, b):
        self.tx.extend(b)
        return len(b)


class FakeBoard(Board):
    def __init__(self, flash_dir="flash", now=0, unix=None):
        self.flash_dir = flash_dir
        self.now = now
        self.unix = unix  # wall clock at now == 0, or None
        self.level = 1  # released (active-low button)
        self.mv = 4000
        self.cause = RESET_POWER_ON
        self.gnss = FakeStream()
        self.modem = FakeStream()
        self.console = FakeStream()
        self.scan = []
        self.scans = 0
        self.pins = {"modem_pwrkey": 0, "modem_dtr": 0, "led": 0}
        self.pin_log = []
        self.sleeps = []
        self.wakes = []  # sorted times when the button changes (ends a sleep early)
        self.feeds = 0
        self.haptics = 0

    def button_level(self):
        return self.level

    def battery_mv(self):
        return self.mv

    def reset_cause(self):
        return self.cause

    def wifi_scan(self):
        self.scans += 1
        return list(self.scan)

    def _set(self, name, level):
        if self.pins.get(name) != level:
            self.pin_log.append((self.now, name, level))
        self.pins[name] = level

    def modem_pwrkey(self, level):
        self._set("modem_pwrkey", level)

    def modem_dtr(self, level):
        self._set("modem_dtr", level)

    def set_led(self, level):  # only a buggy firmware would call this
        self._set("led", level)

    def ticks_ms(self):
        return self.now

    def ticks_diff(self, a, b):
        return a - b

    def time(self):
        if self.unix is None:
            return None
        return self.unix + self.now // 1000

    def set_time(self, unix):
        self.unix = unix - self.now // 1000

    def feed_watchdog(self):
        self.feeds += 1

    def _wait(self, kind, ms):
        self.sleeps.append((kind, ms))
        if len(self.sleeps) > 32:  # a long simulation must not grow the heap
            self.sleeps.pop(0)
        end = self.now + ms
        for w in self.wakes:  # the button wakes the board early
            if self.now < w < end:
                end = w
                break
        self.now = end

    def idle(self, ms):
        self._wait("idle", ms)

    def light_sleep(self, ms):
        self._wait("light", ms)

    def deep_sleep(self, ms):
        self.sleeps.append(("deep", ms))
        self.now += ms

    def haptic(self, ms):
        self.haptics += 1

    def output_pins(self):
        return dict(self.pins)

    def modem_pins(self):
        return ("modem_pwrkey", "modem_dtr")
