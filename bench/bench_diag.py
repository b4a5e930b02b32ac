"""Cost of the diagnostics console on MicroPython and CPython: verifying a
hello and answering, one sealed status round, one junk line; and the peak
heap a full session needs on MicroPython.

Targets (in sha256-of-64-bytes equivalents, so they carry over to the
ESP32): a junk line under 10x (it costs no HMAC: what an attacker can
impose per line), a hello or a status round under 250x, so feeding the
console from the main loop never holds up the alert path."""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mp_util  # noqa: E402


def parse(line):
    f = line.split()
    return dict(zip(f[0::2], f[1::2], strict=False))


def main():
    mp_util.compile_device_code()
    rc, out, err = mp_util.run_mp("bench/mp_diag.py", "256k", ["300"])
    if rc:
        raise SystemExit("micropython bench failed: " + err)
    mp = parse(out.strip())
    p = subprocess.run([sys.executable, "bench/mp_diag.py", "2000"], cwd=mp_util.ROOT, capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=mp_util.ROOT))
    if p.returncode:
        raise SystemExit("cpython bench failed: " + p.stderr)
    cp = parse(p.stdout.strip())
    heap = mp_util.min_heap("bench/mp_diag.py", args=["once"])
    print("diagnostics console, per operation (and in sha256-of-64-bytes equivalents):")
    for name, r in (("micropython", mp), ("cpython", cp)):
        s = float(r["sha256_us"])
        print("  %-11s hello %7.1f us (%4.1fx)  status %7.1f us (%4.1fx)  junk line %6.1f us (%4.1fx)" % (
            name, float(r["hello_us"]), float(r["hello_us"]) / s, float(r["status_us"]), float(r["status_us"]) / s,
            float(r["junk_us"]), float(r["junk_us"]) / s))
    print("  micropython peak heap for import + one full session: %d KB (smallest -X heapsize that works)" % heap)


main()
