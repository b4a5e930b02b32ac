"""Cost of the diagnostics console on MicroPython and CPython: verifying a
hello and answering, one sealed status round, one junk line; and the peak
heap a full session needs on MicroPython.

Targets, on MicroPython (in sha256-of-64-bytes equivalents, so they carry
over to the ESP32): a junk line under 10x (it costs no HMAC: what an
attacker can impose per line), a hello or a status round under 250x, so
feeding the console from the main loop never holds up the alert path.

Method: bench/mp_diag.py times ROUNDS rounds of N sessions, N junk lines
and N sha256 in turn; each figure is the median of the per-round ratios.
Callgrind counts the same work (`count` modes: device-side lines only,
the host's work subtracted) and must agree with each target. The hello's
count includes the bye that closes its session (a hello into an open
session takes another path), so it overstates the hello a little.
Instructions put the interpreter closer to the sha256 than time does (the
C hash retires more instructions per cycle than the interpreter), so the
instruction ratios come out lower than the time ratios.
"""

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import callgrind  # noqa: E402
import mp_util  # noqa: E402
from verdict import NOT_MEASURED, median_spread, note, verdict  # noqa: E402

B = "diag"
SCRIPT = "bench/mp_diag.py"
ROUNDS = 5
N_MP, N_CP = 300, 2000


def _rounds(out):
    rows = []
    for line in out.strip().splitlines():
        f = line.split()
        rows.append({k: float(v) for k, v in zip(f[0::2], f[1::2])})
    return rows


def instr(n=300):
    """MicroPython instructions per operation over one sha256 of 64 bytes:
    {hello, status, junk}."""
    if not callgrind.available():
        return {k: NOT_MEASURED for k in ("hello", "status", "junk")}
    env = dict(os.environ, MICROPYPATH=mp_util.BUILD + ":" + mp_util.ROOT + ":.frozen")
    base = [mp_util.MICROPYTHON, "-X", "heapsize=256k", SCRIPT, "count"]
    c = {w: callgrind.count(base + [w, str(n)], env=env)[0] for w in ("dry", "hello", "status", "junk", "sha256",
                                                                          "none")}
    sha = c["sha256"] - c["none"]
    return {"hello": (c["hello"] - c["dry"]) / sha, "status": (c["status"] - c["hello"]) / sha,
            "junk": (c["junk"] - c["none"]) / sha}


def main():
    mp_util.compile_device_code()
    rc, out, err = mp_util.run_mp(SCRIPT, "256k", [str(N_MP), str(ROUNDS)])
    if rc:
        raise SystemExit("micropython bench failed: " + (err or out))
    mp = _rounds(out)
    p = subprocess.run([sys.executable, SCRIPT, str(N_CP), str(ROUNDS)], cwd=mp_util.ROOT, capture_output=True,
                       text=True, env=dict(os.environ, PYTHONPATH=mp_util.ROOT))
    if p.returncode:
        raise SystemExit("cpython bench failed: " + p.stderr)
    cp = _rounds(p.stdout)
    heap = mp_util.min_heap(SCRIPT, args=["once"])
    ins = instr()
    how = "median of %d rounds of %%d, each timing all in turn" % ROUNDS
    print("diagnostics console, per operation, in sha256-of-64-bytes equivalents:")
    for k, label, target in (("hello_us", "hello (verify, answer)", 250), ("status_us", "sealed status round", 250),
                             ("junk_us", "junk line", 10)):
        r, spread = median_spread([x[k] / x["sha256_us"] for x in mp])
        verdict(B, "MicroPython %s / sha256" % label, r, target, "x", higher_is_better=False, spread=spread,
                method=how % N_MP, instr=ins[k[:-3]])
    for k, label in (("hello_us", "hello"), ("status_us", "status round"), ("junk_us", "junk line"),
                     ("sha256_us", "sha256 of 64 bytes")):
        m, spread = median_spread([x[k] for x in mp])
        note(B, "MicroPython %s" % label, m, "us", how % N_MP, spread=spread)
    for k, label in (("hello_us", "hello"), ("status_us", "status round"), ("junk_us", "junk line")):
        r, spread = median_spread([x[k] / x["sha256_us"] for x in cp])
        note(B, "CPython %s / sha256" % label, r, "x", how % N_CP, spread=spread)
    note(B, "MicroPython peak heap for import + one full session", heap, "KB", "smallest -X heapsize that works")


main()
