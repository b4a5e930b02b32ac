"""ESP32 boards as a Board: the driver that turns a board table
(firmware/boards/, e.g. the LilyGO T-SIM7600E) into machine calls.

Owns: pins, UARTs, ADC, RTC, watchdog, sleep and radio power of the board.
Never decides anything: the app does. Only this module and main.py import
`machine`. The simulator runs this very module over a model of
MicroPython's ESP32 port (host_sim/esp32.py), so what is written here about
the port is what the simulator does.

Facts of MicroPython's ESP32 port this driver is built on (micropython
1.29 source; each repeated where the simulator models it):
- Pin interrupts are soft: the handler is scheduled and runs later, at a
  bytecode boundary or inside poll/sleep_ms, and reads the pin as it is
  then (ports/esp32/machine_pin.c: mp_sched_schedule; no `hard=`); the
  queue holds 8 (mpconfigport.h MICROPY_SCHEDULER_DEPTH) and drops events
  silently when full (py/scheduler.c). During a blocking C call such as
  WLAN.scan() nothing runs. So each handler run latches one edge (the
  level toggles from the last latched one) at the tick it runs; edges
  latched just after a blocking call are spread over the time it blocked
  (they happened then); the level read afterwards settles any edge the
  queue dropped.
- machine.lightsleep(): wakes on the timer and the sources set by
  esp32.wake_on_ext0/ext1 (modmachine.c machine_sleep_helper); edge
  interrupts do not run in light sleep; the UARTs' clock is gated, so
  bytes that arrive are lost (esp-idf#8098), and there is no UART wake.
  The button (ext0, RTC GPIO) and the modem's RI (ext1) wake it.
- After an ext0/ext1 wake the pad stays on the RTC mux and reads 0
  (esp-idf#245, micropython#3835): Pin(n, Pin.IN) with an explicit mode
  calls rtc_gpio_deinit (machine_pin.c), so both wake pins are built anew
  after every light sleep.
- select.poll() sees UART bytes at its next look, once per FreeRTOS tick
  (10 ms), unless the UART has an IRQ_RX trigger with a handler: then the
  port's UART event task wakes the main task as soon as the IDF driver
  posts UART_DATA (RX timeout after a burst, or its FIFO threshold: 1 byte
  unless timeout_char is at least a character time, see the UARTs) and
  schedules the handler (machine_uart.c uart_event_task; MicroPython
  1.24+). The modem's UART gets one (a no-op handler) so a reply is read
  when it arrives, not up to a tick later; it uses a slot of the
  scheduler's queue per burst, so it is off during a Wi-Fi scan, when
  the queue cannot drain and the button's edges need it.
- machine.reset_cause() reports a brown-out as PWRON_RESET (modmachine.c):
  the two cannot be told apart here.
- WLAN.scan() blocks (all channels, active, default dwell: about 1.6 s on
  13 channels, network_wlan.c); the app never starts one in the middle of
  someone's presses, but a person may start pressing during it. Its edges
  wait in the scheduler's queue of 8, so a fast pattern loses some there:
  a pulse counter (esp32.PCNT, MicroPython 1.26+, ports/esp32/esp32_pcnt.c)
  counts the press-downs in hardware meanwhile, and when it saw more than
  the handlers latched, the scan's presses are rebuilt from its count,
  spread over the scan (their count is exact, their times are not). The
  counter has no debounce worth the name (a 12.8 us glitch filter): the
  button needs the RC filter of docs/hardware.md, or a bouncing press
  counts as several. Without esp32.PCNT (older images) the queue is all
  there is.

Pins come from the board table (config "pins" overrides; -1 = not
fitted). The board LED is driven low at boot and never again. PWRKEY,
DTR and FLIGHT are the only outputs that move.

Wi-Fi: the radio is off except inside wifi_scan() (only called during an
alert). Bluetooth is never started.

Must stay in sync with: firmware/board.py (the contract),
firmware/boards/ (the tables), host_sim/esp32.py (the model of the port),
docs/hardware.md.
"""

import io
import select
import time

import esp32
import machine
import network

from firmware.board import (
    CLOCK_VALID_AFTER,
    EPOCH_OFFSET,
    FLASH_DIR,
    RESET_DEEP_SLEEP,
    RESET_HARD,
    RESET_POWER_ON,
    RESET_SOFT,
    RESET_UNKNOWN,
    RESET_WATCHDOG,
    WATCHDOG_MS,
    Board,
)

RXBUF = 1024
# the GNSS UART's receive buffer: the App reads it every 3 s while GNSS runs
# (app.py _GNSS_READ_MS) and a 1 Hz receiver's NMEA is a few hundred bytes
# a second (the IDF driver's ring buffer, outside the MicroPython heap)
GNSS_RXBUF = 4096
GNSS_BAUD = 9600
EDGES = 16  # latched button edges held between two reads (a ring)
_POLL = 3  # MP_STREAM_POLL
_POLLIN = 1
_MODEM_OUTPUTS = ("modem_pwrkey", "modem_dtr", "modem_flight")
CONSOLE_BAUD = 115200  # the USB bridge's rate (MICROPY_HW_UART_REPL_BAUD on a stock image)
CONSOLE_RXBUF = 512  # UART0's receive buffer when the firmware owns it: any size but the REPL's 256 (_console)
CONSOLE_MAX = 256  # bytes one console read returns at most (firmware/loop.py CONSOLE_READ)


def _rx_irq(uart):
    pass  # its being set is the point: the UART event task wakes the main task


class _UartStream:
    def __init__(self, uart):
        self.uart = uart

    def wake_on_rx(self, on):
        """Let a burst of received bytes wake select.poll at once
        (IRQ_RX, MicroPython 1.24+); False when the port has no UART IRQ."""
        trig = getattr(machine.UART, "IRQ_RX", None)
        if trig is None:
            return False
        try:
            self.uart.irq(handler=_rx_irq, trigger=trig if on else 0)
        except Exception:
            return False
        return True

    def read(self, n=256):
        if not self.uart.any():
            return None
        return self.uart.read(n)

    def readinto(self, buf):
        """Bytes waiting, at most len(buf), into buf: their count (0: none).
        UART.readinto(buf) reads at most len(buf) bytes and returns the
        count, or None on a timeout (MicroPython docs, machine.UART); with
        timeout=0 it returns what the driver holds without waiting."""
        if not self.uart.any():
            return 0
        return self.uart.readinto(buf) or 0

    def write(self, b):
        return self.uart.write(b) or 0

    def waiting(self):
        return self.uart.any() > 0


class _Latch(io.IOBase):
    """Button edges as the soft interrupt latches them: a ring of (tick,
    level), preallocated. Pollable (ioctl), so idle() returns on a press."""

    def __init__(self, level):
        self.ticks = [0] * EDGES
        self.levels = bytearray(EDGES)
        self.w = 0  # edges written
        self.r = 0  # edges read
        self.level = level  # the last latched level
        self.lost = 0  # edges overwritten before they were read

    def irq(self, pin):
        lvl = self.level ^ 1
        i = self.w % EDGES
        self.ticks[i] = time.ticks_ms()  # pyright: ignore[reportCallIssue, reportArgumentType]
        self.levels[i] = lvl
        self.level = lvl
        self.w += 1

    def pending(self):
        return self.w - self.r

    def ioctl(self, req, arg):
        if req == _POLL:
            return arg & _POLLIN if self.w != self.r else 0
        return 0


class _ConsoleStream:
    """The USB serial (UART0 behind the board's USB-serial bridge) for the
    diagnostics console: bytes in, bytes out, never blocking, never raising.

    `inp` is read one byte at a time, each only after poll says one is
    waiting, at most `n` per read(), into preallocated buffers; `out` takes
    bytes. On a stock image these are sys.stdin.buffer and sys.stdout.buffer
    (see _console for the other build), because UART0 is the REPL's there
    (ports/esp32/uart.c): its interrupt keeps every byte that is not the
    interrupt char (none once micropython.kbd_intr(-1) ran) in a 260-byte
    ring and drops what does not fit (mphalport.c stdin_ringbuf).
    - Binary, never text: sys.stdin.read() reads UTF-8, so after a byte
      >= 0x80 it waits for the rest of the character (py/stream.c
      stream_read_generic), raises UnicodeError on an invalid sequence
      (py/objstr.c mp_obj_new_str_from_vstr) and turns CR into LF
      (shared/runtime/sys_stdio_mphal.c stdio_read). Any byte must be
      harmless here.
    - One byte per read call: sys.stdin.buffer.read(n) waits until n bytes
      came (stdio_buffer_read loops on mp_hal_stdin_rx_chr), so asking
      only for what poll says is there is the only way not to block.
    - Nothing raises out: a failing read or write is counted in `errors`
      and looks like silence. `closed` is set when the stream ends (a
      closed stdin on the unix port; a board's never does).
    Must stay in sync with firmware/loop.py (CONSOLE_READ, serve_console)."""

    def __init__(self, inp=None, out=None):
        if inp is None:
            import sys

            inp, out = sys.stdin.buffer, sys.stdout.buffer
        self._in = inp
        self._rd = inp.readinto
        self._wr = out.write  # pyright: ignore[reportOptionalMemberAccess]
        self._poll = select.poll()
        self._poll.register(inp, _POLLIN)
        self._ready = getattr(self._poll, "ipoll", self._poll.poll)  # ipoll allocates nothing
        self._buf = bytearray(CONSOLE_MAX)
        self._mv = memoryview(self._buf)
        self._one = bytearray(1)
        self.bytes_in = 0
        self.errors = 0
        self.closed = False

    def _waiting(self):
        for _ in self._ready(0):
            return True
        return False

    def read(self, n=CONSOLE_MAX):
        """Up to n bytes that are already waiting, or None; never waits."""
        if self.closed:
            return None
        buf = self._buf
        one = self._one
        if n > CONSOLE_MAX:
            n = CONSOLE_MAX
        k = 0
        try:
            while k < n and self._waiting():
                got = self._rd(one)
                if got is None:  # a non-blocking source with nothing after all
                    break
                if not got:  # end of the stream
                    self.closed = True
                    self._poll.unregister(self._in)
                    break
                buf[k] = one[0]
                k += 1
        except Exception:  # noqa: BLE001 - nothing on the console path may reach the App
            self.errors += 1
        if not k:
            return None
        self.bytes_in += k
        return bytes(self._mv[:k])  # one copy out of the preallocated buffer

    def write(self, b):
        try:
            return self._wr(b) or 0
        except Exception:  # noqa: BLE001 - as read()
            self.errors += 1
            return 0


def _console(stdio=None):
    """The diagnostics console's stream on UART0, or None (console off).

    A MicroPython built without the REPL on UART0
    (MICROPY_HW_ENABLE_UART_REPL=0, the build of docs/security.md) lets the
    firmware own UART0 through machine.UART, with a receive buffer of its
    own. On a stock image UART0 is the REPL's: machine.UART(0) refuses a
    buffer size other than its fixed 256 with ValueError before it changes
    anything (ports/esp32/machine_uart.c mp_machine_uart_init_helper: "REPL
    UART buffer size is fixed"), and the console reads the REPL's ring
    through sys.stdin.buffer instead. stdio: the module holding stdin and
    stdout (sys; the simulator passes its model of the port's)."""
    try:
        try:
            uart = machine.UART(0, baudrate=CONSOLE_BAUD, rxbuf=CONSOLE_RXBUF, timeout=0)
        except ValueError:
            uart = None
        if uart is not None:
            return _ConsoleStream(uart, uart)
        if stdio is None:
            import sys as stdio
        return _ConsoleStream(stdio.stdin.buffer, stdio.stdout.buffer)
    except Exception:  # noqa: BLE001 - no stdin.buffer (a build without MICROPY_PY_SYS_STDIO_BUFFER): no console
        return None


class Esp32Board(Board):
    def __init__(self, table, pins=None, flash_dir=FLASH_DIR, watchdog=True, console=None):
        """table: a board module of firmware/boards/ (read here, not kept);
        pins: the config's overrides {name: gpio}."""
        p = {}
        for name, spec in table.PINS.items():
            p[name] = spec[0]
        if pins:
            for k, v in pins.items():
                if k in p:
                    p[k] = v
        self.p = p
        self.button_active = table.PINS["button"][2]
        self.divider = table.FACTS["battery_divider"][0]
        baud = table.FACTS["modem_baud"][0]
        self.flash_dir = flash_dir
        self._cause = self._map_cause(machine.reset_cause())
        self._outs = {}
        # the board LED off first (GPIO12 high is also the 1.8 V flash
        # strap: never hold it high across a reset), then the modem's
        # lines at rest: key released, DTR low (awake), not in flight mode
        self._out("led", 0)
        self._out("modem_pwrkey", 0)
        self._out("modem_dtr", 0)
        self._out("modem_flight", 1)
        self._button = None
        self._ri = None
        self._ri_woke = False
        self._arm_inputs()
        self._latch = _Latch(self._button.value())  # pyright: ignore[reportOptionalMemberAccess, reportAttributeAccessIssue]
        self._arm_button_irq()
        self._pcnt = None
        pcnt = getattr(esp32, "PCNT", None)
        if pcnt is not None:
            down, up = (pcnt.INCREMENT, pcnt.IGNORE) if self.button_active == 0 else (pcnt.IGNORE, pcnt.INCREMENT)
            self._pcnt = pcnt(0, pin=self._button, falling=down, rising=up, filter=1023)
            self._pcnt.start()
        self._status = machine.Pin(p["modem_status"], machine.Pin.IN) if p["modem_status"] >= 0 else None
        # timeout_char: one character time (12 bits, as machine_uart.c counts
        # it). The port sets the driver's RX timeout to timeout_char / that
        # many symbols and, below one (the default 0), its RX FIFO threshold
        # to 1 byte: a UART_DATA event, a scheduler slot and a wake of the
        # main task for every byte. With it, the IDF's threshold of 120 bytes
        # stays (components/driver/uart.c UART_FULL_THRESH_DEFAULT) and the
        # event comes when the line has been idle for a symbol: one per
        # burst. Reads never wait for it (pdMS_TO_TICKS of < 10 ms is 0 at
        # the port's 100 Hz tick).
        self.modem = _UartStream(machine.UART(1, baudrate=baud, tx=p["modem_tx"], rx=p["modem_rx"],
                                              rxbuf=RXBUF, timeout=0, timeout_char=12000 // baud + 1))
        self.modem_rx_irq = self.modem.wake_on_rx(True)
        self.gnss = None
        if p["gnss_rx"] >= 0:
            self.gnss = _UartStream(machine.UART(2, baudrate=GNSS_BAUD, tx=p["gnss_tx"], rx=p["gnss_rx"],
                                                 rxbuf=GNSS_RXBUF, timeout=0, timeout_char=12000 // GNSS_BAUD + 1))
        self.console = console if console is not None else _console()
        self._poll = select.poll()
        self._poll.register(self._latch, _POLLIN)
        self._poll.register(self.modem.uart, _POLLIN)
        self._adc = None
        if p["battery_adc"] >= 0:
            self._adc = machine.ADC(machine.Pin(p["battery_adc"]))
            self._adc.atten(machine.ADC.ATTN_11DB)
        self._radio_off()
        self._wdt = machine.WDT(timeout=WATCHDOG_MS) if watchdog else None

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

    def _arm_inputs(self):
        """(Re)build the wake pins with an explicit mode, which takes them
        back from the RTC mux after a wake (esp-idf#245), and (re)arm the
        wake sources. GPIO34-39 have no pulls: the button needs an external
        pull-up (docs/hardware.md); RI is a level-shifter output, held up
        by the internal pull-up while the modem is off."""
        p = self.p
        bp = p["button"]
        pull = machine.Pin.PULL_UP if self.button_active == 0 and bp < 34 else None
        self._button = machine.Pin(bp, machine.Pin.IN, pull)  # pyright: ignore[reportArgumentType]
        level = esp32.WAKEUP_ALL_LOW if self.button_active == 0 else esp32.WAKEUP_ANY_HIGH
        esp32.wake_on_ext0(self._button, level)
        if p["modem_ri"] >= 0:
            self._ri = machine.Pin(p["modem_ri"], machine.Pin.IN, machine.Pin.PULL_UP)
            esp32.wake_on_ext1((self._ri,), esp32.WAKEUP_ALL_LOW)
        pc = getattr(self, "_pcnt", None)
        if pc is not None:
            pc.init(pin=self._button)  # the new Pin object (the counter reads it through the GPIO matrix)

    def _arm_button_irq(self):
        self._button.irq(handler=self._latch.irq,  # pyright: ignore[reportOptionalMemberAccess]
                         trigger=machine.Pin.IRQ_FALLING | machine.Pin.IRQ_RISING)

    def _settle_button(self):
        """After anything that may have lost an edge (a full scheduler
        queue, light sleep): if the pin is not at the last latched level,
        latch the difference now."""
        lat = self._latch
        if self._button.value() != lat.level:  # pyright: ignore[reportOptionalMemberAccess]
            lat.irq(None)

    @staticmethod
    def _map_cause(c):
        m = {
            machine.PWRON_RESET: RESET_POWER_ON,  # a brown-out too (modmachine.c)
            machine.HARD_RESET: RESET_HARD,
            machine.WDT_RESET: RESET_WATCHDOG,
            machine.DEEPSLEEP_RESET: RESET_DEEP_SLEEP,
            machine.SOFT_RESET: RESET_SOFT,
        }
        return m.get(c, RESET_UNKNOWN)

    def _radio_off(self):
        try:
            network.WLAN(network.STA_IF).active(False)
            network.WLAN(network.AP_IF).active(False)
        except Exception:
            pass

    # ------------------------------------------------------------ Board
    def button_level(self):
        return self._button.value()  # pyright: ignore[reportOptionalMemberAccess]

    def button_edges(self):
        lat = self._latch
        n = lat.w - lat.r
        if n <= 0:
            return ()
        if n > EDGES:
            lat.lost += n - EDGES
            lat.r = lat.w - EDGES
        out = []
        while lat.r < lat.w:
            i = lat.r % EDGES
            out.append((lat.levels[i], lat.ticks[i]))
            lat.r += 1
        return out

    def take_ri_wake(self):
        w = self._ri_woke
        self._ri_woke = False
        return w

    def modem_status(self):
        return None if self._status is None else self._status.value()

    def battery_mv(self):
        if self._adc is None:
            return None
        return self._adc.read_uv() * self.divider // 1000

    def reset_cause(self):
        return self._cause

    def wifi_scan(self):
        """Scan once with the radio on only for the scan. WLAN.scan()
        blocks: no handler runs meanwhile; edges the button made then are
        latched when it returns and spread over the time it took."""
        lat = self._latch
        w0 = lat.w
        pc = self._pcnt
        if pc is not None:
            pc.value(0)
        t0 = time.ticks_ms()
        wlan = network.WLAN(network.STA_IF)
        if self.modem_rx_irq:
            self.modem.wake_on_rx(False)  # the scheduler's queue is the button's while nothing drains it
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
            if self.modem_rx_irq:
                self.modem.wake_on_rx(True)
        t1 = time.ticks_ms()
        time.sleep_ms(0)  # run the handlers the scan held back
        self._settle_button()
        n = lat.w - w0
        if pc is not None:
            n = self._recount(w0, pc.value(0))
        if n > 0:
            span = time.ticks_diff(t1, t0)
            for k in range(n if n <= EDGES else EDGES):
                i = (lat.w - n + k) % EDGES
                lat.ticks[i] = time.ticks_add(t0, span * (k + 1) // (n + 1))  # pyright: ignore[reportCallIssue, reportArgumentType]
        out = [(bytes(r[1]), r[3]) for r in found]
        out.sort(key=lambda x: -x[1])
        return out[:3]

    def _recount(self, w0, downs):
        """The edges latched since w0, rebuilt when the pulse counter saw
        more press-downs than they hold: that many presses, the level now
        at the end. Returns the number of edges since w0."""
        lat = self._latch
        act = self.button_active
        n = lat.w - w0
        seen = 0
        for k in range(n if n <= EDGES else EDGES):
            if lat.levels[(w0 + k) % EDGES] == act:
                seen += 1
        if downs <= seen:
            return n
        lvl = lat.level  # the level now (settled)
        start = lvl if n == 0 else (lat.levels[w0 % EDGES] ^ 1)  # the level before the scan's first edge
        lat.w = w0
        lat.level = start
        if start == act:
            lat.irq(None)  # a press held from before the scan ends in it (the counter saw no down)
        for _ in range(downs if downs <= EDGES // 2 - 1 else EDGES // 2 - 1):
            lat.irq(None)  # down
            lat.irq(None)  # up
        if lat.level != lvl:
            lat.irq(None)
        lat.lost += downs - seen
        return lat.w - w0

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

    def idle(self, ms):
        """Wait up to ms with everything running: poll returns on a button
        edge (its handler wakes the main task), on modem bytes (within a
        FreeRTOS tick) or at the deadline."""
        if ms > 0 and not self._latch.pending():
            self._poll.poll(ms)

    def light_sleep(self, ms):
        if self.button_level() == self.button_active:
            # held: ext0 would wake at once; wait awake instead
            self.idle(ms)
            return
        self.feed_watchdog()
        machine.lightsleep(ms)
        woke = machine.wake_reason()
        self._arm_inputs()
        self._arm_button_irq()
        self.feed_watchdog()
        self._settle_button()  # the press that woke it ran no handler
        if woke == machine.EXT1_WAKE:
            self._ri_woke = True

    def deep_sleep(self, ms):
        machine.deepsleep(ms)

    def output_pins(self):
        return {name: pin.value() for name, pin in self._outs.items()}

    def modem_pins(self):
        return _MODEM_OUTPUTS
