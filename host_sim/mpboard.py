"""A MicroPython "board" on this computer, reachable as socket://127.0.0.1:PORT.

Owns: one real MicroPython unix-port process on a pseudo-terminal whose
filesystem root "/" is a host folder (a Python VFS mounted at start-up, with
an optional byte quota so "flash full" can be shown, and an optional flash
gate that reports every mutating step to the host and waits for its
go-ahead, so faithful mode can cut the power at an exact flash write), and
a TCP bridge that
shuttles bytes between the pty and one TCP client at a time. The process
outlives client connections, like a board staying powered while a cable is
re-plugged; `power_cycle()` restarts it, `kill()` pulls the plug mid-transfer.

Used by the tool tests: `mpremote connect socket://127.0.0.1:PORT resume ...`
and tools/flash.py work against it exactly as against a board (without
`resume`, mpremote's soft reset would end the unix process).

With `rom=BYTES` the board also has a ROM partition (vfs.rom_ioctl, as a
port built with ROMFS has), so `mpremote romfs deploy` and `panic flash
--romfs` work against it; the partition is a bytearray in the VM's heap,
saved to the host file `<root>.rom` (the VM's -X heapsize is `heap` plus
the partition), and a valid image in it is mounted at /rom when the board
starts.

Never does: anything a real board would not (no host paths leak: "/" on the
board is the root folder only). Stays in sync with: the unix port's
user-VFS protocol (open, ilistdir, stat, statvfs, mkdir, remove, rename,
rmdir, chdir, getcwd).
"""

import os
import pty
import select
import socket
import subprocess
import sys
import threading
import time
import tty

_STARTUP = r'''
import os
_ROOT = %(root)r
_QUOTA = %(quota)r
_GATE = %(gate)r
_gate = None


def _step(kind, p):
    # The flash gate (faithful mode): report a mutating step to the host and
    # wait for its go-ahead. A host that cuts the power here kills the
    # process instead of answering, so nothing past this step happens.
    global _gate
    if _GATE is None:
        return
    import socket
    if _gate is None:
        h, _, port = _GATE.rpartition(":")
        _gate = socket.socket()
        _gate.connect(socket.getaddrinfo(h, int(port))[0][-1])
        _gate.send(b"flash\n")
    _gate.send(("%%s %%s\n" %% (kind, p)).encode())
    if _gate.recv(1) != b".":
        raise SystemExit  # the host (the power) is gone


class _QFile:
    def __init__(self, vfs, f):
        self._v = vfs
        self._f = f

    def write(self, b):
        if _QUOTA is not None and self._v.used + len(b) > _QUOTA:
            raise OSError(28)
        n = self._f.write(b)
        self._v.used += n or 0
        return n

    def read(self, *a):
        return self._f.read(*a)

    def readinto(self, *a):
        return self._f.readinto(*a)

    def readline(self):
        return self._f.readline()

    def seek(self, *a):
        return self._f.seek(*a)

    def flush(self):
        return self._f.flush()

    def close(self):
        return self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self._f.close()

    def __iter__(self):
        return iter(self._f)


def _du(vfs, p):
    n = 0
    for e in vfs.ilistdir(p):
        q = p.rstrip("/") + "/" + e[0]
        if e[1] == 0x4000:
            n += _du(vfs, q)
        else:
            n += vfs.stat(q)[6]
    return n


class _QuotaVfs:
    def __init__(self, inner):
        self.i = inner
        self.used = _du(inner, "/") if _QUOTA is not None else 0

    def mount(self, ro, mk):
        pass

    def umount(self):
        pass

    def open(self, p, m):
        writing = "w" in m or "a" in m or "+" in m
        if _QUOTA is None or not writing:
            f = self.i.open(p, m)  # a native stream: import and json.load need one
        else:
            if "w" in m:
                try:
                    self.used -= self.i.stat(p)[6]
                except OSError:
                    pass
            f = _QFile(self, self.i.open(p, m))
        if writing:
            _step("open", p)  # after the open: the (empty) file exists, as LittleFS commits the entry
        return f

    def ilistdir(self, p):
        return self.i.ilistdir(p)

    def stat(self, p):
        return self.i.stat(p)

    def statvfs(self, p):
        if _QUOTA is None:
            return self.i.statvfs(p)
        free = max(0, _QUOTA - self.used) // 4096
        return (4096, 4096, _QUOTA // 4096, free, free, 0, 0, 0, 0, 255)

    def mkdir(self, p):
        return self.i.mkdir(p)

    def remove(self, p):
        _step("remove", p)
        try:
            self.used -= self.i.stat(p)[6]
        except OSError:
            pass
        return self.i.remove(p)

    def rename(self, a, b):
        # A rooted VfsPosix prefixes both paths into one shared buffer in
        # this port, so rename through an unrooted one with full host paths.
        _step("rename", b)
        raw = os.VfsPosix()
        return raw.rename(_ROOT + "/" + a.lstrip("/"), _ROOT + "/" + b.lstrip("/"))

    def rmdir(self, p):
        return self.i.rmdir(p)

    def chdir(self, p):
        return self.i.chdir(p)

    def getcwd(self):
        return self.i.getcwd()


os.umount("/")
os.mount(_QuotaVfs(os.VfsPosix(_ROOT)), "/")
os.chdir("/")

'''

# A ROM partition, as on a port built with MICROPY_VFS_ROM: vfs.rom_ioctl
# (the calls `mpremote romfs deploy` makes) on a bytearray saved to a host
# file when a write ends; at start a valid image is mounted at /rom and
# /rom, /rom/lib go on sys.path, as mp_init does on such a board.
_ROM = r'''
import sys
import vfs as _real_vfs
_ROMDIR, _ROMNAME, _ROMSIZE = %(romdir)r, %(romname)r, %(romsize)r
_ROMBLOCK = 4096
_romhost = _real_vfs.VfsPosix(_ROMDIR)
_FF = b"\xff" * _ROMBLOCK
_rom = bytearray(_ROMSIZE)


def _erase(off, n):
    for i in range(off, off + n, _ROMBLOCK):
        k = min(_ROMBLOCK, off + n - i)
        _rom[i:i + k] = _FF[:k]


_erase(0, _ROMSIZE)
try:
    with _romhost.open("/" + _ROMNAME, "rb") as _f:
        _f.readinto(_rom)
except OSError:
    pass


def _rom_ioctl(op, *a):
    if op == 1:
        return 1
    if a[0] != 0:
        return -19  # ENODEV: one partition only
    if op == 2:
        return memoryview(_rom)
    if op == 3:  # prepare (erase) (id, length) or (id, offset, length)
        off, n = (0, a[1]) if len(a) == 2 else (a[1], a[2])
        if off < 0 or off + n > _ROMSIZE:
            return -22
        _erase(off, n)
        return 4
    if op == 4:  # write (id, offset, buf)
        off, buf = a[1], a[2]
        if off < 0 or off + len(buf) > _ROMSIZE:
            return -22
        _rom[off:off + len(buf)] = buf
        return 0
    if op == 5:  # end of writing: the partition keeps it through a power cycle
        with _romhost.open("/" + _ROMNAME, "wb") as f:
            f.write(_rom)
        return 0
    if op == 6:
        return _ROMBLOCK
    return -22


class _VfsWithRom:
    pass


_v = _VfsWithRom()
for _k in dir(_real_vfs):
    if not _k.startswith("__"):
        setattr(_v, _k, getattr(_real_vfs, _k))
_v.rom_ioctl = _rom_ioctl
sys.modules["vfs"] = _v
if _rom[:3] == b"\xd2\xcd\x31":
    try:
        _real_vfs.mount(_real_vfs.VfsRom(memoryview(_rom)), "/rom")
        sys.path[1:1] = ["/rom", "/rom/lib"]
    except OSError:
        pass
'''


def micropython_path():
    cand = os.path.join(os.path.dirname(sys.executable), "micropython")
    return cand if os.path.exists(cand) else "micropython"


class MpBoard:
    """A unix-port MicroPython process on a pty behind a one-client TCP bridge."""

    def __init__(self, root, quota=None, heap="256k", micropython=None, run=None, env=None, flash_gate=None,
                 rom=None):
        """root: host folder that is the board's "/". quota: bytes the board's
        flash may hold (None: unlimited). run: optional board-side script
        (a path on the board, e.g. "/main.py") executed instead of the REPL,
        as a board runs main.py at boot. env: extra environment variables of
        the process (faithful mode: PANIC_PERIPH, where firmware/board_unix.py
        finds its peripherals). flash_gate: "host:port" of a flash gate
        (faithful mode): the board's filesystem then reports every mutating
        step (a line "open|rename|remove <path>") on a TCP connection that
        starts with the line "flash", and waits for one byte "." before it
        goes on, so the host can count flash writes and pull the power at an
        exact step (None: no gate). rom: bytes of a ROM partition
        (vfs.rom_ioctl, as a port built with ROMFS has; kept in the host file
        root + ".rom" across power cycles; None: a build without ROMFS)."""
        self.root = os.path.abspath(root)
        os.makedirs(self.root, exist_ok=True)
        self.quota = quota
        self.heap = heap
        self.exe = micropython or micropython_path()
        self.run = run
        self.env = dict(env or {})
        self.flash_gate = flash_gate
        self.rom = rom
        self.rom_file = self.root + ".rom"
        self.proc = None
        self._master = None
        self._lsock = None
        self._client = None
        self._stop = threading.Event()
        self._thread = None
        self._startup = None
        self.port = None

    # -- lifecycle -------------------------------------------------------
    def start(self):
        self._lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._lsock.bind(("127.0.0.1", 0))
        self._lsock.listen(1)
        self.port = self._lsock.getsockname()[1]
        self._spawn()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        return self

    def vm_heap(self):
        """-X heapsize of the process: `heap`, plus the ROM partition, which
        is a bytearray in the VM's heap (the board keeps `heap` beside it)."""
        if not self.rom:
            return self.heap
        h = self.heap.lower()
        kb = int(h[:-1]) * (1024 if h.endswith("m") else 1) if h[-1:] in ("k", "m") else int(h) // 1024
        return "%dk" % (kb + (self.rom + 1023) // 1024 + 1)

    @property
    def url(self):
        return "socket://127.0.0.1:%d" % self.port

    def _spawn(self):
        import tempfile

        fd, self._startup = tempfile.mkstemp(suffix=".py", prefix="mpboard-")
        body = _STARTUP % {"root": self.root, "quota": self.quota, "gate": self.flash_gate}
        if self.rom:
            d, n = os.path.split(self.rom_file)
            body += _ROM % {"romdir": d, "romname": n, "romsize": self.rom}
        if self.run:
            body += "\nexec(open(%r).read())\n" % self.run
        with os.fdopen(fd, "w") as f:
            f.write(body)
        master, slave = pty.openpty()
        tty.setraw(slave)
        args = [self.exe, "-X", "heapsize=" + self.vm_heap()]
        args += [self._startup] if self.run else ["-i", self._startup]
        env = dict(os.environ, **self.env) if self.env else None
        self.proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, close_fds=True, start_new_session=True,
                                     env=env)
        os.close(slave)
        self._master = master
        if self.run:
            return  # a boot script's output waits in the pty for the first client
        # Wait for the REPL to be up: drain its banner.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            r, _, _ = select.select([master], [], [], 0.2)
            if not r:
                break
            try:
                os.read(master, 4096)
            except OSError:
                break

    def _serve(self):
        ls = self._lsock
        if ls is None:  # start() opens it before this thread runs
            return
        while not self._stop.is_set():
            try:
                r, _, _ = select.select([ls], [], [], 0.1)
            except (OSError, ValueError):
                return
            if not r:
                continue
            try:
                client, _ = ls.accept()
            except OSError:
                return
            self._client = client
            self._shuttle(client)
            self._client = None
            try:
                client.close()
            except OSError:
                pass

    def _shuttle(self, client):
        while not self._stop.is_set():
            master = self._master
            if master is None:
                return
            try:
                r, _, _ = select.select([client, master], [], [], 0.1)
            except (OSError, ValueError):
                return
            if client in r:
                try:
                    data = client.recv(4096)
                except OSError:
                    return
                if not data:
                    return
                # os.write may take less than it is given (POSIX): write the
                # rest rather than lose bytes on the way to the VM
                view = memoryview(data)
                try:
                    while view:
                        view = view[os.write(master, view):]
                except OSError:
                    return
            if master in r:
                try:
                    data = os.read(master, 4096)
                except OSError:
                    return
                if not data:
                    return
                try:
                    client.sendall(data)
                except OSError:
                    return

    def _end_process(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            self.proc = None
        if self._master is not None:
            m, self._master = self._master, None
            try:
                os.close(m)
            except OSError:
                pass
        if self._startup:
            try:
                os.unlink(self._startup)
            except OSError:
                pass
            self._startup = None

    def kill(self):
        """Pull the plug: end the process and drop the client at once."""
        c = self._client
        if c is not None:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._end_process()

    def power_cycle(self, run=None):
        """Restart the board (keeps its files). `run` changes the boot script."""
        self.kill()
        if run is not None:
            self.run = run or None
        self._spawn()

    def stop(self):
        self._stop.set()
        self.kill()
        if self._lsock is not None:
            self._lsock.close()
        if self._thread is not None:
            self._thread.join(2)

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        self.stop()


def main(argv=None):
    import argparse

    ap = argparse.ArgumentParser(description="Serve the MicroPython unix port as a board on socket://127.0.0.1:PORT")
    ap.add_argument("root", help="host folder that is the board's /")
    ap.add_argument("--quota", type=int, help="bytes of flash the board has")
    ap.add_argument("--run", help="board-side script to run instead of the REPL (e.g. /main.py)")
    ap.add_argument("--rom", type=int, help="bytes of a ROM partition (for panic flash --romfs)")
    ap.add_argument("--heap", default="256k", help="MicroPython heap beside the ROM partition, if any")
    a = ap.parse_args(argv)
    b = MpBoard(a.root, quota=a.quota, run=a.run, rom=a.rom, heap=a.heap).start()
    print(b.url, flush=True)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        b.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
