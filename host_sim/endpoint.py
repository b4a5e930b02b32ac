"""A minimal far end for the modem emulator: verifies uplink frames and ACKs.

Owns: nothing beyond tests and benches; the real receiver (receiver/) offers
the same two methods and replaces it in full simulations:

    on_tcp_frame(raw, now) -> list of reply frames (raw, no length prefix)
    on_sms(sender, text, now) -> None

Every uplink frame is decoded with protocol.frame.decode (tag checked);
a good one is recorded in `verified` as (now, via, Frame) and answered with
an authenticated ACK; a bad one is counted in `rejected` with its reason.
"""

from protocol import frame as F
from protocol import sms as S
from protocol.errors import ProtocolError


class VerifyingEndpoint:
    def __init__(self, keys, ack=True, close_after_reply=False):
        self.keys = keys
        self.ack = ack
        self.close_after_reply = close_after_reply  # read by host_sim/tcp.py ModelTcp
        self.verified = []  # (now, "tcp"|"sms", Frame)
        self.rejected = []  # (now, via, reason)
        self.sms_seen = []  # (now, sender, text)
        self._seq = 0

    def on_tcp_frame(self, raw, now):
        try:
            fr = F.decode(self.keys, raw, F.UPLINK)
        except ProtocolError as e:
            self.rejected.append((now, "tcp", e.reason))
            return []
        self.verified.append((now, "tcp", fr))
        if not self.ack:
            return []
        self._seq += 1
        ack = F.Frame(F.ACK, fr.device_id, self._seq, fr.time, F.Ack(fr.seq))
        return [F.encode(self.keys, ack)]

    def on_sms(self, sender, text, now):
        self.sms_seen.append((now, sender, text))
        try:
            fr = F.decode(self.keys, S.from_sms(text), F.UPLINK)
        except ProtocolError as e:
            self.rejected.append((now, "sms", e.reason))
            return
        self.verified.append((now, "sms", fr))
