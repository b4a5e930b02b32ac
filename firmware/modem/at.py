"""AT channel: the one response matcher between the modem engine and a UART.

Owns: splitting the byte stream into lines, the `>` prompt, matching lines
against what the pending command waits for, handing every other line to the
URC handler, command timeouts, and counting rejected input. Never does I/O
and never reads a clock: bytes come in through feed(), bytes to write pile
up in `out`, and `now` is passed in.

Rules (TinyGSM waitResponse style):
  - At most one command is pending. send() writes "<cmd>\\r" and records the
    line prefixes that end it (`final`), the prefixes whose lines belong to
    it (`info`), and a deadline.
  - Each complete line is first normalised (one space after the first colon
    of a "+XXX:" line is dropped, so "+CSQ: 20,99" and "+CSQ:20,99" match the
    same pattern), then matched in this order: echo of the pending command
    (ignored), a final prefix (the command ends: result is its index), an
    info prefix (kept in `infos`), a hex payload line when the command asked
    for one, otherwise the URC handler. URCs therefore work at any point,
    including between a command and its final result.
  - A bare OK / ERROR with no command pending is a stray (late answer of a
    timed-out command or the ERROR that trails "+CIPOPEN: 0,<err>"): counted
    and dropped.
  - Lines with bytes outside printable ASCII, or longer than the buffer, are
    garbage: counted in `rejected` / `overflow` and dropped. The channel
    never raises on input.
  - With prompt=True a ">" ends the wait with P_PROMPT (noise before it on
    the same line is dropped and counted); the caller then writes the
    payload with payload().

Also the modem package's shared vocabulary, here because every module of
it imports this one: the named indices of a command's result (R_*), what
a job may end with (Fail, Hung), and the outcomes (O_*) that the dialect's
hooks and the rare jobs return so that the engine alone changes its state.

Must stay in sync with: firmware/modem/engine.py (result codes, outcomes),
docs/modem.md (the R_* and O_* tables: tests/test_docs_firmware.py)
and the dialect modules (patterns are written without the space after the
colon).
"""

try:
    from micropython import const  # pyright: ignore[reportAssignmentType]
except ImportError:  # CPython

    def const(x):
        return x


P_TIMEOUT = const(-1)
P_PROMPT = const(-2)

# A command's result, what a job is resumed with: a tuple (built by the
# engine from `result` and `infos` below), read by these names
R_END = const(0)  # index in `final` of the prefix that ended it, or P_TIMEOUT / P_PROMPT
R_LINE = const(1)  # the line that ended it ("" after a timeout, ">" at a prompt)
R_INFOS = const(2)  # its `info` lines (and hex data lines), in order

OKERR = ("OK", "ERROR", "+CME ERROR:")

# Outcomes: what a dialect hook or a rare job (services.py) found, as bits
# (0: nothing; for urc(): not this dialect's line). The hook returns them,
# or raises Fail(reason, outcome); the engine changes its own state for
# them (Engine._apply): no dialect or service sets an engine field.
O_DONE = const(1)  # handled, nothing changes (a URC the dialect knows)
O_DATA = const(2)  # data waits on the socket (+CIPRXGET: 1): read it
O_CLOSED = const(4)  # the socket is closed
O_NET_LOST = const(8)  # the data path is gone, and the socket with it
O_BAD_RX = const(16)  # the modem's TCP stream was bad (counted in bad_rx)
O_CELL = const(32)  # a serving-cell line: the engine parses it with dialect.cell_of(line)
O_DIALLING = const(64)  # a voice call was dialled
O_CALL_ENDED = const(128)  # the call is over
O_ASLEEP = const(256)  # the modem's UART sleeps (AT+CSCLK=1, DTR high)
O_OFF = const(512)  # the modem is switched off (saver profile)


class Fail(Exception):
    """A job could not do its work: Fail(reason[, outcome]) (reason: short
    text, no secrets; outcome: O_* bits of what the dialect found on the
    way, which the engine applies when it ends the job)."""


class Hung(Exception):
    """The modem stopped answering."""


def cfg(c, name, default=None):
    """A setting from a dict or an object's attribute."""
    if c is None:
        return default
    if isinstance(c, dict):
        return c.get(name, default)
    return getattr(c, name, default)


_LF = const(10)
_CR = const(13)
_GT = const(62)
_SP = const(32)


def norm(line):
    """Drop the one space after the first colon of a "+XXX: ..." line."""
    if line and line[0] == "+":
        i = line.find(":")
        if i > 0 and i + 1 < len(line) and line[i + 1] == " ":
            return line[: i + 1] + line[i + 2 :]
    return line


def fields(line):
    """Comma-separated fields after the first colon, quotes stripped."""
    i = line.find(":")
    rest = line[i + 1 :] if i >= 0 else line
    out = []
    for f in rest.split(","):
        f = f.strip()
        if len(f) >= 2 and f[0] == '"' and f[-1] == '"':
            f = f[1:-1]
        out.append(f)
    return out


def to_int(s, default=None):
    """int() that returns default instead of raising on wire garbage."""
    try:
        return int(s)
    except (ValueError, TypeError):
        return default


def _is_hex(s):
    if not s or len(s) & 1:
        return False
    for c in s:
        if not ("0" <= c <= "9" or "a" <= c <= "f" or "A" <= c <= "F"):
            return False
    return True


class AtChannel:
    def __init__(self, urc, max_line=640):
        self._urc = urc  # callable(line) for every unclaimed line
        self._buf = bytearray()
        self._max = max_line
        self._dropping = False  # inside an over-long line
        self._bad = False  # current line holds a non-printable byte
        self.out = bytearray()  # bytes waiting to be written to the UART
        self.rejected = 0  # garbage lines dropped
        self.overflow = 0  # over-long lines dropped
        self.stray = 0  # OK/ERROR with nothing pending
        self.echoes = 0  # command lines echoed back (echo is on: ATE0 not, or no longer, in force)
        self.last_rx = 0  # now of the last byte received
        self.rx_lines = 0
        self.pending = None  # command text while waiting
        self._final = ()
        self._info = ()
        self._prompt = False
        self._hex = False
        self._deadline = 0
        self.infos = []
        self.result = None  # (index, line) once the pending command ended

    # ---- commands -------------------------------------------------------

    def send(self, cmd, final, info, timeout, now, prompt=False, hexdata=False):
        """Write a command line and start waiting for one of `final`."""
        self.out.extend(cmd.encode())
        self.out.extend(b"\r")
        self.pending = cmd
        self._expect(final, info, timeout, now)
        self._prompt = prompt
        self._hex = hexdata

    def payload(self, data, final, info, timeout, now):
        """After P_PROMPT: write raw bytes and wait for the final result."""
        self.out.extend(data)
        self.pending = "<payload>"
        self._expect(final, info, timeout, now)
        self._prompt = False

    def _expect(self, final, info, timeout, now):
        self._final = final
        self._info = info
        self._deadline = now + timeout
        self.infos = []
        self.result = None

    def cancel(self):
        self.pending = None
        self.result = None
        self._prompt = False
        self._hex = False

    def reset(self):
        """Forget everything in flight (modem power-cycled)."""
        self.cancel()
        self._buf = bytearray()
        self._dropping = False
        self._bad = False
        self.out = bytearray()

    def check(self, now):
        """End the pending command with P_TIMEOUT once its deadline passed."""
        if self.pending is not None and self.result is None and now >= self._deadline:
            self._finish(P_TIMEOUT, "")

    def deadline(self):
        return self._deadline if self.pending is not None and self.result is None else None

    def _finish(self, idx, line):
        self.result = (idx, line)
        self.pending = None
        self._prompt = False
        self._hex = False

    # ---- input ----------------------------------------------------------

    def feed(self, data, now):
        """Take bytes from the UART (bytes or bytearray, any split). The run
        between two line ends is taken whole (find, slice, min/max in C),
        not byte by byte: NMEA at 1 Hz passes through here on this board."""
        if not data:
            return
        self.last_rx = now
        n = len(data)
        i = 0
        while i < n:
            j = data.find(b"\n", i)
            k = data.find(b"\r", i, n if j < 0 else j)
            if k >= 0:
                j = k
            elif j < 0:
                j = n
            if j > i:
                self._run(data, i, j)
            if j < n:  # a line end
                if self._dropping:
                    self._dropping = False
                elif self._buf:
                    self._line(self._buf)
                self._buf = bytearray()
                self._bad = False
            i = j + 1

    def _run(self, data, i, j):
        """data[i:j] holds no line end: the prompt, then the line's bytes."""
        while i < j and not self._dropping:
            if self._prompt and self.result is None:
                k = data.find(b">", i, j)
                if k >= 0:
                    # the prompt; noise before it on the same line is dropped, counted
                    self._take(data, i, k)
                    if self._dropping:
                        return
                    if self._buf:
                        self.rejected += 1
                        self._buf = bytearray()
                        self._bad = False
                    self._finish(P_PROMPT, ">")
                    i = k + 1
                    continue
            self._take(data, i, j)
            return

    def _take(self, data, i, j):
        buf = self._buf
        if not buf:
            while i < j and data[i] == _SP:
                i += 1  # leading blank (after "> " or in "\r\n OK")
        if i >= j:
            return
        if len(buf) + j - i > self._max:
            self.overflow += 1
            self._dropping = True
            self._buf = bytearray()
            self._bad = False
            return
        part = memoryview(data)[i:j]
        if not self._bad and (min(part) < 32 or max(part) > 126):
            self._bad = True
        buf.extend(part)

    def _line(self, raw):
        if self._bad:
            self.rejected += 1
            return
        line = norm(raw.decode().rstrip())
        self.rx_lines += 1
        pend = self.pending
        if pend is not None and self.result is None:
            if line == pend or (line.startswith("AT") and pend.startswith(line)):
                self.echoes += 1
                return  # echo (before ATE0), possibly cut short
            for i, p in enumerate(self._final):
                if line.startswith(p):
                    self._finish(i, line)
                    return
            for p in self._info:
                if line.startswith(p):
                    self.infos.append(line)
                    return
            if self._hex and _is_hex(line):
                self.infos.append(line)
                return
        elif line == "OK" or line == "ERROR":
            self.stray += 1
            return
        if line.startswith("AT"):
            return  # echo of something we sent earlier
        self._urc(line)
