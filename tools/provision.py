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
With --secure (issue 15, keys at rest) it also burns, between the checks
and the writes, the ESP32 eFuses that flash encryption needs from the host:
a flash-encryption key generated here (BLOCK1, which espefuse read- and
write-protects as it burns it) and FLASH_CRYPT_CONFIG 0xF. Irreversible, so
only after an explicit confirmation (--confirm-burn with the device id, or
the id typed at a terminal). Harmless to the image the board runs now: the
flash is encrypted only when a release-mode build's bootloader first boots
(docs/hardware.md, "Preparing a board for issue"). --efuse-virt FILE
rehearses it on espefuse's virtual eFuses (--virt --path-efuse-file), which
is how it is tested: never a real chip in a test.
Never prints, logs or reports any key; the label holds device id,
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
import subprocess
import sys
import tempfile

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


# -- eFuses (--secure) -----------------------------------------------------
# espefuse (esptool >= 4: `--virt --path-efuse-file`; here esptool 5) as a
# subprocess of this interpreter. Field names: espefuse's ESP32 eFuse table
# (summary); FLASH_CRYPT_CONFIG 0xF and the key in BLOCK1: ESP-IDF "Flash
# Encryption", "Relevant eFuses" (ESP32).
FLASH_CRYPT_CONFIG = 0xF


def espefuse_cmd(a, *args):
    """The espefuse command line for this board (or its virtual eFuses)."""
    cmd = [sys.executable, "-m", "espefuse", "--chip", "esp32"]
    if a.efuse_virt:
        cmd += ["--virt", "--path-efuse-file", a.efuse_virt]
    else:
        cmd += ["-p", a.port, "--baud", str(a.baud)]
    return cmd + ["--do-not-confirm"] + list(args)


def _espefuse(a, run, *args):
    try:
        p = run(espefuse_cmd(a, *args), capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise Unavailable("espefuse did not run (%s): is esptool installed in this environment?" % e)
    if p.returncode != 0:
        lines = [x for x in (p.stderr + p.stdout).splitlines() if x.strip()]
        raise DeviceError("espefuse %s failed: %s" % (args[0], lines[-1] if lines else "exit %d" % p.returncode))
    return p.stdout


def efuse_summary(a, run=subprocess.run):
    """{field: {"value", "readable", "writeable", ...}} from espefuse summary."""
    out = _espefuse(a, run, "summary", "--format", "json")
    try:
        return json.loads(out[out.index("{"):])
    except ValueError:
        raise DeviceError("espefuse summary: unexpected output")


def _field(summary, name):
    f = summary.get(name)
    if not isinstance(f, dict):
        raise DeviceError("espefuse summary has no %s: is this an ESP32?" % name)
    return f


def flash_key_state(summary):
    """'blank' (nothing burned), 'done' (key burned and protected, config
    0xF) or a sentence saying why the chip cannot take our steps."""
    if not str(_field(summary, "CODING_SCHEME").get("value", "")).startswith("NONE"):
        return "its eFuses use the 3/4 coding scheme (192-bit keys), which these steps do not handle"
    if _field(summary, "FLASH_CRYPT_CNT").get("value") != 0:
        return "its flash is already encrypted (FLASH_CRYPT_CNT is not 0)"
    blk, cfg = _field(summary, "BLOCK1"), _field(summary, "FLASH_CRYPT_CONFIG").get("value")
    if blk.get("readable") is False and blk.get("writeable") is False:
        if cfg == FLASH_CRYPT_CONFIG:
            return "done"
        return "BLOCK1 is protected but FLASH_CRYPT_CONFIG is %r, not 0xF" % cfg
    if str(blk.get("value", "")).replace(" ", "").strip("0") or cfg:
        return "BLOCK1 or FLASH_CRYPT_CONFIG already holds something this tool did not burn"
    return "blank"


def confirm_burn(a, ask=input, tty=None):
    """The explicit confirmation --secure needs: --confirm-burn equal to the
    device id, or the id typed at a terminal."""
    target = "virtual eFuse file %s" % a.efuse_virt if a.efuse_virt else "the chip on %s" % a.port
    if a.confirm_burn is not None:
        if a.confirm_burn != a.device_id:
            raise UsageError("--confirm-burn %d does not match --device-id %d: nothing burned"
                             % (a.confirm_burn, a.device_id))
        return
    if not (sys.stdin.isatty() if tty is None else tty):
        raise UsageError("--secure burns eFuses on %s for ever: confirm with --confirm-burn %d" % (target, a.device_id))
    got = ask("--secure burns the flash-encryption key and FLASH_CRYPT_CONFIG into %s. This cannot be undone.\n"
              "Type the device id (%d) to go on: " % (target, a.device_id))
    if got.strip() != str(a.device_id):
        raise Refused("not confirmed: nothing burned")


def burn_flash_key(a, out=print, run=subprocess.run, rand=os.urandom):
    """Burn a new flash-encryption key and FLASH_CRYPT_CONFIG 0xF, then read
    them back. The key file espefuse reads is 0600 in a private folder and
    removed at once unless --flash-key-out keeps it. Returns False when the
    chip already had them (a re-run with --force)."""
    state = flash_key_state(efuse_summary(a, run))
    if state == "done":
        out("flash-encryption key already burned (BLOCK1 read- and write-protected, FLASH_CRYPT_CONFIG 0xF)")
        return False
    if state != "blank":
        raise Refused("cannot secure this board: %s" % state)
    keep = a.flash_key_out
    if keep and os.path.exists(keep):
        raise Refused("flash key file %s already exists: nothing burned" % keep)
    d = tempfile.mkdtemp(prefix="panic-fek-")
    path = os.path.join(d, "key.bin")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(rand(32))
        _espefuse(a, run, "burn-key", "flash_encryption", path)
        _espefuse(a, run, "burn-efuse", "FLASH_CRYPT_CONFIG", hex(FLASH_CRYPT_CONFIG))
        if keep:
            kd = os.path.dirname(keep)
            if kd:
                os.makedirs(kd, mode=0o700, exist_ok=True)
            with open(path, "rb") as src:
                fd = os.open(keep, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(src.read())
    finally:
        try:
            os.remove(path)
        except OSError:
            pass
        os.rmdir(d)
    if flash_key_state(efuse_summary(a, run)) != "done":
        raise DeviceError("the flash-encryption eFuses did not read back as burned and protected")
    out("flash-encryption key burned into BLOCK1 (read- and write-protected), FLASH_CRYPT_CONFIG 0xF; %s"
        % ("key kept in %s (mode 0600)" % keep if keep else "no copy of the key exists off the chip"))
    return True


def label(device_id, person_ref, manifest, receivers):
    ver = "%s (%s)" % (manifest.get("version", "?"), manifest["app"])
    rows = [("device id", str(device_id)), ("person", person_ref), ("firmware", ver)]
    rows += [("receiver" if i == 0 else "", _host_port(*r)) for i, r in enumerate(receivers)]
    w = max(len(r[0]) for r in rows)
    body = ["  %s  %s" % (k.ljust(w), v) for k, v in rows]
    bar = "+" + "-" * (max(len(x) for x in body) + 2) + "+"
    return "\n".join([bar] + ["| %s |" % x.ljust(len(bar) - 4) for x in body] + [bar])


def _check_board(a, board, registry):
    """Step 1 on the board: a release on it, no config (or --force), the
    device id never registered. Returns the manifest."""
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
    return manifest


def provision(a, registry, connect=Board, out=print, rand=os.urandom, run=subprocess.run, ask=input):
    receivers, extra = check_args(a)
    key_path = a.engineer_key_out or default_key_path(a.device_id)
    if os.path.exists(key_path) and not a.force:
        raise Refused("engineer key file %s already exists (use --force to replace it)" % key_path)
    if a.secure:
        confirm_burn(a, ask=ask)
        state = flash_key_state(efuse_summary(a, run))
        if state not in ("blank", "done"):
            raise Refused("cannot secure this board: %s" % state)
    with connect(a.port, baud=a.baud) as board:
        manifest = _check_board(a, board, registry)
    if a.secure:
        # The serial port is free again: espefuse resets the chip into its
        # ROM bootloader and back (on a real port), then the REPL is reopened.
        burn_flash_key(a, out=out, run=run, rand=rand)
    with connect(a.port, baud=a.baud) as board:
        if a.secure:
            manifest = _check_board(a, board, registry)
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
    p.add_argument("--secure", action="store_true",
                   help="also burn the ESP32's flash-encryption key and FLASH_CRYPT_CONFIG eFuses (irreversible; "
                        "docs/hardware.md, 'Preparing a board for issue')")
    p.add_argument("--confirm-burn", type=int, metavar="DEVICE_ID",
                   help="with --secure: the device id again, to confirm the burn without a prompt")
    p.add_argument("--efuse-virt", metavar="FILE",
                   help="with --secure: burn espefuse's virtual eFuses kept in FILE instead of the chip (a rehearsal)")
    p.add_argument("--flash-key-out", metavar="FILE",
                   help="with --secure: keep a copy of the flash-encryption key here (mode 0600); default: no copy")
    p.set_defaults(func=cmd_provision)
