"""SMS text form of a frame: 'PNC1 ' + standard base64 (with padding).

A frame of at most 114 bytes fits one 160-character SMS. to_sms() applies
the size rule of the spec: drop Wi-Fi TLVs (last first), then cell TLVs
beyond the first (last first), re-sealing the same header each time, until
it fits. Build report TLVs with frame.sms_order() so the dropped TLVs are
the trailing ones.
"""

import binascii

from protocol.errors import BadSms, EncodeError
from protocol.frame import Frame, Report, T_CELL, T_WIFI, encode

PREFIX = "PNC1 "
SMS_MAX_CHARS = 160
SMS_MAX_FRAME = 114  # 5 + 4 * ceil(114 / 3) == 157 <= 160
_B64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def text_of(frame_bytes):
    b64 = binascii.b2a_base64(frame_bytes)
    return PREFIX + b64.decode().strip()


def to_sms(keys, frame):
    """Encode a frame for SMS, shortening a report body if it must.

    Returns (text, frame_actually_sent). Raises EncodeError when even the
    shortened frame cannot fit (a bug: only oversized unknown TLVs or many
    events can do that)."""
    f = frame
    while True:
        raw = encode(keys, f)
        if len(raw) <= SMS_MAX_FRAME:
            return text_of(raw), f
        body = f.body
        if not isinstance(body, Report):
            raise EncodeError("downlink frame too big for SMS")
        tlvs = list(body.tlvs)
        idx = _last_index(tlvs, T_WIFI, 0)
        if idx < 0:
            idx = _last_index(tlvs, T_CELL, 1)
        if idx < 0:
            raise EncodeError("frame of %d bytes cannot fit one SMS" % len(raw))
        tlvs.pop(idx)
        r = Report(
            body.source, body.lat, body.lon, body.accuracy, body.age, body.battery, body.csq,
            body.duress, body.battery_low, body.charging, body.test, tlvs,
        )
        f = Frame(f.ftype, f.device_id, f.seq, f.time, r)


def _last_index(tlvs, t, keep):
    """Index of the last TLV of type t, if more than `keep` of them exist."""
    idxs = [i for i, (tt, _) in enumerate(tlvs) if tt == t]
    if len(idxs) > keep:
        return idxs[-1]
    return -1


def from_sms(text):
    """Frame bytes from an SMS text. Raises BadSms on anything malformed."""
    if not isinstance(text, str):
        raise BadSms("sms text must be a string")
    if len(text) > SMS_MAX_CHARS:
        raise BadSms("sms of %d characters" % len(text))
    t = text.strip()
    if not t.startswith(PREFIX):
        raise BadSms("sms does not start with 'PNC1 '")
    b = t[len(PREFIX):].encode()
    if len(b) == 0 or len(b) % 4:
        raise BadSms("base64 length %d is not a multiple of 4" % len(b))
    pad = 0
    for i in range(len(b)):
        c = b[i]
        if c == 61:  # '='
            pad += 1
            continue
        if pad or c not in _B64:
            raise BadSms("invalid base64 character at %d" % i)
    if pad > 2:
        raise BadSms("bad base64 padding")
    try:
        return binascii.a2b_base64(b)
    except ValueError:
        raise BadSms("bad base64")
