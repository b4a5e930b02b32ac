"""Host half of the diagnostics console (firmware/diag.py), over pyserial.

Owns: the engineer side of the DIAG1 line protocol (hello, verifying the
device's accept tag, sealing commands and opening responses) and one serial
connection to a board (any pyserial URL, socket://host:port included).
Never prints, logs or returns the engineer key or the session key.
Stays in sync with: firmware/diag.py (labels and line forms are imported
from it, so the two halves cannot drift) and docs/diag.md.
"""

import binascii
import json
import os
import time

import serial

from firmware import diag as D
from protocol.crypto import Hmac, tags_equal
from tools.errors import PanicError, Unavailable, UsageError


class DiagError(PanicError):
    """The console did not answer as a genuine, authenticated device would
    (exit 1: the unit failed; tools/errors.py, the one root of tools/)."""


def load_engineer_key(path):
    """Read the 64-hex engineer key file written by `panic provision`."""
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError as e:
        raise Unavailable("cannot read engineer key file %s: %s" % (path, e.strerror))
    try:
        raw = binascii.unhexlify(text)
    except (binascii.Error, ValueError):
        raise UsageError("engineer key file %s does not hold hex" % path)
    if len(raw) != 32:
        raise UsageError("engineer key file %s must hold 32 bytes (64 hex digits)" % path)
    return raw


class DiagHost:
    """Sans-I/O host side: produces lines to send, checks lines received."""

    def __init__(self, engineer_key, rand=os.urandom):
        self._ek = Hmac(engineer_key)
        self._rand = rand
        self._hn = None
        self._sk = None
        self._seq = 0

    def __repr__(self):
        return "<DiagHost %s>" % ("session" if self._sk else "idle")

    def hello(self):
        self._hn = self._rand(D.NONCE_LEN)
        self._sk = None
        self._seq = 0
        return D.hello_line(self._ek, self._hn)

    def accept(self, line):
        """The device's answer to hello; raises DiagError unless genuine."""
        parts = line.strip().split(b" ")
        if len(parts) != 3 or parts[0] != D.VERSION.encode():
            raise DiagError("the answer to hello is not a DIAG1 accept line")
        try:
            dn = binascii.unhexlify(parts[1])
            tag = binascii.unhexlify(parts[2])
        except (binascii.Error, ValueError):
            raise DiagError("the answer to hello is not hex")
        if len(dn) != D.NONCE_LEN or not tags_equal(D.accept_tag(self._ek, self._hn, dn), tag):
            raise DiagError("the device's answer does not verify: not this device's engineer key, or tampered")
        self._sk = Hmac(D.session_key(self._ek, self._hn, dn))

    def command(self, cmd, **args):
        if self._sk is None:
            raise DiagError("not authenticated")
        self._seq += 1
        req = {"seq": self._seq, "cmd": cmd}
        req.update(args)
        return D.sealed_line(self._sk, D.D_HOST, json.dumps(req, separators=(",", ":")).encode())

    def response(self, line):
        """Open a device response; None if it is not for us (bad MAC/seq)."""
        body = D.open_line(self._sk, D.D_DEV, line.strip())
        if body is None:
            return None
        try:
            resp = json.loads(body)
        except ValueError:
            return None
        if not isinstance(resp, dict) or resp.get("seq") != self._seq:
            return None
        return resp


class SerialConsole:
    """One authenticated console session over a pyserial URL."""

    def __init__(self, port, engineer_key, baud=115200, timeout=3.0):
        self.port = port
        self.timeout = timeout
        try:
            self.ser = serial.serial_for_url(port, baudrate=baud, timeout=0.1, do_not_open=True)
            # Opening a USB-serial bridge asserts DTR/RTS, which resets an
            # ESP32 through its auto-reset circuit: never reset a unit that
            # may be carrying an alert just to talk to its console.
            try:
                self.ser.dtr = False
                self.ser.rts = False
            except (serial.SerialException, OSError, ValueError):
                pass
            self.ser.open()
        except (serial.SerialException, ValueError, OSError) as e:
            raise Unavailable("cannot open port %s: %s" % (port, _why(e)))
        self.host = DiagHost(engineer_key)
        self.rejected = 0  # lines that failed verification
        self._tail = b""  # the line being read (a prompt has no line end)

    def close(self):
        try:
            self.ser.close()
        except Exception:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def _readline(self, deadline):
        buf = b""
        while time.monotonic() < deadline:
            try:
                c = self.ser.read(1)
            except (serial.SerialException, OSError) as e:
                raise DiagError("connection lost: %s" % _why(e))
            if not c:
                continue
            if c == b"\n":
                return buf
            buf += c
            self._tail = buf[-64:]
            if len(buf) > 65536:
                buf = b""
        return None

    def login(self):
        """The hello and the device's accept. A board whose firmware is not
        running answers as the MicroPython REPL (an echo, a SyntaxError, a
        ">>> " prompt) where the firmware says nothing to a wrong key: the
        two are told apart, so an engineer is not sent to look for a key."""
        try:
            self.ser.reset_input_buffer()
        except Exception:
            pass
        self._tail = b""
        hello = self.host.hello()
        self._write(hello)
        deadline = time.monotonic() + self.timeout
        seen = b""
        while True:
            line = self._readline(deadline)
            if line is None:
                break
            ln = line.strip()
            if ln.startswith(D.VERSION.encode() + b" ") and not ln.endswith(hello.strip()):
                self.host.accept(line)  # (an echo of our hello is a REPL's, never an answer)
                return
            seen = (seen + line + b"\n")[-4096:]
        seen += self._tail
        if any(m in seen for m in _REPL_MARKS):
            raise DiagError(
                "the board answered as the MicroPython REPL, not the firmware: the firmware is not running "
                "(flash and provision it with panic flash / panic provision, or reset the board)"
            )
        raise DiagError(
            "no answer from the console: wrong engineer key, console locked out after failed attempts "
            "(wait and retry), firmware not running, or not a panic device"
        )

    def _write(self, b):
        try:
            self.ser.write(b)
            self.ser.flush()
        except (serial.SerialException, OSError) as e:
            raise DiagError("connection lost: %s" % _why(e))

    def call(self, cmd, **args):
        self._write(self.host.command(cmd, **args))
        deadline = time.monotonic() + self.timeout
        while True:
            line = self._readline(deadline)
            if line is None:
                raise DiagError("no answer to %r within %.0f s" % (cmd, self.timeout))
            resp = self.host.response(line)
            if resp is not None:
                return resp
            self.rejected += 1


# what only the MicroPython REPL says (friendly and raw): the firmware's
# console says nothing at all until a hello verifies
_REPL_MARKS = (b">>> ", b"SyntaxError", b"Traceback (most recent call last)", b"raw REPL", b"MicroPython v")


def _why(e):
    return getattr(e, "strerror", None) or str(e) or e.__class__.__name__
