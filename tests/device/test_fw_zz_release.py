"""The device core imports nothing board-specific: after every core module
is loaded, neither `machine`, `esp32` nor `network` is (only main.py's
board factory and board_esp32.py may import them)."""

import sys

CORE = ("firmware.fs", "firmware.store", "firmware.outbox", "firmware.alert", "firmware.config",
        "firmware.app", "firmware.board", "firmware.board_fake", "firmware.fake_transport", "firmware.main",
        "firmware.button", "firmware.nmea", "firmware.fix")


def test_core_never_imports_machine():
    for m in CORE:
        __import__(m)
    assert "machine" not in sys.modules and "esp32" not in sys.modules and "network" not in sys.modules
