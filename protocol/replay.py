"""The receiver's replay window for one device, as a pure object.

Keeps the highest uplink seq seen and a bitmap of the last 1024 seqs.
check(seq) says what a verified frame with that seq is:
  NEW        never seen: store it, then mark() it, then ACK it
  DUPLICATE  seen before: ACK again, never raise again
  STALE      older than the window: reject and log, never ACK
mark(seq) is separate from check() so the caller marks only after the frame
is durably stored. to_bytes()/from_bytes() persist the window.
"""

NEW = 0
DUPLICATE = 1
STALE = 2
WINDOW = 1024
_NBYTES = WINDOW // 8


class ReplayWindow:
    def __init__(self):
        self.highest = -1
        self._bits = bytearray(_NBYTES)  # bit (s % WINDOW) for s in (highest-WINDOW, highest]

    def _bit(self, seq):
        i = seq % WINDOW
        return i >> 3, 1 << (i & 7)

    def check(self, seq):
        if self.highest < 0 or seq > self.highest:
            return NEW
        if seq <= self.highest - WINDOW:
            return STALE
        byte, mask = self._bit(seq)
        return DUPLICATE if self._bits[byte] & mask else NEW

    def mark(self, seq):
        if self.check(seq) == STALE:
            return
        if seq > self.highest:
            gap = seq - self.highest if self.highest >= 0 else WINDOW
            if gap >= WINDOW:
                for i in range(_NBYTES):
                    self._bits[i] = 0
            else:
                for s in range(self.highest + 1, seq + 1):
                    byte, mask = self._bit(s)
                    self._bits[byte] &= ~mask & 0xFF
            self.highest = seq
        byte, mask = self._bit(seq)
        self._bits[byte] |= mask

    def to_bytes(self):
        return (self.highest + 1).to_bytes(5, "big") + bytes(self._bits)

    @classmethod
    def from_bytes(cls, b):
        w = cls()
        if len(b) != 5 + _NBYTES:
            raise ValueError("replay window state of %d bytes" % len(b))
        w.highest = int.from_bytes(b[:5], "big") - 1
        w._bits[:] = b[5:]
        return w
