"""Runs the device test files (tests/device/test_*.py) on MicroPython.

Usage (from the repository root):
    micropython -X heapsize=96k tests/mp_runner.py [--mpy DIR] [substring ...]

With --mpy DIR the modules are loaded from .mpy files compiled by mpy-cross
into DIR (as `make test-mp` does), exactly as the board loads them: compiling
source on a 96 KB heap measures the compiler, not the firmware.

Each test file runs in its own MicroPython process with the same heap as
this one: MicroPython never frees interned strings, so one VM that loaded
every module of the project in turn would measure the test order, not the
code. Each file holds plain `test_*` functions with no arguments; pytest
runs the same files on CPython. Prints one line per failure, then
`N passed, N failed` and exits 1 if anything failed.
"""

import gc
import os
import sys

DIR = "tests/device"
RESULT = "build/mp_runner_result.txt"


def _opts(argv):
    opts = {"mpy": None, "one": None, "heap": None}
    rest = []
    i = 1
    while i < len(argv):
        a = argv[i]
        if a in ("--mpy", "--one", "--heap") and i + 1 < len(argv):
            opts[a[2:]] = argv[i + 1]
            i += 2
            continue
        rest.append(a)
        i += 1
    return opts, rest


def run_file(fname):
    """Run every test in one file in this VM; return (passed, failed)."""
    passed = failed = 0
    modname = fname[:-3]
    gc.collect()
    try:
        mod = __import__(modname)
    except Exception as e:
        print("FAIL %s (import): %r" % (fname, e))
        sys.print_exception(e)
        return 0, 1
    for name in sorted(n for n in dir(mod) if n.startswith("test_")):
        fn = getattr(mod, name)
        if not callable(fn):
            continue
        gc.collect()
        try:
            fn()
            passed += 1
        except Exception as e:
            failed += 1
            print("FAIL %s::%s: %r" % (fname, name, e))
            sys.print_exception(e)
    return passed, failed


def main(argv):
    opts, wanted = _opts(argv)
    sys.path.insert(0, "tests/device")
    sys.path.insert(0, ".")
    if opts["mpy"]:  # compiled modules first, as on the board
        sys.path.insert(0, opts["mpy"] + "/tests/device")
        sys.path.insert(0, opts["mpy"])
    if opts["one"]:
        p, f = run_file(opts["one"])
        with open(RESULT, "w") as out:
            out.write("%d %d\n" % (p, f))
        return 0
    heap = opts["heap"] or "96k"
    passed = failed = 0
    files = sorted(f for f in os.listdir(DIR) if f.startswith("test_") and f.endswith(".py"))
    for fname in files:
        if wanted and not any(w in fname for w in wanted):
            continue
        try:
            os.remove(RESULT)
        except OSError:
            pass
        cmd = "%s -X heapsize=%s tests/mp_runner.py --one %s" % (sys.executable, heap, fname)
        if opts["mpy"]:
            cmd += " --mpy " + opts["mpy"]
        os.system(cmd)
        try:
            with open(RESULT) as f:
                p, fl = [int(x) for x in f.read().split()]
        except (OSError, ValueError):
            print("FAIL %s: the MicroPython process died (out of memory or a crash)" % fname)
            p, fl = 0, 1
        print("%-34s %3d passed, %d failed" % (fname, p, fl))
        passed += p
        failed += fl
    print("(each file in its own MicroPython VM with a %s heap)" % heap)
    print("micropython: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


sys.exit(main(sys.argv))
