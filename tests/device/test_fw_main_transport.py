"""The board's main loop builds the real modem transport (not a fake):
firmware.loop.make_transport gives a ModemTransport on the board's modem
UART and pins, configured from the device config as loop.load_config
reads it from flash at boot."""

import json
import sys

from fw_child import IN_PLACE, delegate

if IN_PLACE:  # else the tests run in a child VM with the code in ROMFS (fw_child.py)
    from firmware.loop import load_config, make_transport
    from firmware.modem.transport import ModemTransport


class _Stream:
    def __init__(self):
        self.out = bytearray()

    def read(self, n):
        return None

    def write(self, b):
        self.out.extend(b)
        return len(b)


class _Flash:
    """Holds config.json only (what load_config reads; firmware/fs.py API)."""

    def __init__(self, data):
        self.data = data

    def read(self, name):
        return self.data if name == "config.json" else None


class _Board:
    def __init__(self):
        self.modem = _Stream()
        self.pins = []

    def modem_power(self, on):
        self.pins.append(("power", on))

    def modem_pwrkey(self, level):
        self.pins.append(("pwrkey", level))

    def modem_dtr(self, level):
        self.pins.append(("dtr", level))


def test_main_builds_the_modem_transport_from_the_config():
    cfg = load_config(_Flash(json.dumps({
        "device_id": 7, "key_hex": "11" * 32, "receiver_host": "192.0.2.9", "receiver_port": 7700,
        "sms_number": "+447700900000", "apn": "internet"}).encode()))
    assert cfg.usable and not cfg.errors and cfg.receiver_port == 7700
    assert "firmware.config" not in sys.modules  # the validator is boot-only: dropped
    b = _Board()
    t = make_transport(b, cfg)
    assert isinstance(t, ModemTransport)
    for now in range(0, 20000, 50):
        t.poll(now)
    assert ("pwrkey", 1) in b.pins  # bring-up presses the power key: it drives this board's pins


delegate(globals(), "test_fw_main_transport")
