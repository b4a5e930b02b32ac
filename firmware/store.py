"""Persistent device state on flash: the uplink seq reservation and the
alert controller's small state record.

Owns: the files "seq" and "state" (the outbox owns its own "o*" files).
Never builds frames, never reads a clock.

Uplink seq (protocol: strictly increasing for the device's whole life):
"seq" holds the ceiling, the first seq NOT yet reserved. Seqs are handed
out from RAM below the ceiling; before the ceiling is reached a new block
is reserved by rewriting "seq" atomically (temp, close, rename) and only
after that rename are the new seqs used. At boot the device resumes at the
stored ceiling and at once reserves the next block, so every seq it may
have used before the reset is below where it starts. A reset wastes at
most one block of seqs (the receiver's replay window only cares that seqs
grow). Flash cost: one atomic write per boot plus one per BLOCK frames.

The block is refilled early (LOW_WATER seqs before it runs out) from
`maintain()`, which the app calls after the work of a step, so an ALERT
never waits for a seq write: the first write of an alert is its outbox
entry.

File formats are ASCII, one line, so a broken file is detected, not
guessed: "seq" is "S <ceiling>\\n"; "state" is "A <state> <duress> <interval>
<alert_seq>\\n". A broken "seq" file is a fault (reported): the device
resumes above every seq still in the outbox plus one block; it cannot prove
it is above every seq ever used.

Must stay in sync with: firmware/alert.py (state codes), docs/firmware.md
(flash write budget).
"""

try:
    from micropython import const  # pyright: ignore[reportAssignmentType]
except ImportError:  # CPython

    def const(x):
        return x


BLOCK = const(64)
LOW_WATER = const(8)
SEQ_FILE = "seq"
STATE_FILE = "state"
MAX_SEQ = 0xFFFFFFFF


class StoreError(Exception):
    """A store file is unreadable: a fault to report, never a crash."""


def _int(tok):
    if not tok or len(tok) > 10:
        raise ValueError("bad number")
    for c in tok:
        if c < "0" or c > "9":
            raise ValueError("bad number")
    return int(tok)


class SeqStore:
    def __init__(self, fs, block=BLOCK, floor=1):
        """Load the ceiling and reserve a fresh block (one flash write).
        floor: lowest seq to hand out (the caller passes 1 + the highest seq
        it found in the outbox, in case "seq" is missing or broken)."""
        self.fs = fs
        self.block = block
        self.fault = None
        ceiling = 1
        raw = fs.read(SEQ_FILE)
        if raw is not None:
            try:
                txt = raw.decode()
                if not (txt.startswith("S ") and txt.endswith("\n")):
                    raise ValueError("bad seq file")
                ceiling = _int(txt[2:-1])
            except (ValueError, UnicodeError):
                self.fault = "seq file unreadable"
                ceiling = floor + block
        if ceiling < floor:
            ceiling = floor
        self.next = ceiling
        self.ceiling = ceiling
        self._reserve()

    def _reserve(self):
        new = self.ceiling + self.block
        if new > MAX_SEQ:
            new = MAX_SEQ
        self.fs.write_atomic(SEQ_FILE, b"S %d\n" % new)
        self.ceiling = new

    def take(self):
        """The next uplink seq. Reserves a block first only if the RAM
        block is exhausted (maintain() normally prevents that)."""
        if self.next >= self.ceiling:
            if self.ceiling >= MAX_SEQ:
                raise StoreError("uplink seq space exhausted")
            try:
                self._reserve()
            except OSError:
                # flash failing: go on above the ceiling (an alert must go
                # out); only a reset before the flash recovers could reuse
                self.fault = "seq reservation failed"
        s = self.next
        self.next += 1
        return s

    def maintain(self):
        """Refill the reservation early; True if it wrote flash."""
        if self.ceiling - self.next < LOW_WATER and self.ceiling < MAX_SEQ:
            try:
                self._reserve()
            except OSError:
                self.fault = "seq reservation failed"
                return False
            return True
        return False


class StateStore:
    """The alert controller's record: (state, duress, interval, alert_seq).
    Written only when it changes."""

    def __init__(self, fs):
        self.fs = fs
        self.fault = None
        self.last = None

    def load(self):
        raw = self.fs.read(STATE_FILE)
        if raw is None:
            return None
        try:
            txt = raw.decode()
            parts = txt.split()
            if len(parts) != 5 or parts[0] != "A" or not txt.endswith("\n"):
                raise ValueError("bad state file")
            rec = (_int(parts[1]), _int(parts[2]), _int(parts[3]), _int(parts[4]))
        except (ValueError, UnicodeError):
            self.fault = "state file unreadable"
            return None
        self.last = rec
        return rec

    def save(self, state, duress, interval, alert_seq):
        rec = (state, 1 if duress else 0, interval, alert_seq)
        if rec == self.last:
            return False
        try:
            self.fs.write_atomic(STATE_FILE, b"A %d %d %d %d\n" % rec)
        except OSError:
            self.fault = "state write failed"
            return False
        self.last = rec
        return True
