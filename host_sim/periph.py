"""Faithful mode's peripheral server: the host end of firmware/board_unix.py's
wire (and of host_sim/mpboard.py's flash gate), a listening TCP socket on
127.0.0.1 that the board in the VM connects its channels to.

Owns: `PeriphServer`: the listening socket (`ls`, `port`), connections
that have not named their channel yet (`pending`, at most 64 bytes of
hello each), one socket per named channel (`ch`: b"ctrl", b"gnss",
b"modem", b"flash"; a second connection for a name replaces the first),
the ctrl and flash line buffers the rig parses (`ctrl_buf`, `flash_buf`).
`accept()`, `hello(s) -> (name, rest) | None` (a connection named its
channel: rest is what came after the hello line), `recv(s) -> (name, data)
| None` (bytes from a named channel; a channel that closed or failed is
dropped and gives None), `send(name, data) -> bool` (blocking, 2 s at
most; a channel that fails is dropped), `drop_all()` (the VM died: every
connection closed), `close()`.

Never: interprets a channel's bytes (the rig parses ctrl and flash lines,
the emulators take gnss and modem bytes); keeps a connection whose hello
names no channel, or a hello longer than 64 bytes without its newline
(only its first 64 bytes are kept, so it never names a channel); blocks
reading.

Stays in sync with: firmware/board_unix.py (channel names and hello),
host_sim/mpboard.py (the flash channel), host_sim/faithful.py (its only
user).
"""

import socket

HELLO_MAX = 64  # bytes of a channel's hello line kept before its newline


class PeriphServer:
    """Accepts the board's channel connections (ctrl, gnss, modem, flash)."""

    NAMES = (b"ctrl", b"gnss", b"modem", b"flash")

    def __init__(self):
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(8)
        self.ls.setblocking(False)
        self.port = self.ls.getsockname()[1]
        self.pending = {}  # sock -> bytes of its hello so far
        self.ch = {}  # name -> sock
        self.ctrl_buf = b""
        self.flash_buf = b""

    def sockets(self):
        return [self.ls] + list(self.pending) + list(self.ch.values())

    def name_of(self, s):
        for k, v in self.ch.items():
            if v is s:
                return k
        return None

    def accept(self):
        """A board connection is waiting on the listening socket: take it
        (it names its channel next)."""
        try:
            s, _ = self.ls.accept()
        except OSError:
            return
        s.setblocking(False)
        self.pending[s] = b""

    def hello(self, s):
        """Bytes on a connection that has not named its channel: (name,
        rest) once its hello line is whole and names a channel (it replaces
        an older connection of that name), else None (more to come, or the
        connection closed or named nothing and is gone)."""
        try:
            data = s.recv(HELLO_MAX)
        except OSError:
            return None
        if not data:
            self.pending.pop(s, None)
            s.close()
            return None
        buf = self.pending[s] + data
        if b"\n" not in buf:
            self.pending[s] = buf[:HELLO_MAX]
            return None
        name, rest = buf.split(b"\n", 1)
        del self.pending[s]
        if name not in PeriphServer.NAMES:
            s.close()
            return None
        old = self.ch.get(name)
        if old is not None:
            old.close()
        self.ch[name] = s
        return name, rest

    def recv(self, s):
        """Bytes on a named channel's socket: (name, data), or None (not
        one of ours, nothing yet, or the channel closed and was dropped)."""
        name = self.name_of(s)
        if name is None:
            return None
        try:
            data = s.recv(4096)
        except BlockingIOError:
            return None
        except OSError:
            data = b""
        if not data:
            self.close_channel(name)
            return None
        return name, data

    def drop_all(self):
        for s in list(self.pending) + list(self.ch.values()):
            try:
                s.close()
            except OSError:
                pass
        self.pending = {}
        self.ch = {}
        self.ctrl_buf = b""
        self.flash_buf = b""

    def send(self, name, data):
        s = self.ch.get(name)
        if s is None or not data:
            return False
        try:
            s.setblocking(True)
            s.settimeout(2)
            s.sendall(data)
            s.setblocking(False)
            return True
        except OSError:
            self.close_channel(name)
            return False

    def close_channel(self, name):
        s = self.ch.pop(name, None)
        if s is not None:
            try:
                s.close()
            except OSError:
                pass

    def close(self):
        self.drop_all()
        self.ls.close()
