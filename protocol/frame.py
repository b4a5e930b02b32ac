"""Frame encode and decode for protocol v1 (see docs/protocol.md).

Owns: the byte layout of every frame, body and TLV, and the order of the
checks that reject a frame. Never does I/O, never reads a clock.

Order of checks in decode() (each failure raises one ProtocolError subclass
and nothing else escapes):
  1. length >= 31 and == 15 + body_len + 16      -> BadLength
  2. version byte == 1                           -> UnknownVersion
  3. type known and of the expected direction    -> UnknownType
  4. tag verifies, constant-time                 -> BadTag
  5. decrypt, then the plaintext body parses     -> BadBody / BadTLV
Nothing is decrypted before the tag verifies.

Positions are integers in 1e-7 degrees everywhere: ESP32 floats are single
precision and would lose metres.

Must stay in sync with: protocol/vectors.json (regenerate with
`python tools/gen_vectors.py`), docs/protocol.md.
"""

import struct

from protocol.errors import (
    BadBody,
    BadLength,
    BadTag,
    BadTLV,
    EncodeError,
    UnknownType,
    UnknownVersion,
)
from protocol.crypto import tags_equal

VERSION = 1
HEADER_LEN = 15
TAG_LEN = 16
OVERHEAD = HEADER_LEN + TAG_LEN  # 31
MAX_BODY = 255
MAX_FRAME = OVERHEAD + MAX_BODY  # 286
REPORT_FIXED = 16

# Uplink types
ALERT = 0x01
TRACK = 0x02
CANCEL = 0x03
HEARTBEAT = 0x04
TEST = 0x05
STATUS = 0x06
# Downlink types
ACK = 0x80

TYPE_NAMES = {
    ALERT: "ALERT",
    TRACK: "TRACK",
    CANCEL: "CANCEL",
    HEARTBEAT: "HEARTBEAT",
    TEST: "TEST",
    STATUS: "STATUS",
    ACK: "ACK",
}
TYPE_CODES = {v: k for k, v in TYPE_NAMES.items()}

UPLINK = 0
DOWNLINK = 1

# Flags (uplink body byte 0)
F_POSITION = 0x01
F_DURESS = 0x02
F_BATTERY_LOW = 0x04
F_CHARGING = 0x08
F_TEST = 0x10
_F_RESERVED = 0xE0

# Position sources
SRC_NONE = 0
SRC_GNSS = 1
SRC_LAST_FIX = 2
SRC_CELL = 3
SRC_WIFI = 4
SOURCE_NAMES = ("none", "gnss", "last_fix", "cell", "wifi")

UNKNOWN_U16 = 0xFFFF
UNKNOWN_BATTERY = 0xFF
UNKNOWN_CSQ = 99

# Uplink TLVs
T_CELL = 0x01
T_WIFI = 0x02
T_MOTION = 0x03
T_GNSS = 0x04
T_EVENT = 0x05
MAX_WIFI = 3
# Downlink (ACK command) TLVs
C_TRACKING = 0x81
C_STAND_DOWN = 0x82
C_LISTEN_IN = 0x83

# Status event codes (T_EVENT)
EV_BOOT = 1
EV_LOW_BATTERY = 2
EV_FAULT = 3
EV_WATCHDOG = 4

_TLV_LEN = {T_CELL: 14, T_WIFI: 7, T_MOTION: 6, T_GNSS: 2, T_EVENT: 3}
_CMD_LEN = {C_TRACKING: 2, C_STAND_DOWN: 0, C_LISTEN_IN: 0}

_HDR = ">BBIIIB"
_REPORT = ">BBiiHHBB"


def direction_of(ftype):
    return DOWNLINK if ftype >= 0x80 else UPLINK


class Report:
    """Plaintext body of every uplink frame.

    lat/lon: signed ints in 1e-7 degrees, or None: no coordinates (the
    default). Position semantics (docs/protocol.md, normative): the
    coordinates are a position the device holds. A report with a position
    source (1..4) must be given its coordinates, and a cell or Wi-Fi source
    never (0, 0), the placeholder older firmware sent; source 0 carries none
    (zeros on the wire). The encoder refuses anything else (EncodeError), so
    no frame can carry coordinates that did not come from a position.
    A decoded report always has ints (the wire's bytes).
    tlvs: list of (type, value) in wire order; value is a tuple for known types:
      T_CELL   (mcc, mnc, tac, cell_id, rsrp_dbm)
      T_WIFI   (bssid 6 bytes, rssi_dbm)
      T_MOTION (alt_m, speed_cms, course_cdeg)
      T_GNSS   (sats, hdop_x10)
      T_EVENT  (code, detail)
    and raw bytes for types this version does not know (kept, not acted on).
    """

    def __init__(
        self,
        source=SRC_NONE,
        lat=None,
        lon=None,
        accuracy=UNKNOWN_U16,
        age=UNKNOWN_U16,
        battery=UNKNOWN_BATTERY,
        csq=UNKNOWN_CSQ,
        duress=False,
        battery_low=False,
        charging=False,
        test=False,
        tlvs=None,
    ):
        self.source = source
        self.lat = lat
        self.lon = lon
        self.accuracy = accuracy
        self.age = age
        self.battery = battery
        self.csq = csq
        self.duress = duress
        self.battery_low = battery_low
        self.charging = charging
        self.test = test
        self.tlvs = tlvs if tlvs is not None else []

    @property
    def flags(self):
        f = 0
        if self.source != SRC_NONE:
            f |= F_POSITION
        if self.duress:
            f |= F_DURESS
        if self.battery_low:
            f |= F_BATTERY_LOW
        if self.charging:
            f |= F_CHARGING
        if self.test:
            f |= F_TEST
        return f

    def tlv_values(self, t):
        return [v for (tt, v) in self.tlvs if tt == t]

    def __eq__(self, other):
        return (
            isinstance(other, Report)
            and self.flags == other.flags
            and self.source == other.source
            and (self.lat or 0) == (other.lat or 0)  # None (not given) goes on the wire as 0
            and (self.lon or 0) == (other.lon or 0)
            and self.accuracy == other.accuracy
            and self.age == other.age
            and self.battery == other.battery
            and self.csq == other.csq
            and _norm_tlvs(self.tlvs) == _norm_tlvs(other.tlvs)
        )


class Ack:
    """Plaintext body of an ACK: the uplink seq it names and operator
    commands as (type, value): (C_TRACKING, seconds), (C_STAND_DOWN, None),
    (C_LISTEN_IN, None), or (unknown type, raw bytes)."""

    def __init__(self, acked_seq, commands=None):
        self.acked_seq = acked_seq
        self.commands = commands if commands is not None else []

    def command(self, t):
        for tt, v in self.commands:
            if tt == t:
                return True, v
        return False, None

    def __eq__(self, other):
        return (
            isinstance(other, Ack)
            and self.acked_seq == other.acked_seq
            and _norm_tlvs(self.commands) == _norm_tlvs(other.commands)
        )


class Frame:
    def __init__(self, ftype, device_id, seq, time, body):
        self.ftype = ftype
        self.device_id = device_id
        self.seq = seq
        self.time = time
        self.body = body

    @property
    def name(self):
        return TYPE_NAMES.get(self.ftype, "0x%02x" % self.ftype)

    def __eq__(self, other):
        return (
            isinstance(other, Frame)
            and self.ftype == other.ftype
            and self.device_id == other.device_id
            and self.seq == other.seq
            and self.time == other.time
            and self.body == other.body
        )

    def __repr__(self):
        return "<Frame %s dev=%d seq=%d>" % (self.name, self.device_id, self.seq)


def _norm_tlvs(tlvs):
    out = []
    for t, v in tlvs:
        if isinstance(v, (bytes, bytearray, memoryview)):
            v = bytes(v)
        elif isinstance(v, (tuple, list)):
            v = tuple(bytes(x) if isinstance(x, (bytearray, memoryview)) else x for x in v)
        out.append((t, v))
    return out


# ---------------------------------------------------------------- encoding


def _check(cond, what):
    if not cond:
        raise EncodeError(what)


def _u(v, bits):
    return isinstance(v, int) and 0 <= v < (1 << bits)


def _s(v, bits):
    return isinstance(v, int) and -(1 << (bits - 1)) <= v < (1 << (bits - 1))


def _tlv_bytes(t, v, downlink):
    if isinstance(v, (bytes, bytearray)):
        # raw value: a type this version does not know in this direction
        _check(_u(t, 8) and t not in (_CMD_LEN if downlink else _TLV_LEN), "known tlv 0x%02x needs a typed value" % t)
        return bytes(v)
    if downlink:
        if t == C_TRACKING:
            _check(_u(v, 16), "tracking interval out of range")
            return struct.pack(">H", v)
        if t == C_STAND_DOWN or t == C_LISTEN_IN:
            _check(v is None, "command takes no value")
            return b""
        raise EncodeError("unknown command tlv 0x%02x needs raw bytes" % t)
    if t == T_CELL:
        _check(len(v) == 5, "cell needs 5 fields")
        mcc, mnc, tac, cid, rsrp = v
        _check(_u(mcc, 16) and _u(mnc, 16) and _u(tac, 32) and _u(cid, 32) and _s(rsrp, 16), "cell field out of range")
        return struct.pack(">HHIIh", mcc, mnc, tac, cid, rsrp)
    if t == T_WIFI:
        bssid, rssi = v
        _check(len(bssid) == 6 and _s(rssi, 8), "wifi field out of range")
        return bytes(bssid) + struct.pack(">b", rssi)
    if t == T_MOTION:
        alt, speed, course = v
        _check(_s(alt, 16) and _u(speed, 16) and _u(course, 16) and course < 36000, "motion field out of range")
        return struct.pack(">hHH", alt, speed, course)
    if t == T_GNSS:
        sats, hdop = v
        _check(_u(sats, 8) and _u(hdop, 8), "gnss field out of range")
        return struct.pack(">BB", sats, hdop)
    if t == T_EVENT:
        code, detail = v
        _check(_u(code, 8) and _u(detail, 16), "event field out of range")
        return struct.pack(">BH", code, detail)
    raise EncodeError("unknown tlv 0x%02x needs raw bytes" % t)


# Uplink TLVs packed in one struct call each: (format incl. type and length
# bytes, value length, per-field (lo, hi) limits).
_TLV_PACK = {
    T_CELL: (">BBHHIIh", 14, ((0, 0xFFFF), (0, 0xFFFF), (0, 0xFFFFFFFF), (0, 0xFFFFFFFF), (-32768, 32767))),
    T_MOTION: (">BBhHH", 6, ((-32768, 32767), (0, 0xFFFF), (0, 35999))),
    T_GNSS: (">BBBB", 2, ((0, 255), (0, 255))),
    T_EVENT: (">BBBH", 3, ((0, 255), (0, 0xFFFF))),
}


def _tlvs_bytes(tlvs, downlink):
    parts = []
    nwifi = 0
    for t, v in tlvs:
        spec = None if downlink else _TLV_PACK.get(t)
        if spec is not None and isinstance(v, tuple) and len(v) == len(spec[2]):
            i = 0
            for lo, hi in spec[2]:
                x = v[i]
                if not (isinstance(x, int) and lo <= x <= hi):
                    raise EncodeError("tlv 0x%02x field %d out of range" % (t, i))
                i += 1
            parts.append(struct.pack(spec[0], t, spec[1], *v))
            continue
        if t == T_WIFI and not downlink:
            nwifi += 1
        raw = _tlv_bytes(t, v, downlink)
        _check(len(raw) < 256, "tlv too long")
        parts.append(bytes((t, len(raw))))
        parts.append(raw)
    _check(nwifi <= MAX_WIFI, "at most 3 wifi tlvs")
    return b"".join(parts)


def report_bytes(r):
    # Range checks are chained comparisons, not helper calls: this runs for
    # every frame the device builds and MicroPython pays per call.
    src = r.source
    lat = r.lat
    lon = r.lon
    # Position semantics (docs/protocol.md): coordinates only from a position
    # held, never the (0, 0) placeholder of a cell or Wi-Fi source. One short
    # message: every constant string of a ROM module costs device heap.
    if src == SRC_NONE and not lat and not lon:
        lat = lon = 0
    elif src == SRC_NONE or lat is None or lon is None or (src > SRC_LAST_FIX and not lat and not lon):
        raise EncodeError("coordinates go with a position source (cell/Wi-Fi not 0,0)")
    acc = r.accuracy
    age = r.age
    batt = r.battery
    csq = r.csq
    if not (
        0 <= src < 5
        and -900000000 <= lat <= 900000000
        and -1800000000 <= lon <= 1800000000
        and 0 <= acc <= 0xFFFF
        and 0 <= age <= 0xFFFF
        and (0 <= batt <= 100 or batt == UNKNOWN_BATTERY)
        and (0 <= csq <= 31 or csq == UNKNOWN_CSQ)
    ):
        _report_range_error(r)
    head = struct.pack(_REPORT, r.flags, src, lat, lon, acc, age, batt, csq)
    if not r.tlvs:
        return head
    return head + _tlvs_bytes(r.tlvs, False)


def _report_range_error(r):
    lat = r.lat or 0
    lon = r.lon or 0
    _check(_u(r.source, 8) and r.source < len(SOURCE_NAMES), "unknown position source")
    _check(_s(lat, 32) and -900000000 <= lat <= 900000000, "latitude out of range")
    _check(_s(lon, 32) and -1800000000 <= lon <= 1800000000, "longitude out of range")
    _check(_u(r.accuracy, 16) and _u(r.age, 16), "accuracy/age out of range")
    _check(r.battery == UNKNOWN_BATTERY or (_u(r.battery, 8) and r.battery <= 100), "battery out of range")
    _check(False, "csq out of range")


def ack_bytes(a):
    _check(_u(a.acked_seq, 32), "acked seq out of range")
    return struct.pack(">I", a.acked_seq) + _tlvs_bytes(a.commands, True)


def encode_raw(keys, ftype, device_id, seq, time, plaintext):
    """Seal a plaintext body into a frame (no body validation)."""
    _check(ftype in TYPE_NAMES, "unknown frame type")
    _check(_u(device_id, 32) and _u(seq, 32) and _u(time, 32), "header field out of range")
    n = len(plaintext)
    _check(n <= MAX_BODY, "body longer than 255 bytes")
    d = direction_of(ftype)
    enc, mac = (keys.enc_up, keys.mac_up) if d == UPLINK else (keys.enc_down, keys.mac_down)
    out = bytearray(HEADER_LEN + n + TAG_LEN)
    struct.pack_into(_HDR, out, 0, VERSION, ftype, device_id, seq, time, n)
    out[HEADER_LEN : HEADER_LEN + n] = enc.crypt(counter_block(device_id, seq, d), plaintext)
    mv = memoryview(out)
    out[HEADER_LEN + n :] = mac.digest(mv[: HEADER_LEN + n])[:TAG_LEN]
    return bytes(out)


def encode(keys, frame):
    b = frame.body
    if direction_of(frame.ftype) == UPLINK:
        _check(isinstance(b, Report), "uplink frame needs a Report body")
        plain = report_bytes(b)
    else:
        _check(isinstance(b, Ack), "downlink frame needs an Ack body")
        plain = ack_bytes(b)
    return encode_raw(keys, frame.ftype, frame.device_id, frame.seq, frame.time, plain)


def counter_block(device_id, seq, direction):
    return struct.pack(">IIB3sI", device_id, seq, direction, b"\x00\x00\x00", 0)


# ---------------------------------------------------------------- decoding


def peek(data):
    """Unauthenticated header of a frame: (type, device_id, seq).

    For choosing a key only; never act on it. Raises like decode()."""
    n = len(data)
    if n < OVERHEAD or n > MAX_FRAME:
        raise BadLength("frame of %d bytes" % n)
    if n != OVERHEAD + data[14]:
        raise BadLength("frame of %d bytes, body_len says %d" % (n, OVERHEAD + data[14]))
    if data[0] != VERSION:
        raise UnknownVersion("version %d" % data[0])
    ftype = data[1]
    if ftype not in TYPE_NAMES:
        raise UnknownType("type 0x%02x" % ftype)
    _, _, device_id, seq = struct.unpack_from(">BBII", data, 0)
    return ftype, device_id, seq


def decode(keys, data, expect=None):
    """Verify and open one frame. expect: UPLINK, DOWNLINK or None (any)."""
    ftype, device_id, seq = peek(data)
    d = direction_of(ftype)
    if expect is not None and d != expect:
        raise UnknownType("type 0x%02x in the wrong direction" % ftype)
    enc, mac = (keys.enc_up, keys.mac_up) if d == UPLINK else (keys.enc_down, keys.mac_down)
    n = data[14]
    mv = memoryview(data)
    want = mac.digest(mv[: HEADER_LEN + n])[:TAG_LEN]
    if not tags_equal(want, mv[HEADER_LEN + n :]):
        raise BadTag("tag does not verify")
    time = struct.unpack_from(">I", data, 10)[0]
    plain = enc.crypt(counter_block(device_id, seq, d), mv[HEADER_LEN : HEADER_LEN + n])
    body = parse_report(plain) if d == UPLINK else parse_ack(plain)
    return Frame(ftype, device_id, seq, time, body)


def _parse_tlvs(b, off, known_len, downlink):
    out = []
    n = len(b)
    nwifi = 0
    while off < n:
        if off + 2 > n:
            raise BadTLV("tlv header runs past the body")
        t = b[off]
        ln = b[off + 1]
        off += 2
        if off + ln > n:
            raise BadTLV("tlv 0x%02x runs past the body" % t)
        raw = bytes(b[off : off + ln])
        off += ln
        want = known_len.get(t)
        if want is None:
            out.append((t, raw))
            continue
        if ln != want:
            raise BadTLV("tlv 0x%02x has length %d, want %d" % (t, ln, want))
        if downlink:
            if t == C_TRACKING:
                out.append((t, struct.unpack(">H", raw)[0]))
            else:
                out.append((t, None))
            continue
        if t == T_CELL:
            out.append((t, struct.unpack(">HHIIh", raw)))
        elif t == T_WIFI:
            nwifi += 1
            if nwifi > MAX_WIFI:
                raise BadTLV("more than 3 wifi tlvs")
            out.append((t, (raw[:6], struct.unpack(">b", raw[6:])[0])))
        elif t == T_MOTION:
            v = struct.unpack(">hHH", raw)
            if v[2] >= 36000:
                raise BadTLV("course out of range")
            out.append((t, v))
        elif t == T_GNSS:
            out.append((t, (raw[0], raw[1])))
        else:
            out.append((t, struct.unpack(">BH", raw)))
    return out


def parse_report(b):
    if len(b) < REPORT_FIXED:
        raise BadBody("report body of %d bytes" % len(b))
    flags, source, lat, lon, acc, age, batt, csq = struct.unpack_from(_REPORT, b, 0)
    if flags & _F_RESERVED:
        raise BadBody("reserved flag bits set")
    if source >= len(SOURCE_NAMES):
        raise BadBody("unknown position source %d" % source)
    if bool(flags & F_POSITION) != (source != SRC_NONE):
        raise BadBody("position flag disagrees with source")
    if not (-900000000 <= lat <= 900000000 and -1800000000 <= lon <= 1800000000):
        raise BadBody("coordinates out of range")
    if batt != UNKNOWN_BATTERY and batt > 100:
        raise BadBody("battery out of range")
    if csq != UNKNOWN_CSQ and csq > 31:
        raise BadBody("csq out of range")
    tlvs = _parse_tlvs(b, REPORT_FIXED, _TLV_LEN, False)
    return Report(
        source,
        lat,
        lon,
        acc,
        age,
        batt,
        csq,
        bool(flags & F_DURESS),
        bool(flags & F_BATTERY_LOW),
        bool(flags & F_CHARGING),
        bool(flags & F_TEST),
        tlvs,
    )


def parse_ack(b):
    if len(b) < 4:
        raise BadBody("ack body of %d bytes" % len(b))
    seq = struct.unpack_from(">I", b, 0)[0]
    return Ack(seq, _parse_tlvs(b, 4, _CMD_LEN, True))


# ---------------------------------------------------------------- helpers

_TLV_ORDER = (T_CELL, T_MOTION, T_GNSS, T_EVENT)


def sms_order(tlvs):
    """Canonical TLV order for a report: the first cell, motion, GNSS,
    events, unknown types, then extra cells, then Wi-Fi. The SMS encoder
    drops from the end, so a body built in this order becomes a prefix of
    itself when shortened, and the shortened SMS frame (same seq, same
    keystream) reveals nothing the full frame did not."""
    first_cell = []
    rest_cells = []
    wifi = []
    known = {T_MOTION: [], T_GNSS: [], T_EVENT: []}
    other = []
    for item in tlvs:
        t = item[0]
        if t == T_CELL:
            (rest_cells if first_cell else first_cell).append(item)
        elif t == T_WIFI:
            wifi.append(item)
        elif t in known:
            known[t].append(item)
        else:
            other.append(item)
    return first_cell + known[T_MOTION] + known[T_GNSS] + known[T_EVENT] + other + rest_cells + wifi
