"""Cost of the diagnostics console on MicroPython and CPython: verifying a
hello and answering, one sealed status round, one junk line; and the peak
heap a full session needs on MicroPython.

Targets (in sha256-of-64-bytes equivalents, so they carry over to the
ESP32): a junk line under 10x (it costs no HMAC: what an attacker can
impose per line), a hello or a status round under 250x, so feeding the
console from the main loop never holds up the alert path."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mp_util  # noqa: E402


def main():
    mp, cp = mp_util.run_both("bench/mp_diag.py", 300, 2000)
    heap = mp_util.min_heap("bench/mp_diag.py", args=["once"])
    print("diagnostics console, per operation (and in sha256-of-64-bytes equivalents):")
    for name, r in (("micropython", mp), ("cpython", cp)):
        s = float(r["sha256_us"])
        print("  %-11s hello %7.1f us (%4.1fx)  status %7.1f us (%4.1fx)  junk line %6.1f us (%4.1fx)" % (
            name, float(r["hello_us"]), float(r["hello_us"]) / s, float(r["status_us"]), float(r["status_us"]) / s,
            float(r["junk_us"]), float(r["junk_us"]) / s))
    print("  micropython peak heap for import + one full session: %d KB (smallest -X heapsize that works)" % heap)


main()
