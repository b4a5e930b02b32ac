"""The one door between firmware state and flash.

Owns: every file operation the firmware makes (read, atomic write, remove,
list) and a count of each, so flash wear can be measured and power cuts
injected. Never interprets contents.

Atomic write = open temp, write, close, rename over the target. On LittleFS
(the ESP32 filesystem) data is committed only on close and rename over an
existing file is atomic on power loss, so a reader after any cut sees either
the old file or the new one, plus perhaps a stray temp file, which
`cleanup()` removes at boot.

Power-cut injection: every primitive step calls `self.step(kind, name)`
first ("open", "write", "close", "rename", "remove"). A test or the
simulator sets `cut_at` to a step number: when that step is reached the
shim raises PowerCut *instead of* doing it, and every later step raises too
(the device is off). `steps` counts the steps done so far.

Must stay in sync with: MemFs below (same semantics in RAM, used by tests
and the simulator), docs/firmware.md (flash write budget).
"""

import os

TMP = ".tmp"


class PowerCut(BaseException):
    """Raised by an fs step when an injected power cut happens. A
    BaseException, so no `except Exception` recovery path (loop.py's
    restart loop included) can run "after" the power went."""


class Fs:
    def __init__(self, root):
        self.root = root
        self.steps = 0
        self.cut_at = -1
        self.writes = 0  # atomic writes completed
        self.removes = 0
        try:
            os.mkdir(root)
        except OSError:
            pass

    def path(self, name):
        return self.root + "/" + name

    def step(self, kind, name):
        if self.cut_at >= 0 and self.steps >= self.cut_at:
            raise PowerCut("%s %s" % (kind, name))
        self.steps += 1

    # -- primitives (the host filesystem; MemFs overrides them)
    def _open(self, name):
        return open(self.path(name), "wb")

    def _rename(self, a, b):
        os.rename(self.path(a), self.path(b))

    def _remove(self, name):
        os.remove(self.path(name))

    def read(self, name):
        """Whole file as bytes, or None if it does not exist."""
        try:
            with open(self.path(name), "rb") as f:
                return f.read()
        except OSError:
            return None

    def listdir(self):
        try:
            return os.listdir(self.root)
        except OSError:
            return []

    # -- composite operations
    def write_atomic(self, name, data):
        tmp = name + TMP
        self.step("open", tmp)
        f = self._open(tmp)
        try:
            self.step("write", tmp)
            f.write(data)
            self.step("close", tmp)
        except PowerCut:
            self._abandon(f, tmp)
            raise
        f.close()
        self.step("rename", name)
        self._rename(tmp, name)
        self.writes += 1

    def _abandon(self, f, tmp):
        # the cut left an open file: on flash nothing past the last commit
        # survives; here the half-written temp file stays for cleanup().
        try:
            f.close()
        except Exception:
            pass

    def remove(self, name):
        self.step("remove", name)
        try:
            self._remove(name)
        except OSError:
            return False
        self.removes += 1
        return True

    def cleanup(self):
        """Drop temp files a power cut left behind. Returns how many."""
        n = 0
        for name in self.listdir():
            if name.endswith(TMP):
                try:
                    self._remove(name)
                    n += 1
                except OSError:
                    pass
        return n


class _MemFile:
    def __init__(self, fs, name):
        self.fs = fs
        self.name = name
        self.buf = bytearray()

    def write(self, b):
        self.buf.extend(b)

    def close(self):
        self.fs.files[self.name] = bytes(self.buf)


class MemFs(Fs):
    """The same shim over a dict: LittleFS semantics (nothing committed
    before close, rename atomic), shared across "reboots" by passing the
    same object. `files` maps name -> bytes."""

    def __init__(self, files=None):
        self.root = ""
        self.files = files if files is not None else {}
        self.steps = 0
        self.cut_at = -1
        self.writes = 0
        self.removes = 0

    def _open(self, name):
        self.files[name] = b""  # LittleFS commits the new (empty) entry at open
        return _MemFile(self, name)

    def _abandon(self, f, tmp):
        pass  # never closed: nothing of it reached flash

    def _rename(self, a, b):
        self.files[b] = self.files.pop(a)

    def _remove(self, name):
        if name not in self.files:
            raise OSError(2)
        del self.files[name]

    def read(self, name):
        return self.files.get(name)

    def listdir(self):
        return list(self.files)

    def revive(self):
        """Power back on after a cut: same files, no cut pending."""
        self.cut_at = -1
        self.steps = 0
