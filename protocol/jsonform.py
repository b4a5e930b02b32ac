"""The JSON-friendly dict form of a frame, shared by `panic frame`, the
receiver's event feed and the vectors file.

to_dict() gives human fields (type name, lat/lon in degrees) and the exact
integers (lat_e7, lon_e7) that from_dict() reads back, so a round trip is
byte-exact on both interpreters whatever their float formatting.
"""

import binascii

from protocol.errors import EncodeError
from protocol import frame as F

_TLV_NAMES = {F.T_CELL: "cell", F.T_WIFI: "wifi", F.T_MOTION: "motion", F.T_GNSS: "gnss", F.T_EVENT: "event"}
_CMD_NAMES = {F.C_TRACKING: "tracking", F.C_STAND_DOWN: "stand_down", F.C_LISTEN_IN: "listen_in"}
EVENT_NAMES = {F.EV_BOOT: "boot", F.EV_LOW_BATTERY: "low_battery", F.EV_FAULT: "fault", F.EV_WATCHDOG: "watchdog"}


def _hex(b):
    return binascii.hexlify(b).decode()


def bssid_str(b):
    return ":".join("%02x" % x for x in b)


def _tlv_dict(t, v):
    if t == F.T_CELL:
        return {"tlv": "cell", "mcc": v[0], "mnc": v[1], "tac": v[2], "cell_id": v[3], "rsrp": v[4]}
    if t == F.T_WIFI:
        return {"tlv": "wifi", "bssid": bssid_str(v[0]), "rssi": v[1]}
    if t == F.T_MOTION:
        return {"tlv": "motion", "alt_m": v[0], "speed_cms": v[1], "course_cdeg": v[2]}
    if t == F.T_GNSS:
        return {"tlv": "gnss", "sats": v[0], "hdop_x10": v[1]}
    if t == F.T_EVENT:
        return {"tlv": "event", "code": v[0], "event": EVENT_NAMES.get(v[0], "unknown"), "detail": v[1]}
    return {"tlv": t, "hex": _hex(v)}


def _cmd_dict(t, v):
    """A downlink command TLV (only ACK bodies: an uplink TLV with the
    same number is an unknown uplink TLV, kept as hex)."""
    if t == F.C_TRACKING:
        return {"tlv": "tracking", "interval_s": v}
    if t in _CMD_NAMES:
        return {"tlv": _CMD_NAMES[t]}
    return {"tlv": t, "hex": _hex(v)}


def to_dict(fr):
    d = {"type": fr.name, "device_id": fr.device_id, "seq": fr.seq, "time": fr.time}
    b = fr.body
    if isinstance(b, F.Ack):
        d["acked_seq"] = b.acked_seq
        d["commands"] = [_cmd_dict(t, v) for t, v in b.commands]
        return d
    d["flags"] = b.flags
    d["duress"] = b.duress
    d["battery_low"] = b.battery_low
    d["charging"] = b.charging
    d["test"] = b.test
    d["source"] = F.SOURCE_NAMES[b.source]
    d["lat_e7"] = b.lat
    d["lon_e7"] = b.lon
    d["lat"] = b.lat / 1e7
    d["lon"] = b.lon / 1e7
    d["accuracy_m"] = None if b.accuracy == F.UNKNOWN_U16 else b.accuracy
    d["age_s"] = None if b.age == F.UNKNOWN_U16 else b.age
    d["battery"] = None if b.battery == F.UNKNOWN_BATTERY else b.battery
    d["csq"] = None if b.csq == F.UNKNOWN_CSQ else b.csq
    d["tlvs"] = [_tlv_dict(t, v) for t, v in b.tlvs]
    return d


def _need(d, k):
    if k not in d:
        raise EncodeError("missing field %r" % k)
    return d[k]


def _tlv_from(d):
    name = _need(d, "tlv")
    if name == "cell":
        return F.T_CELL, (_need(d, "mcc"), _need(d, "mnc"), _need(d, "tac"), _need(d, "cell_id"), _need(d, "rsrp"))
    if name == "wifi":
        s = _need(d, "bssid").replace(":", "").replace("-", "")
        try:
            b = binascii.unhexlify(s)
        except ValueError:
            raise EncodeError("bssid is not hex")
        return F.T_WIFI, (b, _need(d, "rssi"))
    if name == "motion":
        return F.T_MOTION, (_need(d, "alt_m"), _need(d, "speed_cms"), _need(d, "course_cdeg"))
    if name == "gnss":
        return F.T_GNSS, (_need(d, "sats"), _need(d, "hdop_x10"))
    if name == "event":
        return F.T_EVENT, (_need(d, "code"), _need(d, "detail"))
    if name == "tracking":
        return F.C_TRACKING, _need(d, "interval_s")
    if name == "stand_down":
        return F.C_STAND_DOWN, None
    if name == "listen_in":
        return F.C_LISTEN_IN, None
    if isinstance(name, int):
        try:
            return name, binascii.unhexlify(d.get("hex", ""))
        except ValueError:
            raise EncodeError("tlv hex is not hex")
    raise EncodeError("unknown tlv %r" % (name,))


def _e7(d, k):
    """lat_e7 or lat (degrees) as an int, or None when neither is given:
    coordinates never given are never made up (the encoder refuses a
    position source without them)."""
    if k + "_e7" in d:
        return d[k + "_e7"]
    v = d.get(k)
    if v is None:
        return None
    if not isinstance(v, (int, float)):
        raise EncodeError("%s must be a number" % k)
    return int(round(v * 1e7))


def _opt(d, k, unknown):
    v = d.get(k)
    return unknown if v is None else v


def from_dict(d):
    """Build a Frame from its dict form (what to_dict gives, or a hand-written
    subset: missing optional fields mean unknown / absent)."""
    if not isinstance(d, dict):
        raise EncodeError("frame must be a JSON object")
    name = _need(d, "type")
    ftype = F.TYPE_CODES.get(name)
    if ftype is None:
        raise EncodeError("unknown frame type %r" % (name,))
    dev = _need(d, "device_id")
    seq = _need(d, "seq")
    time = d.get("time", 0)
    if ftype == F.ACK:
        cmds = [_tlv_from(c) for c in d.get("commands", [])]
        return F.Frame(ftype, dev, seq, time, F.Ack(_need(d, "acked_seq"), cmds))
    src_name = d.get("source", "none")
    if src_name not in F.SOURCE_NAMES:
        raise EncodeError("unknown source %r" % (src_name,))
    r = F.Report(
        F.SOURCE_NAMES.index(src_name),
        _e7(d, "lat"),
        _e7(d, "lon"),
        _opt(d, "accuracy_m", F.UNKNOWN_U16),
        _opt(d, "age_s", F.UNKNOWN_U16),
        _opt(d, "battery", F.UNKNOWN_BATTERY),
        _opt(d, "csq", F.UNKNOWN_CSQ),
        bool(d.get("duress", False)),
        bool(d.get("battery_low", False)),
        bool(d.get("charging", False)),
        bool(d.get("test", False)),
        [_tlv_from(t) for t in d.get("tlvs", [])],
    )
    return F.Frame(ftype, dev, seq, time, r)
