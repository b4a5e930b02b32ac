"""TCP framing of protocol v1: each frame is preceded by its length, u16
big-endian. One connection carries many frames both ways.

Deframer is fed arbitrary chunks and hands out whole frames. A length that
no valid frame can have (below 31 or above 286 bytes) means the stream is
garbage: it raises BadLength and the caller drops the connection (there is
no way to resynchronise a length-prefixed stream).
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

    def feed(self, data):
        """Add bytes; return the list of complete frames now available."""
        self._buf.extend(data)
        out = []
        while len(self._buf) >= 2:
            n = (self._buf[0] << 8) | self._buf[1]
            if n < OVERHEAD or n > self._max:
                self._buf = bytearray()
                raise BadLength("stream frame length %d" % n)
            if len(self._buf) < 2 + n:
                break
            out.append(bytes(self._buf[2 : 2 + n]))
            self._buf = self._buf[2 + n :]
        return out

    def pending(self):
        return len(self._buf)
