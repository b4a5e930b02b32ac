"""The LilyGO T-SIM7600E board (ESP32-WROVER + SIM7600E) as a Board.

Owns: pins, UARTs, ADC, RTC, watchdog and radio power of this one board.
Never decides anything: the app does. Only this module and main.py import
`machine`.

Pins (config "pins" overrides any of them; -1 = not fitted):
  modem UART1  tx 27, rx 26, 115200 baud, 1 KB rxbuf (SIM7600 bursts)
  modem_pwrkey 4   through the board's transistor: pin high = key pressed
                   (SIM7600 hardware design: >= 100 ms, typ. 500 ms on;
                   >= 2.5 s off; UART ready ~12 s after power-on)
  modem_power  12  supply switch of the modem (high = on). On some board
                   revisions the same net lights an LED: remove that LED
                   (or its resistor) before field use.
  modem_dtr    32  high lets the modem sleep (AT+CSCLK=1), low wakes it
  modem_flight 25  high = normal operation (low = flight mode)
  modem_ri     33  RTC GPIO, ext1 wake on low: a URC wakes light sleep
  GNSS UART2   rx 19, tx 18, 9600 baud, 1 KB rxbuf (an external NMEA
               module; wire to suit)
  button       39  RTC GPIO (ext0 wake on low), input only, needs an
                   external pull-up; pressed = low (an active-high button
                   needs esp32.WAKEUP_ANY_HIGH here). idle() polls it every
                   10 ms and returns on any change.
  battery_adc  35  behind a 2:1 divider
  led          -1  not driven (the covert build never lights anything)

Wi-Fi: the radio is off except inside wifi_scan() (only called during an
alert), which switches the station interface on, scans once, and switches
it off again. Bluetooth is never started.

Must stay in sync with: firmware/board.py (the contract),
firmware/config.py (pin names), docs/firmware.md.
"""

import time

import esp32
import machine
import network

from firmware.board import (
    CLOCK_VALID_AFTER,
    EPOCH_OFFSET,
    FLASH_DIR,
    RESET_BROWNOUT,
    RESET_DEEP_SLEEP,
    RESET_HARD,
    RESET_POWER_ON,
    RESET_SOFT,
    RESET_UNKNOWN,
    RESET_WATCHDOG,
    Board,
)

PINS = {
    "button": 39,
    "modem_tx": 27,
    "modem_rx": 26,
    "modem_pwrkey": 4,
    "modem_power": 12,
    "modem_dtr": 32,
    "modem_flight": 25,
    "modem_ri": 33,
    "gnss_tx": 18,
    "gnss_rx": 19,
    "battery_adc": 35,
    "led": -1,
}
MODEM_BAUD = 115200
GNSS_BAUD = 9600
RXBUF = 1024
WDT_MS = 60000
_MODEM_OUTPUTS = ("modem_pwrkey", "modem_power", "modem_dtr", "modem_flight")


class _UartStream:
    def __init__(self, uart):
        self.uart = uart

    def read(self, n=256):
        if not self.uart.any():
            return None
        return self.uart.read(n)

    def write(self, b):
        return self.uart.write(b) or 0

    def waiting(self):
        """Bytes are in the UART buffer (Board.idle returns on them)."""
        return self.uart.any() > 0


class _ConsoleStream:
    """USB serial (the REPL's port). Non-blocking read via select."""

    def __init__(self):
        import select
        import sys

        self._in = sys.stdin
        self._out = sys.stdout
        self._poll = select.poll()
        self._poll.register(sys.stdin, select.POLLIN)

    def read(self, n=64):
        out = bytearray()
        while len(out) < n and self._poll.poll(0):
            c = self._in.read(1)
            if not c:
                break
            out.extend(c.encode() if isinstance(c, str) else c)
        return bytes(out) if out else None

    def write(self, b):
        self._out.write(b.decode() if isinstance(b, (bytes, bytearray)) else b)
        return len(b)


class Esp32Board(Board):
    def __init__(self, pins=None, flash_dir=FLASH_DIR, watchdog=True):
        p = dict(PINS)
        if pins:
            p.update(pins)
        self.p = p
        self.flash_dir = flash_dir
        self._cause = self._map_cause(machine.reset_cause())
        self._outs = {}
        # every output at its quiet level first: modem off, key released
        self._out("modem_power", 0)
        self._out("modem_pwrkey", 0)
        self._out("modem_dtr", 0)
        self._out("modem_flight", 1)
        self._out("led", 0)
        bp = p["button"]
        if bp >= 34:  # 34..39 are input only, without pulls: external pull-up
            self._button = machine.Pin(bp, machine.Pin.IN)
        else:
            self._button = machine.Pin(bp, machine.Pin.IN, machine.Pin.PULL_UP)
        esp32.wake_on_ext0(self._button, esp32.WAKEUP_ALL_LOW)
        if p["modem_ri"] >= 0:
            # the modem pulls RI low for a URC (downlink data, SMS, call):
            # it must wake a light-sleeping ESP32 before the UART overflows
            self._ri = machine.Pin(p["modem_ri"], machine.Pin.IN)
            esp32.wake_on_ext1((self._ri,), esp32.WAKEUP_ALL_LOW)
        self.modem = _UartStream(machine.UART(1, baudrate=MODEM_BAUD, tx=p["modem_tx"], rx=p["modem_rx"],
                                              rxbuf=RXBUF, timeout=0))
        self.gnss = None
        if p["gnss_rx"] >= 0:
            self.gnss = _UartStream(machine.UART(2, baudrate=GNSS_BAUD, tx=p["gnss_tx"], rx=p["gnss_rx"],
                                                 rxbuf=RXBUF, timeout=0))
        self.console = _ConsoleStream()
        self._adc = None
        if p["battery_adc"] >= 0:
            self._adc = machine.ADC(machine.Pin(p["battery_adc"]))
            self._adc.atten(machine.ADC.ATTN_11DB)
        self._radio_off()
        self._wdt = machine.WDT(timeout=WDT_MS) if watchdog else None

    # ------------------------------------------------------------ helpers
    def _out(self, name, level):
        n = self.p.get(name, -1)
        if n < 0:
            return
        pin = self._outs.get(name)
        if pin is None:
            pin = machine.Pin(n, machine.Pin.OUT, value=level)
            self._outs[name] = pin
        pin.value(level)

    @staticmethod
    def _map_cause(c):
        m = {
            machine.PWRON_RESET: RESET_POWER_ON,
            machine.HARD_RESET: RESET_HARD,
            machine.WDT_RESET: RESET_WATCHDOG,
            machine.DEEPSLEEP_RESET: RESET_DEEP_SLEEP,
            machine.SOFT_RESET: RESET_SOFT,
        }
        bo = getattr(machine, "BROWN_OUT_RESET", None)
        if bo is not None:
            m[bo] = RESET_BROWNOUT
        return m.get(c, RESET_UNKNOWN)

    def _radio_off(self):
        try:
            network.WLAN(network.STA_IF).active(False)
            network.WLAN(network.AP_IF).active(False)
        except Exception:
            pass

    # ------------------------------------------------------------ Board
    def button_level(self):
        return self._button.value()

    def battery_mv(self):
        if self._adc is None:
            return None
        return self._adc.read_uv() * 2 // 1000  # 2:1 divider

    def reset_cause(self):
        return self._cause

    def wifi_scan(self):
        wlan = network.WLAN(network.STA_IF)
        try:
            wlan.active(True)
            found = wlan.scan()
        except Exception:
            found = []
        finally:
            try:
                wlan.active(False)
            except Exception:
                pass
        out = [(bytes(r[1]), r[3]) for r in found]
        out.sort(key=lambda x: -x[1])
        return out[:3]

    def modem_power(self, on):
        self._out("modem_power", 1 if on else 0)

    def modem_pwrkey(self, level):
        self._out("modem_pwrkey", 1 if level else 0)

    def modem_dtr(self, level):
        self._out("modem_dtr", 1 if level else 0)

    def ticks_ms(self):
        return time.ticks_ms()

    def ticks_diff(self, a, b):
        return time.ticks_diff(a, b)

    def time(self):
        t = time.time() + EPOCH_OFFSET
        return t if t >= CLOCK_VALID_AFTER else None

    def set_time(self, unix):
        if unix < CLOCK_VALID_AFTER:
            return
        g = time.gmtime(unix - EPOCH_OFFSET)  # (y, mo, d, h, mi, s, wd, yd)
        machine.RTC().datetime((g[0], g[1], g[2], g[6], g[3], g[4], g[5], 0))

    def feed_watchdog(self):
        if self._wdt is not None:
            self._wdt.feed()

    def light_sleep(self, ms):
        if self._button.value() == 0:
            # held: ext0 (wake on low) would wake at once; wait awake instead
            self.idle(ms)
            return
        self.feed_watchdog()
        machine.lightsleep(ms)
        self.feed_watchdog()

    def deep_sleep(self, ms):
        machine.deepsleep(ms)

    def output_pins(self):
        return {name: pin.value() for name, pin in self._outs.items()}

    def modem_pins(self):
        return _MODEM_OUTPUTS
