"""`panic frame decode|encode`: look inside a frame, or build one.

decode prints the verified frame as JSON and exits 0; a frame that fails
verification prints one line naming the reason on stderr and exits 2.
The key is taken from --key-hex or --key-file and never printed.
"""

import binascii
import json
import sys

from protocol import frame as F
from protocol import jsonform, sms
from protocol.crypto import DeviceKeys
from protocol.errors import EncodeError, ProtocolError
from tools.errors import UsageError


def _key(args):
    if args.key_hex and args.key_file:
        raise UsageError("give --key-hex or --key-file, not both")
    text = args.key_hex
    if args.key_file:
        try:
            with open(args.key_file) as f:
                text = f.read().strip()
        except OSError as e:
            raise UsageError("cannot read key file: %s" % e.strerror)
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
        return 2
    print(json.dumps(jsonform.to_dict(fr), indent=2))
    return 0


def cmd_encode(args):
    keys = _key(args)
    try:
        text = sys.stdin.read() if args.json == "-" else args.json
        d = json.loads(text)
    except ValueError as e:
        raise UsageError("frame JSON does not parse: %s" % e)
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
