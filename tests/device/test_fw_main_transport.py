"""The board's main loop builds the real modem transport (not a fake):
firmware.main.make_transport gives a ModemTransport on the board's modem
UART and pins, configured from the device config."""

from firmware import config as C
from firmware.main import make_transport
from firmware.modem.transport import ModemTransport


class _Stream:
    def __init__(self):
        self.out = bytearray()

    def read(self, n):
        return None

    def write(self, b):
        self.out.extend(b)
        return len(b)


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
    cfg = C.validate({"device_id": 7, "key_hex": "11" * 32, "receiver_host": "192.0.2.9", "receiver_port": 7700,
                              "sms_number": "+447700900000", "apn": "internet"})
    b = _Board()
    t = make_transport(b, cfg)
    assert isinstance(t, ModemTransport)
    for now in range(0, 20000, 50):
        t.poll(now)
    assert ("pwrkey", 1) in b.pins  # bring-up presses the power key: it drives this board's pins
