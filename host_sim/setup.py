"""From a scenario to a device: the config.json a provisioned device would
hold and the presses a person makes, one definition for both ways of
running the firmware (virtual time, host_sim/runner.py; the MicroPython
VM, host_sim/faithful.py), so a scenario means the same thing in both.

Owns: device_config(), button_patterns(), the simulated device's
identity (DEVICE_ID, PERSON_REF, numbers, the public receiver address the
config names) and its key (device_key()). Never runs anything.

Scenario [device] keys, by name: a firmware timing (heartbeat_s ...) goes
under "timings", a button setting (sos_hold_ms ...) under "button" (a
[device] button = { ... } table too), test_enabled turns on both the config
flag and the button's TEST pattern (as an engineer would, and by default
when the scenario presses TEST), anything else is a top-level config field
(board, wifi_scan, apn ...). Keys and ids are the simulator's: refused.

Must stay in sync with: firmware/config.py (fields), firmware/button.py
(ButtonConfig), docs/scenarios.md ([device]).
"""

import hashlib

from firmware import config as C
from firmware.button import ButtonConfig
from host_sim.errors import InputError

DEVICE_ID = 1001
PERSON_REF = "URN 01/1234/26"
SMS_NUMBER = "+447700900999"
LISTEN_NUMBER = "+447700900998"
OWN_NUMBER = "+447700900123"  # the device's SIM (the sender the receiver sees)
RECEIVER = ("203.0.113.5", 5000)  # what the config names; the simulator routes it
# a centre of several nodes (scenario [[receiver]]): their public addresses
# and SMS gateways, in the device's order (firmware/config.py receivers)
NODE_ADDRESSES = (RECEIVER, ("203.0.113.6", 5000), ("203.0.113.7", 5000), ("203.0.113.8", 5000))
NODE_SMS = (SMS_NUMBER, "+447700900997", "+447700900996", "+447700900995")


class SetupError(InputError):
    """A scenario's [device] cannot become a device configuration."""


def device_key(seed):
    """The simulated device's 32-byte master key (derived from the seed; a
    simulation, never a real device's key)."""
    return hashlib.sha256(b"wearable-panic sim device key %d" % seed).digest()


def node_addresses(scenario):
    """{name: (host, port)} of the scenario's [[receiver]] nodes; {} for a
    centre of one."""
    names = getattr(scenario, "receivers", None) or []
    return dict(zip(names, NODE_ADDRESSES)) if len(names) > 1 else {}


def device_config(scenario, key, device_id=DEVICE_ID, engineer_key=None, receiver=RECEIVER):
    """(config.json dict, validated firmware Config) for the scenario: the
    single-receiver form for a centre of one node, the lists (receivers,
    sms_numbers, as `panic provision` writes them) for several."""
    d = {
        "device_id": device_id,
        "key_hex": key.hex(),
        "receiver_host": receiver[0],
        "receiver_port": receiver[1],
        "sms_number": SMS_NUMBER,
        "listen_number": LISTEN_NUMBER,
        "apn": "internet",
        "power_profile": scenario.profile,
    }
    nodes = node_addresses(scenario)
    if nodes:
        for k in ("receiver_host", "receiver_port", "sms_number"):
            del d[k]
        d["receivers"] = ["%s:%d" % a for a in nodes.values()]
        d["sms_numbers"] = list(NODE_SMS[: len(nodes)])
    if engineer_key is not None:
        d["engineer_key_hex"] = engineer_key.hex()
    timings = {}
    button = {}
    bfields = ButtonConfig().to_dict()
    tests = any(getattr(a, "kind", None) == "test" for a in getattr(scenario, "actions", ()))
    if tests:
        d["test_enabled"] = button["test_enabled"] = True
    for k, v in (scenario.device or {}).items():
        if k in C.TIMINGS:
            timings[k] = v
        elif k == "test_enabled":
            d[k] = v
            button[k] = v
        elif k == "button" and isinstance(v, dict):
            button.update(v)
        elif k in bfields:
            button[k] = v
        elif k in ("device_id", "key_hex", "engineer_key_hex"):
            raise SetupError("[device] %s is set by the simulator" % k)
        else:
            d[k] = v
    if timings:
        d["timings"] = timings
    if button:
        d["button"] = button
    cfg = C.validate(d)
    if cfg.errors:
        raise SetupError("[device]: " + "; ".join(cfg.errors))
    return d, cfg


def button_patterns(cfg=None):
    """{kind: [(offset_ms, hold_ms), ...]} a person presses for each named
    action, from the firmware's own button configuration: taps of 150 ms
    with 250 ms between them, holds 500 ms past their threshold."""
    b = cfg or ButtonConfig()
    tap, gap = 150, 250

    def taps(n):
        return [(i * (tap + gap), tap) for i in range(n)]

    return {
        "sos": taps(b.sos_presses),
        "cancel": [(0, b.cancel_hold_ms + 500)],
        "duress_cancel": taps(b.duress_presses),
        "test": taps(b.test_presses) + [(b.test_presses * (tap + gap), b.test_hold_ms + 500)],
    }
