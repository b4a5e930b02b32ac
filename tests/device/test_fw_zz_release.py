"""Runs after every other test_fw_* file (name order): the device core
imports nothing board-specific, and on MicroPython the firmware modules
the earlier files loaded are dropped from sys.modules so the files after
this one get the 96 KB heap back (tests/mp_runner.py only drops each test
module itself)."""

import gc
import sys

CORE = ("firmware.fs", "firmware.store", "firmware.outbox", "firmware.alert", "firmware.config",
        "firmware.app", "firmware.board", "firmware.board_fake", "firmware.fake_transport", "firmware.main")


def test_core_never_imports_machine_and_releases_its_memory():
    if sys.implementation.name != "micropython":
        for m in CORE:
            __import__(m)
    assert "machine" not in sys.modules and "esp32" not in sys.modules and "network" not in sys.modules
    if sys.implementation.name == "micropython":
        gc.collect()
        before = gc.mem_free()
        dropped = 0
        for name in list(sys.modules):
            if name.startswith("firmware") or name.startswith("fw_"):
                del sys.modules[name]
                dropped += 1
        gc.collect()
        assert dropped >= 4, dropped
        assert gc.mem_free() - before > 10000, (before, gc.mem_free())
