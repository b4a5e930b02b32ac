"""The structure check (panic/layers.py, run by make lint): the tree keeps
to its layers, and each kind of breach is named with its file and line."""

import os
import subprocess
import sys

from panic import layers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tree(tmp_path, files):
    for rel, src in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(src)
    return str(tmp_path)


def test_the_repository_keeps_to_its_layers():
    assert layers.breaches(ROOT) == []


def test_each_upward_import_is_named_with_its_line(tmp_path):
    root = _tree(tmp_path, {
        "protocol/frame.py": "import struct\nfrom host_sim import world\n",
        "firmware/app.py": "import protocol.frame\n\ndef f():\n    import receiver.core\n",
        "firmware/fix.py": "from machine import Pin\n",
        "firmware/board_esp32.py": "import machine\n",
        "receiver/cli.py": "from tools.errors import UsageError\nfrom panic.errors import Refused\n",
        "host_sim/faithful.py": "from tools import flash as FL\nimport receiver.core\n",
        "panic/cli.py": "import importlib\nimportlib.import_module('tools.flash')\n",
        "tools/flash.py": "import host_sim.faithful\nimport receiver\n",
    })
    assert layers.breaches(root) == [
        "firmware/app.py:4: firmware/ imports receiver/ (allowed: firmware, protocol)",
        "firmware/fix.py:1: imports machine (only firmware/main.py and the board modules may)",
        "host_sim/faithful.py:1: host_sim/ imports tools/ (allowed: firmware, host_sim, panic, protocol, receiver)",
        "protocol/frame.py:2: protocol/ imports host_sim/ (allowed: protocol)",
        "receiver/cli.py:1: receiver/ imports tools/ (allowed: panic, protocol, receiver)",
    ]


def test_the_command_line_exit_status(tmp_path):
    good = _tree(tmp_path / "good", {"firmware/app.py": "import protocol\n"})
    bad = _tree(tmp_path / "bad", {"protocol/x.py": "import firmware.app\n"})
    ok = subprocess.run([sys.executable, "-m", "panic.layers", good], capture_output=True, text=True, cwd=ROOT)
    no = subprocess.run([sys.executable, "-m", "panic.layers", bad], capture_output=True, text=True, cwd=ROOT)
    assert ok.returncode == 0 and "every import keeps to its layer" in ok.stdout
    assert no.returncode == 1 and "protocol/x.py:1: protocol/ imports firmware/" in no.stdout
