"""Runs on MicroPython: the whole firmware through one alert, for
bench/bench_firmware.py (which compiles it to .mpy and finds its min heap).
On the unix port it runs itself when imported; on the webassembly port
bench/wasm_firmware.mjs drives it pass by pass (rebase, setup, tick, note,
report: see the end of this file).

The device's main loop (firmware.loop.Loop, what firmware.main.run steps
forever) on a FakeBoard with everything the device has busy at
once: config.json read from flash and validated, the real SIM7600 engine
(firmware.modem) on a scripted modem, the real button detector fed pin
levels (3 presses: SOS; later 5 presses: duress cancel), the real NMEA
reader and fix tracker fed 1 Hz GGA/RMC/GSA, a Wi-Fi scan, the outbox with
the ALERT's first six transmissions unanswered (retries and the SMS
fallback run), TRACKs, and an ACK asking for listen-in.

A crash (any exception the main loop would survive by restarting, such
as a MemoryError) ends the run with exit status 1.

Prints `RESULT base B peak P at T frames F sms S calls C acks A`: B is the
heap in use before any firmware module is imported (this harness's own
code), P the highest heap in use after a loop pass (measured after
gc.collect() at every watchdog feed, or on webassembly after the collection
that follows each pass), T when; then `LOADED` and the project modules
loaded at that peak; on webassembly also `DIRTY D`, the most in use at the
end of a pass before its garbage was collected.
"""

import binascii
import gc
import sys

from host_sim import sim7600_answers as A  # the harness's (in BASE): the modem's answers

gc.collect()
BASE = gc.mem_alloc() if hasattr(gc, "mem_alloc") else 0  # CPython imports it for tests/test_modem_answers.py


def nmea(body):
    c = 0
    for ch in body:
        c ^= ch
    return b"$%s*%02X\r\n" % (body, c)


class Gnss:
    """1 Hz GGA + RMC + GSA, moving slowly north (real sentence shapes)."""

    def __init__(self, board):
        self.b = board
        self.t = 0
        self.rx = b""

    def read(self, n):
        now = self.b.now
        if now - self.t >= 1000 and not self.rx:
            self.t = now
            s = now // 1000
            hh, mm, ss = 12 + s // 3600, s // 60 % 60, s % 60
            lat = "5130.%04d" % (s % 10000)
            self.rx = (nmea(b"GPGGA,%02d%02d%02d.00,%s,N,00007.4800,W,1,08,1.1,35.2,M,47.0,M,," % (hh, mm, ss, lat.encode()))
                       + nmea(b"GPRMC,%02d%02d%02d.00,A,%s,N,00007.4800,W,0.4,90.0,291126,,,A" % (hh, mm, ss, lat.encode()))
                       + nmea(b"GPGSA,A,3,04,05,09,12,24,25,29,31,,,,,1.9,1.1,1.5"))
        if not self.rx:
            return None
        out, self.rx = self.rx[:n], self.rx[n:]
        return out

    def readinto(self, buf):
        # as the board's UART.readinto: the App reads the NMEA UART into
        # its own buffer (the harness still makes its bytes as before)
        data = self.read(len(buf))
        if not data:
            return 0
        buf[:len(data)] = data
        return len(data)

    def write(self, b):
        return len(b)  # the App's request to send less: this module sends only RMC, GGA, GSA already


class Modem(A.Registered):
    """A SIM7600 that is up and registered (host_sim/sim7600_answers.py's
    answers, as the device tests' scripted modem); the receiving centre
    behind it ACKs each frame except the first `drop` ones (retries and
    the SMS fallback run), the third ACK asks for listen-in."""

    def __init__(self, board, keys):
        A.Registered.__init__(self)
        self.b = board
        self.keys = keys
        self.rx = b""
        self.alive = False
        self.rdy = False
        self.pending = []
        self.drop = 0
        self.down = 100
        self.acks = 0
        self.frames = 0
        self.sms = 0
        self.calls = 0
        self.listen = False
        self.acked = []

    def read(self, n):
        if self.rdy:
            self.rdy = False
            self.rx += A.frame((A.RDY,))
        if not self.rx:
            return None
        out, self.rx = self.rx[:n], self.rx[n:]
        return out

    def write(self, b):
        self.rx += self.answer(bytes(b))
        return len(b)

    def ack(self, raw):
        from protocol import frame as F
        from protocol.stream import pack
        seq = int.from_bytes(raw[6:10], "big")
        self.down += 1
        self.acks += 1
        cmds = []
        # a retransmitted frame gets a second ACK; the listen-in request
        # goes on the first ACK of a seq, once (the device would act on it
        # on either: firmware/outbox.py on_frame)
        first = seq not in self.acked
        self.acked.append(seq)
        if self.b.now >= SOS_AT + 40000 and not self.listen and first:
            self.listen = True
            cmds = [(F.C_LISTEN_IN, None)]
        body = F.Ack(seq, cmds)
        return pack(F.encode(self.keys, F.Frame(F.ACK, 4242, self.down, 1795900000, body)))

    def line(self, c):
        if c[:3] == "ATD":
            self.calls += 1
        return A.Registered.line(self, c)

    def fetch(self):
        """AT+CIPRXGET=3: the next ACK waiting."""
        if not self.pending:
            return A.frame((A.IP_ERROR % "No data", A.ERROR))
        data = self.pending.pop(0)
        return A.frame((A.CIPRXGET % (3, len(data), len(self.pending)), binascii.hexlify(data).decode().upper(), A.OK))

    def sent(self, out):
        r = A.Registered.sent(self, out)
        if out.endswith(b"\x1a"):
            self.sms += 1
            return r
        self.frames += 1
        if self.drop > 0 and self.b.now >= SOS_AT:
            self.drop -= 1
            return r
        self.pending.append(self.ack(out[2:]))
        return r + A.frame((A.CIPRXGET_NEW,))


CONFIG = (b'{"device_id": 4242, "key_hex": "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",'
          b' "receiver_host": "192.0.2.1", "receiver_port": 7400, "sms_number": "+447700900001",'
          b' "listen_number": "+447700900002", "apn": "internet", "wifi_scan": true,'
          b' "timings": {"track_interval_s": 30, "backoff_base_ms": 4000, "backoff_max_ms": 32000}}')
SOS_AT = 60000      # three presses (modem up and registered by then)
DURESS_AT = 300000  # five presses: duress cancel (keeps tracking covertly)
END = 420000


def presses(at, n):
    return [(at + 400 * i, at + 400 * i + 150) for i in range(n)]


PRESSES = presses(SOS_AT, 3) + presses(DURESS_AT, 5)


WASM = sys.platform == "webassembly"
peak = [0, 0, []]   # heap in use, when, project modules loaded then
state = {"loop": None, "modem": None, "crash": False, "total": 0, "grew": False, "dirty": 0}


def sample(now):
    a = gc.mem_alloc()
    if a > peak[0]:
        peak[0] = a
        peak[1] = now
        peak[2] = [k for k in sys.modules if k.startswith("firmware") or k.startswith("protocol")]


def setup():
    """The device as firmware.main builds it, on the harness's board;
    returns its main loop (firmware.loop.Loop)."""
    from board_fake import FakeBoard
    from firmware.fs import MemFs
    from firmware.loop import Loop
    from protocol.crypto import DeviceKeys

    class Board(FakeBoard):
        def button_level(self):
            for a, b in PRESSES:
                if a <= self.now < b:
                    return 0
            return 1

        def feed_watchdog(self):
            self.feeds += 1
            gc.collect()  # webassembly: a collection when the pass returns to JS
            if not WASM:
                sample(self.now)
            if self.now >= END:
                raise SystemExit(0)
    board = Board()
    for a, b in PRESSES:
        board.wakes += [a, b]
    board.scan = [(bytes([i] * 6), -60 - i) for i in range(5)]
    board.gnss = Gnss(board)
    modem = Modem(board, DeviceKeys(bytes(range(32))))
    board.modem = modem
    board.console = None

    def pwrkey(level):
        FakeBoard.modem_pwrkey(board, level)
        if not level and not modem.alive:
            modem.alive = True
            modem.rdy = True

    board.modem_pwrkey = pwrkey
    fs = MemFs()
    fs.write_atomic("config.json", CONFIG)
    modem.drop = 6  # the ALERT's first tries go unanswered: retries and SMS fallback

    # The main loop survives any exception (a MemoryError included) by
    # recording a fault and rebuilding the App. Here that must fail the
    # run, or too small a heap would pass as quiet restarts.
    stop = SystemExit(3)

    def crashed(fs, code):
        state["crash"] = True
        raise stop

    import firmware.app
    firmware.app.record_fault = crashed
    state["modem"] = modem
    # the retry back-off's jitter from a fixed sequence, so every run is
    # the same scenario (from os.urandom, some runs' ACKs beat the SMS
    # fallback's deadline and the SMS never went)
    seed = [12345]

    def rand(n):
        seed[0] = (seed[0] * 1103515245 + 12345) & 0x3FFFFFFF
        return seed[0] % n if n > 1 else 0

    state["loop"] = Loop(board, fs, app_kw={"rand": rand})
    return state["loop"]


def report():
    if state["crash"]:
        print("CRASHED: the main loop restarted (out of memory?)")
        return 1
    if state["grew"]:
        print("GREW: the heap had to grow past its size")
        return 1
    modem = state["modem"]
    print("RESULT base %d peak %d at %d frames %d sms %d calls %d acks %d" % (
        BASE, peak[0], peak[1], modem.frames, modem.sms, modem.calls, modem.acks))
    # one name at a time: a joined line would be the biggest block this run
    # ever asks for, and the minimum heap would measure this report
    sys.stdout.write("LOADED")
    for m in peak[2]:
        sys.stdout.write(" ")
        sys.stdout.write(m)
    sys.stdout.write("\n")
    if WASM:
        print("DIRTY %d" % state["dirty"])
    return 0


def main():
    loop = setup()
    try:
        while True:
            loop.step()
    except SystemExit:
        pass
    if report():
        sys.exit(1)


# The webassembly VM (bench/wasm_firmware.mjs) collects garbage only when a
# call from JS returns, so there JS drives: rebase(), then tick() and
# note() by turns until tick() says the scenario is over, then report().

def rebase():
    """After a collection: the harness's own heap, and the heap's size (its
    free space counts what it could still grow by, which stays constant)."""
    global BASE
    BASE = gc.mem_alloc()
    state["total"] = gc.mem_alloc() + gc.mem_free()


def tick():
    """One pass of the device's main loop; False when the run is over."""
    try:
        state["loop"].step()
    except SystemExit:
        return False
    a = gc.mem_alloc()  # nothing was collected since the last pass: live + this pass's garbage
    if a > state["dirty"]:
        state["dirty"] = a
    gc.collect()
    return True


def note():
    """After the collection that follows a pass: the peak, and whether the
    heap had to grow (where a fixed heap would have raised MemoryError)."""
    sample(state["loop"].board.now)
    if gc.mem_alloc() + gc.mem_free() > state["total"]:
        state["grew"] = True
    return not state["grew"]


if not WASM and sys.implementation.name == "micropython":
    main()
