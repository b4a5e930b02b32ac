"""A Board for the MicroPython unix port: the real firmware in the real VM,
its peripherals emulated on the host and reached over TCP (faithful mode).

Owns: the device end of the faithful-mode wire (host end:
host_sim/periph.py's PeriphServer, driven by host_sim/faithful.py). Never decides anything: the app does.
Imports `socket` and `select`, never `machine`.

Wire: the board opens TCP connections to the host's peripheral server
(address from the environment variable PANIC_PERIPH, "host:port"); each
starts with one line naming its channel:
  "ctrl\\n"    control lines, one per line, ASCII:
               host -> board  "c <time_scale> <unix_ms or -1> <reset cause>"
                              (once, first), "b <0|1> <ms>" a button
                              edge at scenario time ms, "v <mV>" battery,
                              "st <0|1>" the modem's STATUS line, "r" an
                              RI pulse (a URC, AT+CFGRI=1)
               board -> host  "p <pin name> <level> <ticks>" an output pin
                              changed (ticks: the board's ms, for durations;
                              the host answers "k" once it has applied it,
                              and the board waits for that, up to 1 s),
                              "s <unix>" the firmware set its clock
  "gnss\\n"    raw bytes of the GNSS UART (both directions); the board keeps
               a bounded receive buffer that drops bytes when full (_UartSock)
  "modem\\n"   raw bytes of the modem UART (both directions)
The console (the USB serial) is the process's own stdin/stdout, as on a
board whose USB serial is the REPL port: host_sim/mpboard.py puts the
process on a pseudo-terminal and serves it as socket://127.0.0.1:PORT.
Nothing is written to it except what firmware/diag.py returns.

Time: ticks_ms() is the VM's tick count times the host's time_scale, so a
scenario can run faster than real time; idle() waits ms / time_scale.

Button edges are latched, as a GPIO edge interrupt would latch them: each
edge the host sends is stamped with local ticks when it arrives, never
closer to the previous edge than the host held that level (the gap between
the edges' scenario times), and handed to the firmware by button_edges()
with that tick. A VM or host that stalls for longer than a press (easy at
10x) therefore delays the press but never swallows it or shortens it.

Sleep follows the ESP32's rules (firmware/board_esp32.py; the simulator
runs that driver over a model of the port, host_sim/esp32.py): in
light_sleep() the UARTs lose every byte that arrives (their clock is
gated), and only the timer, a button edge and an RI pulse end it; an RI
wake is reported once by take_ri_wake(). idle() keeps the UARTs running
and returns on a button edge or modem/console bytes. Not modelled here:
the ESP32's RTC pads reading 0 after a wake (the virtual-time runner has
it), flash-write timing, the Wi-Fi scan's blocking.
If the host goes away (ctrl channel closed) the board stops with
SystemExit, like a board losing power.

Flash: FLASH_DIR ("/data") on the VM's filesystem; host_sim/mpboard.py
mounts a host folder as "/", so /data/config.json is where
tools/provision.py writes it.

Must stay in sync with: firmware/board.py (the contract),
host_sim/periph.py and host_sim/faithful.py (the host end of the wire).
"""

import os
import select
import socket
import sys
import time

from firmware.board import FLASH_DIR, Board

ENV_ADDR = "PANIC_PERIPH"
_CTRL_MAX = 128  # longest control line kept
_EDGES_MAX = 64  # latched button edges held at most (a host flooding edges loses the newest)
_MODEM_PINS = ("modem_pwrkey", "modem_dtr", "modem_flight")
GNSS_RXBUF = 4096  # board_esp32.GNSS_RXBUF: the GNSS UART's receive buffer
MODEM_RXBUF = 1024  # and the modem UART's


def _connect(addr, name):
    s = socket.socket()
    s.connect(addr)
    s.send(name + b"\n")
    return s


class _SockStream:
    """A UART as a non-blocking socket: read(n) -> bytes or None."""

    def __init__(self, sock):
        self.s = sock
        sock.setblocking(False)

    def read(self, n=256):
        try:
            data = self.s.recv(n)
        except OSError:
            return None
        if data == b"":
            raise SystemExit  # the host (the hardware) is gone
        return data

    def write(self, b):
        mv = memoryview(b)
        done = 0
        while done < len(b):
            try:
                k = self.s.send(mv[done:])
            except OSError:
                select.poll().poll(1)
                continue
            done += k or 0
        return done


class _UartSock(_SockStream):
    """A UART with a bounded receive buffer, as the ESP32 board's (RXBUF):
    bytes that arrive while it is full are lost (counted in `overrun`).
    pump() moves what the socket holds into the buffer; idle() calls it
    whenever bytes arrive, as the UART hardware fills its buffer while the
    CPU waits, so a firmware that reads late gets old bytes and loses new
    ones, exactly as on the board (never a growing backlog)."""

    def __init__(self, sock, rxbuf):
        _SockStream.__init__(self, sock)
        self.rxbuf = rxbuf
        # a ring allocated once, as the IDF driver's (uart_driver_install):
        # the board's buffer is not the MicroPython heap's, so nothing here
        # may grow or churn it while the firmware runs
        self._ring = bytearray(rxbuf)
        self._at = 0  # where the oldest byte is
        self.n = 0  # bytes held
        self.overrun = 0

    def pump(self, discard=False):
        size = self.rxbuf
        ring = self._ring
        while True:
            try:
                data = self.s.recv(512)
            except OSError:
                return
            if data == b"":
                raise SystemExit
            if discard:
                self.overrun += len(data)
                continue
            k = size - self.n
            if k > len(data):
                k = len(data)
            self.overrun += len(data) - k
            w = (self._at + self.n) % size
            first = size - w if size - w < k else k
            ring[w:w + first] = data[:first]
            if k > first:
                ring[:k - first] = data[first:k]
            self.n += k

    def read(self, n=256):
        self.pump()
        if not self.n:
            return None
        k = n if n < self.n else self.n
        size = self.rxbuf
        a = self._at
        if a + k <= size:
            out = bytes(self._ring[a:a + k])
        else:
            out = bytes(self._ring[a:]) + bytes(self._ring[:a + k - size])
        self._at = (a + k) % size
        self.n -= k
        return out

    def readinto(self, buf):
        """As UART.readinto (board_esp32 _UartStream): up to len(buf) held
        bytes into buf, their count (0: none)."""
        self.pump()
        k = len(buf) if len(buf) < self.n else self.n
        if not k:
            return 0
        size = self.rxbuf
        a = self._at
        ring = memoryview(self._ring)
        first = size - a if size - a < k else k
        buf[:first] = ring[a:a + first]
        if k > first:
            buf[first:k] = ring[:k - first]
        self._at = (a + k) % size
        self.n -= k
        return k


class _Console:
    """stdin/stdout of the process (the pty mpboard.py serves)."""

    def __init__(self):
        self.i = sys.stdin.buffer
        self.o = sys.stdout.buffer
        self.p = select.poll()
        self.p.register(sys.stdin, select.POLLIN)

    def waiting(self):
        for _, ev in self.p.poll(0):
            if ev & select.POLLIN:
                return True
        return False

    def read(self, n=256):
        out = b""
        while len(out) < n and self.waiting():
            b = self.i.read(1)
            if not b:
                break
            out += b
        return out or None

    def write(self, b):
        n = self.o.write(b)
        try:
            self.o.flush()
        except AttributeError:
            pass
        return n


class UnixBoard(Board):
    flash_dir = FLASH_DIR

    def __init__(self, addr=None, console=True, gnss_uart=True):
        if addr is None:
            host, _, port = (os.getenv(ENV_ADDR) or "").rpartition(":")
            addr = socket.getaddrinfo(host, int(port))[0][-1]
        self._ctrl = _connect(addr, b"ctrl")
        self._cbuf = b""
        self.scale = None  # set by the host's hello before any tick
        self._unix_ms = None  # unix ms at self._t0 (None: clock unknown)
        self._cause = 0
        self._button = 1
        self._edges = []  # latched button edges not due yet: (level, local ticks)
        self._ready = []  # edges due and not read yet
        self._latched = 1  # the level of the newest latched edge
        self._last_edge = None  # (local ticks, host ms) of the newest latched edge
        self._mv = None
        self._status = 0
        self._ri = False  # an RI pulse came
        self._ri_woke = False
        self._pins = {}
        self._unacked = 0  # pin changes said to the host, not yet applied (_applied)
        self._last = time.ticks_ms()
        self._real = 0  # real ms since boot, accumulated (never wraps)
        self._ctrl.setblocking(False)
        deadline = time.ticks_add(time.ticks_ms(), 10000)
        while self.scale is None:
            if time.ticks_diff(deadline, time.ticks_ms()) <= 0:
                raise SystemExit
            select.poll().poll(10)
            self._pump()
        self._t0 = 0
        # as the ESP32 driver does at boot: the board LED off, the modem's
        # lines at rest (key released, DTR low, not in flight mode)
        self._pin("led", 0)
        self._pin("modem_pwrkey", 0)
        self._pin("modem_dtr", 0)
        self._pin("modem_flight", 1)
        # an NMEA module on a second UART, or none (the modem's GNSS speaks on the modem channel)
        self.gnss = _UartSock(_connect(addr, b"gnss"), GNSS_RXBUF) if gnss_uart else None
        self.modem = _UartSock(_connect(addr, b"modem"), MODEM_RXBUF)
        self.console = _Console() if console else None
        self._poll = select.poll()
        self._poll.register(self._ctrl, select.POLLIN)
        self._poll.register(self.modem.s, select.POLLIN)
        if self.gnss is not None:
            self._poll.register(self.gnss.s, select.POLLIN)
        if self.console is not None:
            self._poll.register(sys.stdin, select.POLLIN)

    # -- control channel -------------------------------------------------
    def _pump(self):
        while True:
            try:
                data = self._ctrl.recv(256)
            except OSError:
                break
            if data == b"":
                raise SystemExit
            self._cbuf += data
        while b"\n" in self._cbuf:
            line, self._cbuf = self._cbuf.split(b"\n", 1)
            self._on_line(line)
        if len(self._cbuf) > _CTRL_MAX:
            self._cbuf = b""

    def _on_line(self, line):
        f = line.split()
        try:
            if f[0] == b"b":
                self._latch(1 if int(f[1]) else 0, int(f[2]))
            elif f[0] == b"st":
                self._status = 1 if int(f[1]) else 0
            elif f[0] == b"r":
                self._ri = True
            elif f[0] == b"k":
                self._unacked -= 1  # the host applied a pin change (_applied)
            elif f[0] == b"v":
                self._mv = int(f[1])
            elif f[0] == b"c":
                self.scale = float(f[1])
                u = int(f[2])
                self._unix_ms = None if u < 0 else u
                self._cause = int(f[3])
        except (IndexError, ValueError):
            pass  # a bad control line is dropped

    def _say(self, text):
        b = text.encode()
        done = 0
        while done < len(b):
            try:
                done += self._ctrl.send(b[done:]) or 0
            except OSError:
                select.poll().poll(1)

    # -- inputs --------------------------------------------------------------
    def _latch(self, level, at):
        if self.scale is None:
            self._button = self._latched = level  # before the clock: the level at boot
            return
        if level == self._latched:
            return  # no change: no edge
        tk = self.ticks_ms()
        last = self._last_edge
        if last is not None and tk < last[0] + (at - last[1]):
            tk = last[0] + (at - last[1])  # never shorter than the host held it: due later
        self._last_edge = (tk, at)
        self._latched = level
        if len(self._edges) < _EDGES_MAX:
            self._edges.append((level, tk))

    def _due(self):
        """Move the edges whose tick has come to the ready list (the level
        the pin has now follows them)."""
        self._pump()
        now = self.ticks_ms()
        while self._edges and self._edges[0][1] <= now:
            e = self._edges.pop(0)
            self._ready.append(e)
            self._button = e[0]

    def button_level(self):
        self._due()
        return self._button

    def button_edges(self):
        self._due()
        out = self._ready
        self._ready = []
        return out

    def take_ri_wake(self):
        w = self._ri_woke
        self._ri_woke = False
        return w

    def modem_status(self):
        self._pump()
        return self._status

    def battery_mv(self):
        self._pump()
        return self._mv

    def reset_cause(self):
        return self._cause

    # -- modem control ---------------------------------------------------------
    def _pin(self, name, level):
        level = 1 if level else 0
        if self._pins.get(name) != level:
            self._pins[name] = level
            self._say("p %s %d %d\n" % (name, level, self.ticks_ms()))
            self._unacked += 1
            self._applied()

    def _applied(self):
        """Wait (at most 1 s real) until the host has applied every pin
        change said (one "k" line each). A GPIO write is done when it
        returns, so the UART bytes the firmware writes next (an AT 20 ms
        after DTR low) meet a modem that has the pin; here the pin goes on
        the ctrl socket and the bytes on the modem socket, and a loaded host
        can be handed the second first (seen: an AT reached the emulator
        92 ms of device time before the DTR change said before it)."""
        t0 = time.ticks_ms()
        p = select.poll()
        p.register(self._ctrl, select.POLLIN)
        while self._unacked > 0:
            if time.ticks_diff(time.ticks_ms(), t0) >= 1000:
                self._unacked = 0  # a host that does not answer: go on
                return
            p.poll(20)
            self._pump()

    def modem_pwrkey(self, level):
        self._pin("modem_pwrkey", level)

    def modem_dtr(self, level):
        self._pin("modem_dtr", level)

    def output_pins(self):
        return dict(self._pins)

    def modem_pins(self):
        return _MODEM_PINS

    # -- time ----------------------------------------------------------------------
    def ticks_ms(self):
        t = time.ticks_ms()
        self._real += time.ticks_diff(t, self._last)
        self._last = t
        return int(self._real * self.scale)  # pyright: ignore[reportOperatorIssue]  (set before __init__ returns)

    def ticks_diff(self, a, b):
        return a - b

    def time(self):
        if self._unix_ms is None:
            return None
        return (self._unix_ms + self.ticks_ms() - self._t0) // 1000

    def set_time(self, unix):
        self._unix_ms = unix * 1000
        self._t0 = self.ticks_ms()
        self._say("s %d\n" % unix)

    # -- waiting -----------------------------------------------------------------------
    def light_sleep(self, ms):
        """ESP32 light sleep: the UARTs' clock is gated (every byte that
        arrives is lost), and only the timer, a button edge (ext0) and an
        RI pulse (ext1) end it."""
        g = self.gnss
        if g is not None:
            g.pump()
        self.modem.pump()  # what arrived before the clock stopped
        self._ri = False
        self.idle(ms, True)
        if g is not None:
            g.pump(True)
        self.modem.pump(True)
        if self._ri:
            self._ri = False
            self._ri_woke = True

    def idle(self, ms, sleeping=False):
        """Wait up to ms (scaled), returning early on a button edge, or
        (awake) on modem or console bytes (a modem answer must not wait for
        the engine's timeout), or (asleep) on an RI pulse."""
        end = self.ticks_ms() + ms
        while True:
            self._due()
            if self._ready or (sleeping and self._ri):
                return  # a button edge (a GPIO interrupt wakes both), or RI
            now = self.ticks_ms()
            left = end - now
            if left <= 0:
                return
            if self._edges and self._edges[0][1] - now < left:
                left = max(0, self._edges[0][1] - now)  # a latched edge falls due then
            real = int(left / (self.scale or 1.0)) + 1
            if real > 100:
                real = 100
            ready = self._poll.poll(real)
            wake = False
            for obj, ev in ready:
                if self.gnss is not None and obj is self.gnss.s:
                    self.gnss.pump(sleeping)  # the UART fills its buffer (idle) or is off (light sleep)
                elif obj is self.modem.s:
                    if sleeping:
                        self.modem.pump(True)
                    elif ev & select.POLLIN:
                        wake = True
                elif obj is not self._ctrl and ev & select.POLLIN and not sleeping:
                    wake = True
            if wake:
                return  # modem or console input: let the loop handle it now


def main():
    """The unix-port entry point (firmware.main.main picks it there; this
    imports firmware.loop, never firmware.main): the board table the config
    names says whether GNSS is an NMEA UART or the modem's own."""
    from firmware import boards
    from firmware.fs import Fs
    from firmware.loop import forget, load_config, run

    fs = Fs(FLASH_DIR)
    table = boards.load(load_config(fs).board)
    board = UnixBoard(gnss_uart=table.PINS["gnss_rx"][0] >= 0)
    del table
    for name in ("firmware.boards.t_sim7600e_ext_gnss", "firmware.boards.t_sim7600e"):
        forget(name)
    while True:
        run(board, fs)
