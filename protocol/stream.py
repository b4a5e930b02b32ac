"""TCP framing of protocol v1: each frame is preceded by its length, u16
big-endian. One connection carries many frames both ways.

Deframer is fed arbitrary chunks and hands out whole frames. A length that
no valid frame can have (below 31 or above 286 bytes) means the stream is
garbage from there on: there is no way to resynchronise a length-prefixed
stream, so the caller drops the connection. Frames completed before the bad
prefix are not lost with it (issue 15, D6): feed() returns them and sets
`broken` (the reason, a str); the caller handles them, then closes. Once
broken, every feed raises BadLength. A feed that has no frame to hand out
raises BadLength at once, so a caller that only catches the error still
closes on a garbage stream.

Runs on MicroPython (the modem engine deframes ACKs with it): no CPython-
only library, one bytearray per Deframer.
"""

from protocol.errors import BadLength
from protocol.frame import MAX_FRAME, OVERHEAD


def pack(frame_bytes):
    n = len(frame_bytes)
    return bytes(((n >> 8) & 0xFF, n & 0xFF)) + frame_bytes


class Deframer:
    def __init__(self, max_frame=MAX_FRAME):
        self._buf = bytearray()
        self._max = max_frame
        self.broken = None  # why the stream is garbage (str), once it is

    def feed(self, data):
        """Add bytes; return the list of complete frames now available."""
        if self.broken is not None:
            raise BadLength(self.broken)
        self._buf.extend(data)
        out = []
        buf = self._buf
        i = 0
        end = len(buf)
        while end - i >= 2:
            n = (buf[i] << 8) | buf[i + 1]
            if n < OVERHEAD or n > self._max:
                self._buf = bytearray()
                self.broken = "stream frame length %d" % n
                if not out:
                    raise BadLength(self.broken)
                return out
            if end - i < 2 + n:
                break
            out.append(bytes(buf[i + 2 : i + 2 + n]))
            i += 2 + n
        if i:
            self._buf = buf[i:]
        return out

    def pending(self):
        return len(self._buf)
