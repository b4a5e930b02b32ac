"""NMEA throughput on gpsd's whole corpus, and the RAM cost of the button,
NMEA and fix modules on MicroPython.

    python bench/bench_nmea.py        (from the repository root)

Workload: every line of every *.log in the gpsd corpus that starts with
'$' (header lines starting with '#' are left out), all sentence types.
  - ours: firmware.nmea.NmeaReader fed each log's bytes in 1 KB chunks
    (framing, checksum of every sentence, full parse of the six kinds it
    uses, counted skip of the rest); also FixTracker (reader + tracker).
  - pynmea2: pynmea2.parse(line, check=True) on each line (it parses
    every type it knows; errors caught and counted), CPython only.
Rate = those lines / seconds. On MicroPython the same reader runs from
mpy-cross output at a 96 KB heap; only the feed() calls are timed.
RAM: gc.mem_free() before and after importing each .mpy module.
"""

import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))
sys.path.insert(0, os.path.join(ROOT, "tests", "device"))

from gpsd_compare import corpus_dir  # noqa: E402
from mp_util import BUILD, compile_device_code, run_mp  # noqa: E402

ROUNDS = 7

MP_SCRIPT = r'''
import gc, os, sys, time
gc.collect()
f0 = gc.mem_free()
import firmware.button
gc.collect()
f1 = gc.mem_free()
import firmware.nmea
gc.collect()
f2 = gc.mem_free()
import firmware.fix
gc.collect()
f3 = gc.mem_free()
print("ram", f0 - f1, f1 - f2, f2 - f3)
from firmware.nmea import NmeaReader
from firmware.fix import FixTracker
d = sys.argv[1]
names = [n for n in os.listdir(d) if n.endswith(".log")]
def run(make, feed_name):
    us = 0
    ok = 0
    for n in names:
        obj = make()
        feed = getattr(obj, feed_name)
        with open(d + "/" + n, "rb") as f:
            head = True
            while True:
                b = f.read(1024)
                if not b:
                    break
                t = time.ticks_us()
                if feed_name == "feed" and isinstance(obj, FixTracker):
                    feed(b, 0)
                else:
                    feed(b)
                us += time.ticks_diff(time.ticks_us(), t)
        ok += obj.ok if hasattr(obj, "ok") else obj.reader.ok
        obj = None
        gc.collect()
    return us, ok
print("reader", *run(NmeaReader, "feed"))
print("tracker", *run(FixTracker, "feed"))
'''


def corpus_lines(d, logs):
    """Per log: (bytes without '#' header lines, ['$' lines])."""
    out = []
    for n in logs:
        with open(os.path.join(d, n), "rb") as f:
            raw = f.read()
        keep = [ln for ln in raw.splitlines(True) if not ln.startswith(b"#")]
        out.append((b"".join(keep), [ln.rstrip(b"\r\n") for ln in keep if ln.startswith(b"$")]))
    return out


def chunks(b, size=1024):
    return [b[i:i + size] for i in range(0, len(b), size)]


def run_ours(data, make, with_now):
    t = time.perf_counter()
    for blob_chunks, _ in data:
        obj = make()
        for c in blob_chunks:
            if with_now:
                obj.feed(c, 0)
            else:
                obj.feed(c)
    return time.perf_counter() - t


def run_pynmea2(data, positions):
    """pynmea2.parse on every line; with positions=True also read
    latitude/longitude where the sentence has them (pynmea2 converts
    lazily, the reader here converts every field it returns)."""
    import pynmea2

    errors = 0
    t = time.perf_counter()
    for _, lines in data:
        for ln in lines:
            try:
                m = pynmea2.parse(ln, check=True)
                if positions and isinstance(m, pynmea2.LatLonFix):
                    _ll = (m.latitude, m.longitude)  # noqa: F841
            except (pynmea2.ParseError, pynmea2.ChecksumError, pynmea2.SentenceTypeError, ValueError):
                errors += 1
    return time.perf_counter() - t, errors


def main():
    from firmware.fix import FixTracker
    from firmware.nmea import NmeaReader

    d, logs = corpus_dir()
    raw = corpus_lines(d, logs)
    n = sum(len(lines) for _, lines in raw)
    nbytes = sum(len(b) for b, _ in raw)
    print("corpus: %d logs, %d '$' lines, %d bytes" % (len(logs), n, nbytes))
    # inputs prepared outside the timing: 1 KB chunks for ours, str lines for pynmea2
    data = [(chunks(b), [ln.decode("ascii", "replace") for ln in lines]) for b, lines in raw]
    # rounds alternate the three so a busy machine slows all alike; best of each
    t_reader = t_tracker = t_py = t_pyll = None
    for _ in range(ROUNDS):
        a = run_ours(data, NmeaReader, False)
        b = run_ours(data, FixTracker, True)
        c, errs = run_pynmea2(data, False)
        e, _ = run_pynmea2(data, True)
        t_reader = a if t_reader is None else min(a, t_reader)
        t_tracker = b if t_tracker is None else min(b, t_tracker)
        t_py = c if t_py is None else min(c, t_py)
        t_pyll = e if t_pyll is None else min(e, t_pyll)
    print("CPython  NmeaReader : %8.0f sentences/s" % (n / t_reader))
    print("CPython  FixTracker : %8.0f sentences/s" % (n / t_tracker))
    print("CPython  pynmea2    : %8.0f sentences/s (parse only; %d lines rejected)" % (n / t_py, errs))
    print("CPython  pynmea2+ll : %8.0f sentences/s (parse, then latitude/longitude read)" % (n / t_pyll))
    print("ratio NmeaReader / pynmea2 = %.2fx (parse only), %.2fx (with lat/lon); FixTracker / pynmea2 = %.2fx"
          " (target > 1)" % (t_py / t_reader, t_pyll / t_reader, t_py / t_tracker))

    compile_device_code()
    script = os.path.join(BUILD, "bench_nmea_mp.py")
    with open(script, "w") as f:
        f.write(MP_SCRIPT)
    rc, out, err = run_mp(script, "96k", args=[d])
    if rc:
        raise SystemExit("MicroPython bench failed:\n" + (err or out))
    res = {}
    for line in out.splitlines():
        k, *v = line.split()
        res[k] = [int(x) for x in v]
    rb, rn, rf = res["ram"]
    us, ok = res["reader"]
    print("MicroPython NmeaReader : %8.0f sentences/s (%d ms for %d lines, %d parsed)" % (
        n / (us / 1e6), us // 1000, n, ok))
    us, ok = res["tracker"]
    print("MicroPython FixTracker : %8.0f sentences/s (%d ms)" % (n / (us / 1e6), us // 1000))
    print("MicroPython import RAM (.mpy): button %d B, nmea %d B, fix %d B, total %d B" % (rb, rn, rf, rb + rn + rf))


if __name__ == "__main__":
    main()
