"""Keep the 96 KB MicroPython heap for the next test file.

The MicroPython runner imports each test file in turn and drops only the
file's own module, so every module a file imported would otherwise stay
loaded for all later files. A test file calls release() right after its
imports: the modules leave sys.modules, the file's own names keep them
alive while its tests run, and they are freed with the file. Test
modules themselves and the shared helpers stay. On CPython (pytest)
nothing is dropped.
"""

import sys

_KEEP = ("mpcheck", "heap")


def release():
    if sys.implementation.name != "micropython":
        return
    for k in list(sys.modules):
        if not k.startswith("test_") and k not in _KEEP:
            del sys.modules[k]
