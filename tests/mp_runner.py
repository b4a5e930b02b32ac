"""Runs the device test files (tests/device/test_*.py) on MicroPython.

Usage (from the repository root):
    micropython -X heapsize=96k tests/mp_runner.py [--mpy DIR] [substring ...]

With --mpy DIR the modules are loaded from .mpy files compiled by mpy-cross
into DIR (as `make test-mp` does), exactly as the board loads them: compiling
source on a 96 KB heap measures the compiler, not the firmware.

Each file holds plain `test_*` functions with no arguments; pytest runs the
same files on CPython. Prints one line per failure, then `N passed, N failed`
and exits 1 if anything failed.
"""

import gc
import os
import sys

sys.path.insert(0, "tests/device")
sys.path.insert(0, ".")
if len(sys.argv) > 2 and sys.argv[1] == "--mpy":
    sys.path.insert(0, sys.argv[2] + "/tests/device")
    sys.path.insert(0, sys.argv[2])
    del sys.argv[1:3]

DIR = "tests/device"


def main(argv):
    wanted = argv[1:]
    passed = 0
    failed = 0
    files = sorted(f for f in os.listdir(DIR) if f.startswith("test_") and f.endswith(".py"))
    for fname in files:
        modname = fname[:-3]
        if wanted and not any(w in fname for w in wanted):
            continue
        gc.collect()
        before = set(sys.modules)
        try:
            mod = __import__(modname)
        except Exception as e:
            failed += 1
            print("FAIL %s (import): %r" % (fname, e))
            sys.print_exception(e)
            for k in list(sys.modules):
                if k not in before:
                    del sys.modules[k]
            continue
        names = sorted(n for n in dir(mod) if n.startswith("test_"))
        for name in names:
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
        # drop every module this file loaded, so each file starts with the
        # heap the previous one had (the board only loads what it runs)
        for k in list(sys.modules):
            if k not in before:
                del sys.modules[k]
        mod = fn = None
        gc.collect()
    print("micropython: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


sys.exit(main(sys.argv))
