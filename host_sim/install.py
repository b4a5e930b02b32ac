"""Faithful mode's release install: the compiled release laid on a board
folder exactly as `panic flash` lays it on a board's flash.

Owns: `install_release(root)` (files under /app-faithful/, /manifest.json,
the boot shim /main.py) and the per-process cache of compiled releases
(one mpy-cross pass per process while no source under firmware/ or
protocol/ changes).

Never: decides the layout, the shim, the manifest or what a release holds
(panic/release.py does, for `panic flash` too: this module only writes its
answers to a folder); writes /data (the device's config and outbox are the
rig's and the firmware's); talks to a board.

Stays in sync with: panic/release.py (layout, shim, manifest, sources),
tools/flash.py (the same release on a real board), host_sim/rig_board.py
and host_sim/faithful.py (its callers).
"""

import json
import os
import shutil
import tempfile

from panic import release as FL

APP = "app-faithful"  # the manifest's "app": the folder the shim puts first on sys.path

_RELEASE_CACHE = {}  # sources' (path, mtime, size) -> compiled files: one mpy-cross pass per process


def _sources_key():
    key = []
    for pkg in FL.PACKAGES:
        for d, _dirs, names in os.walk(os.path.join(FL.REPO, pkg)):
            for n in sorted(names):
                if n.endswith(".py"):
                    st = os.stat(os.path.join(d, n))
                    key.append((os.path.join(d, n), st.st_mtime_ns, st.st_size))
    return tuple(sorted(key))


def install_release(root, version=None):
    """Put the compiled release on a board folder as `panic flash` does
    (files under /app-<id>/, /manifest.json, the boot shim /main.py);
    return the manifest. The compiled files are kept for the process while
    no source changes."""
    key = _sources_key()
    files = _RELEASE_CACHE.get(key)
    if files is None:
        tmp = tempfile.mkdtemp(prefix="faithful-mpy-")
        try:
            files = FL.build(tmp, march="", platform="linux")  # the unix port: firmware/board_unix.py
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        _RELEASE_CACHE.clear()
        _RELEASE_CACHE[key] = files
    for rel, data in files.items():
        p = os.path.join(root, APP, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data)
    with open(os.path.join(root, FL.SHIM.lstrip("/")), "wb") as f:
        f.write(FL.SHIM_SRC)
    manifest = FL.manifest_of(files, APP, version or FL.release_version(), "")
    with open(os.path.join(root, FL.MANIFEST.lstrip("/")), "w") as f:
        json.dump(manifest, f, sort_keys=True)
    return manifest
