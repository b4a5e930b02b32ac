"""`panic provision`: turn a flashed board into a device issued to one person.

Owns: the provisioning order and the device config it writes.
1. Check everything before changing anything: arguments, the board answers
   and carries a flashed release (its version goes on the label), the board
   has no config yet (or --force), the device id is not in the registry
   (never reused, --force or not: a new key under an old id would confuse the
   receiver's history and replay windows; retire it and pick a new id).
2. Generate the device key and the engineer key on the host (os.urandom).
3. Write the engineer key to a 0600 file (refuses to overwrite one).
4. Write /data/config.json on the board as .tmp + read-back + rename.
5. Register the device id, key and person reference with the receiver.
   Last on purpose: if it fails, the board is configured with a key the
   receiver does not know, and a re-run with --force fixes it; registering
   first would strand an id no board has.
Never prints, logs or reports either key; the label holds device id,
person reference, firmware version and receivers only.

Receivers and SMS numbers: --receiver and --sms-number may each be given
up to MAX_PEERS times, in order of preference; the config holds them as
the lists `receivers` ("host:port") and `sms_numbers`, which the firmware
fails over along (firmware/failover.py, docs/firmware.md "Receiver
failover"). Boards provisioned before the lists hold receiver_host,
receiver_port and sms_number; the firmware still reads those.
Stays in sync with: firmware/config.py (field names below), tools/flash.py
(manifest), tools/registry.py.
"""

import json
import os
import re
import sys

from tools.board import Board, DeviceError
from tools.errors import Refused, Unavailable, UsageError
from tools.flash import read_manifest
from tools.registry import RegistryError, ReceiverRegistry, check_person_ref

from firmware.board import FLASH_DIR  # noqa: E402  (the device's flash directory)
from firmware.config import CONFIG_FILE, MAX_PEERS  # noqa: E402

CONFIG_PATH = FLASH_DIR + "/" + CONFIG_FILE  # "/data/config.json", where firmware/main.py loads it
CONFIG_FIELDS = (
    "device_id", "key_hex", "engineer_key_hex", "receivers", "sms_numbers", "listen_number",
    "apn", "button", "timings", "pins", "power_profile", "wifi_scan", "test_enabled",
)
_PHONE = re.compile(r"^\+[1-9][0-9]{5,14}$")
_HOST = re.compile(r"^[A-Za-z0-9.-]{1,253}$|^\[[0-9A-Fa-f:]+\]$")


def parse_receiver(text):
    host, sep, port = (text or "").rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536 or not _HOST.match(host):
        raise UsageError("--receiver must be HOST:PORT (e.g. arc.example.org:7700), got %r" % text)
    return host.strip("[]"), int(port)


def check_phone(name, value):
    if not _PHONE.match(value or ""):
        raise UsageError("%s must be an international number like +447700900123, got %r" % (name, value))
    return value


def _listed(name, values):
    """--receiver / --sms-number given 1..MAX_PEERS times, no repeats."""
    values = list(values or ())
    if not 1 <= len(values) <= MAX_PEERS:
        raise UsageError("%s may be given 1 to %d times (in order of preference), got %d" % (name, MAX_PEERS, len(values)))
    if len(set(values)) != len(values):
        raise UsageError("%s: the same value twice (each is a separate fallback)" % name)
    return values


def check_args(a):
    """Returns ([(host, port), ...], extra)."""
    if not 0 < a.device_id < 2**32:
        raise UsageError("--device-id must be between 1 and 4294967295")
    receivers = [parse_receiver(r) for r in _listed("--receiver", a.receiver)]
    for n in _listed("--sms-number", a.sms_number):
        check_phone("--sms-number", n)
    check_phone("--listen-number", a.listen_number)
    if not a.apn or len(a.apn) > 63 or not all(0x20 < ord(c) < 0x7F for c in a.apn):
        raise UsageError("--apn must be 1-63 printable characters without spaces")
    why = check_person_ref(a.person_ref)  # the receiver's one rule (docs/receiver.md, "Person references")
    if why is not None:
        raise UsageError("--person-ref: %s" % why)
    extra = {}
    if a.config_extra:
        try:
            with open(a.config_extra) as f:
                extra = json.load(f)
        except OSError as e:
            raise Unavailable("cannot read %s: %s" % (a.config_extra, e.strerror))
        except ValueError as e:
            raise UsageError("%s is not JSON: %s" % (a.config_extra, e))
        if not isinstance(extra, dict) or set(extra) - {"button", "timings", "pins"}:
            raise UsageError("%s may only hold the objects button, timings and pins" % a.config_extra)
        for k, v in extra.items():
            if not isinstance(v, dict):
                raise UsageError("%s: %s must be an object" % (a.config_extra, k))
    return receivers, extra


def _host_port(host, port):
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


def make_config(a, receivers, extra, key, ekey):
    cfg = {
        "device_id": a.device_id,
        "key_hex": key.hex(),
        "engineer_key_hex": ekey.hex(),
        "receivers": ["%s:%d" % r for r in receivers],  # firmware/config.py splits at the last colon
        "sms_numbers": list(a.sms_number),
        "listen_number": a.listen_number,
        "apn": a.apn,
        "button": extra.get("button", {}),
        "timings": extra.get("timings", {}),
        "pins": extra.get("pins", {}),
        "power_profile": a.power_profile,
        "wifi_scan": bool(a.wifi_scan),
        "test_enabled": not a.no_test,
    }
    assert tuple(cfg) == CONFIG_FIELDS  # our own consistency, not wire data
    return cfg


def default_key_path(device_id):
    return os.path.join("engineer-keys", "device-%d.key" % device_id)


def write_key_file(path, key, force):
    d = os.path.dirname(path)
    if d:
        os.makedirs(d, mode=0o700, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise Refused("engineer key file %s already exists (use --force to replace it)" % path)
    except OSError as e:
        raise Unavailable("cannot write engineer key file %s: %s" % (path, e.strerror))
    with os.fdopen(fd, "w") as f:
        f.write(key.hex() + "\n")
    os.chmod(path, 0o600)


def label(device_id, person_ref, manifest, receivers):
    ver = "%s (%s)" % (manifest.get("version", "?"), manifest["app"])
    rows = [("device id", str(device_id)), ("person", person_ref), ("firmware", ver)]
    rows += [("receiver" if i == 0 else "", _host_port(*r)) for i, r in enumerate(receivers)]
    w = max(len(r[0]) for r in rows)
    body = ["  %s  %s" % (k.ljust(w), v) for k, v in rows]
    bar = "+" + "-" * (max(len(x) for x in body) + 2) + "+"
    return "\n".join([bar] + ["| %s |" % x.ljust(len(bar) - 4) for x in body] + [bar])


def provision(a, registry, connect=Board, out=print, rand=os.urandom):
    receivers, extra = check_args(a)
    key_path = a.engineer_key_out or default_key_path(a.device_id)
    if os.path.exists(key_path) and not a.force:
        raise Refused("engineer key file %s already exists (use --force to replace it)" % key_path)
    with connect(a.port, baud=a.baud) as board:
        manifest = read_manifest(board)
        if manifest is None:
            raise DeviceError("no application on the board (no /manifest.json): run `panic flash` first")
        if board.exists(CONFIG_PATH) and not a.force:
            raise DeviceError("the board is already provisioned (%s exists); use --force to overwrite it" % CONFIG_PATH)
        try:
            if registry.has_device(a.device_id):
                raise Refused(
                    "device id %d is already registered with the receiver; device ids are never reused" % a.device_id
                )
        except RegistryError as e:
            raise DeviceError("receiver registry: %s" % e)
        key = rand(32)
        ekey = rand(32)
        cfg = make_config(a, receivers, extra, key, ekey)
        write_key_file(key_path, ekey, a.force)
        board.mkdirs(os.path.dirname(CONFIG_PATH))
        board.write_atomic(CONFIG_PATH, json.dumps(cfg, sort_keys=True).encode())
        try:
            registry.add_device(a.device_id, key, a.person_ref)
        except RegistryError as e:
            raise DeviceError(
                "the board is configured but the receiver did not register it (%s); fix that, then re-run with --force" % e
            )
    out(label(a.device_id, a.person_ref, manifest, receivers))
    out("engineer key written to %s (mode 0600): give it only to the field engineer's kit" % key_path)
    return cfg


def cmd_provision(a, registry=None):
    try:
        if registry is None:
            try:
                registry = ReceiverRegistry(a.db, a.master_key_file, need_key=True)
            except RegistryError as e:
                raise (Unavailable if e.unavailable else Refused)("receiver registry: %s" % e)
        provision(a, registry)
    except (DeviceError, Refused, Unavailable) as e:
        print("panic provision: %s" % e, file=sys.stderr)
        return e.exit_code
    return 0


def register(sub):
    p = sub.add_parser("provision", help="give a flashed board its keys and config, and register it")
    p.add_argument("--port", required=True, help="serial port or pyserial URL")
    p.add_argument("--baud", type=int, default=115200)
    p.add_argument("--device-id", type=int, required=True)
    p.add_argument("--receiver", required=True, action="append", metavar="HOST:PORT",
                   help="a receiver node; repeat for the others, in order of preference (up to %d)" % MAX_PEERS)
    p.add_argument("--sms-number", required=True, action="append",
                   help="receiving centre SMS number (+E.164); repeat for fallbacks, in order (up to %d)" % MAX_PEERS)
    p.add_argument("--listen-number", required=True, help="number the device calls for covert listening (+E.164)")
    p.add_argument("--apn", required=True)
    p.add_argument("--person-ref", required=True, metavar="REF",
                   help="case reference of the person, e.g. URN-2026-0042 or 'URN 01/1234/26' (never a name or an "
                        "address; the rule: docs/receiver.md)")
    p.add_argument("--db", required=True, metavar="RECEIVER_DB", help="receiver store to register the device in")
    p.add_argument("--master-key-file", help="receiver master key file (default: $PANIC_RECEIVER_KEY)")
    p.add_argument("--engineer-key-out", metavar="FILE", help="where to write the engineer key (default engineer-keys/device-N.key)")
    p.add_argument("--config-extra", metavar="JSON", help="JSON file with button, timings and pins objects")
    p.add_argument("--power-profile", choices=("ready", "saver"), default="ready")
    p.add_argument("--wifi-scan", action="store_true",
                   help="allow Wi-Fi scans for location during an alert (active scans: a sniffer nearby sees the "
                        "probes; docs/security.md)")
    p.add_argument("--no-test", action="store_true", help="disable TEST alerts on this device")
    p.add_argument("--force", action="store_true", help="overwrite an existing board config / key file")
    p.set_defaults(func=cmd_provision)
