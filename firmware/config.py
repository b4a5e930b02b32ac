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
hex or absent: diagnostics console disabled), receivers (a list of 1 to
MAX_PEERS "host:port" strings, in order of preference: firmware/failover.py),
sms_numbers (a list of 0 to MAX_PEERS numbers for the SMS fallback, in
order), listen_number, apn, button (dict for ButtonConfig.from_dict),
timings (dict, TIMINGS below), board (BOARDS below: which table of
firmware/boards/ describes the hardware), pins (dict, PINS below:
overrides of that table), power_profile ("ready" or "saver"), wifi_scan
(bool), test_enabled (bool).

The single-receiver form written before the lists existed (receiver_host,
receiver_port, sms_number) is still read: a board provisioned then boots
after a firmware update with its one receiver. Either form fills
receiver_host / receiver_port / sms_number (the first entry) on the
Config, and the lists only when they hold two or more (a list of one is
the single form: settings.Config); giving both forms is an error and the
list wins.

Boot-only: firmware/loop.py drops this module once the Config (a
firmware/settings.py record) is built; nothing may keep a reference to it.

Must stay in sync with: firmware/settings.py (the record), docs/firmware.md (field table), firmware/board_esp32.py
(pin names), firmware/app.py (how timings are used).
"""

import json

import binascii

from firmware.settings import Config

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
    # boards whose GNSS is the modem's (off in standby): a session this often
    # keeps a last known fix for an alert raised indoors (0: never)
    "fix_refresh_s": (900, 0, 86400),
    # the modem's GNSS reports its fix this often once a session has one
    # (every second until then, at most 10 s): a frame's position is at most this old
    "gnss_report_s": (5, 1, 255),
    # firmware/failover.py: no authenticated ACK this long after a send moves
    # to the next receiver; back to the first this long after a move
    "ack_timeout_s": (10, 2, 600),
    "failover_return_s": (600, 30, 86400),
}
MAX_PEERS = 4  # receivers and SMS numbers each (their heap cost: docs/firmware.md, Memory)
PINS = (
    "button", "modem_tx", "modem_rx", "modem_pwrkey", "modem_dtr", "modem_ri", "modem_status",
    "modem_flight", "gnss_tx", "gnss_rx", "battery_adc", "led",
)
BOARDS = ("t-sim7600e", "t-sim7600e-ext-gnss")  # firmware/boards/__init__.py load()
# field: (attribute, kind); kinds are checked by _check and explained by _RULE
_FIELDS = {
    "device_id": ("device_id", "u32"),
    "key_hex": ("key", "key"),
    "engineer_key_hex": ("engineer_key", "key"),
    "receiver_host": ("receiver_host", "host"),
    "receiver_port": ("receiver_port", "port"),
    "sms_number": ("sms_number", "phone"),
    "receivers": ("receivers", "receivers"),
    "sms_numbers": ("sms_numbers", "phones"),
    "listen_number": ("listen_number", "phone"),
    "apn": ("apn", "apn"),
    "button": ("button", "dict"),
    "timings": ("timings", "dict"),
    "pins": ("pins", "dict"),
    "board": ("board", "board"),
    "power_profile": ("power_profile", "profile"),
    "wifi_scan": ("wifi_scan", "bool"),
    "test_enabled": ("test_enabled", "bool"),
}
_RULE = {
    "u32": "an integer 0..4294967295",
    "key": "64 hex digits",
    "host": "a host name or address",
    "port": "an integer 0..65535",
    "phone": "a phone number like +447700900123",
    "apn": "at most 62 printable characters without quotes or commas",
    "dict": "an object",
    "profile": "\"ready\" or \"saver\"",
    "board": "one of " + ", ".join(BOARDS),
    "bool": "true or false",
    "receivers": "a list of 1 to %d \"host:port\" strings" % MAX_PEERS,
    "phones": "a list of 0 to %d phone numbers like +447700900123" % MAX_PEERS,
}
_HEX = "0123456789abcdefABCDEF"


def _new():
    return Config({k: v[0] for k, v in TIMINGS.items()})


def _isint(v, lo, hi):
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _chars(v, allowed):
    for c in v:
        if not allowed(c):
            return False
    return True


def _check(kind, v):
    """(True, value to store) or (False, None)."""
    if kind == "u32":
        return _isint(v, 0, 0xFFFFFFFF), v
    if kind == "port":
        return _isint(v, 0, 65535), v
    if kind == "bool":
        return isinstance(v, bool), v
    if kind == "dict":
        return isinstance(v, dict), v
    if kind == "profile":
        return v in ("ready", "saver"), v
    if kind == "board":
        return v in BOARDS, v
    if kind == "receivers":
        return _peers(v, 1, _host_port)
    if kind == "phones":
        return _peers(v, 0, lambda x: x if x and _check("phone", x)[0] else None)
    if not isinstance(v, str):
        return False, None
    if kind == "key":
        if len(v) == 64 and _chars(v, lambda c: c in _HEX):
            return True, binascii.unhexlify(v)
        return False, None
    if kind == "phone":
        d = v[1:] if v[:1] == "+" else v
        return v == "" or (3 <= len(v) <= 21 and _chars(d, lambda c: "0" <= c <= "9")), v
    if kind == "host":
        return len(v) <= 253 and _chars(v, lambda c: c.isalpha() or c.isdigit() or c in ".-:"), v
    # apn
    return len(v) <= 62 and _chars(v, lambda c: 32 < ord(c) < 127 and c not in "\",\'"), v


def _host_port(v):
    """("host", port) from "host:port" (the last colon splits: an IPv6
    address keeps its own), or None."""
    if not isinstance(v, str):
        return None
    i = v.rfind(":")
    host, port = v[:i], v[i + 1:]
    if i < 1 or not port or not _chars(port, lambda c: "0" <= c <= "9") or len(port) > 5:
        return None
    port = int(port)
    if not 0 < port < 65536 or not _check("host", host)[0]:
        return None
    return (host, port)


def _peers(v, least, one):
    """(ok, list) for a list of least..MAX_PEERS items, each checked by one()."""
    if not isinstance(v, list) or not least <= len(v) <= MAX_PEERS:
        return False, None
    out = []
    for x in v:
        p = one(x)
        if p is None:
            return False, None
        out.append(p)
    return True, out


def _name(k):
    return k if isinstance(k, str) and len(k) <= 32 else "?"


def validate(d):
    """Config from a parsed JSON value. Never raises."""
    cfg = _new()
    err = cfg.errors.append
    if not isinstance(d, dict):
        err("config: must be a JSON object")
        return cfg
    for k, v in d.items():
        spec = _FIELDS.get(k)
        if spec is None:
            err("%s: unknown field" % _name(k))
            continue
        ok, val = _check(spec[1], v)
        if ok:
            setattr(cfg, spec[0], val)
        else:
            err("%s: must be %s" % (k, _RULE[spec[1]]))
    _lists(d, cfg, err)
    cfg.usable = _check("u32", d.get("device_id"))[0] and _check("key", d.get("key_hex"))[0]
    if "device_id" not in d or "key_hex" not in d:
        err("device_id and key_hex are required")
    tm = cfg.timings
    cfg.timings = {k: v[0] for k, v in TIMINGS.items()}
    for k, v in tm.items():
        spec = TIMINGS.get(k)
        if spec is None:
            err("timings.%s: unknown field" % _name(k))
        elif _isint(v, spec[1], spec[2]):
            cfg.timings[k] = v
        else:
            err("timings.%s: must be an integer %d..%d" % (k, spec[1], spec[2]))
    tm = cfg.timings
    if tm["backoff_max_ms"] < tm["backoff_base_ms"]:
        err("timings.backoff_max_ms: must be >= backoff_base_ms")
        tm["backoff_base_ms"] = TIMINGS["backoff_base_ms"][0]
        tm["backoff_max_ms"] = TIMINGS["backoff_max_ms"][0]
    if tm["heartbeat_jitter_s"] * 2 > tm["heartbeat_s"]:
        err("timings.heartbeat_jitter_s: must be at most half of heartbeat_s")
        tm["heartbeat_jitter_s"] = tm["heartbeat_s"] // 4
    pins = cfg.pins
    cfg.pins = {}
    for k, v in pins.items():
        if k not in PINS:
            err("pins.%s: unknown pin" % _name(k))
        elif _isint(v, -1, 39):
            cfg.pins[k] = v
        else:
            err("pins.%s: must be a GPIO number 0..39 or -1" % k)
    return cfg


def _lists(d, cfg, err):
    """Both forms of the receiver and SMS settings on the Config."""
    if "receivers" in d and ("receiver_host" in d or "receiver_port" in d):
        err("receivers: give either receivers or receiver_host/receiver_port")
    if cfg.receivers:
        cfg.receiver_host, cfg.receiver_port = cfg.receivers[0]
    if "sms_numbers" in d and "sms_number" in d:
        err("sms_numbers: give either sms_numbers or sms_number")
    if "sms_numbers" in d:
        cfg.sms_number = cfg.sms_numbers[0] if cfg.sms_numbers else ""
    # a list of one lives in the single fields only (settings.Config)
    if len(cfg.receivers) < 2:
        try:
            del cfg.receivers
        except AttributeError:  # never set: the class's empty default
            pass
    if len(cfg.sms_numbers) < 2:
        try:
            del cfg.sms_numbers
        except AttributeError:
            pass


def parse(text):
    """Config from JSON text. Never raises."""
    try:
        d = json.loads(text)
    except (ValueError, TypeError):
        cfg = _new()
        cfg.errors.append("config: not valid JSON")
        return cfg
    return validate(d)


def load(fs):
    """Config from the flash directory's config.json. Never raises."""
    raw = fs.read(CONFIG_FILE)
    cfg = _new()
    if raw is None:
        cfg.errors.append("config: %s missing" % CONFIG_FILE)
        return cfg
    try:
        text = raw.decode()
    except UnicodeError:
        cfg.errors.append("config: not UTF-8 text")
        return cfg
    return parse(text)
