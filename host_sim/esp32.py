"""MicroPython's ESP32 port, as firmware/board_esp32.py sees it, in
virtual time: the modules `machine`, `esp32`, `network`, `time`, `select`
and `micropython` over the simulated world, the SIM7600 emulator and the
board table (firmware/boards/), so the simulator runs the very board
driver that runs on the device.

Owns: one chip and what is wired to it. Pins (inputs from the world and
the modem, outputs recorded and passed to the modem), the two UARTs, the
ADC, the RTC, the watchdog, light sleep with its wake sources, Pin
interrupts and the scheduler that runs them, Wi-Fi scans, select.poll.
Blocking calls (time.sleep_ms, poll.poll, machine.lightsleep, WLAN.scan)
advance the world through `host.advance(until, stop)`; everything else
takes no time.

What is modelled, and where each fact comes from (MicroPython 1.29 source,
ports/esp32, unless said otherwise):
- Pin interrupts are soft: the ISR schedules the handler
  (machine_pin.c machine_pin_isr_handler: mp_sched_schedule, then
  mp_hal_wake_main_task_from_isr); it runs at the next bytecode
  boundary or inside poll/sleep_ms, reads the pin as it is then, and is
  dropped silently when the queue of 8 is full (mpconfigport.h
  MICROPY_SCHEDULER_DEPTH; py/scheduler.c). Nothing runs during a
  blocking C call (WLAN.scan: network_wlan.c releases the GIL but runs no
  callbacks). Here: handlers queued by edges during a blocking call run
  at the next call into any of these modules.
- poll.poll: a Pin interrupt wakes it at once (mp_hal_wake_main_task_
  from_isr); UART bytes are seen at its next look, once per FreeRTOS tick
  (MICROPY_EVENT_POLL_HOOK: ulTaskNotifyTake(1 tick); the UART task wakes
  the main task only when a UART irq is set, machine_uart.c): modelled as
  the next 10 ms boundary from the call (CONFIG_FREERTOS_HZ=100).
- UART.irq(handler, trigger=IRQ_RX) (MicroPython 1.24+, machine_uart.c
  uart_event_task; `hard=True` raises ValueError): each UART_DATA event
  schedules the handler (a slot of the same queue of 8 as the pins,
  dropped when full) and wakes the main task. The IDF posts UART_DATA on
  its RX timeout after a burst or at its RX FIFO threshold. machine_uart.c
  (1.22 to 1.29 alike) sets the timeout to timeout_char / (12000 // baud
  + 1) symbols and, when that is under one (timeout_char's default 0),
  the threshold to 1 byte: an event for every byte. Otherwise the IDF's
  threshold stays (120 bytes, components/driver/uart.c
  UART_FULL_THRESH_DEFAULT). Modelled as one event per arrival the world
  delivers (each line the modem says: an idle gap is assumed after
  every line, the pessimistic reading, since the modem's pacing between
  lines is not documented), seen UART_IRQ_MS (1 ms, pessimistic) after
  it, at any time but light sleep (the UART's clock is gated then). Not
  modelled, and counted instead (`uart_byte_events` in the summary: the
  UARTs given an IRQ_RX handler without a character time of
  timeout_char): the event per byte, and the event at 120 bytes inside
  one longer line.
- machine.lightsleep(ms): wakes on the timer, on ext0 (esp32.wake_on_ext0,
  level) and ext1 (wake_on_ext1, ALL_LOW/ANY_HIGH) (modmachine.c
  machine_sleep_helper); no edge interrupt runs; the UARTs' clock is
  gated so every byte that arrives meanwhile is lost (esp-idf#8098; no
  UART wake in the port). The ESP32 state goes to the energy model.
  Pads armed for ext0/ext1 are left on the RTC mux and read 0 (and
  interrupt on nothing) until a Pin is built on them with an explicit
  mode, which calls rtc_gpio_deinit (machine_pin.c; esp-idf#245,
  micropython#3835): `rtc_pad_stuck` (default on: the pessimistic case;
  the sources describe deep sleep, light sleep is not documented).
- machine.WDT: the task watchdog keeps counting in light sleep (unknown:
  pessimistic) and resets the chip (WatchdogReset) when not fed in time.
  reset_cause() after it: WDT_RESET (the port maps ESP_RST_TASK_WDT so;
  it may also say HARD_RESET after the panic: unknown).
- reset_cause() after a power cut or brown-out: PWRON_RESET
  (modmachine.c maps ESP_RST_BROWNOUT there too).
- time.ticks_ms wraps at 2**30 (MICROPY_PY_TIME_TICKS_PERIOD on a 32-bit
  port); time.time() counts from 2000-01-01; gmtime() gives the 8-tuple.
- WLAN.scan() blocks for SCAN_MS: all 13 channels, active, 120 ms dwell
  each (ESP-IDF defaults: about 1.6 s) plus switching, taken as 2 s; STA
  must be active (network_wlan.c). Results (ssid, bssid, channel, RSSI,
  authmode, hidden) from the scenario's access points in range.
- Pins 34-39 are input only, without pulls (ESP32 datasheet; LilyGO
  REAMDE.MD:125): OUT or a pull there raises ValueError, as on the chip.
- UART: rxbuf bytes at most; more is dropped (counted), as the IDF driver
  drops data when its ring buffer is full.
- esp32.PCNT (MicroPython 1.26+, esp32_pcnt.c): counts the pin's edges
  in hardware whatever the CPU does, except in light sleep (its APB clock
  is gated: pessimistic); value(0) reads and clears. Edges here are clean
  (the button's RC filter, docs/hardware.md): no bounce is modelled.

Must stay in sync with: firmware/board_esp32.py (what it calls),
firmware/boards/ (pin functions), host_sim/modem.py (modem lines),
host_sim/runner.py (host.advance, the handlers that feed inputs).
"""

import importlib.abc
import importlib.machinery
import os
import sys
import time as _ctime
import types
from typing import Any

from firmware.board import UNIX_2000
from firmware.fs import Fs, MemFs, PowerCut

TICKS_PERIOD = 1 << 30
SCHED_DEPTH = 8
POLL_TICK_MS = 10
UART_IRQ_MS = 1  # UART_DATA posted after the burst's RX timeout, the main task woken: pessimistic
SCAN_MS = 2000
POLLIN = 1
_POLL = 3

BOARD_SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "firmware", "board_esp32.py")
_CODE = None


class WatchdogReset(BaseException):
    """The watchdog was not fed in time: the chip resets (no `except
    Exception` in the firmware can catch a reset)."""


class RunEnd(BaseException):
    """The scenario's end: the world stops here."""


class _Torn:
    """The scenario's `at_flash_write` cut: the n-th atomic write after
    arming is torn (power goes at its "write" step, after the temp file
    was opened) and the world cuts the power."""

    cut_in: int  # atomic writes to go before the torn one (0: none armed)
    cut_at: int  # (firmware/fs.py Fs)
    steps: int
    _on_cut: Any

    def write_atomic(self, name, data):
        if self.cut_in > 0:
            self.cut_in -= 1
            if self.cut_in == 0:
                self.cut_at = self.steps + 1
        try:
            super().write_atomic(name, data)  # pyright: ignore[reportAttributeAccessIssue]
        except PowerCut:
            self._on_cut()
            raise

    def remove(self, name):
        try:
            return super().remove(name)  # pyright: ignore[reportAttributeAccessIssue]
        except PowerCut:
            self._on_cut()
            raise


class SimFs(_Torn, Fs):
    """Fs on a host directory (a flash that outlives the run: `panic sim
    device --flash DIR`), with the scenario's flash-write cut."""

    def __init__(self, root, on_cut):
        Fs.__init__(self, root)
        self._on_cut, self.cut_in = on_cut, 0


class SimMemFs(_Torn, MemFs):
    """The same flash in RAM (firmware/fs.py MemFs: the same LittleFS
    semantics and step counts), for a run whose flash ends with it: no
    directory made and removed, no host file opened per write."""

    def __init__(self, on_cut):
        MemFs.__init__(self)
        self._on_cut, self.cut_in = on_cut, 0


class Chip:
    """One ESP32 on a board described by `table`, wired to `host`'s world.

    host provides: clock (virtual ms), world, emu (Sim7600), rec
    (Recorder or None), advance(until, stop) -> None (runs the world until
    `until` or until stop() is true; raises PowerCut, RunEnd or
    WatchdogReset through here), button_level(), wifi_at(t), and the
    scenario's start_utc_ms."""

    def __init__(self, host, table, pins=None, rtc_pad_stuck=True):
        self.host = host
        self.table = table
        g = {}
        for name, spec in table.PINS.items():
            g[name] = spec[0]
        for k, v in (pins or {}).items():
            if k in g:
                g[k] = v
        self.gpio_of = g
        self.name_of = {v: k for k, v in g.items() if v >= 0}
        self.lights = set(table.LIGHTS)
        self.rtc_pad_stuck = rtc_pad_stuck
        self.divider = table.FACTS["battery_divider"][0]
        # counters over the whole run
        self.irq_dropped = 0
        self.uart_lost = 0
        self.uart_overrun = 0
        self.scans = 0
        self.lightsleeps = 0
        self.wdt_resets = 0
        self.max_feed_gap_ms = 0
        self.feeds = 0
        self.uart_byte_events = set()  # UART ids whose IRQ_RX would wake the main task per byte (see UART)
        self.rtc_unix = None  # wall clock (Unix s) at boot_ms, or None: not set
        self.modules = self._modules()
        self.power_on(0, clock_known=False)

    # -- life -----------------------------------------------------------------
    def power_on(self, now, clock_known=False, cause=1):
        """A reset: pins back to inputs, interrupts and wake sources gone,
        RAM gone. cause: machine's reset cause for reset_cause()."""
        self.boot_ms = now
        self.cause = cause
        self.pins = {}  # gpio -> _PinState
        self.pcnt = {}  # unit -> _Pcnt
        self.sched = []
        self._in_handler = False
        self.wake: dict[str, Any] = {"ext0": None, "ext1": None}
        self.wake_reason = 0
        self.wdt_ms = None
        self.last_feed = now
        self.uarts = {}
        self.wlan_on = False
        # what was on its way to the old UARTs is gone with their buffers
        host = self.host
        if host.world.powered:
            if self.table.PINS["gnss_rx"][0] >= 0:
                host.world.gnss.read(now)
            host.emu.read(now)
        if clock_known:
            self.rtc_unix = self.host.start_utc_ms // 1000 + now // 1000
            self.rtc_at = now
        elif cause == 1:
            self.rtc_unix = None  # the RTC lost its time with the battery
        self.state = None
        self.set_state("active")

    def set_state(self, st):
        if st != self.state:
            self.state = st
            if self.host.world.powered:
                self.host.world.set_state("esp32", st)

    def now(self):
        return self.host.clock.now

    # -- the scheduler ------------------------------------------------------------
    def _isr(self, st):
        """A GPIO edge: schedule the handler (dropped when the queue is full)."""
        if len(self.sched) >= SCHED_DEPTH:
            self.irq_dropped += 1
            return
        self.sched.append(st)

    def run_pending(self):
        """Run the scheduled handlers, one after another, never one inside
        another (py/scheduler.c holds the scheduler lock while one runs).
        The API's functions call it only when one is queued (`if
        chip.sched`): most calls found none, and the call was the cost."""
        if self._in_handler:
            return
        self._in_handler = True
        try:
            while self.sched:
                st = self.sched.pop(0)
                if st.handler is not None:
                    st.handler(st.pin_obj)
        finally:
            self._in_handler = False

    def uart_rx(self):
        """The world moved on: UARTs with an RX interrupt see what arrived
        (none in light sleep: the UART's clock is gated)."""
        host = self.host
        if self.state == "light_sleep" or not host.world.powered:
            return
        for u in self.uarts.values():
            q = u.irq_
            # (rx_event's own first tests, before the call: usually nothing came)
            if q.handler is not None and q.trigger & 1 and (u.peer != "modem" or host.emu.output_due(host.clock.now)):
                u.rx_event()

    def input_changed(self, gpio, old, new):
        """The world moved an input (the button): interrupts on it."""
        if self.state != "light_sleep":
            for pc in self.pcnt.values():
                if pc.gpio == gpio and pc.running:
                    pc.count += pc.rising if new > old else pc.falling
        st = self.pins.get(gpio)
        if st is None or st.handler is None or st.stuck or st.mode != "in" or self.state == "light_sleep":
            return  # no edge interrupt in light sleep (only ext0/ext1 wake it)
        if (new and st.trigger & 1) or (not new and st.trigger & 2):
            self._isr(st)

    # -- inputs ---------------------------------------------------------------------
    def level(self, gpio):
        """What the pad reads now (RTC-mux stuck pads read 0)."""
        st = self.pins.get(gpio)
        if st is not None and st.stuck:
            return 0
        return self.true_level(gpio)

    def true_level(self, gpio):
        name = self.name_of.get(gpio)
        host = self.host
        now = self.now()
        if name == "button":
            return host.button_level()
        if name == "modem_status":
            return host.emu.status(now) if host.world.powered else 0
        if name == "modem_ri":
            return host.emu.ri(now) if host.world.powered else 1
        st = self.pins.get(gpio)
        if st is not None and st.mode == "out":
            return st.out
        if st is not None and st.pull == "up":
            return 1
        return 0  # floating: pessimistically low

    # -- outputs ----------------------------------------------------------------------
    def drive(self, gpio, level):
        name = self.name_of.get(gpio, "gpio%d" % gpio)
        host = self.host
        now = self.now()
        if host.rec is not None:
            host.rec.pin(now, name, level)
        host.on_pin(name, level)
        if not host.world.powered:
            return
        if name == "modem_pwrkey":
            host.emu.pwrkey(level, now)
        elif name == "modem_dtr":
            host.emu.dtr(level, now)

    # -- the watchdog --------------------------------------------------------------------
    def feed(self):
        now = self.now()
        gap = now - self.last_feed
        if gap > self.max_feed_gap_ms:
            self.max_feed_gap_ms = gap
        self.feeds += 1
        self.last_feed = now

    def wdt_deadline(self):
        return None if self.wdt_ms is None else self.last_feed + self.wdt_ms

    # -- blocking --------------------------------------------------------------------------
    def block(self, ms, stop=None, state="idle"):
        """The CPU waits up to ms (None: forever) for stop(): the world runs."""
        self.set_state(state)
        until = None if ms is None else self.now() + max(0, int(ms))
        try:
            self.host.advance(until, stop)
        finally:
            if self.host.world.powered:
                self.set_state("active")

    def wall_unix(self):
        if self.rtc_unix is None:
            return None
        return self.rtc_unix + (self.now() - self.rtc_at) // 1000

    # -- the modules ------------------------------------------------------------------------
    def _modules(self):
        chip = self
        m = {}

        # ---- time
        t = _module("time")

        def ticks_ms():
            if chip.sched:
                chip.run_pending()
            return (chip.now() - chip.boot_ms) % TICKS_PERIOD

        def ticks_diff(a, b):
            d = (a - b) % TICKS_PERIOD
            return d - TICKS_PERIOD if d >= TICKS_PERIOD // 2 else d

        def ticks_add(a, d):
            return (a + d) % TICKS_PERIOD

        def sleep_ms(ms):
            if chip.sched:
                chip.run_pending()
            if ms > 0:
                chip.block(ms, chip.run_pending_stop)
            if chip.sched:
                chip.run_pending()

        def tsleep(s):
            sleep_ms(int(s * 1000))

        def ttime():
            u = chip.wall_unix()
            return (u if u is not None else (chip.now() - chip.boot_ms) // 1000 + UNIX_2000) - UNIX_2000

        def gmtime(secs=None):
            if secs is None:
                secs = ttime()
            g = _ctime.gmtime(int(secs) + UNIX_2000)
            return (g.tm_year, g.tm_mon, g.tm_mday, g.tm_hour, g.tm_min, g.tm_sec, g.tm_wday, g.tm_yday)

        t.ticks_ms, t.ticks_diff, t.ticks_add = ticks_ms, ticks_diff, ticks_add
        t.sleep_ms, t.sleep, t.time, t.gmtime, t.localtime = sleep_ms, tsleep, ttime, gmtime, gmtime
        m["time"] = t

        # ---- machine
        mc = _module("machine")
        mc.PWRON_RESET, mc.HARD_RESET, mc.WDT_RESET, mc.DEEPSLEEP_RESET, mc.SOFT_RESET = 1, 2, 3, 4, 5
        mc.EXT0_WAKE, mc.EXT1_WAKE, mc.TIMER_WAKE = 2, 3, 4
        mc.PIN_WAKE = 2
        mc.SLEEP, mc.DEEPSLEEP = 2, 4
        mc.Pin = _make_pin(chip)
        mc.UART = _make_uart(chip)
        mc.ADC = _make_adc(chip)
        mc.WDT = _make_wdt(chip)
        mc.RTC = _make_rtc(chip)

        def reset_cause():
            return chip.cause

        def wake_reason():
            return chip.wake_reason

        def lightsleep(ms=None):
            if chip.sched:
                chip.run_pending()
            chip.lightsleep(ms)

        def deepsleep(ms=None):
            raise NotImplementedError("deep sleep is not modelled: the firmware never uses it")

        mc.reset_cause, mc.wake_reason, mc.lightsleep, mc.deepsleep = reset_cause, wake_reason, lightsleep, deepsleep
        m["machine"] = mc

        # ---- esp32
        e = _module("esp32")
        e.WAKEUP_ALL_LOW, e.WAKEUP_ANY_HIGH = False, True

        def wake_on_ext0(pin, level):
            if chip.sched:
                chip.run_pending()
            chip.wake["ext0"] = (pin.gpio, 1 if level else 0)

        def wake_on_ext1(pins, level):
            if chip.sched:
                chip.run_pending()
            chip.wake["ext1"] = (tuple(p.gpio for p in pins), bool(level))

        e.wake_on_ext0, e.wake_on_ext1 = wake_on_ext0, wake_on_ext1
        e.PCNT = _make_pcnt(chip)
        m["esp32"] = e

        # ---- network
        n = _module("network")
        n.STA_IF, n.AP_IF = 0, 1
        n.WLAN = _make_wlan(chip)
        m["network"] = n

        # ---- select
        s = _module("select")
        s.POLLIN, s.POLLOUT, s.POLLERR, s.POLLHUP = 1, 4, 8, 16
        s.poll = _make_poll(chip)
        m["select"] = s

        # ---- micropython
        mp = _module("micropython")
        mp.const = lambda x: x
        mp.kbd_intr = lambda c: None
        m["micropython"] = mp
        return m

    def run_pending_stop(self):
        """For a blocking call that runs handlers as they come (sleep_ms):
        run them, never stop early."""
        self.run_pending()
        return False

    # -- light sleep ---------------------------------------------------------------------
    def lightsleep(self, ms):
        self.lightsleeps += 1
        for u in self.uarts.values():
            u.pull()  # what arrived before the clock stopped
        armed = []
        ext0 = self.wake["ext0"]
        ext1 = self.wake["ext1"]
        if ext0 is not None:
            armed.append(ext0[0])
        if ext1 is not None:
            armed.extend(ext1[0])
        if self.rtc_pad_stuck:
            for gp in armed:
                st = self.pins.get(gp)
                if st is not None:
                    st.stuck = True  # on the RTC mux from now until re-initialised
        reason = [4]  # TIMER_WAKE

        def stop():
            if ext0 is not None and self.true_level(ext0[0]) == ext0[1]:
                reason[0] = 2
                return True
            if ext1 is not None:
                lv = [self.true_level(g) for g in ext1[0]]
                if (ext1[1] and any(lv)) or (not ext1[1] and not any(lv)):
                    reason[0] = 3
                    return True
            return False

        if stop():
            self.wake_reason = reason[0]
            return
        self.block(ms, stop, state="light_sleep")
        self.wake_reason = reason[0]
        for u in self.uarts.values():
            u.lose()  # everything that arrived while the clock was gated


def _module(name) -> Any:
    """A module object the chip fills with its functions and classes."""
    return types.ModuleType(name)


class _PinState:
    __slots__ = ("gpio", "mode", "pull", "out", "handler", "trigger", "stuck", "pin_obj")

    def __init__(self, gpio):
        self.gpio = gpio
        self.mode: str | None = None  # "in" / "out" once set
        self.pull: str | None = None  # "up" / "down" once set
        self.out = 0
        self.handler = None
        self.trigger = 3
        self.stuck = False
        self.pin_obj: Any = None  # the machine.Pin built on it last


def _make_pin(chip):
    class Pin:
        IN, OUT, OPEN_DRAIN = 1, 3, 7
        PULL_UP, PULL_DOWN = 1, 2
        IRQ_RISING, IRQ_FALLING = 1, 2
        WAKE_LOW, WAKE_HIGH = 4, 5

        def __init__(self, gpio, mode=None, pull=None, value=None):
            if not isinstance(gpio, int) or not (0 <= gpio <= 39) or gpio in (20, 24, 28, 29, 30, 31):
                raise ValueError("invalid pin")
            if 6 <= gpio <= 11:
                raise ValueError("pin %d is wired to the flash" % gpio)
            self.gpio = gpio
            st = chip.pins.get(gpio)
            if st is None:
                st = chip.pins[gpio] = _PinState(gpio)
            self._st = st
            st.pin_obj = self
            if mode is not None or pull is not None or value is not None:
                self.init(mode, pull, value)

        def init(self, mode=None, pull=None, value=None):
            if chip.sched:
                chip.run_pending()
            st = self._st
            gp = self.gpio
            newly_out = False
            if mode is not None:
                if mode == Pin.OUT and gp >= 34:
                    raise ValueError("pin can only be input")
                st.stuck = False  # rtc_gpio_deinit: back on the digital mux (machine_pin.c)
                out = mode in (Pin.OUT, Pin.OPEN_DRAIN)
                newly_out = out and st.mode != "out"
                st.mode = "out" if out else "in"
            if pull is not None:
                if gp >= 34:
                    raise ValueError("pins 34-39 have no pull-up or pull-down")
                st.pull = "up" if pull == Pin.PULL_UP else "down"
            if newly_out:
                # the pad starts driving now, at the level asked for (or the last written)
                st.out = (1 if value else 0) if value is not None else (st.out or 0)
                chip.drive(gp, st.out)
            elif value is not None:
                self.value(value)

        def value(self, v=None):
            if chip.sched:
                chip.run_pending()
            st = self._st
            if v is None:
                return chip.level(self.gpio)
            v = 1 if v else 0
            if st.mode != "out":
                st.out = v
                return None
            if v != st.out or st.out is None:
                st.out = v
                chip.drive(self.gpio, v)
            return None

        def __call__(self, v=None):
            return self.value(v)

        def on(self):
            self.value(1)

        def off(self):
            self.value(0)

        def irq(self, handler=None, trigger=3, wake=None):
            if chip.sched:
                chip.run_pending()
            if wake is not None:
                chip.wake["ext0"] = (self.gpio, 1 if trigger == Pin.WAKE_HIGH else 0)
                return None
            st = self._st
            st.handler = handler
            st.trigger = trigger
            return None

    return Pin


def _make_pcnt(chip):
    class PCNT:
        IGNORE, INCREMENT, DECREMENT = 0, 1, 2
        NORMAL, REVERSE, HOLD = 0, 1, 2

        def __new__(cls, unit, **kw):
            if not isinstance(unit, int) or not 0 <= unit < 8:
                raise ValueError("invalid id")
            obj = chip.pcnt.get(unit)
            if obj is None:
                obj: Any = object.__new__(cls)
                obj.unit, obj.gpio, obj.count, obj.rising, obj.falling, obj.running = unit, None, 0, 0, 0, True
                chip.pcnt[unit] = obj
            return obj

        def __init__(self, unit, **kw):
            self.init(**kw)

        def init(self, pin=None, rising=None, falling=None, filter=None, value=None, **kw):
            if chip.sched:
                chip.run_pending()
            if pin is not None:
                self.gpio = pin.gpio
            if rising is not None or falling is not None:
                self.rising = {0: 0, 1: 1, 2: -1}[rising or 0]
                self.falling = {0: 0, 1: 1, 2: -1}[falling or 0]
            if filter is not None and not 0 <= filter <= 1023:
                raise ValueError("filter")
            if value is not None:
                if value != 0:
                    raise ValueError("value")
                self.count = 0

        def value(self, v=None):
            if chip.sched:
                chip.run_pending()
            c = self.count
            if v is not None:
                if v != 0:
                    raise ValueError("value")
                self.count = 0
            return c

        def start(self):
            self.running = True

        def stop(self):
            self.running = False

    return PCNT


class _UartIrq:
    """A UART's user IRQ, as the scheduler queue holds it."""

    def __init__(self, uart):
        self.pin_obj = uart
        self.handler: Any = None  # callable(uart) or None
        self.trigger = 0
        self.seen_at: int | None = None  # when the last UART_DATA woke the main task


def _make_uart(chip):
    class UART:
        IRQ_RX = 1  # 1 << UART_DATA (machine_uart.c)
        IRQ_BREAK = 1 << 2  # 1 << UART_BREAK
        IRQ_RXIDLE = 0x1000

        def __init__(self, uid, baudrate=115200, tx=None, rx=None, rxbuf=256, timeout=0, timeout_char=0, **kw):
            if chip.sched:
                chip.run_pending()
            self.id = uid
            # machine_uart.c: RX timeout = timeout_char / (12000 // baud + 1)
            # symbols; below one, the RX FIFO threshold is 1 byte (an event
            # per byte, which this model does not deliver: it is counted)
            self.per_byte = int(timeout_char) // (12000 // int(baudrate) + 1) < 1
            chip.uart_byte_events.discard(uid)
            self.irq_ = _UartIrq(self)
            self.rxbuf = max(int(rxbuf), 257)  # the IDF driver needs more than its FIFO
            self.buf = bytearray()
            self._gnss_at = None  # the instant the GNSS was last read up to
            g = chip.gpio_of
            if rx is not None and rx == g.get("modem_rx") and tx == g.get("modem_tx"):
                self.peer = "modem"
            elif rx is not None and rx == g.get("gnss_rx"):
                self.peer = "gnss"
            else:
                self.peer = None
            chip.uarts[uid] = self

        def _incoming(self):
            host = chip.host
            now = chip.now()
            if not host.world.powered:
                return b""
            if self.peer == "modem":
                # nothing due: the emulator is not run (it already ran to
                # this instant: the world stops at every one of its events)
                return host.emu.read(now) if host.emu.output_due(now) else b""
            if self.peer == "gnss":
                if now == self._gnss_at:
                    return b""  # read up to this instant already: nothing more can have come
                self._gnss_at = now
                return host.world.gnss.read(now)
            return b""

        def pull(self):
            if self.peer == "modem":  # (the common case, inline: _incoming's first branch)
                host = chip.host
                now = host.clock.now
                if not host.world.powered or not host.emu.output_due(now):
                    return
                data = host.emu.read(now)
            else:
                data = self._incoming()
            if data:
                room = self.rxbuf - len(self.buf)
                if len(data) > room:
                    chip.uart_overrun += len(data) - max(0, room)
                    data = data[: max(0, room)]
                self.buf.extend(data)

        def lose(self):
            chip.uart_lost += len(self._incoming())

        def any(self):
            if chip.sched:
                chip.run_pending()
            self.pull()
            return len(self.buf)

        def read(self, n=-1):
            if chip.sched:
                chip.run_pending()
            self.pull()
            if not self.buf:
                return None
            if n is None or n < 0:
                n = len(self.buf)
            out = bytes(self.buf[:n])
            del self.buf[:n]
            return out

        def readinto(self, buf, nbytes=-1):
            # machine_uart.c: read at most len(buf) (or nbytes) of the bytes
            # the driver holds; with timeout=0 none held is a timeout: None
            if chip.sched:
                chip.run_pending()
            self.pull()
            if not self.buf:
                return None
            n = len(buf) if nbytes is None or nbytes < 0 else min(nbytes, len(buf))
            n = min(n, len(self.buf))
            buf[:n] = self.buf[:n]
            del self.buf[:n]
            return n

        def write(self, b):
            if chip.sched:
                chip.run_pending()
            host = chip.host
            if self.peer == "modem" and host.world.powered:
                host.emu.write(bytes(b), chip.now())
            elif self.peer == "gnss" and host.world.powered:
                host.world.gnss.write(bytes(b), chip.now())  # the module's RX (PMTK / PUBX commands)
            return len(b)

        def ready(self):
            self.pull()
            return bool(self.buf)

        def irq(self, handler=None, trigger=0, hard=False):
            if hard:
                raise ValueError("hard IRQ is not supported")
            if handler is not None and not callable(handler):
                raise ValueError("handler must be None or callable")
            if trigger & ~(UART.IRQ_RX | UART.IRQ_BREAK | UART.IRQ_RXIDLE):
                raise ValueError("trigger 0x%04x unsupported" % trigger)
            self.irq_.handler = handler
            self.irq_.trigger = trigger
            if handler is not None and trigger & UART.IRQ_RX and self.per_byte:
                chip.uart_byte_events.add(self.id)  # it would wake the main task for every byte
            return self.irq_

        def rx_event(self):
            """The world delivered bytes: with an IRQ_RX handler set, they
            are taken into the driver's buffer now, the handler scheduled
            and the main task woken (UART_IRQ_MS later)."""
            q = self.irq_
            if q.handler is None or not q.trigger & UART.IRQ_RX:
                return
            if self.peer == "modem" and not chip.host.emu.output_due(chip.now()):
                return  # nothing arrived (the common case: checked without running the emulator)
            n = len(self.buf)
            self.pull()
            if len(self.buf) > n:
                q.seen_at = chip.now() + UART_IRQ_MS
                chip._isr(q)

    return UART


def _make_adc(chip):
    class ADC:
        ATTN_0DB, ATTN_2_5DB, ATTN_6DB, ATTN_11DB = 0, 1, 2, 3

        def __init__(self, pin, atten=None):
            self.gpio = pin.gpio

        def atten(self, a):
            pass

        def read_uv(self):
            if chip.sched:
                chip.run_pending()
            if chip.name_of.get(self.gpio) != "battery_adc":
                return 0
            return chip.host.world.battery_mv() * 1000 // chip.divider

    return ADC


def _make_wdt(chip):
    class WDT:
        def __init__(self, id=0, timeout=5000):
            if timeout <= 0:
                raise ValueError("WDT timeout too short")
            chip.wdt_ms = int(timeout)
            chip.last_feed = chip.now()

        def feed(self):
            if chip.sched:
                chip.run_pending()
            chip.feed()

    return WDT


def _make_rtc(chip):
    class RTC:
        def datetime(self, dt=None):
            if chip.sched:
                chip.run_pending()
            if dt is None:
                return None
            y, mo, d, wd, h, mi, s = dt[:7]
            import calendar

            chip.rtc_unix = calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0))
            chip.rtc_at = chip.now()
            chip.host.on_clock_set(chip.rtc_unix)
            return None

    return RTC


def _make_wlan(chip):
    class WLAN:
        def __init__(self, interface=0):
            self.interface = interface

        def active(self, on=None):
            if chip.sched:
                chip.run_pending()
            if on is None:
                return chip.wlan_on if self.interface == 0 else False
            if self.interface == 0:
                chip.wlan_on = bool(on)
            return None

        def scan(self):
            if chip.sched:
                chip.run_pending()
            if not chip.wlan_on:
                raise OSError("STA must be active")
            chip.scans += 1
            t0 = chip.now()
            found = chip.host.wifi_at(t0)
            chip.block(SCAN_MS, None, state="active")  # handlers wait: none run in a C call
            chip.host.on_scan(t0, chip.now())
            return [(b"", bytes(b), 1, int(r), 3, False) for b, r in found]

    return WLAN


def _make_poll(chip):
    class Poll:
        def __init__(self):
            self.objs = []
            self.uarts = []
            self.streams = []
            self.kinds = []

        def register(self, obj, mask=POLLIN):
            self.unregister(obj)
            self.objs.append((obj, mask))
            self._sort()

        def unregister(self, obj):
            self.objs = [(o, m) for o, m in self.objs if o is not obj]
            self._sort()

        def _sort(self):
            # UARTs (ready()) and other streams (ioctl()), told apart once
            self.kinds = [(o, m, hasattr(o, "ready")) for o, m in self.objs if hasattr(o, "ready") or hasattr(o, "ioctl")]
            self.uarts = [o for o, _, uart in self.kinds if uart]
            self.streams = [(o, m) for o, m, uart in self.kinds if not uart]

        def modify(self, obj, mask):
            self.register(obj, mask)

        def _ready(self):
            out = []
            for o, m, uart in self.kinds:
                if uart:
                    if o.ready():
                        out.append((o, POLLIN))
                else:
                    r = o.ioctl(_POLL, m)
                    if r:
                        out.append((o, r))
            return out

        def poll(self, timeout=-1):
            if chip.sched:
                chip.run_pending()
            r = self._ready()
            if r or timeout == 0:
                return r
            start = chip.now()
            found = []
            uart_at = [None]

            def stop():
                if chip.sched:
                    chip.run_pending()  # a Pin interrupt wakes the main task: its handler runs now
                for o, m in self.streams:
                    if o.ioctl(_POLL, m):
                        found.append((o, m))
                        return True
                for o in self.uarts:
                    if o.ready():
                        q = getattr(o, "irq_", None)
                        if q is not None and q.seen_at is not None:
                            uart_at[0] = q.seen_at  # its UART_DATA woke the main task
                        else:
                            # seen at the poll loop's next look: a FreeRTOS tick boundary
                            k = (chip.now() - start + POLL_TICK_MS - 1) // POLL_TICK_MS
                            uart_at[0] = start + max(1, k) * POLL_TICK_MS
                        return True
                return False

            # (chip.block, and again to the instant a UART seen ready wakes
            # the task, in one idle span: no zero-length "active" between)
            chip.set_state("idle")
            try:
                chip.host.advance(None if timeout < 0 else start + max(0, int(timeout)), stop)
                if uart_at[0] is not None and chip.now() < uart_at[0] and (timeout < 0 or uart_at[0] <= start + timeout):
                    chip.host.advance(uart_at[0], None)
            finally:
                if chip.host.world.powered:
                    chip.set_state("active")
            if chip.sched:
                chip.run_pending()
            return found or self._ready()

    return Poll


class ConsoleSink:
    """The USB serial in the simulator: nobody types; everything the
    firmware writes is recorded (nothing may be, without an engineer)."""

    def __init__(self, host):
        self.host = host

    def read(self, n=256):
        return None

    def write(self, b):
        self.host.printed(bytes(b).decode("utf-8", "replace"))
        return len(b)


def load_board_module(chip):
    """firmware/board_esp32.py, executed with this chip's modules in place
    of MicroPython's: a module object holding Esp32Board."""
    global _CODE
    if _CODE is None:
        with open(BOARD_SRC) as f:
            _CODE = compile(f.read(), BOARD_SRC, "exec")
    import firmware.board  # noqa: F401  (imported with the real time module)

    mod = types.ModuleType("board_esp32_on_chip")
    mod.__file__ = BOARD_SRC
    names = ("machine", "esp32", "network", "select", "time", "micropython")
    saved = {k: sys.modules.get(k) for k in names}
    sys.modules.update({k: chip.modules[k] for k in names})
    try:
        exec(_CODE, mod.__dict__)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return mod


class _BootModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """An import finder for the modules the firmware drops after boot
    (firmware.loop.forget: firmware.config) and so imports again at every
    boot: here from code compiled once, not looked up and read from disk
    each time (a quarter of a millisecond, twice a boot). The module is
    still made anew and its body run, as on the device."""

    NAMES = ("firmware.config",)

    def __init__(self):
        self._code = {}  # name -> (path, code object)

    def find_spec(self, name, path=None, target=None):
        if name not in self.NAMES:
            return None
        hit = self._code.get(name)
        if hit is None:
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            get_code = getattr(spec.loader, "get_code", None) if spec is not None else None
            if spec is None or spec.origin is None or get_code is None:
                return None
            hit = self._code[name] = (spec.origin, get_code(name))
        spec = importlib.machinery.ModuleSpec(name, self, origin=hit[0])
        spec.has_location = True
        return spec

    def create_module(self, spec):
        return None  # the default module

    def exec_module(self, module):
        exec(self._code[module.__name__][1], module.__dict__)


_boot_modules = None


def cache_boot_modules():
    """Install _BootModules (once per process)."""
    global _boot_modules
    if _boot_modules is None:
        _boot_modules = _BootModules()
        sys.meta_path.insert(0, _boot_modules)


__all__ = ["Chip", "ConsoleSink", "RunEnd", "SimFs", "SimMemFs", "WatchdogReset", "cache_boot_modules",
           "load_board_module"]
