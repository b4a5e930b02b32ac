"""A MicroPython unix-port child whose stdin is a pipe: the device side of
the console tests and of the console fuzz campaign (tests/device/
stdin_console.py runs in it).

Owns: compiling the device code (firmware/, protocol/, tests/device/) to
portable .mpy with mpy-cross and imaging it as ROMFS (tools/romfs.py), as
a board flashed with `panic flash --romfs` holds it; starting a VM that
mounts the image at /rom and runs one function of stdin_console with a
96 KB heap beside the image (tests/device/fw_child.py does the same for
the whole-App device tests). Host side only (CPython).
"""

import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

HEAP_KB = 96  # the device tests' heap, beside the image


def micropython():
    cand = os.path.join(os.path.dirname(sys.executable), "micropython")
    return cand if os.path.exists(cand) else "micropython"


def build_image(out_dir):
    """Compile the device code into out_dir and image it; returns the
    image's path."""
    from tools.mpy_compile import compile_all
    from tools.romfs import image_of_tree

    mpy = os.path.join(out_dir, "mpy")
    cwd = os.getcwd()
    try:
        os.chdir(ROOT)
        _, errors = compile_all(["firmware", "protocol", "tests/device"], mpy, march="")
    finally:
        os.chdir(cwd)
    if errors:
        raise RuntimeError("mpy-cross failed on %s: %s" % errors[0])
    path = os.path.join(out_dir, "device.romfs")
    with open(path, "wb") as f:
        f.write(image_of_tree(mpy, ["firmware", "protocol", "tests/device"]))
    return path


def spawn(image, call, heap_kb=HEAP_KB):
    """Start `stdin_console.<call>` (a Python call expression, e.g.
    "echo()") in a VM running from `image`; stdin, stdout and stderr are
    pipes (binary)."""
    size = os.stat(image).st_size
    code = ("import sys, vfs\n"
            "b = bytearray(%d)\n"
            "f = open(%r, 'rb')\n"
            "f.readinto(b)\n"
            "f.close()\n"
            "vfs.mount(vfs.VfsRom(b), '/rom')\n"
            "sys.path[:] = ['/rom/tests/device', '/rom']\n"
            "import stdin_console\n"
            "stdin_console.%s\n" % (size, image, call))
    heap = "%dk" % ((size + 1023) // 1024 + 1 + heap_kb)
    return subprocess.Popen([micropython(), "-X", "heapsize=" + heap, "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ, MICROPYPATH=""))


class Image:
    """A device image in a temporary folder, removed by close()."""

    def __init__(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="console-")
        self.path = build_image(self._tmp.name)

    def close(self):
        self._tmp.cleanup()


def reports(text):
    """stderr lines "<tag> <fields>" -> [(tag, [fields])]."""
    out = []
    for line in text.splitlines():
        f = line.split()
        if f:
            out.append((f[0], f[1:]))
    return out
