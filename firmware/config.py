"""Device configuration: the JSON file `config.json` in the flash directory.

Owns: field names, defaults, ranges and validation. Never logs or formats a
key: error messages name the field and the rule, never the value (of any
field, so a key pasted into the wrong field cannot leak either).

Outcome of load(), never an exception:
- file missing, not JSON, not an object, or device_id / key_hex bad:
  `usable` is False. The device cannot sign anything, so it stays idle,
  records the fault on flash and waits (no crash loop).
- any other field bad: that field takes its safe default, the error is
  kept in `errors` and the device reports a fault STATUS (FAULT_CONFIG).
- unknown top-level fields are errors too (a typo must not pass silently).

Fields: device_id (int), key_hex (64 hex, master key), engineer_key_hex (64
hex or absent: diagnostics console disabled), receiver_host, receiver_port,
sms_number, listen_number, apn, button (dict for ButtonConfig.from_dict),
timings (dict, TIMINGS below), pins (dict, PINS below; board-specific
defaults live in the board module), power_profile ("ready" or "saver"),
wifi_scan (bool), test_enabled (bool).

Must stay in sync with: docs/firmware.md (field table), firmware/board_esp32.py
(pin names), firmware/app.py (how timings are used).
"""

import json

import binascii

CONFIG_FILE = "config.json"

# name: (default, lo, hi)
TIMINGS = {
    "track_interval_s": (30, 0, 65535),
    "sms_fallback_s": (20, 1, 3600),
    "heartbeat_s": (3600, 60, 604800),
    "heartbeat_jitter_s": (300, 0, 86400),
    "backoff_base_ms": (4000, 100, 600000),
    "backoff_max_ms": (60000, 1000, 3600000),
    "sms_track_s": (300, 30, 86400),
    "wifi_rescan_s": (120, 10, 86400),
    "low_battery_mv": (3500, 3000, 4200),
}
PINS = (
    "button", "modem_tx", "modem_rx", "modem_pwrkey", "modem_power", "modem_dtr",
    "modem_flight", "gnss_tx", "gnss_rx", "battery_adc", "led",
)
PROFILES = ("ready", "saver")
_FIELDS = (
    "device_id", "key_hex", "engineer_key_hex", "receiver_host", "receiver_port", "sms_number",
    "listen_number", "apn", "button", "timings", "pins", "power_profile", "wifi_scan", "test_enabled",
)


class ConfigError(ValueError):
    """One config field is wrong; the message names it, never its value."""


def _isint(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _hexkey(v, field):
    if not isinstance(v, str) or len(v) != 64:
        raise ConfigError("%s: must be 64 hex digits" % field)
    for c in v:
        if c not in "0123456789abcdefABCDEF":
            raise ConfigError("%s: must be 64 hex digits" % field)
    return binascii.unhexlify(v)


def _phone(v, field):
    if v == "":
        return v
    if not isinstance(v, str) or not (3 <= len(v) <= 21):
        raise ConfigError("%s: must be a phone number like +447700900123" % field)
    body = v[1:] if v[0] == "+" else v
    for c in body:
        if c < "0" or c > "9":
            raise ConfigError("%s: must be a phone number like +447700900123" % field)
    return v


def _host(v):
    if v == "":
        return v
    if not isinstance(v, str) or len(v) > 253:
        raise ConfigError("receiver_host: must be a host name or address")
    for c in v:
        if not (c.isalpha() or c.isdigit() or c in ".-:"):
            raise ConfigError("receiver_host: must be a host name or address")
    return v


def _apn(v):
    if not isinstance(v, str) or len(v) > 62:
        raise ConfigError("apn: must be a string of at most 62 characters")
    for c in v:
        if not (32 < ord(c) < 127) or c in "\",":
            raise ConfigError("apn: must be printable ASCII without quotes or commas")
    return v


class Config:
    """A validated configuration. repr() never shows keys."""

    def __init__(self):
        self.usable = False
        self.errors = []
        self.device_id = 0
        self.key = None
        self.engineer_key = None
        self.receiver_host = ""
        self.receiver_port = 0
        self.sms_number = ""
        self.listen_number = ""
        self.apn = ""
        self.button = {}
        self.timings = {}
        for k, spec in TIMINGS.items():
            self.timings[k] = spec[0]
        self.pins = {}
        self.power_profile = "ready"
        self.wifi_scan = True
        self.test_enabled = False

    def t(self, name):
        return self.timings[name]

    def __repr__(self):
        return "<Config device=%d usable=%s errors=%d>" % (self.device_id, self.usable, len(self.errors))


def _field(cfg, d, name, check):
    if name not in d:
        return
    try:
        setattr(cfg, name, check(d[name]))
    except ConfigError as e:
        cfg.errors.append(str(e))


def _check_port(v):
    if not _isint(v) or not (0 <= v <= 65535):
        raise ConfigError("receiver_port: must be an integer 0..65535")
    return v


def _check_bool(name):
    def check(v):
        if not isinstance(v, bool):
            raise ConfigError("%s: must be true or false" % name)
        return v

    return check


def _check_profile(v):
    if v not in PROFILES:
        raise ConfigError("power_profile: must be \"ready\" or \"saver\"")
    return v


def _check_dict(name):
    def check(v):
        if not isinstance(v, dict):
            raise ConfigError("%s: must be an object" % name)
        return v

    return check


def validate(d):
    """Config from a parsed JSON value. Never raises."""
    cfg = Config()
    if not isinstance(d, dict):
        cfg.errors.append("config: must be a JSON object")
        return cfg
    for k in d:
        if k not in _FIELDS:
            cfg.errors.append("%s: unknown field" % (k if isinstance(k, str) and len(k) <= 32 else "?"))
    ok = True
    v = d.get("device_id")
    if not _isint(v) or not (0 <= v <= 0xFFFFFFFF):
        cfg.errors.append("device_id: must be an integer 0..4294967295")
        ok = False
    else:
        cfg.device_id = v
    try:
        cfg.key = _hexkey(d.get("key_hex"), "key_hex")
    except ConfigError as e:
        cfg.errors.append(str(e))
        ok = False
    if "engineer_key_hex" in d:
        try:
            cfg.engineer_key = _hexkey(d["engineer_key_hex"], "engineer_key_hex")
        except ConfigError as e:
            cfg.errors.append(str(e))
    _field(cfg, d, "receiver_host", _host)
    _field(cfg, d, "receiver_port", _check_port)
    _field(cfg, d, "sms_number", lambda v: _phone(v, "sms_number"))
    _field(cfg, d, "listen_number", lambda v: _phone(v, "listen_number"))
    _field(cfg, d, "apn", _apn)
    _field(cfg, d, "button", _check_dict("button"))
    _field(cfg, d, "power_profile", _check_profile)
    _field(cfg, d, "wifi_scan", _check_bool("wifi_scan"))
    _field(cfg, d, "test_enabled", _check_bool("test_enabled"))
    tm = d.get("timings", {})
    if not isinstance(tm, dict):
        cfg.errors.append("timings: must be an object")
        tm = {}
    for k in tm:
        if k not in TIMINGS:
            cfg.errors.append("timings.%s: unknown field" % (k if isinstance(k, str) and len(k) <= 32 else "?"))
    for k, spec in TIMINGS.items():
        if k in tm:
            v = tm[k]
            if _isint(v) and spec[1] <= v <= spec[2]:
                cfg.timings[k] = v
            else:
                cfg.errors.append("timings.%s: must be an integer %d..%d" % (k, spec[1], spec[2]))
    if cfg.timings["backoff_max_ms"] < cfg.timings["backoff_base_ms"]:
        cfg.errors.append("timings.backoff_max_ms: must be >= backoff_base_ms")
        cfg.timings["backoff_base_ms"] = TIMINGS["backoff_base_ms"][0]
        cfg.timings["backoff_max_ms"] = TIMINGS["backoff_max_ms"][0]
    if cfg.timings["heartbeat_jitter_s"] * 2 > cfg.timings["heartbeat_s"]:
        cfg.errors.append("timings.heartbeat_jitter_s: must be at most half of heartbeat_s")
        cfg.timings["heartbeat_jitter_s"] = cfg.timings["heartbeat_s"] // 4
    pins = d.get("pins", {})
    if not isinstance(pins, dict):
        cfg.errors.append("pins: must be an object")
        pins = {}
    for k, v in pins.items():
        if k not in PINS:
            cfg.errors.append("pins.%s: unknown pin" % (k if isinstance(k, str) and len(k) <= 32 else "?"))
        elif not _isint(v) or not (-1 <= v <= 39):
            cfg.errors.append("pins.%s: must be a GPIO number 0..39 or -1" % k)
        else:
            cfg.pins[k] = v
    cfg.usable = ok
    return cfg


def parse(text):
    """Config from JSON text. Never raises."""
    try:
        d = json.loads(text)
    except (ValueError, TypeError):
        cfg = Config()
        cfg.errors.append("config: not valid JSON")
        return cfg
    return validate(d)


def load(fs):
    """Config from the flash directory's config.json. Never raises."""
    raw = fs.read(CONFIG_FILE)
    if raw is None:
        cfg = Config()
        cfg.errors.append("config: %s missing" % CONFIG_FILE)
        return cfg
    try:
        text = raw.decode()
    except UnicodeError:
        cfg = Config()
        cfg.errors.append("config: not UTF-8 text")
        return cfg
    return parse(text)
