"""The configuration the running firmware holds: a plain record.

Owns: the Config record (fields, t(), a repr without keys). Never validates
or reads files: firmware/config.py builds a Config from config.json at boot
and is then dropped from memory (firmware/loop.py load_config), so only
this small class stays loaded next to the App.

Must stay in sync with: firmware/config.py (which fields exist and their
defaults), docs/firmware.md (field table).
"""


class Config:
    """A validated configuration. repr() never shows keys."""

    # [(host, port)] / [number] in order of preference (firmware/failover.py),
    # set on the instance only when the config lists two or more: the usual
    # device keeps its one in receiver_host/receiver_port/sms_number, and this
    # record's dict stays below a size step of the heap
    receivers = ()
    sms_numbers = ()

    def __init__(self, timings=None):
        self.usable = False
        self.errors = []
        self.device_id = 0
        self.key = None  # type: bytes | None
        self.engineer_key = None  # type: bytes | None
        self.receiver_host = ""  # receivers[0], for the modem's first connection
        self.receiver_port = 0
        self.sms_number = ""  # sms_numbers[0], or "" (no SMS fallback)
        self.listen_number = ""
        self.apn = ""
        self.button = {}
        self.timings = timings if timings is not None else {}
        self.pins = {}
        self.board = "t-sim7600e"
        self.power_profile = "ready"
        self.wifi_scan = True
        self.test_enabled = False

    def t(self, name):
        return self.timings[name]

    def __repr__(self):
        return "<Config device=%d usable=%s errors=%d>" % (self.device_id, self.usable, len(self.errors))
