"""Small fakes shared by the firmware device tests (both interpreters):
the device's keys and id, its config as the validator makes it, and a GNSS
Position. Kept small: every firmware test VM loads it (96 KB heap). The
fakes for a whole device (receiver, button, GNSS, make_app) are in
fw_world.py.
"""

from protocol.crypto import DeviceKeys

KEY = bytes(range(32))
KEY_HEX = "".join("%02x" % b for b in KEY)
KEYS = DeviceKeys(KEY)
DEV = 4242
T0 = 1795900000


# The device config the tests use, as JSON would give it ...
CONFIG = {
    "device_id": DEV,
    "key_hex": KEY_HEX,
    "receiver_host": "arc.example.org",
    "receiver_port": 7400,
    "sms_number": "+447700900001",
    "listen_number": "+447700900002",
    "apn": "internet",
    "timings": {"backoff_base_ms": 4000, "backoff_max_ms": 32000, "heartbeat_jitter_s": 60},
    "wifi_scan": True,
    "test_enabled": True,
}
# ... and what firmware/config.py makes of it (test_fw_config checks the two
# agree). The validator is boot-only code that firmware/main.py drops after
# boot; tests of the running device start from its result, so the 96 KB
# test heap holds the firmware that runs, not the validator.
VALIDATED = {
    "usable": True, "errors": [], "device_id": DEV, "key": KEY, "engineer_key": None,
    "receiver_host": "arc.example.org", "receiver_port": 7400, "sms_number": "+447700900001",
    "listen_number": "+447700900002", "apn": "internet", "button": {}, "pins": {}, "board": "t-sim7600e",
    "power_profile": "ready", "wifi_scan": True, "test_enabled": True,
    "timings": {"track_interval_s": 30, "sms_fallback_s": 20, "heartbeat_s": 3600, "heartbeat_jitter_s": 60,
                "backoff_base_ms": 4000, "backoff_max_ms": 32000, "sms_track_s": 300, "wifi_rescan_s": 120,
                "low_battery_mv": 3500, "fix_refresh_s": 900, "gnss_report_s": 5, "ack_timeout_s": 10, "failover_return_s": 600},
}


def make_config(**over):
    """A firmware Config (firmware/settings.py) holding VALIDATED with
    attributes overridden (timings merged)."""
    from firmware.settings import Config

    cfg = Config()
    for k, v in VALIDATED.items():
        setattr(cfg, k, dict(v) if isinstance(v, dict) else list(v) if isinstance(v, list) else v)
    for k, v in over.items():
        if k == "timings":
            cfg.timings.update(v)
        else:
            setattr(cfg, k, v)
    return cfg


class Position:
    def __init__(self, source, lat, lon, acc=5, age=0, alt=None, speed=None, course=None, sats=None, hdop=None):
        self.source = source
        self.lat = lat
        self.lon = lon
        self.accuracy_m = acc
        self.age_s = age
        self.alt_m = alt
        self.speed_cms = speed
        self.course_cdeg = course
        self.sats = sats
        self.hdop_x10 = hdop
