"""Shared helpers for the receiver's host tests: keys, frames, an
in-memory receiver and a client that speaks the TCP framing."""

import os
import socket

from protocol import frame as F
from protocol import stream
from protocol.crypto import DeviceKeys

T0 = 1_800_000_000


class Dev:
    """A device as the receiver sees it: id, key, and a seq counter."""

    def __init__(self, device_id, key=None):
        self.id = device_id
        self.key = key or os.urandom(32)
        self.keys = DeviceKeys(self.key)
        self.seq = 0

    def frame(self, ftype=F.ALERT, seq=None, t=T0, **report):
        if seq is None:
            self.seq += 1
            seq = self.seq
        rep = F.Report(**report) if report else F.Report(F.SRC_GNSS, 515007292, -1246254, 5, 2, 80, 20)
        return F.encode(self.keys, F.Frame(ftype, self.id, seq, t, rep))

    def ack(self, raw):
        """Verify an ACK with this device's downlink key; returns the Frame."""
        fr = F.decode(self.keys, raw, F.DOWNLINK)
        assert fr.ftype == F.ACK and fr.device_id == self.id
        return fr


def send_recv(sock, raw, deframer, timeout=5.0):
    sock.settimeout(timeout)
    sock.sendall(stream.pack(raw))
    while True:
        data = sock.recv(4096)
        if not data:
            return None
        got = deframer.feed(data)
        if got:
            return got[0]


def closed_without_reply(sock, timeout=5.0):
    """True if the peer closes the connection without sending a byte."""
    sock.settimeout(timeout)
    try:
        return sock.recv(4096) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False
