"""`panic flash`: put MicroPython (optional) and the application on a board.

Owns: the on-board layout of the application and the update order that
makes an interrupted copy harmless. The board holds

    /main.py            boot shim: reads /manifest.json, puts /<app> first
                        on sys.path, imports firmware.main (and calls its
                        main() if it has one)
    /manifest.json      {"format", "app", "version", "march", "files": {path: sha256}}
    /app-XXXXXXXX/      the .mpy files of one release: what the board runs
                        (release_sources(): the modules firmware/main.py
                        imports, for the board's port), nothing else
    /data/              device data (config.json, outbox): never touched here

Update order: compile on the host; check free space (statvfs) before the
first byte is written; copy into a NEW /app-... folder; read every file's
sha256 back from the board and compare; write /main.py and then
/manifest.json each as .tmp + rename (atomic on LittleFS); only then remove
older app folders. Until the manifest rename the board still runs the old
release (or, on a bare board, nothing), so a pulled cable, a full flash or
a bad copy leaves it either untouched or fully updated; stale folders from
an interrupted run are removed by the next run.

Never does: erase the flash or touch /data unless asked (--erase erases
everything, only with a MicroPython image). Stays in sync with:
tools/provision.py (reads the manifest's version), docs/tools.md.
"""

import hashlib
import os
import subprocess
import sys
import tempfile
import time

from tools.board import Board, BoardUnavailable, DeviceError
from tools.errors import Unavailable, UsageError
from panic.release import (  # noqa: F401  (the release layout, shared with the simulator; re-exported)
    BLOCK,
    BOARD_MODULES,
    BOOT_PY,
    ENTRY,
    MANIFEST,
    PACKAGES,
    REPO,
    SHIM,
    SHIM_SRC,
    build,
    for_port,
    manifest_of,
    release_sources,
    release_version,
)

def esptool_command(port, image, baud=460800, chip="esp32", offset="0x1000", erase=False):
    """The esptool invocations (list of argv lists) that write a MicroPython image."""
    base = [sys.executable, "-m", "esptool", "--chip", chip, "--port", port, "--baud", str(baud)]
    cmds = []
    if erase:
        cmds.append(base + ["erase-flash"])
    cmds.append(base + ["write-flash", "-z", offset, image])
    return cmds


def check_image(path):
    try:
        with open(path, "rb") as f:
            head = f.read(1)
    except OSError as e:
        raise Unavailable("cannot read MicroPython image %s: %s" % (path, e.strerror))
    if head != b"\xe9":
        raise UsageError("%s is not an ESP32 firmware image (no 0xE9 magic byte)" % path)


def write_image(port, image, baud, erase, run=subprocess.run):
    check_image(image)
    for cmd in esptool_command(port, image, baud=baud, erase=erase):
        p = run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            lines = [x for x in (p.stderr or p.stdout or "").strip().splitlines() if x.strip()]
            raise DeviceError("esptool failed on %s: %s" % (port, lines[-1] if lines else "exit %d" % p.returncode))


def board_platform(board):
    """The board's sys.platform ("esp32", "linux" for the unix port ...)."""
    plat = board.eval_json("sys.platform", setup="import sys\n")
    if not isinstance(plat, str):
        raise DeviceError("unexpected answer from the board: sys.platform is %r" % (plat,))
    return plat


def _need_bytes(files):
    n = 0
    for data in files.values():
        n += max(1, (len(data) + BLOCK - 1) // BLOCK) * BLOCK
    return n + 2 * BLOCK + len(SHIM_SRC)


class Progress:
    """A one-line progress bar on stderr."""

    def __init__(self, total, stream=None, width=30):
        self.total = max(1, total)
        self.done = 0
        self.s = stream or sys.stderr
        self.w = width
        self._last = -1

    def add(self, n, label=""):
        self.done += n
        pct = min(100, self.done * 100 // self.total)
        if pct != self._last:
            self._last = pct
            fill = self.w * pct // 100
            self.s.write("\rcopying [%s%s] %3d%% %s" % ("#" * fill, "." * (self.w - fill), pct, label[-40:].ljust(40)))
            self.s.flush()

    def end(self):
        self.s.write("\n")
        self.s.flush()


def read_manifest(board):
    import json

    raw = board.read(MANIFEST)
    if raw is None:
        return None
    try:
        m = json.loads(raw)
        if isinstance(m, dict) and isinstance(m.get("files"), dict) and isinstance(m.get("app"), str):
            return m
    except ValueError:
        pass
    return None


def _clean_stale(board, keep):
    for name in board.listdir("/"):
        if name.startswith("app-") and name != keep:
            board.remove("/" + name)
        elif name.endswith(".tmp"):
            board.remove("/" + name)


def install(board, files, version, march, progress=None, on_file=None):
    """Copy `files` to the board with the staged, verified, atomic order.
    Returns the new manifest. Raises DeviceError, leaving the old release."""
    import json

    old = read_manifest(board)
    _clean_stale(board, old["app"] if old else None)
    wanted = {p: hashlib.sha256(d).hexdigest() for p, d in files.items()}
    free = board.free_bytes("/")
    need = _need_bytes(files)
    if need > free:
        raise DeviceError(
            "not enough flash on the board: the release needs %d KB, %d KB free; nothing was changed"
            % ((need + 1023) // 1024, free // 1024)
        )
    app = "app-" + os.urandom(4).hex()
    root = "/" + app
    try:
        dirs = sorted({os.path.dirname(p) for p in files})
        for d in dirs:
            board.mkdirs(root + "/" + d)
        for p in sorted(files):
            data = files[p]
            if on_file:
                on_file(p)
            if progress:
                last = [0]

                def cb(written, total, _l=last, _p=p):
                    progress.add(written - _l[0], _p)
                    _l[0] = written

                board.write(root + "/" + p, data, progress=cb)
                if not data:
                    progress.add(0, p)
            else:
                board.write(root + "/" + p, data)
        if progress:
            progress.end()
        got = board.sha256([root + "/" + p for p in sorted(files)])
        bad = [p for p in sorted(files) if got.get(root + "/" + p) != wanted[p]]
        if bad:
            raise DeviceError("%d file(s) did not read back correctly (first: %s); the old release was kept" % (len(bad), bad[0]))
    except DeviceError:
        try:
            board.remove(root)  # best effort: the next run cleans up otherwise
        except DeviceError:
            pass
        raise
    boot_files(board)
    manifest = manifest_of(files, app, version, march)
    board.write_atomic(MANIFEST, json.dumps(manifest, sort_keys=True).encode())
    _clean_stale(board, app)
    return manifest


def verify(board, manifest=None):
    """Check the installed release against its manifest: (manifest, [bad paths])."""
    m = manifest or read_manifest(board)
    if m is None:
        return None, []
    got = board.sha256(["/" + m["app"] + "/" + p for p in sorted(m["files"])])
    return m, [p for p in sorted(m["files"]) if got["/" + m["app"] + "/" + p] != m["files"][p]]


def describe(m, bad):
    if m is None:
        return "board: no application installed (no /manifest.json)"
    total = len(m["files"])
    lines = [
        "board: wearable-panic %s (%s, %s)" % (m.get("version", "?"), m["app"], m.get("march") or "bytecode"),
        "files: %d, %s" % (total, "all verified by sha256" if not bad else "%d DO NOT MATCH: %s" % (len(bad), ", ".join(bad[:5]))),
    ]
    return "\n".join(lines)


ROM = "rom"  # manifest "app" of a release in the ROM partition (mounted at /rom)


def boot_files(board):
    """This release's boot shim at /main.py, and no /boot.py (see SHIM_SRC).
    Returns True if anything had to change."""
    changed = False
    if board.exists(BOOT_PY):
        board.remove(BOOT_PY)
        changed = True
    if board.read(SHIM) != SHIM_SRC:
        board.write_atomic(SHIM, SHIM_SRC)
        changed = True
    return changed


def _up_to_date(board, old, wanted, out):
    """True (and says so) when the installed release is `wanted` and every
    file verifies: its files need no writing (an older boot shim, or a
    /boot.py, is put right all the same)."""
    if old.get("files") != wanted:
        return False
    m, bad = verify(board, old)
    if bad:
        return False
    if boot_files(board):
        out("boot shim updated")
    out("already up to date")
    out(describe(m, bad))
    return True


def _mount_rom(board):
    board.exec("import vfs\ntry:\n vfs.umount('/rom')\nexcept OSError:\n pass\n"
               "vfs.mount(vfs.VfsRom(vfs.rom_ioctl(2, 0)), '/rom')")


def flash_romfs(port, files, version, march, baud=115200, out=print, run=subprocess.run, connect=Board):
    """Install `files` as a ROMFS image in the board's ROM partition
    (`mpremote romfs deploy`), verify every file's sha256 under /rom, then
    point the boot shim at it. Bytecode then runs in place from flash
    instead of being loaded into the heap (docs/firmware.md: memory)."""
    import json

    from tools.romfs import image

    with connect(port, baud=baud) as board:
        files = for_port(files, board_platform(board))
        wanted = {p: hashlib.sha256(d).hexdigest() for p, d in files.items()}
        if not board.eval_json("hasattr(vfs, 'rom_ioctl') and vfs.rom_ioctl(1) > 0", setup="import vfs\n"):
            raise DeviceError("this board's MicroPython has no ROM partition (vfs.rom_ioctl): flash a build "
                              "with ROMFS enabled, or install without --romfs; nothing was changed")
        size = board.eval_json("len(_d) if not hasattr(_d, 'ioctl') else _d.ioctl(4, 0) * _d.ioctl(5, 0)",
                               setup="import vfs\n_d = vfs.rom_ioctl(2, 0)\n")
        data = image(files)
        if not isinstance(size, int) or len(data) > size:
            raise DeviceError("the release image is %d KB and the board's ROM partition %s; nothing was changed"
                              % ((len(data) + 1023) // 1024,
                                 "%d KB" % (size // 1024) if isinstance(size, int) and size >= 0 else "unusable"))
        old = read_manifest(board)
        if old and old["app"] == ROM and _up_to_date(board, old, wanted, out):
            return old
        if old and old["app"] == ROM:
            # the partition is about to be rewritten: until it verifies the
            # board must not boot a half-written release
            board.remove(MANIFEST)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "release.romfs")
        with open(path, "wb") as f:
            f.write(data)
        out("writing a %d-byte ROMFS image (%d files) to %s with mpremote" % (len(data), len(files), port))
        p = run([sys.executable, "-m", "mpremote", "connect", port, "resume", "romfs", "deploy", path],
                capture_output=True, text=True)
    if p.returncode != 0 or "ROMFS image deployed" not in (p.stdout or ""):
        said = ((p.stderr or "") + (p.stdout or "")).strip().splitlines()
        raise DeviceError("mpremote romfs deploy failed: %s" % (said[-1] if said else "exit status %d" % p.returncode))
    with connect(port, baud=baud) as board:
        _mount_rom(board)
        got = board.sha256(["/rom/" + q for q in sorted(files)])
        bad = [q for q in sorted(files) if got.get("/rom/" + q) != wanted[q]]
        if bad:
            raise DeviceError("%d file(s) in the ROM partition did not read back correctly (first: %s); the board "
                              "has no bootable release until this succeeds" % (len(bad), bad[0]))
        boot_files(board)
        manifest = manifest_of(files, ROM, version, march)
        board.write_atomic(MANIFEST, json.dumps(manifest, sort_keys=True).encode())
        _clean_stale(board, ROM)
        m, bad = verify(board)
    out(describe(m, bad))
    if bad:
        raise DeviceError("the installed release does not verify")
    return m


def flash(port, image=None, baud=115200, flash_baud=460800, march="xtensawin", erase=False, src_root=REPO,
          show_progress=True, on_file=None, out=print, run=subprocess.run, connect=Board, romfs=False):
    if erase and not image:
        raise UsageError("--erase only makes sense with --micropython IMAGE")
    if image and "://" not in port and not os.path.exists(port):  # say it before esptool does, in its own words
        raise BoardUnavailable("cannot open port %s: no such device (is the board plugged in?)" % port)
    with tempfile.TemporaryDirectory() as tmp:
        files = build(tmp, march=march, src_root=src_root, platform=None)  # one board module is picked below
    if image:
        out("writing MicroPython image %s with esptool..." % image)
        write_image(port, image, flash_baud, erase, run=run)
        time.sleep(2)  # the board reboots into the new image
    version = release_version(src_root)
    if romfs:
        return flash_romfs(port, files, version, march, baud=baud, out=out, run=run, connect=connect)
    with connect(port, baud=baud) as board:
        files = for_port(files, board_platform(board))
        old = read_manifest(board)
        wanted = {p: hashlib.sha256(d).hexdigest() for p, d in files.items()}
        if old and old["app"] != ROM and _up_to_date(board, old, wanted, out):
            return old
        total = sum(len(d) for d in files.values())
        out("copying %d files (%d bytes) to %s" % (len(files), total, port))
        prog = Progress(total) if show_progress else None
        install(board, files, version, march, progress=prog, on_file=on_file)
        m, bad = verify(board)
        out(describe(m, bad))
        if bad:
            raise DeviceError("the installed release does not verify")
        return m


def check(port, baud=115200, out=print, connect=Board):
    """Only report what is on the board and whether it verifies."""
    with connect(port, baud=baud) as board:
        m, bad = verify(board)
    out(describe(m, bad))
    if m is None or bad:
        raise DeviceError("the board has no verified release")
    return m


def cmd_flash(args):
    try:
        if args.check:
            check(args.port, baud=args.baud)
            return 0
        flash(args.port, image=args.micropython, baud=args.baud, flash_baud=args.flash_baud, march=args.march,
              erase=args.erase, show_progress=not args.quiet, romfs=args.romfs)
    except (DeviceError, Unavailable) as e:
        print("panic flash: %s" % e, file=sys.stderr)
        return e.exit_code
    return 0


def register(sub):
    p = sub.add_parser("flash", help="write MicroPython (optional) and the application to a board")
    p.add_argument("--port", required=True, help="serial port or pyserial URL (e.g. /dev/ttyUSB0, socket://host:port)")
    p.add_argument("--micropython", metavar="IMAGE", help="first write this MicroPython firmware image with esptool")
    p.add_argument("--erase", action="store_true", help="erase the whole flash before writing the image (destroys config)")
    p.add_argument("--baud", type=int, default=115200, help="REPL baud rate (default 115200)")
    p.add_argument("--flash-baud", type=int, default=460800, help="esptool baud rate (default 460800)")
    p.add_argument("--march", default="xtensawin", help="mpy-cross architecture ('' for portable bytecode)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--romfs", action="store_true",
                   help="install into the board's ROM partition (MicroPython built with ROMFS): the code then runs "
                        "in place from flash and leaves the heap to data")
    p.add_argument("--check", action="store_true", help="only report what is on the board and verify it; write nothing")
    p.set_defaults(func=cmd_flash)
