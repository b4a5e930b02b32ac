"""Config validation: clear errors naming the field, never a value; safe
defaults for bad optional fields; unusable without a key; never raises."""

import json
from binascii import unhexlify

from firmware import config as C
from firmware.fs import MemFs

KEY = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
ENG = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"


def good(**over):
    d = {
        "device_id": 7,
        "key_hex": KEY,
        "engineer_key_hex": ENG,
        "receiver_host": "arc.example.org",
        "receiver_port": 7400,
        "sms_number": "+447700900001",
        "listen_number": "+447700900002",
        "apn": "internet",
        "button": {"active_low": True},
        "timings": {"track_interval_s": 15, "sms_fallback_s": 30},
        "pins": {"button": 33},
        "power_profile": "saver",
        "wifi_scan": False,
        "test_enabled": True,
    }
    d.update(over)
    return d


def test_a_good_config_loads_every_field():
    c = C.validate(good())
    assert c.usable and c.errors == []
    assert c.device_id == 7 and c.key == unhexlify(KEY) and c.engineer_key == unhexlify(ENG)
    assert (c.receiver_host, c.receiver_port, c.sms_number, c.listen_number, c.apn) == (
        "arc.example.org", 7400, "+447700900001", "+447700900002", "internet")
    assert c.t("track_interval_s") == 15 and c.t("sms_fallback_s") == 30 and c.t("heartbeat_s") == 3600
    assert c.pins == {"button": 33} and c.power_profile == "saver"
    assert c.wifi_scan is False and c.test_enabled is True and c.button == {"active_low": True}


def test_defaults_when_optional_fields_are_absent():
    c = C.validate({"device_id": 1, "key_hex": KEY})
    assert c.usable and c.errors == []
    assert c.t("track_interval_s") == 30 and c.t("sms_fallback_s") == 20
    assert c.power_profile == "ready" and c.wifi_scan is True and c.test_enabled is False
    assert c.engineer_key is None and c.sms_number == ""


def test_bad_key_or_id_is_unusable_and_never_echoed():
    secretish = "Z" + KEY[1:]
    for d in (good(key_hex=secretish), good(key_hex=KEY[:-2]), good(key_hex=12), good(device_id=-1),
              good(device_id="7"), good(device_id=True), good(device_id=1 << 32)):
        c = C.validate(d)
        assert not c.usable and c.errors
        text = " ".join(c.errors) + repr(c)
        assert KEY[2:20] not in text and secretish not in text
    c = C.validate(good(engineer_key_hex="nothex"))
    assert c.usable and c.engineer_key is None
    assert c.errors == ["engineer_key_hex: must be 64 hex digits"]


def test_bad_optional_fields_take_safe_defaults_with_named_errors():
    cases = [
        ({"receiver_port": 70000}, "receiver_port", "receiver_port", 0),
        ({"sms_number": "call me"}, "sms_number", "sms_number", ""),
        ({"listen_number": "+44 7700"}, "listen_number", "listen_number", ""),
        ({"receiver_host": "a b"}, "receiver_host", "receiver_host", ""),
        ({"apn": 'x"y'}, "apn", "apn", ""),
        ({"power_profile": "turbo"}, "power_profile", "power_profile", "ready"),
        ({"wifi_scan": 1}, "wifi_scan", "wifi_scan", True),
        ({"button": []}, "button", "button", {}),
        ({"timings": {"track_interval_s": -1}}, "timings.track_interval_s", None, None),
        ({"timings": {"heartbeat_s": "1h"}}, "timings.heartbeat_s", None, None),
        ({"timings": {"nope": 1}}, "timings.nope", None, None),
        ({"timings": 5}, "timings", None, None),
        ({"pins": {"button": 40}}, "pins.button", "pins", {}),
        ({"pins": {"laser": 2}}, "pins.laser", "pins", {}),
        ({"colour": "red"}, "colour", None, None),
    ]
    for over, field, attr, default in cases:
        c = C.validate(good(**over))
        assert c.usable, over
        assert len(c.errors) == 1 and c.errors[0].startswith(field + ":"), (over, c.errors)
        if attr is not None:
            assert getattr(c, attr) == default, (over, getattr(c, attr))
    c = C.validate(good(timings={"track_interval_s": -1}))
    assert c.t("track_interval_s") == 30


def test_inconsistent_timings_fall_back():
    c = C.validate(good(timings={"backoff_base_ms": 50000, "backoff_max_ms": 2000}))
    assert c.t("backoff_base_ms") == 4000 and c.t("backoff_max_ms") == 60000 and len(c.errors) == 1
    c = C.validate(good(timings={"heartbeat_s": 600, "heartbeat_jitter_s": 400}))
    assert c.t("heartbeat_jitter_s") == 150 and len(c.errors) == 1


def test_load_never_raises():
    for files in ({}, {"config.json": b"{"}, {"config.json": b"\xff\xfe"}, {"config.json": b"[1, 2]"},
                  {"config.json": b"null"}, {"config.json": b'{"device_id": 1}'}):
        c = C.load(MemFs(files))
        assert not c.usable and c.errors, files
    c = C.load(MemFs({"config.json": json.dumps(good()).encode()}))
    assert c.usable and c.errors == []


def test_weird_json_values_never_raise():
    for v in (1, "x", None, [good()], {"device_id": 1, "key_hex": KEY, "pins": {"button": None}},
              {"device_id": 1, "key_hex": KEY, 5: 1}, {"device_id": 1.5, "key_hex": KEY}):
        c = C.validate(v)
        assert c.errors


def test_the_device_tests_config_is_what_the_validator_makes():
    # tests/device/fw_fakes.py starts the device tests from VALIDATED
    # instead of running the boot-only validator in every test VM
    from fw_fakes import CONFIG, VALIDATED, make_config

    cfg = C.validate(CONFIG)
    assert dict(cfg.__dict__) == VALIDATED
    assert dict(make_config().__dict__) == VALIDATED
    assert type(cfg) is type(make_config())


def test_forgetting_a_board_table_that_was_never_imported_is_harmless():
    # main() forgets both board tables after building the board; only one
    # (or both) were imported, and MicroPython raises KeyError, not
    # AttributeError, for a module attribute that was never set
    import sys

    from firmware.loop import forget

    from firmware import boards

    boards.load("t-sim7600e")
    forget("firmware.boards.t_sim7600e_ext_gnss")
    forget("firmware.boards.t_sim7600e")
    assert "firmware.boards.t_sim7600e" not in sys.modules
    boards.load("t-sim7600e")  # and it loads again
