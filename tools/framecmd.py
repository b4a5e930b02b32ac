"""`panic frame decode|encode`: look inside a frame, or build one.

decode prints the verified frame as JSON and exits 0; a frame that fails
verification prints one line naming the reason on stderr and exits 1 (the
check failed; exit codes: tools/errors.py). encode checks every field of
the JSON first (check_fields: the field, what it must be, what it got), so
a mistake is named in words, never as a Python error.
The key is taken from --key-hex or --key-file and never printed.
"""

import binascii
import json
import sys

from protocol import frame as F
from protocol import jsonform, sms
from protocol.crypto import DeviceKeys
from protocol.errors import EncodeError, ProtocolError
from tools.errors import EXIT_REFUSED, Unavailable, UsageError


def _key(args):
    if args.key_hex and args.key_file:
        raise UsageError("give --key-hex or --key-file, not both")
    text = args.key_hex
    if args.key_file:
        try:
            with open(args.key_file) as f:
                text = f.read().strip()
        except OSError as e:
            raise Unavailable("cannot read key file %s: %s" % (args.key_file, e.strerror))
    if not text:
        raise UsageError("a device key is needed: --key-hex HEX or --key-file FILE")
    try:
        raw = binascii.unhexlify(text.strip())
    except (binascii.Error, ValueError):
        raise UsageError("the key is not hex")
    if len(raw) != 32:
        raise UsageError("the key must be 32 bytes (64 hex digits), got %d bytes" % len(raw))
    return DeviceKeys(raw)


def cmd_decode(args):
    keys = _key(args)
    if (args.hex is None) == (args.sms is None):
        raise UsageError("give exactly one of --hex FRAME or --sms 'PNC1 ...'")
    try:
        if args.hex is not None:
            try:
                raw = binascii.unhexlify("".join(args.hex.split()))
            except (binascii.Error, ValueError):
                raise UsageError("--hex is not hex")
        else:
            raw = sms.from_sms(args.sms)
        fr = F.decode(keys, raw)
    except ProtocolError as e:
        print("rejected: %s: %s" % (e.reason, e), file=sys.stderr)
        return EXIT_REFUSED
    print(json.dumps(jsonform.to_dict(fr), indent=2))
    return 0


def cmd_encode(args):
    keys = _key(args)
    try:
        text = sys.stdin.read() if args.json == "-" else args.json
        d = json.loads(text)
    except ValueError as e:
        raise UsageError("frame JSON does not parse: %s" % e)
    check_fields(d)
    try:
        fr = jsonform.from_dict(d)
        if args.sms:
            out, _sent = sms.to_sms(keys, fr)
        else:
            out = binascii.hexlify(F.encode(keys, fr)).decode()
    except (EncodeError, TypeError) as e:
        raise UsageError("cannot encode: %s" % e)
    print(out)
    return 0


# What each field of the JSON form may hold (protocol/jsonform.py reads it,
# docs/protocol.md gives the ranges): name -> (low, high, null allowed).
_U32 = (0, 0xFFFFFFFF)
_INTS = {
    "device_id": _U32 + (False,),
    "seq": _U32 + (False,),
    "time": _U32 + (False,),
    "acked_seq": _U32 + (False,),
    "lat_e7": (-900000000, 900000000, False),
    "lon_e7": (-1800000000, 1800000000, False),
    "accuracy_m": (0, F.UNKNOWN_U16 - 1, True),
    "age_s": (0, F.UNKNOWN_U16 - 1, True),
    "battery": (0, 100, True),
    "csq": (0, 31, True),
}
_DEGREES = {"lat": (90, "latitude"), "lon": (180, "longitude")}
_BOOLS = ("duress", "battery_low", "charging", "test")
_TLV_INTS = {  # field -> (low, high), per TLV name
    "cell": {"mcc": (0, 0xFFFF), "mnc": (0, 0xFFFF), "tac": _U32, "cell_id": _U32, "rsrp": (-32768, 32767)},
    "wifi": {"rssi": (-128, 127)},
    "motion": {"alt_m": (-32768, 32767), "speed_cms": (0, 0xFFFF), "course_cdeg": (0, 35999)},
    "gnss": {"sats": (0, 255), "hdop_x10": (0, 255)},
    "event": {"code": (0, 255), "detail": (0, 0xFFFF)},
    "tracking": {"interval_s": (0, 0xFFFF)},
}


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _need_int(where, v, lo, hi, null=False):
    if v is None and null:
        return
    if not _is_int(v) or not lo <= v <= hi:
        raise UsageError("%s must be a whole number from %d to %d%s, got %s" % (
            where, lo, hi, " (or null for unknown)" if null else "", json.dumps(v)))


def check_fields(d):
    """Every field of a frame's JSON form checked before encoding, each
    mistake named in words: the field, what it must hold, what it got."""
    if not isinstance(d, dict):
        raise UsageError("the frame JSON must be an object like {\"type\": \"ALERT\", \"device_id\": 1001, \"seq\": 1}")
    t = d.get("type")
    if t not in F.TYPE_CODES:
        raise UsageError("\"type\" must be one of %s, got %s" % (", ".join(sorted(F.TYPE_CODES)), json.dumps(t)))
    for k in ("device_id", "seq"):
        if k not in d:
            raise UsageError("\"%s\" is missing" % k)
    for k, (lo, hi, null) in _INTS.items():
        if k in d:
            _need_int('"%s"' % k, d[k], lo, hi, null)
    for k, (lim, what) in _DEGREES.items():
        v = d.get(k)
        if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool) or not -lim <= v <= lim):
            raise UsageError("\"%s\" must be a %s in degrees from %d to %d, got %s" % (k, what, -lim, lim, json.dumps(v)))
    for k in _BOOLS:
        if k in d and not isinstance(d[k], bool):
            raise UsageError("\"%s\" must be true or false, got %s" % (k, json.dumps(d[k])))
    if t == "ACK":
        if "acked_seq" not in d:
            raise UsageError("an ACK needs \"acked_seq\"")
        tlvs, where = d.get("commands", []), "commands"
    else:
        src = d.get("source", "none")
        if src not in F.SOURCE_NAMES:
            raise UsageError("\"source\" must be one of %s, got %s" % (", ".join(F.SOURCE_NAMES), json.dumps(src)))
        given = [k for k in ("lat", "lon", "lat_e7", "lon_e7") if d.get(k)]
        if src == "none" and given:
            raise UsageError(
                "%s given without a position source: add \"source\": \"gnss\" (or last_fix, cell, wifi); with "
                "source none the receiver treats the frame as having no position" % "/".join(given))
        # position semantics (docs/protocol.md): coordinates only from a position the device holds
        has = [any(d.get(k) is not None for k in (k1, k1 + "_e7")) for k1 in ("lat", "lon")]
        if src != "none" and not all(has):
            raise UsageError(
                "\"source\": \"%s\" needs the coordinates the device holds (\"lat\" and \"lon\", or \"lat_e7\" and "
                "\"lon_e7\"); a device with only cell or Wi-Fi observations sends \"source\": \"none\" and the tlvs" % src)
        if src in ("cell", "wifi") and all(has) and not given:
            raise UsageError(
                "a %s position at (0, 0) is the placeholder older firmware sent, not a position: send \"source\": "
                "\"none\" and the tlvs" % src)
        tlvs, where = d.get("tlvs", []), "tlvs"
    if not isinstance(tlvs, list):
        raise UsageError("\"%s\" must be a list of objects" % where)
    for i, tlv in enumerate(tlvs):
        at = "%s[%d]" % (where, i)
        if not isinstance(tlv, dict) or "tlv" not in tlv:
            raise UsageError("%s must be an object with a \"tlv\" name, got %s" % (at, json.dumps(tlv)))
        for k, (lo, hi) in _TLV_INTS.get(tlv["tlv"], {}).items():
            if k not in tlv:
                raise UsageError("%s (%s) needs \"%s\"" % (at, tlv["tlv"], k))
            _need_int('%s "%s"' % (at, k), tlv[k], lo, hi)


def register(sub):
    p = sub.add_parser("frame", help="decode or encode protocol v1 frames")
    fs = p.add_subparsers(dest="frame_cmd", metavar="ACTION")
    fs.required = True
    d = fs.add_parser("decode", help="verify and decode a frame (hex or SMS text)")
    d.add_argument("--key-hex", help="device master key, 64 hex digits")
    d.add_argument("--key-file", help="file holding the device master key in hex")
    d.add_argument("--hex", help="frame as hex")
    d.add_argument("--sms", help="SMS text 'PNC1 ...'")
    d.set_defaults(func=cmd_decode)
    e = fs.add_parser("encode", help="build a frame from JSON (as decode prints it)")
    e.add_argument("--key-hex")
    e.add_argument("--key-file")
    e.add_argument("--json", required=True, help="frame JSON, or - for stdin")
    e.add_argument("--sms", action="store_true", help="print the SMS text form instead of hex")
    e.set_defaults(func=cmd_encode)
