"""Cost of building and signing an ALERT, as a ratio to one hashlib.sha256
of the same bytes in the same run, on MicroPython and CPython; and the peak
heap MicroPython needs to import the protocol and build one ALERT.

Target: ratio <= 6x on MicroPython (the device's interpreter; a ratio to a
sha256 carries over to the ESP32, where absolute times do not).

Method: bench/mp_protocol.py times, in each of ROUNDS rounds, N ALERT
builds, N seals of the same plaintext (HMAC + AES-CTR, no encoding) and
N sha256 of the frame, in turn; the ratio is the median of the per-round
ratios. Callgrind instruction counts of the same three loops (each less a
run that does nothing N times) give the same ratio without the machine's
noise, and must agree with the target too (bench/verdict.py).
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import callgrind  # noqa: E402
import mp_util  # noqa: E402
from verdict import NOT_MEASURED, median_spread, note, verdict  # noqa: E402

B = "protocol"
SCRIPT = "bench/mp_protocol.py"
ROUNDS = 7


def _rounds(out):
    rows = []
    extra = {}
    for line in out.strip().splitlines():
        f = line.split()
        d = dict(zip(f[0::2], f[1::2]))
        if "alert_us" in d:
            rows.append({k: float(v) for k, v in d.items()})
        else:
            extra.update(d)
    return rows, extra


def instr_ratios(n=2000):
    """MicroPython (alert/sha256, seal/sha256) from callgrind counts."""
    if not callgrind.available():
        return NOT_MEASURED, NOT_MEASURED
    env = dict(os.environ, MICROPYPATH=mp_util.BUILD + ":" + mp_util.ROOT + ":.frozen")
    base = [mp_util.MICROPYTHON, "-X", "heapsize=256k", SCRIPT, "count"]
    c = {w: callgrind.count(base + [w, str(n)], env=env)[0] for w in ("alert", "seal", "sha256", "none")}
    sha = c["sha256"] - c["none"]
    return (c["alert"] - c["none"]) / sha, (c["seal"] - c["none"]) / sha


def main():
    mp_util.compile_device_code()
    rc, out, err = mp_util.run_mp(SCRIPT, "256k", ["2000", str(ROUNDS)])
    if rc:
        raise SystemExit("micropython bench failed: " + (err or out))
    mp, mp_extra = _rounds(out)
    import subprocess

    p = subprocess.run([sys.executable, SCRIPT, "20000", str(ROUNDS)], cwd=mp_util.ROOT, capture_output=True,
                       text=True, env=dict(os.environ, PYTHONPATH=mp_util.ROOT))
    if p.returncode:
        raise SystemExit("cpython bench failed: " + p.stderr)
    cp, _ = _rounds(p.stdout)
    heap = mp_util.min_heap(SCRIPT, args=["once"])
    i_alert, i_seal = instr_ratios()
    how = "median of %d rounds, each timing the three in turn" % ROUNDS
    print("ALERT build+sign (%s-byte frame), ratio to one sha256 of the same bytes:" % mp_extra["bytes"])
    for name, rows in (("MicroPython", mp), ("CPython", cp)):
        for k, label in (("alert_us", "build+seal"), ("seal_us", "seal only"), ("sha256_us", "sha256")):
            m, spread = median_spread([r[k] for r in rows])
            note(B, "%s %s, per frame" % (name, label), m, "us", how, spread=spread)
    r, spread = median_spread([r["alert_us"] / r["sha256_us"] for r in mp])
    verdict(B, "MicroPython ALERT build+seal / sha256 of the frame", r, 6, "x", higher_is_better=False,
            spread=spread, method=how, instr=i_alert)
    r, spread = median_spread([r["seal_us"] / r["sha256_us"] for r in mp])
    note(B, "MicroPython seal only (HMAC + AES-CTR) / sha256 of the frame", r, "x", how, spread=spread)
    if i_seal == i_seal:
        note(B, "MicroPython seal only / sha256, from instructions", i_seal, "x", "callgrind")
    r, spread = median_spread([r["alert_us"] / r["sha256_us"] for r in cp])
    note(B, "CPython ALERT build+seal / sha256 of the frame", r, "x", how, spread=spread)
    note(B, "MicroPython heap allocated per ALERT", float(mp_extra["alloc_per_alert"]), "B", "gc.mem_alloc, GC off")
    note(B, "MicroPython peak heap to import protocol and build one ALERT", heap, "KB",
         "smallest -X heapsize that works")


main()
