"""One raw-REPL connection to a MicroPython board, for flash and provision.

Owns: opening a pyserial URL (a serial device, socket://host:port, rfc2217://)
with mpremote's SerialTransport, entering the raw REPL WITHOUT a soft reset
(so a unix-port "board" behind a socket survives, and a board's running
state is not reset by merely looking), and the few device-side operations
the tools need: run a snippet, read/write/hash files, atomic file writes
(tmp + rename), recursive removal, free space.
Turns every transport failure into DeviceError with one clear line:
BoardUnavailable (exit 3) when the port cannot be opened or no board
answers, plain DeviceError (exit 1) when the board refuses or answers wrongly.
Never sends or prints key material itself: callers pass file contents.
Stays in sync with: mpremote's Transport API (exec, fs_writefile,
enter_raw_repl) as of mpremote 1.2x.
"""

import contextlib
import functools
import io
import json
from typing import Any

import serial

from tools.errors import EXIT_UNAVAILABLE, PanicError

from mpremote.transport import TransportError, TransportExecError  # a dependency (pyproject.toml)
from mpremote.transport_serial import SerialTransport


class DeviceError(PanicError):
    """The board refused an operation or answered wrongly (exit 1)."""


class BoardUnavailable(DeviceError):
    """The port cannot be opened, or no board answers on it (exit 3)."""

    exit_code = EXIT_UNAVAILABLE


ENOSPC = 28

_HASH_FN = (
    "def _pnc_h(p):\n"
    " import hashlib,binascii\n"
    " h=hashlib.sha256()\n"
    " b=bytearray(512)\n"
    " m=memoryview(b)\n"
    " with open(p,'rb') as f:\n"
    "  while True:\n"
    "   n=f.readinto(b)\n"
    "   if not n:break\n"
    "   h.update(m[:n])\n"
    " return binascii.hexlify(h.digest()).decode()\n"
)

_RMTREE_FN = (
    "def _pnc_rm(p):\n"
    " import os\n"
    " try:\n"
    "  st=os.stat(p)\n"
    " except OSError:\n"
    "  return\n"
    " if st[0]&0x4000:\n"
    "  for e in list(os.ilistdir(p)):\n"
    "   _pnc_rm(p.rstrip('/')+'/'+e[0])\n"
    "  os.rmdir(p)\n"
    " else:\n"
    "  os.remove(p)\n"
)


def _why(e):
    s = getattr(e, "strerror", None)
    if s:
        return s
    lines = str(e).strip().splitlines()
    return lines[-1] if lines else e.__class__.__name__


def _patient(fn, ser, wait_s, command):
    """An mpremote call with the serial timeout at wait_s while it runs."""
    old = ser.timeout
    ser.timeout = wait_s
    try:
        return fn(command)
    finally:
        ser.timeout = old


class Board:
    """A board reached over a pyserial URL, in the raw REPL."""

    def __init__(self, port, baud=115200, timeout=10):
        self.port = port
        quiet = io.StringIO()
        try:
            with contextlib.redirect_stdout(quiet):
                self.t = SerialTransport(port, baudrate=baud)
        except (TransportError, serial.SerialException, OSError, ValueError) as e:
            raise BoardUnavailable("cannot open port %s: %s" % (port, _open_reason(port, e)))
        # Wait for bytes in a blocking read with a short timeout instead of
        # mpremote's poll-and-sleep loop (its pty path): same results, a
        # round trip per command instead of 10 ms sleeps.
        ser: Any = self.t.serial  # a pyserial Serial (mpremote types it as its own wrapper)
        ser.timeout = 0.05
        self.t.is_pty = True
        # ...except while a command is handed over: mpremote's
        # exec_raw_no_follow reads the raw-paste handshake ("R\x01"), the
        # flow-control byte of each window ("\x01": send the next) and the
        # "OK" with single serial.read() calls and calls an empty read an
        # error ("unexpected read during raw paste: b''"). A board writing
        # flash (an erase takes tens of ms on an ESP32) or a busy host VM
        # answers later than 50 ms, so the hand-over waits as long as any
        # other answer may take.
        self.t.exec_raw_no_follow = functools.partial(_patient, self.t.exec_raw_no_follow, self.t.serial, timeout)
        try:
            with contextlib.redirect_stdout(quiet):
                self.t.enter_raw_repl(soft_reset=False, timeout_overall=timeout)
        except (TransportError, serial.SerialException, OSError) as e:
            self._close()
            raise BoardUnavailable(
                "no MicroPython REPL answered on %s (%s): is a board connected, and is it not locked?" % (port, _why(e))
            )
        self._fns = set()

    def _close(self):
        try:
            self.t.close()
        except Exception:
            pass

    def close(self):
        try:
            if self.t.in_raw_repl:
                self.t.exit_raw_repl()
        except Exception:
            pass
        self._close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    # -- running code ----------------------------------------------------
    def exec(self, code):
        """Run code on the board; return its stdout as str."""
        try:
            out = self.t.exec(code)
        except TransportExecError as e:
            raise DeviceError("the board refused: %s" % _last_line(e.error_output))
        except (TransportError, serial.SerialException, OSError) as e:
            raise BoardUnavailable("connection to %s lost: %s" % (self.port, _why(e)))
        return out.decode("utf-8", "replace") if isinstance(out, (bytes, bytearray)) else out

    def eval_json(self, expr, setup=""):
        out = self.exec("import json\n" + setup + "print(json.dumps(%s))" % expr)
        try:
            return json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise DeviceError("unexpected answer from the board: %r" % out[:80])

    def _need(self, name, src):
        if name not in self._fns:
            self.exec(src)
            self._fns.add(name)

    # -- files -------------------------------------------------------------
    def exists(self, path):
        return self.eval_json("_e", "import os\ntry:\n os.stat(%r)\n _e=True\nexcept OSError:\n _e=False\n" % path)

    def read(self, path):
        """File contents as bytes, or None if there is no such file."""
        out = self.eval_json(
            "_r",
            "import binascii\ntry:\n with open(%r,'rb') as f:\n  _r=binascii.hexlify(f.read()).decode()\n"
            "except OSError:\n _r=None\n" % path,
        )
        return None if out is None else bytes.fromhex(out)

    def sha256(self, paths):
        """{path: hex sha256 or None if unreadable} read back from the board."""
        self._need("h", _HASH_FN)
        res = {}
        paths = list(paths)
        for i in range(0, len(paths), 16):
            part = paths[i : i + 16]
            got = self.eval_json(
                "_x", "_x=[]\nfor _p in %r:\n try:\n  _x.append(_pnc_h(_p))\n except OSError:\n  _x.append(None)\n" % part
            )
            if not isinstance(got, list) or len(got) != len(part):
                raise DeviceError("unexpected hash answer from the board")
            res.update(zip(part, got, strict=True))
        return res

    def write(self, path, data, progress=None, chunk=1024):
        try:
            self.t.fs_writefile(path, data, chunk_size=chunk, progress_callback=progress)
        except serial.SerialException as e:
            raise BoardUnavailable("connection to %s lost while writing %s: %s" % (self.port, path, _why(e)))
        except OSError as e:
            if getattr(e, "errno", None) == ENOSPC:
                raise DeviceError("the board's flash is full (writing %s)" % path)
            raise DeviceError("cannot write %s on the board: %s" % (path, _why(e)))
        except TransportExecError as e:
            if "28" in str(e.error_output) or "ENOSPC" in str(e.error_output):
                raise DeviceError("the board's flash is full (writing %s)" % path)
            raise DeviceError("cannot write %s on the board: %s" % (path, _last_line(e.error_output)))
        except TransportError as e:
            raise BoardUnavailable("connection to %s lost while writing %s: %s" % (self.port, path, _why(e)))

    def write_atomic(self, path, data):
        """Write path.tmp, check it reads back, then rename over path."""
        import hashlib

        tmp = path + ".tmp"
        self.write(tmp, data)
        got = self.sha256([tmp])[tmp]
        if got != hashlib.sha256(data).hexdigest():
            self.remove(tmp)
            raise DeviceError("%s did not read back correctly from the board" % tmp)
        self.exec("import os\nos.rename(%r,%r)\n" % (tmp, path))

    def mkdirs(self, path):
        self.exec(
            "import os\n_p=''\nfor _s in %r.strip('/').split('/'):\n _p+='/'+_s\n try:\n  os.mkdir(_p)\n"
            " except OSError:\n  pass\n" % path
        )

    def remove(self, path):
        """Remove a file or a whole directory tree (no error if missing)."""
        self._need("rm", _RMTREE_FN)
        self.exec("_pnc_rm(%r)\n" % path)

    def listdir(self, path="/"):
        return self.eval_json("_l", "import os\ntry:\n _l=sorted(e[0] for e in os.ilistdir(%r))\nexcept OSError:\n _l=[]\n" % path)

    def free_bytes(self, path="/"):
        st = self.eval_json("_s", "import os\n_s=list(os.statvfs(%r))\n" % path)
        return st[0] * st[4]


def _open_reason(port, e):
    """mpremote only says "failed to access"; ask pyserial for the reason."""
    try:
        s = serial.serial_for_url(port, do_not_open=True)
        s.open()
        s.close()
    except (serial.SerialException, OSError, ValueError) as e2:
        msg = getattr(e2, "strerror", None) or str(e2)
        return msg.strip().splitlines()[-1] if msg.strip() else _why(e)
    return _why(e)


def _last_line(s):
    if isinstance(s, (bytes, bytearray)):
        s = s.decode("utf-8", "replace")
    lines = [x for x in str(s).strip().splitlines() if x.strip()]
    return lines[-1] if lines else "error"
