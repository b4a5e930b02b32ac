"""Protocol cost on whichever interpreter runs this file (MicroPython or
CPython): build and sign an ALERT vs one sha256 of the same bytes.

    micropython bench/mp_protocol.py N [ROUNDS]   python bench/mp_protocol.py N [ROUNDS]
        ROUNDS rounds (default 1), each timing N ALERT builds, N seals of
        the same plaintext and N sha256 of the frame in turn; one line per
        round, then the heap one ALERT allocates and the frame's size
    micropython bench/mp_protocol.py once        (build one ALERT: for min-heap search)
    micropython bench/mp_protocol.py count WHAT N   (WHAT alert|seal|sha256|none, N times:
                                                     for callgrind instruction counts)
"""

import gc
import hashlib
import sys

try:
    from time import ticks_diff, ticks_us
except ImportError:
    from time import perf_counter_ns

    def ticks_us():
        return perf_counter_ns() // 1000

    def ticks_diff(a, b):
        return a - b


from protocol import frame as F
from protocol.crypto import DeviceKeys

KEYS = DeviceKeys(bytes(range(32)))


def build(seq):
    r = F.Report(F.SRC_GNSS, 515007292, -1246254, 4, 0, 87, 21,
                 tlvs=[(F.T_CELL, (234, 15, 0x1A2B, 0x01C2D3E4, -97)), (F.T_MOTION, (35, 140, 27150)), (F.T_GNSS, (9, 11))])
    return F.encode(KEYS, F.Frame(F.ALERT, 1001, seq, 1795900000, r))


def main():
    arg = sys.argv[1] if len(sys.argv) > 1 else "300"
    if arg == "once":
        build(1)
        print("ok")
        return
    raw = build(0)
    plain = F.report_bytes(F.decode(KEYS, raw).body)
    if arg == "count":
        what, n = sys.argv[2], int(sys.argv[3])
        for i in range(n):
            if what == "alert":
                build(i)
            elif what == "seal":
                F.encode_raw(KEYS, F.ALERT, 1001, i, 1795900000, plain)
            elif what == "sha256":
                hashlib.sha256(raw).digest()
        print("ok")
        return
    n = int(arg)
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    for _ in range(rounds):
        gc.collect()
        t0 = ticks_us()
        for i in range(n):
            build(i)
        t_alert = ticks_diff(ticks_us(), t0)
        gc.collect()
        t0 = ticks_us()
        for i in range(n):
            F.encode_raw(KEYS, F.ALERT, 1001, i, 1795900000, plain)
        t_seal = ticks_diff(ticks_us(), t0)
        t0 = ticks_us()
        for _ in range(n):
            hashlib.sha256(raw).digest()
        t_sha = ticks_diff(ticks_us(), t0)
        print("alert_us %.2f seal_us %.2f sha256_us %.3f" % (t_alert / n, t_seal / n, t_sha / n))
    gc.collect()
    gc.disable()
    before = gc.mem_alloc() if hasattr(gc, "mem_alloc") else 0
    build(1)
    alloc = (gc.mem_alloc() - before) if hasattr(gc, "mem_alloc") else -1
    gc.enable()
    print("alloc_per_alert %d bytes %d" % (alloc, len(raw)))


main()
