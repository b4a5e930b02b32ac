"""Runs a whole-App device test file in a child MicroPython VM whose code
is in ROMFS, as on a board flashed with `panic flash --romfs`.

The App's own files (test_fw_app*.py, test_fw_outbox_crash.py) load the
whole firmware core plus the fakes of a device: loaded as .mpy into the
heap that is ~80 KB of code on the 64-bit unix port before any data
(bench/bench_firmware.py; docs/firmware.md, Memory), too much for 96 KB.
So on a MicroPython heap under IN_PLACE_KB every test_* of such a file is
replaced by a stub; the first stub runs the whole file once in a child VM
and each stub then reports its own test's result. The child mounts
ROM_IMAGE (the same .mpy files, firmware/, protocol/ and tests/device/,
imaged by tools/romfs.py; `make test-mp` builds it) at /rom and imports
from it in place, with CHILD_HEAP_KB of heap beside the image: -X heapsize
is the image's size plus CHILD_HEAP_KB, and the image is the first thing
allocated, so the rest of the heap is one piece of that size. Such files
import firmware modules only `if IN_PLACE`. On CPython and on a big heap
nothing changes. Every other device test file runs in place at 96 KB with
its modules loaded into the heap.
"""

import gc
import sys

CHILD_HEAP_KB = 98  # beside the ROMFS image; all pass at 97, test_fw_app.py fails at 96 (was: pass at 96, fail at 94, before the App held its 512-byte NMEA read buffer and the module-trim state: bench_firmware, 32-bit peak +0.8 KB)
IN_PLACE_KB = 128
ROM_IMAGE = "build/mp.romfs"

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
            assert r == "ok", "%s.%s: %s (in a MicroPython child, code in ROMFS, %d KB heap)" % (
                modname, name, r or results.get("?") or "did not run", CHILD_HEAP_KB)

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
    try:
        size = os.stat(ROM_IMAGE)[6]
    except OSError:
        results["?"] = "no %s: `make test-mp` builds it (tools/romfs.py)" % ROM_IMAGE
        return
    code = ("import os, sys, vfs; b = bytearray(%d); f = open('%s', 'rb'); f.readinto(b); f.close(); "
            "vfs.mount(vfs.VfsRom(b), '/rom'); sys.path[:] = ['/rom/tests/device', '/rom']; "
            "import fw_child; fw_child.child_main('%s', '%s')" % (size, ROM_IMAGE, modname, out))
    os.system("%s -X heapsize=%dk -c \"%s\"" % (sys.executable, (size + 1023) // 1024 + 1 + CHILD_HEAP_KB, code))
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
