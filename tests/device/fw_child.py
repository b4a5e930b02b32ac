"""Runs a whole-App device test file in a child MicroPython VM when the
runner's heap is too small for it.

The App's own files (test_fw_app*.py, test_fw_outbox_crash.py) load the
whole firmware core plus the fakes of a device as .mpy: on the 64-bit unix
port that is ~80 KB of loaded code before any data (bench/bench_firmware.py
prints the per-module table; docs/firmware.md, Memory), and they need up to
CHILD_HEAP_KB in all. So on a MicroPython heap under IN_PLACE_KB every
test_* of such a file is replaced by a stub; the first stub runs the whole
file once in a child MicroPython VM (same .mpy files, CHILD_HEAP_KB of heap)
and each stub then reports its own test's result. Such files import
firmware modules only `if IN_PLACE`. On CPython and on a big heap nothing
changes. Every other device test file runs in place at 96 KB.
"""

import gc
import sys

CHILD_HEAP_KB = 144  # all pass at 128 KB; 16 KB margin for fragmentation
IN_PLACE_KB = 128

IN_PLACE = sys.implementation.name != "micropython" or gc.mem_free() + gc.mem_alloc() >= IN_PLACE_KB * 1024


def delegate(g, modname):
    """Call at the end of the test file (see the module docstring)."""
    if IN_PLACE:
        return
    results = {}

    def stub_for(name):
        def stub():
            if not results:
                _run_child(modname, results)
            r = results.get(name)
            assert r == "ok", "%s.%s: %s (in a MicroPython child with %d KB heap)" % (
                modname, name, r or "did not run", CHILD_HEAP_KB)

        return stub

    for n in [n for n in g if n.startswith("test_")]:
        g[n] = stub_for(n)


def _run_child(modname, results):
    import os

    out = "build/fw_child_%s.txt" % modname
    try:
        os.remove(out)
    except OSError:
        pass
    path = ":".join(p for p in sys.path if p and p != ".frozen")
    code = "import sys; sys.path.pop(0); import fw_child; fw_child.child_main('%s', '%s')" % (modname, out)
    os.system("MICROPYPATH='%s:.frozen' %s -X heapsize=%dk -c \"%s\"" % (
        path, sys.executable, CHILD_HEAP_KB, code))
    try:
        with open(out) as f:
            for line in f:
                name, _, r = line.strip().partition(" ")
                results[name] = r
    except OSError:
        results["?"] = "child did not run"


def child_main(modname, out):
    global IN_PLACE
    IN_PLACE = True  # the child runs the tests itself, never a grandchild
    mod = __import__(modname)
    with open(out, "w") as f:
        for name in sorted(n for n in dir(mod) if n.startswith("test_")):
            gc.collect()
            try:
                getattr(mod, name)()
                f.write("%s ok\n" % name)
            except Exception as e:
                f.write("%s FAIL %r\n" % (name, e))
                sys.print_exception(e)  # pyright: ignore[reportAttributeAccessIssue]
