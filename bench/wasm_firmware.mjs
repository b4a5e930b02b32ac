// The firmware's heap in a 32-bit MicroPython VM, running from ROMFS.
//
//   node bench/wasm_firmware.mjs MICROPYTHON_MJS ROMFS_IMAGE HARNESS_DIR HEAP_BYTES
//
// MICROPYTHON_MJS is micropython.mjs of the npm package
// @micropython/micropython-webassembly-pyscript (MicroPython's own
// webassembly port: wasm32, so 4-byte pointers and object headers as on
// the ESP32). ROMFS_IMAGE (tools/romfs.py) is mounted at /rom outside the
// GC heap, so firmware/ and protocol/ run in place as from a board's ROM
// partition. HARNESS_DIR holds mp_firmware.mpy (the scenario,
// bench/mp_firmware.py), its modem's answer table
// (host_sim/sim7600_answers.mpy) and cryptolib.mpy
// (bench/cryptolib_shim.py: this build has no cryptolib), copied to /lib
// and imported before the baseline is taken.
//
// This VM collects garbage only when a call from JS returns, and grows its
// heap instead of raising MemoryError. So JS drives the device's main loop
// one pass at a time (firmware.loop.Loop.step, via mp_firmware.tick): the
// heap is collected between passes, and a heap that had to grow is where a
// fixed heap of HEAP_BYTES would have failed (mp_firmware.note). Garbage
// made within one pass is never collected before the pass ends, which only
// makes the figure larger than on a board.
//
// Prints mp_firmware's RESULT/LOADED lines (or CRASHED/GREW) and exits 0
// only for a complete run that never outgrew HEAP_BYTES.

import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const [mjs, romfsPath, harness, heapArg] = process.argv.slice(2);
if (!mjs || !romfsPath || !harness || !heapArg) {
  console.error("usage: node wasm_firmware.mjs MICROPYTHON_MJS ROMFS_IMAGE HARNESS_DIR HEAP_BYTES");
  process.exit(2);
}
const heapsize = parseInt(heapArg, 10);
if (!(heapsize > 0)) {
  console.error("HEAP_BYTES must be a positive number, not " + JSON.stringify(heapArg));
  process.exit(2);
}

const { loadMicroPython } = await import(pathToFileURL(path.resolve(mjs)).href);
const out = [];
const mp = await loadMicroPython({
  heapsize,
  romfs: fs.readFileSync(romfsPath),
  stdout: (s) => out.push(s),
  stderr: (s) => out.push(s),
});
try {
  mp.FS.mkdir("/lib");
} catch (e) {
  // already there
}
mp.FS.mkdir("/lib/host_sim");
for (const f of ["mp_firmware.mpy", "cryptolib.mpy", "board_fake.mpy", "host_sim/sim7600_answers.mpy"]) {
  mp.FS.writeFile("/lib/" + f, fs.readFileSync(path.join(harness, f)));
}

let rc = 1;
try {
  mp.runPython("import sys\nsys.path[:] = ['/rom', '/lib']\nimport cryptolib\nassert cryptolib.selftest(), 'AES shim'\nimport mp_firmware\nimport gc\ngc.collect()");
  const h = mp.pyimport("mp_firmware");
  h.rebase();
  h.setup();
  let passes = 0;
  while (h.tick()) {
    passes += 1;
    if (!h.note()) break;
  }
  h.note();
  rc = h.report();
  out.push("PASSES " + passes);
} catch (e) {
  out.push("ERROR " + (e && e.message ? e.message : String(e)));
}
process.stdout.write(out.join("\n") + "\n");
process.exit(rc === 0 ? 0 : 1);
