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

import ast
import hashlib
import os
import subprocess
import sys
import tempfile
import time

from tools.board import Board, BoardUnavailable, DeviceError
from tools.errors import Unavailable, UsageError
from tools.mpy_compile import compile_all

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("protocol", "firmware")
ENTRY = "firmware.main"
# firmware/main.py picks its board module by sys.platform (the unix port
# runs firmware/board_unix.py, every other port firmware/board_esp32.py):
# a release carries the one its board's port runs.
BOARD_MODULES = {"linux": "firmware/board_unix.py", None: "firmware/board_esp32.py"}
MANIFEST = "/manifest.json"
SHIM = "/main.py"
BLOCK = 4096  # LittleFS block: every file costs at least one

SHIM_SRC = b"""# Boot shim written by `panic flash` (tools/flash.py SHIM_SRC says why each line is so).
import micropython
micropython.kbd_intr(-1)
_pnc_ms = 0
while True:
    try:
        import os
        try:
            os.stat('/data/config.json')
        except OSError:
            break  # not provisioned: no keys here; the REPL stays for panic flash and panic provision
        import time
        if _pnc_ms:
            time.sleep_ms(_pnc_ms)
        _pnc_ms = min(2 * _pnc_ms, 60000) if _pnc_ms else 1000
        import json
        import sys
        with open('/manifest.json') as _pnc_f:
            _pnc_dir = '/' + json.loads(_pnc_f.read())['app']
        if _pnc_dir in sys.path:
            sys.path.remove(_pnc_dir)
        sys.path.insert(0, _pnc_dir)
        import gc
        gc.collect()
        import firmware.main
        _pnc_main = getattr(firmware.main, 'main', None)
        if _pnc_main:
            _pnc_main()
    except SystemExit:
        raise  # the port's soft reset (ports/esp32/main.c): the board boots again, no REPL
    except BaseException:
        pass  # silent, and again after the back-off
"""

# Why the shim is as it is (issue 15, D2). The ESP32 port runs /boot.py,
# then /main.py only if boot.py ended without an exception, then the REPL
# on UART0 (ports/esp32/main.c). Each file is compiled first and runs with
# Ctrl-C enabled (shared/runtime/pyexec.c parse_compile_execute); a Ctrl-C
# byte then schedules KeyboardInterrupt (ports/esp32/uart.c), raised at the
# VM's next pending-exception check: a jump, never an import, a call or a
# store (py/vm.c DISPATCH_WITH_PEND_EXC_CHECK; the port defines no VM hook).
# So:
# - the first two statements disable Ctrl-C (afterwards a 0x03 is a data
#   byte the firmware's console reads) before any check point and before
#   anything of ours is imported: a Ctrl-C that came before them is at
#   most one pending KeyboardInterrupt, raised at the first check point,
#   which is inside the try;
# - everything else is in a try that catches BaseException (the firmware's
#   own loop catches Exception only, and KeyboardInterrupt is not one):
#   nothing leaves the shim except SystemExit, which the port turns into a
#   soft reset, never the REPL;
# - a release that cannot start (no manifest, a broken file, too little
#   heap, a main() that returns) is tried again after 1 s, doubling to
#   60 s, saying nothing; the watchdog, if the firmware got as far as
#   starting it, resets the board meanwhile, which is the same retry. A
#   module whose import failed is taken out of sys.modules by the VM
#   (py/builtinimport.c unregister_module_from_nlr_jump_callback), so the
#   next try imports it afresh; the shim keeps no other state (each line
#   here is heap the firmware then lacks: faithful mode's files board at
#   320 KB failed to load its console with a longer shim);
# - only a board with no /data/config.json (never provisioned: no keys on
#   it) gets the REPL back, so `panic flash` and `panic provision` can
#   reach it; a provisioned board is repaired by erasing it
#   (docs/tools.md);
# - `panic flash` removes /boot.py (stock images create one at first
#   boot): a Ctrl-C while it runs would skip main.py and start the REPL.
# What stays open with a stock image, and the build that closes it:
# docs/security.md, "The abuser holding the device".
BOOT_PY = "/boot.py"


def release_version(src_root=REPO):
    """The firmware version string put in the manifest."""
    path = os.path.join(src_root, "firmware", "version.py")
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("VERSION"):
                    return line.split("=", 1)[1].strip().strip("\"'")
    except OSError:
        pass
    try:
        from importlib.metadata import version

        return version("wearable-panic")
    except Exception:
        return "0.0.0"


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


def _module_file(src_root, name):
    rel = name.replace(".", "/")
    for cand in (rel + "/__init__.py", rel + ".py"):
        if os.path.isfile(os.path.join(src_root, cand)):
            return cand
    return None


def _port_key(platform):
    return platform if platform in BOARD_MODULES else None


def for_port(files, platform):
    """A compiled release ({path: bytes}) less the board modules of ports
    other than this sys.platform's."""
    drop = {os.path.splitext(f)[0] + ".mpy" for p, f in BOARD_MODULES.items() if p != _port_key(platform)}
    return {p: d for p, d in files.items() if p not in drop}


def board_platform(board):
    """The board's sys.platform ("esp32", "linux" for the unix port ...)."""
    plat = board.eval_json("sys.platform", setup="import sys\n")
    if not isinstance(plat, str):
        raise DeviceError("unexpected answer from the board: sys.platform is %r" % (plat,))
    return plat


def release_sources(src_root=REPO, platform="esp32"):
    """The .py files (paths relative to src_root) a board of this port
    runs: every module of PACKAGES that firmware/main.py imports, directly
    or through others, with each package's __init__.py on the way.
    Imports inside functions count (the firmware imports its rare paths
    lazily, and they still run on the device); the firmware never imports
    by a computed name. So host-only code (protocol/jsonform.py, the
    receiver's replay window), contracts nothing imports, and the other
    port's board module stay off the board. platform None: every port's
    board module (for_port() picks one once the board has said its port)."""
    other = set() if platform is None else {f for p, f in BOARD_MODULES.items() if p != _port_key(platform)}
    found, todo = set(), [ENTRY]
    while todo:
        name = todo.pop()
        if name.split(".")[0] not in PACKAGES:
            continue
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        rel = _module_file(src_root, name)
        if rel is None or rel in found or rel in other:
            continue
        found.add(rel)
        with open(os.path.join(src_root, rel)) as f:
            tree = ast.parse(f.read(), rel)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                todo.extend(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                todo.append(node.module)
                todo.extend(node.module + "." + a.name for a in node.names)  # `from pkg import module`
    return sorted(found)


def build(out_dir, march="xtensawin", src_root=REPO, platform="esp32"):
    """Compile what a board of this port runs (release_sources; platform
    None: every port's board module); return {board-relative path: bytes}."""
    cwd = os.getcwd()
    try:
        os.chdir(src_root)
        done, errors = compile_all(list(PACKAGES), out_dir, march=march)
    finally:
        os.chdir(cwd)
    if errors:
        src, err = errors[0]
        raise Unavailable("mpy-cross failed on %s: %s" % (src, err.splitlines()[-1] if err else "?"))
    wanted = set(release_sources(src_root, platform))
    files = {}
    for src, dst in done:
        if src.replace(os.sep, "/") not in wanted:
            continue
        rel = (os.path.splitext(src)[0] + ".mpy").replace(os.sep, "/")
        with open(dst, "rb") as f:
            files[rel] = f.read()
    if not files:
        raise Unavailable("nothing to flash: no .py files under %s" % ", ".join(PACKAGES))
    return files


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
    manifest = {"format": 1, "app": app, "version": version, "march": march, "files": wanted}
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
        manifest = {"format": 1, "app": ROM, "version": version, "march": march, "files": wanted}
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
