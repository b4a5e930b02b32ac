"""Helpers for benches that run code on the MicroPython unix port."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
MICROPYTHON = os.path.join(BIN, "micropython")
BUILD = os.path.join(ROOT, "build", "bench-mp")


def compile_device_code():
    """Compile firmware/ and protocol/ (and the device test doubles in
    tests/device: board_fake, fake_transport) to portable .mpy under
    build/bench-mp."""
    sys.path.insert(0, ROOT)
    from tools.mpy_compile import compile_all

    done, errors = compile_all(["firmware", "protocol", "tests/device"], BUILD, march="")
    if errors:
        raise SystemExit("mpy-cross failed: %r" % errors)
    return BUILD


def run_mp(script, heap="96k", args=(), timeout=600):
    """Run a MicroPython script with the compiled device code on sys.path.
    Returns (returncode, stdout, stderr)."""
    env = dict(os.environ, MICROPYPATH=BUILD + ":" + os.path.join(BUILD, "tests", "device") + ":" + ROOT + ":.frozen")
    p = subprocess.run([MICROPYTHON, "-X", "heapsize=%s" % heap, script] + list(args),
                       cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)
    return p.returncode, p.stdout, p.stderr


def min_heap(script, lo_kb=8, hi_kb=512, args=()):
    """Smallest -X heapsize (in KB, to 1 KB) at which the script exits 0:
    the true peak heap the code needs, fragmentation included."""
    rc, out, err = run_mp(script, "%dk" % hi_kb, args)
    if rc != 0:
        raise SystemExit("%s fails even with %d KB heap:\n%s" % (script, hi_kb, err or out))
    while hi_kb - lo_kb > 1:
        mid = (lo_kb + hi_kb) // 2
        rc, _, _ = run_mp(script, "%dk" % mid, args)
        if rc == 0:
            hi_kb = mid
        else:
            lo_kb = mid
    return hi_kb


def _pairs(line):
    f = line.split()
    return dict(zip(f[0::2], f[1::2]))


def run_both(script, mp_n, cp_n, heap="256k"):
    """Run a bench script that prints 'name value ...' pairs on MicroPython
    (compiled device code) and on CPython; return (mp dict, cp dict)."""
    compile_device_code()
    rc, out, err = run_mp(script, heap, [str(mp_n)])
    if rc:
        raise SystemExit("micropython bench failed: " + err)
    p = subprocess.run([sys.executable, script, str(cp_n)], cwd=ROOT, capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=ROOT))
    if p.returncode:
        raise SystemExit("cpython bench failed: " + p.stderr)
    return _pairs(out.strip()), _pairs(p.stdout.strip())
