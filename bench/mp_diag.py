"""Runs on MicroPython (and CPython): cost of the diagnostics console.

    micropython bench/mp_diag.py N [ROUNDS]  -> one timing line per round
    micropython bench/mp_diag.py once        -> one full session (for min-heap)
    micropython bench/mp_diag.py count WHAT N  -> WHAT done N times, for
        callgrind: dry (the host's lines for N sessions made, none fed),
        hello (each session's hello and bye fed), status (hello, status,
        bye fed), junk (N junk lines fed), sha256 (N sha256 of 64 bytes),
        none (nothing)

Prints key value pairs: hello_us (verify a hello and answer), junk_us (a
junk line, the cost an attacker can impose per line), status_us (one sealed
status round), sha256_us (one sha256 of 64 bytes, the yardstick)."""

import hashlib
import json
import sys
import time

from firmware import diag as D
from protocol.crypto import Hmac

try:
    ticks_us = time.ticks_us
    ticks_diff = time.ticks_diff
except AttributeError:  # CPython
    def ticks_us():
        return int(time.perf_counter() * 1000000)

    def ticks_diff(a, b):
        return a - b

EK = bytes(range(32))


class P:
    def status(self):
        return {"firmware": "0.1.0", "device_id": 42, "button": {"level": 1, "pressed": False},
                "gnss": {"fix": True, "sats": 8}, "modem": {"sim": "READY", "registered": True, "operator": "Op",
                "csq": 21, "cell": [234, 15, 4660, 1234567, -85]}, "battery": {"mv": 3950}, "flash": {"ok": True},
                "outbox": 0, "faults": []}

    def alert_active(self):
        return False

    def send_test(self, now):
        return 1

    def test_result(self, t):
        return None

    def events(self):
        return ["boot"]


def session(d, n):
    ek = Hmac(EK)
    hn = bytes([n & 0xFF]) * 15 + bytes([(n >> 8) & 0xFF])
    t0 = ticks_us()
    out = d.feed(D.hello_line(ek, hn), n)
    t1 = ticks_us()
    parts = out.strip().split(b" ")
    import binascii

    dn = binascii.unhexlify(parts[1])
    sk = Hmac(D.session_key(ek, hn, dn))
    line = D.sealed_line(sk, D.D_HOST, json.dumps({"seq": 1, "cmd": "status"}).encode())
    t2 = ticks_us()
    r = d.feed(line, n)
    t3 = ticks_us()
    assert D.open_line(sk, D.D_DEV, r.strip()) is not None
    d.feed(D.sealed_line(sk, D.D_HOST, json.dumps({"seq": 2, "cmd": "bye"}).encode()), n)
    return ticks_diff(t1, t0), ticks_diff(t3, t2)


def host_lines(d, n):
    """The device-bound lines of n sessions (hello, status, bye each, one
    session at a time),
    made by the host alone: the device's nonce comes from its fixed rand,
    learnt from one real session first."""
    import binascii

    ek = Hmac(EK)
    hn = b"\x01" * 16
    out = d.feed(D.hello_line(ek, hn), 0)
    dn = binascii.unhexlify(out.strip().split(b" ")[1])
    sk = Hmac(D.session_key(ek, hn, dn))
    d.feed(D.sealed_line(sk, D.D_HOST, json.dumps({"seq": 1, "cmd": "bye"}).encode()), 0)
    for i in range(n):
        hn = bytes([i & 0xFF]) * 15 + bytes([(i >> 8) & 0xFF])
        sk = Hmac(D.session_key(ek, hn, dn))
        yield (D.hello_line(ek, hn), D.sealed_line(sk, D.D_HOST, json.dumps({"seq": 1, "cmd": "status"}).encode()),
               D.sealed_line(sk, D.D_HOST, json.dumps({"seq": 2, "cmd": "bye"}).encode()))


def count(what, n):
    d = D.Diag(EK, P(), rand=lambda k: b"\x07" * k)
    if what in ("dry", "hello", "status"):
        for hello, status, bye in host_lines(d, n):
            if what == "hello":
                d.feed(hello, 0)
                d.feed(bye, 0)
            elif what == "status":
                d.feed(hello, 0)
                d.feed(status, 0)
                d.feed(bye, 0)
    elif what == "junk":
        for _i in range(n):
            d.feed(b"AT+CGMI\r\n", 0)
    elif what == "sha256":
        blk = bytes(64)
        for _i in range(n):
            hashlib.sha256(blk).digest()
    print("ok")


def main(argv):
    arg = argv[1] if len(argv) > 1 else "200"
    d = D.Diag(EK, P(), rand=lambda k: b"\x07" * k)
    if arg == "once":
        session(d, 1)
        return
    if arg == "count":
        count(argv[2], int(argv[3]))
        return
    n = int(arg)
    for _r in range(int(argv[2]) if len(argv) > 2 else 1):
        h = s = 0
        for i in range(n):
            a, b = session(d, i)
            h += a
            s += b
        t0 = ticks_us()
        for _i in range(n):
            d.feed(b"AT+CGMI\r\n", 0)
        j = ticks_diff(ticks_us(), t0)
        blk = bytes(64)
        t0 = ticks_us()
        for _i in range(n):
            hashlib.sha256(blk).digest()
        sh = ticks_diff(ticks_us(), t0)
        print("hello_us %.1f status_us %.1f junk_us %.2f sha256_us %.3f" % (h / n, s / n, j / n, sh / n))


main(sys.argv)
