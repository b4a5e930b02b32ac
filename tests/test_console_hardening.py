"""The USB serial's console class (firmware/board_esp32.py _ConsoleStream)
on the real MicroPython VM, reading the process's real stdin, fed raw bytes
by the host: nothing any byte sequence does blocks it, raises out of it or
changes a byte, and the firmware's main loop keeps taking the wearer's
presses while the port is flooded (issue 15, D1: the class read text, so a
lone byte >= 0x80 blocked the read and invalid UTF-8 raised UnicodeError
into the App, which the loop then tore down and backed off for up to 60 s).

The VM's side is tests/device/stdin_console.py, run from a ROMFS image of
the device code with a 96 KB heap (fuzz/mpconsole.py); the long campaign is
fuzz/console.py in `make fuzz`, and a short one runs here."""

import queue
import random
import threading

import pytest

from fuzz import console as campaign
from fuzz.mpconsole import Image, reports, spawn
from tools.diaglink import DiagHost

EK = bytes(range(100, 132))  # stdin_console.EK


@pytest.fixture(scope="module")
def image():
    im = Image()
    yield im.path
    im.close()


class Child:
    """A VM running one stdin_console function; stderr lines arrive in a queue."""

    def __init__(self, image, call, heap_kb=96):
        self.p = spawn(image, call, heap_kb=heap_kb)
        self.lines = queue.Queue()
        self.out = bytearray()
        self.err = []
        threading.Thread(target=self._pump_err, daemon=True).start()
        threading.Thread(target=self._pump_out, daemon=True).start()

    def _pump_err(self):
        for line in self.p.stderr:
            text = line.decode("utf-8", "replace").strip()
            self.err.append(text)
            self.lines.put(text)
        self.lines.put(None)

    def _pump_out(self):
        while True:
            b = self.p.stdout.read1(4096)
            if not b:
                return
            self.out.extend(b)

    def send(self, data):
        try:
            self.p.stdin.write(data)
            self.p.stdin.flush()
        except BrokenPipeError:
            pass  # the VM is gone: what it said is in the reports

    def close(self):
        try:
            self.p.stdin.close()
        except BrokenPipeError:
            pass

    def expect(self, tag, timeout=30):
        """The fields of the next report with `tag` (other reports are kept in err)."""
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                self.p.kill()
                raise AssertionError("no %r report within %d s (the read blocked?); the VM said: %s"
                                     % (tag, timeout, self.err[-5:]))
            if line is None:
                raise AssertionError("the VM ended before %r: %s %s" % (tag, self.err[-8:], bytes(self.out)[-300:]))
            f = line.split()
            if f and f[0] == tag:
                return f[1:]

    def finish(self, timeout=120):
        try:
            self.p.wait(timeout)
        except Exception:
            self.p.kill()
            raise AssertionError("the VM did not end within %d s (a read blocked?): %s" % (timeout, self.err[-5:]))
        got = dict(reports("\n".join(self.err)))
        assert "END" in got, "the VM ended without its report: %s %s" % (self.err[-5:], bytes(self.out)[-400:])
        return got


def test_a_lone_byte_above_0x7f_is_returned_at_once_without_waiting_for_more(image):
    # the text-mode class waited here for the rest of a UTF-8 character that
    # never comes: the main loop stalled and the watchdog reset the device
    c = Child(image, "echo(5)")
    try:
        for b in (b"\x80", b"\xc3", b"\xff", b"\xe2\x82"):
            c.send(b)
            n, hexed = c.expect("R", timeout=10)
            assert (int(n), bytes.fromhex(hexed)) == (len(b), b)
    finally:
        c.close()
    end = c.finish()["END"]
    assert end[0] == "5" and end[3] == "0"  # 5 bytes, no error


def _hostile():
    """Every byte value, UTF-8 that is invalid in each way there is, the
    control characters a REPL acts on, and what mpremote sends to take a
    board's REPL (its raw-REPL entry and a file read)."""
    parts = [bytes(range(256)),
             b"\xc3", b"\xc3\x28", b"\xa0\xa1", b"\xe2\x28\xa1", b"\xe2\x82\x28", b"\xf0\x28\x8c\xbc",
             b"\xf8\xa1\xa1\xa1\xa1", b"\xfc\xa1\xa1\xa1\xa1\xa1", b"\xc0\xaf", b"\xed\xa0\x80", b"\xef\xbf\xbe",
             b"\x03" * 50, b"\x01", b"\x02", b"\x04", b"\x05", b"\r\x03\x03\r\x01", b"\x05A\x01",
             b"import os\r\nprint(open('/data/config.json').read())\r\n\x04",
             b"\r" * 20 + b"\n" * 20 + b"\r\n" * 20, b"\x00" * 100, b"AT\r", b"+++",
             b"DIAG1 " + b"z" * 600 + b"\n"]
    rnd = random.Random(15)
    parts += [bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 300))) for _ in range(200)]
    return b"".join(parts)


def test_every_byte_is_read_once_in_order_at_most_256_a_read_and_nothing_is_written(image):
    import hashlib

    data = _hostile() * 20  # ~0.7 MB, faster than the class reads it: a flood
    c = Child(image, "echo(%d)" % len(data))
    c.send(data)
    c.close()
    got = c.finish()
    total, reads, most, errors, digest = got["END"]
    assert int(total) == len(data) and digest == hashlib.sha256(data).hexdigest()
    assert 0 < int(most) <= 256 and int(reads) >= len(data) // 256
    assert errors == "0"
    assert bytes(c.out) == b""  # the class itself never writes


# The main loop's VM: the firmware with its console loaded (the first byte on
# the port loads it) and the fake receiver holding every frame of the alert
# (the flood's 229 KB take one pass per 256 bytes, and during an alert a
# pass comes every 3 s of virtual time with this fake board's NMEA UART:
# about 50 minutes of TRACKs, measured); the App's own device tests run in 96 KB
# (tests/device/fw_child.py), this one needs more for the test's receiver.
LOOP_HEAP_KB = 256


def _loop(image, flood, press_after):
    host = DiagHost(EK)
    hello = host.hello() if flood else b""
    data = flood + b"\n" + hello if flood else b""  # the LF ends whatever line the flood left open
    c = Child(image, "loop(%d, 60000, %d)" % (press_after, len(data)), heap_kb=LOOP_HEAP_KB)
    c.send(data)
    c.close()
    return c, host, hello, c.finish(timeout=300)


def test_the_main_loop_takes_the_sos_presses_while_the_usb_serial_is_flooded(image):
    """firmware.loop.Loop with the production console over stdin: the SOS
    pattern pressed while the host pours hostile bytes into the port raises
    the ALERT exactly when it does on a quiet port, no pass of the loop
    raises, every byte is read, and afterwards an engineer's hello still
    gets the (only) answer the port ever gives."""
    flood = _hostile() * 8
    quiet, _, _, q = _loop(image, b"", 0)
    loud, host, hello, f = _loop(image, flood, 4096)
    assert q["ACKED"] == ["1"] and f["ACKED"] == ["1"], (q, f)
    delay_quiet = int(q["ALERT"][0]) - int(q["PRESS"][0])
    delay_loud = int(f["ALERT"][0]) - int(f["PRESS"][0])
    assert delay_loud == delay_quiet, (delay_quiet, delay_loud)
    assert f["FAULTS"] == ["0", "0"] and q["FAULTS"] == ["0", "0"], (f, q)
    assert f["CON"] == [str(len(flood) + 1 + len(hello)), "0"]
    assert 4096 <= int(f["BYTES_AT_PRESS"][0]) < len(flood) // 2  # the presses came mid-flood
    lines = bytes(loud.out).splitlines()
    assert len(lines) == 1, bytes(loud.out)[:200]
    host.accept(lines[0])  # raises unless it is this device's genuine accept
    assert bytes(quiet.out) == b"" and q["CON"] == ["0", "0"]


def test_a_short_fuzz_campaign_on_the_console_path_finds_no_escape(image):
    """The campaign of `make fuzz` (fuzz/console.py, 200,000 inputs) in
    small: mutated hellos, sealed-looking lines, hostile bytes, overlong
    lines, through serve_console and Diag over the production class."""
    res = campaign.run(3000, seed=1, image=image)
    assert res.escapes == [] and res.errors == 0 and res.line_errors == 0, res
    assert res.bytes_read == res.bytes_sent and res.digest_ok
    assert res.max_read <= 256
    assert res.unexpected_output == [] and res.accepts >= 1, res
