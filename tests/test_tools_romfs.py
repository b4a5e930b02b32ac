"""tools/romfs.py: the release as a ROMFS image that the real MicroPython
VM mounts and runs from, and the AES stand-in the 32-bit heap bench uses."""

import os
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from tools.flash import build
from tools.romfs import image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MICROPYTHON = os.path.join(os.path.dirname(sys.executable), "micropython")

RUN_FROM_ROM = """import os, sys, vfs
n = os.stat(%(img)r)[6]
img = bytearray(n)
with open(%(img)r, "rb") as f:
    f.readinto(img)
vfs.mount(vfs.VfsRom(img), "/rom")
sys.path[:] = ["/rom"]
from protocol import frame as F
from protocol.crypto import DeviceKeys
from firmware import main as M
import firmware.app
print("FILES", F.__file__, M.__file__, firmware.app.__file__)
keys = DeviceKeys(bytes(range(32)))
raw = F.encode(keys, F.Frame(F.ALERT, 4242, 7, 1795900000, F.Report(F.SRC_GNSS, 515007292, -1246254, 5, 0, 80, 20)))
d = F.decode(keys, raw)
print("SEQ", d.seq, d.body.lat)
print("LISTING", " ".join(sorted(os.listdir("/rom/protocol"))))
"""


def test_release_image_mounts_and_the_firmware_runs_from_it_in_the_real_vm(tmp_path):
    files = build(str(tmp_path / "mpy"), march="")
    path = tmp_path / "release.romfs"
    path.write_bytes(image(files))
    script = tmp_path / "run.py"
    script.write_text(RUN_FROM_ROM % {"img": str(path)})
    p = subprocess.run([MICROPYTHON, "-X", "heapsize=256k", str(script)], capture_output=True, text=True,
                       timeout=120, env=dict(os.environ, MICROPYPATH=""))
    assert p.returncode == 0, p.stderr + p.stdout
    out = dict(line.split(" ", 1) for line in p.stdout.splitlines())
    assert out["FILES"].split() == ["/rom/protocol/frame.mpy", "/rom/firmware/main.mpy", "/rom/firmware/app.mpy"]
    assert out["SEQ"] == "7 515007292"
    listed = set(out["LISTING"].split())
    assert listed == {name.split("/")[-1] for name in files if name.startswith("protocol/")}


def test_image_refuses_a_path_given_twice_or_as_file_and_folder():
    with pytest.raises(ValueError, match="given twice"):
        image({"a/b.mpy": b"1", "/a/b.mpy": b"2"})
    with pytest.raises(ValueError, match="share a name"):
        image({"a": b"1", "a/b.mpy": b"2"})


def test_aes_stand_in_of_the_32_bit_bench_matches_cryptography():
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    try:
        import cryptolib_shim
    finally:
        sys.path.pop(0)
    assert cryptolib_shim.selftest()
    for n in (16, 24, 32):
        key, data = os.urandom(n), os.urandom(96)
        e = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
        assert cryptolib_shim.aes(key, 1).encrypt(data) == e.update(data) + e.finalize()
    with pytest.raises(ValueError):
        cryptolib_shim.aes(bytes(16), 2)
