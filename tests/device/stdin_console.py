"""The production console class (firmware/board_esp32.py _ConsoleStream) on
the MicroPython unix port, reading this process's real stdin: the driver
for tests/test_console_hardening.py and fuzz/console.py. Runs only on
MicroPython (a child VM whose stdin is a pipe the host writes raw bytes
to); stdout is the console's own output, so reports go to stderr as lines
"<tag> <fields...>".

    console_class()   the class, imported from firmware.board_esp32 with
                      stand-ins for the ESP32-only modules it imports at the
                      top (esp32, network): nothing of them is used by it
    echo()            read until the stream ends; report every read
    loop(...)         the firmware's main loop (firmware.loop.Loop) on a
                      fake board whose console is the production class,
                      pressing the SOS pattern while the host floods stdin
    fuzz(ek_hex)      serve_console + Diag over the production class until
                      the stream ends (the fuzz campaign's device side)
"""

import sys


class _Absent:
    """A module the console never touches (esp32, network on the unix port)."""


def console_class():
    for name in ("esp32", "network"):
        if name not in sys.modules:
            sys.modules[name] = _Absent()
    from firmware.board_esp32 import _ConsoleStream

    return _ConsoleStream


def _report(*fields):
    sys.stderr.write(" ".join(str(f) for f in fields) + "\n")


def _digest():
    import hashlib

    return hashlib.sha256()


def _hex(b):
    import binascii

    return binascii.hexlify(b).decode()


def echo(total):
    """Read the stream through the class until `total` bytes came or it
    ended, each read asking for up to 256 bytes: report `R <n> <hex>` after
    every read that returned bytes (the host sees at once that a read
    returned without waiting for more), then `END <bytes> <reads> <max per
    read> <errors> <sha256>`. Uses only what the Board contract promises
    of a stream (read, write), so the same test runs against any version
    of the class."""
    import select

    cls = console_class()
    con = cls()
    h = _digest()
    got = reads = most = 0
    idle = select.poll()
    idle.register(sys.stdin, select.POLLIN)
    while got < total and not getattr(con, "closed", False):
        data = con.read(256)
        if data:
            reads += 1
            got += len(data)
            most = max(most, len(data))
            h.update(data)
            _report("R", len(data), _hex(data))
        else:
            idle.poll(20)  # the harness waits for the host; the class never does
    _report("END", got, reads, most, getattr(con, "errors", 0), _hex(h.digest()))


# ---------------------------------------------------------------- main loop

EK = bytes(range(100, 132))  # the engineer key of these tests (tests/test_console_hardening.py)


def _config_json():
    import json

    from fw_fakes import DEV, KEY_HEX

    return json.dumps({"device_id": DEV, "key_hex": KEY_HEX, "engineer_key_hex": _hex(EK),
                       "receiver_host": "arc.example.org", "receiver_port": 7400, "sms_number": "+447700900001",
                       "listen_number": "+447700900002", "apn": "internet", "test_enabled": True}).encode()


def loop(press_after_bytes, end_ms, total):
    """firmware.loop.Loop, the main loop as the device runs it, on a fake
    board whose console is the production class over stdin. When the
    console has taken `press_after_bytes` bytes (0: at once), the wearer
    presses the SOS pattern (three presses of 100 ms); the loop runs until
    `total` bytes were read and `end_ms` of virtual time passed. Reports:
    `PRESS <at>`, `ALERT <built at> <acked>` per ALERT the receiver got,
    `FAULTS <n>` (passes that raised), `CON <bytes> <errors>`,
    `BYTES_AT_PRESS <n>`, `END <ms>`."""
    from board_fake import FakeBoard
    from fake_transport import FakeTransport
    from fw_world import FakeButton, FakeFix, FakeReceiver

    from firmware.config import CONFIG_FILE
    from firmware.fs import MemFs
    from firmware.loop import Loop
    from protocol import frame as F

    board = FakeBoard()
    board.console = con = console_class()()
    taken = [0, 0]  # bytes the console returned, reads that raised
    read = con.read

    def counted(n):
        try:
            data = read(n)
        except Exception:
            taken[1] += 1
            raise
        if data:
            taken[0] += len(data)
        return data

    con.read = counted
    fs = MemFs()
    fs.write_atomic(CONFIG_FILE, _config_json())
    rx = FakeReceiver()
    built = []
    faults = []

    def transport(b, cfg):
        t = FakeTransport(rx.deliver, rx.deliver_sms)
        send = t.send_frame

        def send_frame(raw, now):
            if F.peek(raw)[0] == F.ALERT:
                built.append(now)
            return send(raw, now)

        t.send_frame = send_frame
        return t

    lp = Loop(board, fs, transport_factory=transport,
              app_kw={"fix": FakeFix(), "button": FakeButton(), "rand": lambda n: n // 2})
    def on_fault(e):
        faults.append(repr(e))
        _report("FAULT", repr(e))

    lp.on_fault = on_fault
    press = None  # virtual ms of the first press
    at_press = 0
    changes = []  # [(ms, level)] still to come
    while True:
        now = board.now
        while changes and changes[0][0] <= now:
            board.level = changes.pop(0)[1]
        if press is None and taken[0] >= press_after_bytes and now >= 3000:
            press = now + 10
            at_press = taken[0]
            for k in range(3):
                changes.append((press + 200 * k, 0))
                changes.append((press + 200 * k + 100, 1))
            board.wakes = [c[0] for c in changes]
            _report("PRESS", press)
        lp.step()
        if press is not None and taken[0] >= total and not changes and board.now >= end_ms:
            break
        if board.now > 24 * 3600 * 1000:  # a day of virtual time: the bytes never came
            break
    for at in built:
        _report("ALERT", at)
    _report("ACKED", len(rx.of(F.ALERT)))
    _report("FAULTS", len(faults), lp.failures)
    _report("CON", taken[0], getattr(con, "errors", taken[1]))
    _report("BYTES_AT_PRESS", at_press)
    _report("END", board.now)


# ---------------------------------------------------------------- fuzz


QUIET = 20  # dry passes (5 ms of waiting each) that make a quiet moment


class _Provider:
    """What an App's provider answers (firmware/diagprov.py), without an App:
    the fuzz never holds a session key, so only a hello reaches Diag."""

    def status(self):
        return {"firmware": "fuzz"}

    def alert_active(self):
        return False

    def send_test(self, now):
        return None

    def test_result(self, token):
        return None

    def events(self):
        return []


class _Console:
    """firmware.loop.LazyConsole's part serve_console uses, with a provider
    that needs no App."""

    def __init__(self, fs, ek):
        self.fs = fs
        self.ek = ek
        self.diag = None
        self.load_failures = 0
        self.retry_at = None
        self.seen = []

    def load(self):
        from firmware.diag import Diag
        from firmware.diagprov import load_lock

        fails, lockouts = load_lock(self.fs)
        d = self.diag = Diag(self.ek, _Provider(), fails=fails, lockouts=lockouts)
        line = d._line

        def told(data, now):  # what Diag drops as a line error, said once per kind
            try:
                return line(data, now)
            except Exception as e:
                kind = type(e).__name__
                if kind not in self.seen:
                    self.seen.append(kind)
                    _report("LINE_ERROR", repr(e), _hex(bytes(data[:120])))
                raise

        d._line = told
        return d

    def persist_state(self):
        return None if self.diag is None else self.diag.persist_state()


def fuzz(step_ms=50, quiet_ms=3700000, report_progress=False):
    """serve_console (firmware/loop.py) over the production class until the
    stream ends: each pass takes at most CONSOLE_READ bytes and advances the
    virtual clock by step_ms; after QUIET passes in a row with nothing
    waiting (about 100 ms of the host saying nothing) it jumps by quiet_ms,
    longer than the longest lock-out (1 h), so what one round of the
    campaign earned ends while the host is quiet (and a session too). Reports
    `END <bytes> <passes> <max per read> <max read us> <errors>
    <line_errors> <load_failures> <sha256>` and Diag's counters as
    `DIAG <name>=<n> ...`; an exception out of serve_console is reported
    as `ESCAPE <repr>` and ends the run. With report_progress, each quiet
    moment says `P <bytes read so far>` (after the jump)."""
    import select
    import time

    import micropython

    from board_fake import FakeBoard
    from firmware.fs import MemFs
    from firmware.loop import serve_console

    micropython.kbd_intr(-1)  # as firmware.main does: Ctrl-C is a byte like any other
    board = FakeBoard()
    cls = console_class()
    board.console = con = cls()
    reads = []
    real_read = con.read
    worst = [0, 0]  # most bytes in one read, longest read in us

    def read(n):
        t0 = time.ticks_us()
        data = real_read(n)
        dt = time.ticks_diff(time.ticks_us(), t0)
        if dt > worst[1]:
            worst[1] = dt
        if data:
            if len(data) > worst[0]:
                worst[0] = len(data)
            reads.append(data)
        return data

    board.console.read = read
    fs = MemFs()
    c = _Console(fs, EK)
    lock = None
    now = 0
    passes = 0
    h = _digest()
    idle = select.poll()
    idle.register(sys.stdin, select.POLLIN)
    told = 0
    dry = 0
    while True:
        try:
            lock = serve_console(c, board, fs, now, lock)
        except Exception as e:  # noqa: BLE001 - what the campaign looks for
            _report("ESCAPE", repr(e))
            return
        passes += 1
        now += step_ms
        if reads:
            for d in reads:
                h.update(d)
            del reads[:]
            dry = 0
        elif con.closed:
            break
        else:
            dry += 1
            if dry == QUIET:
                now += quiet_ms
                if report_progress and con.bytes_in != told:
                    told = con.bytes_in
                    _report("P", told)
            idle.poll(5)  # the harness waits for the host; the class never does
    d = c.diag.counters() if c.diag is not None else {}
    _report("END", con.bytes_in, passes, worst[0], worst[1], con.errors, d.get("line_errors", 0),
            c.load_failures, _hex(h.digest()))
    _report("DIAG", " ".join("%s=%d" % (k, d[k]) for k in sorted(d)))
