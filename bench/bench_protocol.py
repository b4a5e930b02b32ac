"""Cost of building and signing an ALERT, as a ratio to one hashlib.sha256
of the same bytes in the same run, on MicroPython and CPython; and the peak
heap MicroPython needs to import the protocol and build one ALERT.

Target: ratio <= 6x on MicroPython."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mp_util  # noqa: E402


def main():
    mp, cp = mp_util.run_both("bench/mp_protocol.py", 2000, 20000)
    heap = mp_util.min_heap("bench/mp_protocol.py", args=["once"])
    print("ALERT build+sign (%s-byte frame), ratio to one sha256 of the same bytes:" % mp["bytes"])
    for name, r in (("micropython", mp), ("cpython", cp)):
        print("  %-11s build+seal %6.1f us, seal only %6.1f us, sha256 %5.2f us: ratio %5.2fx (seal only %5.2fx)%s" % (
            name, float(r["alert_us"]), float(r["seal_us"]), float(r["sha256_us"]), float(r["ratio"]), float(r["seal_ratio"]),
            "  target <= 6x; heap allocated per ALERT %s bytes" % r["alloc_per_alert"] if name == "micropython" else ""))
    print("  micropython peak heap to import protocol and build one ALERT: %d KB (smallest -X heapsize that works)" % heap)


main()
