"""Generate protocol/vectors.json from an independent implementation.

This script does not import protocol/: it seals frames with the standard
library's hmac and `cryptography`'s AES-CTR, straight from the text of
docs/protocol.md, so the vectors check protocol/ against a second reading
of the spec. Run `make vectors` after a deliberate change to the spec
(never to make a failing test pass).
"""

import base64
import hashlib
import hmac
import json
import os
import random
import struct
import sys

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "protocol", "vectors.json")

TYPES = {"ALERT": 1, "TRACK": 2, "CANCEL": 3, "HEARTBEAT": 4, "TEST": 5, "STATUS": 6, "ACK": 0x80}
SOURCES = ["none", "gnss", "last_fix", "cell", "wifi"]
EVENTS = {1: "boot", 2: "low_battery", 3: "fault", 4: "watchdog"}


def keys(master):
    def derive(label):
        return hmac.new(master, label + b"\x01", hashlib.sha256).digest()

    return {
        "up": (derive(b"pnc1 enc up")[:16], derive(b"pnc1 mac up")),
        "down": (derive(b"pnc1 enc down")[:16], derive(b"pnc1 mac down")),
    }


def seal(master, ftype, dev, seq, t, plain, version=1, direction=None, body_len=None):
    d = ("down" if ftype >= 0x80 else "up") if direction is None else direction
    kenc, kmac = keys(master)[d]
    block0 = struct.pack(">II", dev, seq) + bytes([0 if d == "up" else 1, 0, 0, 0]) + bytes(4)
    enc = Cipher(algorithms.AES(kenc), modes.CTR(block0)).encryptor()
    ct = enc.update(plain) + enc.finalize()
    n = len(plain) if body_len is None else body_len
    head = struct.pack(">BBIIIB", version, ftype, dev, seq, t, n)
    return head + ct + hmac.new(kmac, head + ct, hashlib.sha256).digest()[:16]


def tlv(t, v):
    return bytes([t, len(v)]) + v


def report(f):
    """Plaintext and full dict form of an uplink report from a partial dict."""
    src = f.get("source", "none")
    flags = (1 if src != "none" else 0) | (2 if f.get("duress") else 0) | (4 if f.get("battery_low") else 0)
    flags |= (8 if f.get("charging") else 0) | (16 if f.get("test") else 0)
    lat, lon = f.get("lat_e7", 0), f.get("lon_e7", 0)
    acc, age = f.get("accuracy_m"), f.get("age_s")
    batt, csq = f.get("battery"), f.get("csq")
    body = struct.pack(
        ">BBiiHHBB", flags, SOURCES.index(src), lat, lon,
        0xFFFF if acc is None else acc, 0xFFFF if age is None else age,
        0xFF if batt is None else batt, 99 if csq is None else csq,
    )
    tl = []
    for x in f.get("tlvs", []):
        k = x["tlv"]
        if k == "cell":
            body += tlv(1, struct.pack(">HHIIh", x["mcc"], x["mnc"], x["tac"], x["cell_id"], x["rsrp"]))
            tl.append(dict(x))
        elif k == "wifi":
            body += tlv(2, bytes.fromhex(x["bssid"].replace(":", "")) + struct.pack(">b", x["rssi"]))
            tl.append(dict(x))
        elif k == "motion":
            body += tlv(3, struct.pack(">hHH", x["alt_m"], x["speed_cms"], x["course_cdeg"]))
            tl.append(dict(x))
        elif k == "gnss":
            body += tlv(4, bytes([x["sats"], x["hdop_x10"]]))
            tl.append(dict(x))
        elif k == "event":
            body += tlv(5, struct.pack(">BH", x["code"], x["detail"]))
            tl.append({"tlv": "event", "code": x["code"], "event": EVENTS.get(x["code"], "unknown"), "detail": x["detail"]})
        else:
            body += tlv(k, bytes.fromhex(x["hex"]))
            tl.append(dict(x))
    full = {
        "flags": flags, "duress": bool(f.get("duress")), "battery_low": bool(f.get("battery_low")),
        "charging": bool(f.get("charging")), "test": bool(f.get("test")), "source": src,
        "lat_e7": lat, "lon_e7": lon, "lat": lat / 1e7, "lon": lon / 1e7,
        "accuracy_m": acc, "age_s": age, "battery": batt, "csq": csq, "tlvs": tl,
    }
    return body, full


def ack(f):
    body = struct.pack(">I", f["acked_seq"])
    cmds = []
    for c in f.get("commands", []):
        k = c["tlv"]
        if k == "tracking":
            body += tlv(0x81, struct.pack(">H", c["interval_s"]))
        elif k == "stand_down":
            body += tlv(0x82, b"")
        elif k == "listen_in":
            body += tlv(0x83, b"")
        else:
            body += tlv(k, bytes.fromhex(c["hex"]))
        cmds.append(dict(c))
    return body, {"acked_seq": f["acked_seq"], "commands": cmds}


def build(master, f):
    ftype = TYPES[f["type"]]
    plain, full = (ack(f) if ftype >= 0x80 else report(f))
    head = {"type": f["type"], "device_id": f["device_id"], "seq": f["seq"], "time": f.get("time", 0)}
    head.update(full)
    return seal(master, ftype, f["device_id"], f["seq"], head["time"], plain), head, plain


def sms_text(raw):
    return "PNC1 " + base64.b64encode(raw).decode()


def sms_shorten(master, f):
    """The spec's size rule, independently: drop Wi-Fi (last first), then
    cells beyond the first (last first), until the frame is <= 114 bytes."""
    f = json.loads(json.dumps(f))
    while True:
        raw, full, _ = build(master, f)
        if len(raw) <= 114:
            return sms_text(raw), full
        tl = f["tlvs"]
        w = [i for i, x in enumerate(tl) if x["tlv"] == "wifi"]
        c = [i for i, x in enumerate(tl) if x["tlv"] == "cell"]
        if w:
            tl.pop(w[-1])
        elif len(c) > 1:
            tl.pop(c[-1])
        else:
            raise SystemExit("cannot shorten %r" % f)


CELL = {"tlv": "cell", "mcc": 234, "mnc": 15, "tac": 0x1A2B, "cell_id": 0x01C2D3E4, "rsrp": -97}
CELL2 = {"tlv": "cell", "mcc": 234, "mnc": 15, "tac": 0x1A2B, "cell_id": 0x01C2D3E5, "rsrp": -109}
CELL3 = {"tlv": "cell", "mcc": 234, "mnc": 30, "tac": 0x0042, "cell_id": 0x00000F01, "rsrp": -121}
WIFI = [{"tlv": "wifi", "bssid": "a4:2b:b0:%02x:10:7e" % i, "rssi": -48 - 9 * i} for i in range(3)]
MOTION = {"tlv": "motion", "alt_m": 35, "speed_cms": 140, "course_cdeg": 27150}
GNSS = {"tlv": "gnss", "sats": 9, "hdop_x10": 11}


def valid_specs():
    rnd = random.Random(20261128)
    T = 1795900000
    L = {"lat_e7": 515007292, "lon_e7": -1246254}
    v = []

    def add(name, **f):
        v.append((name, f))

    add("alert_gnss_london", type="ALERT", device_id=1, seq=1, time=T, source="gnss", accuracy_m=4, age_s=0, battery=87, csq=21, tlvs=[CELL, MOTION, GNSS], **L)
    add("alert_negative_both", type="ALERT", device_id=2, seq=10, time=T, source="gnss", lat_e7=-346037232, lon_e7=-583815704, accuracy_m=6, age_s=1, battery=55, csq=14)
    add("alert_negative_lat", type="ALERT", device_id=3, seq=11, time=T, source="gnss", lat_e7=-338688197, lon_e7=1512092955, accuracy_m=3, age_s=0, battery=99, csq=30)
    add("alert_zero_zero_position", type="ALERT", device_id=4, seq=12, time=T, source="gnss", lat_e7=0, lon_e7=0, accuracy_m=10, age_s=0, battery=50, csq=10)
    add("alert_no_position", type="ALERT", device_id=5, seq=13, time=T, battery=40, csq=7, tlvs=[CELL])
    add("alert_last_fix_aged", type="ALERT", device_id=6, seq=14, time=T, source="last_fix", accuracy_m=25, age_s=1834, battery=76, csq=18, tlvs=[CELL, GNSS], **L)
    add("alert_last_fix_age_unknown", type="ALERT", device_id=6, seq=15, time=T, source="last_fix", accuracy_m=30, battery=76, csq=18, **L)
    add("alert_cell_source", type="ALERT", device_id=7, seq=16, time=T, source="cell", lat_e7=514990000, lon_e7=-1300000, accuracy_m=1500, age_s=0, csq=12, tlvs=[CELL, CELL2])
    add("alert_wifi_source_three_bssids", type="ALERT", device_id=8, seq=17, time=T, source="wifi", accuracy_m=40, age_s=0, battery=63, csq=25, tlvs=[CELL] + WIFI, **L)
    add("alert_clock_unknown", type="ALERT", device_id=9, seq=18, time=0, source="gnss", accuracy_m=5, age_s=0, battery=12, battery_low=True, csq=9, **L)
    add("alert_all_unknown", type="ALERT", device_id=10, seq=0, time=0)
    add("alert_extremes_north_east", type="ALERT", device_id=0xFFFFFFFF, seq=0xFFFFFFFF, time=0xFFFFFFFF, source="gnss", lat_e7=900000000, lon_e7=1800000000, accuracy_m=0xFFFE, age_s=0xFFFE, battery=100, csq=31)
    add("alert_extremes_south_west", type="ALERT", device_id=0, seq=1, time=1, source="gnss", lat_e7=-900000000, lon_e7=-1800000000, accuracy_m=0, age_s=0, battery=0, csq=0)
    add("alert_on_charger", type="ALERT", device_id=11, seq=19, time=T, source="gnss", accuracy_m=8, age_s=2, battery=91, charging=True, csq=20, **L)
    add("track_gnss_motion", type="TRACK", device_id=1, seq=2, time=T + 30, source="gnss", accuracy_m=3, age_s=0, battery=86, csq=22, tlvs=[CELL, {"tlv": "motion", "alt_m": -12, "speed_cms": 0, "course_cdeg": 0}, GNSS], lat_e7=515010000, lon_e7=-1250000)
    add("track_indoor_last_fix", type="TRACK", device_id=1, seq=3, time=T + 60, source="last_fix", accuracy_m=12, age_s=45, battery=86, csq=19, tlvs=[CELL], **L)
    add("track_cell_only", type="TRACK", device_id=1, seq=4, time=T + 90, source="cell", lat_e7=514980000, lon_e7=-1260000, accuracy_m=900, age_s=0, csq=11, tlvs=[CELL])
    add("cancel_plain", type="CANCEL", device_id=1, seq=5, time=T + 120, source="gnss", accuracy_m=4, age_s=0, battery=85, csq=21, **L)
    add("cancel_duress", type="CANCEL", device_id=1, seq=6, time=T + 121, source="gnss", duress=True, accuracy_m=4, age_s=0, battery=85, csq=21, **L)
    add("cancel_duress_no_position", type="CANCEL", device_id=12, seq=7, time=T, duress=True, battery=40, csq=8, tlvs=[CELL])
    add("heartbeat_minimal", type="HEARTBEAT", device_id=13, seq=100, time=T)
    add("heartbeat_battery_low", type="HEARTBEAT", device_id=13, seq=101, time=T + 3600, battery=9, battery_low=True, csq=17)
    add("heartbeat_charging", type="HEARTBEAT", device_id=13, seq=102, time=T + 7200, battery=45, charging=True, csq=17, tlvs=[CELL])
    add("test_alert", type="TEST", device_id=14, seq=1, time=T, source="gnss", test=True, accuracy_m=5, age_s=0, battery=100, csq=25, tlvs=[CELL, GNSS], **L)
    add("test_alert_no_fix", type="TEST", device_id=14, seq=2, time=T, test=True, battery=100, csq=25)
    add("status_boot", type="STATUS", device_id=15, seq=2048, time=T, battery=70, csq=16, tlvs=[{"tlv": "event", "code": 1, "detail": 3}])
    add("status_low_battery", type="STATUS", device_id=15, seq=2049, time=T, battery=8, battery_low=True, csq=16, tlvs=[{"tlv": "event", "code": 2, "detail": 342}])
    add("status_fault", type="STATUS", device_id=15, seq=2050, time=T, battery=70, csq=16, tlvs=[{"tlv": "event", "code": 3, "detail": 0x0102}])
    add("status_watchdog", type="STATUS", device_id=15, seq=2051, time=0, tlvs=[{"tlv": "event", "code": 4, "detail": 0}, {"tlv": "event", "code": 3, "detail": 7}])
    add("status_unknown_event_code", type="STATUS", device_id=15, seq=2052, time=T, tlvs=[{"tlv": "event", "code": 200, "detail": 65535}])
    add("alert_unknown_tlv_ignored", type="ALERT", device_id=16, seq=1, time=T, source="gnss", accuracy_m=5, age_s=0, battery=60, csq=20, tlvs=[CELL, {"tlv": 0x7F, "hex": "deadbeef"}, {"tlv": 0x20, "hex": ""}], **L)
    pad_len = 255 - 16 - 16 - 2
    add("alert_maximal_body", type="ALERT", device_id=17, seq=1, time=T, source="gnss", accuracy_m=5, age_s=0, battery=60, csq=20, tlvs=[CELL, {"tlv": 0x40, "hex": "ab" * pad_len}], **L)
    add("alert_full_tlv_set", type="ALERT", device_id=18, seq=77, time=T, source="gnss", accuracy_m=3, age_s=0, battery=81, csq=23, tlvs=[CELL, MOTION, GNSS, CELL2, CELL3] + WIFI, **L)
    add("ack_bare", type="ACK", device_id=1, seq=1, time=T + 1, acked_seq=1)
    add("ack_tracking_60", type="ACK", device_id=1, seq=2, time=T + 31, acked_seq=2, commands=[{"tlv": "tracking", "interval_s": 60}])
    add("ack_tracking_stop", type="ACK", device_id=1, seq=3, time=T + 61, acked_seq=3, commands=[{"tlv": "tracking", "interval_s": 0}])
    add("ack_stand_down", type="ACK", device_id=1, seq=4, time=T + 91, acked_seq=4, commands=[{"tlv": "stand_down"}])
    add("ack_listen_in", type="ACK", device_id=1, seq=5, time=T + 95, acked_seq=5, commands=[{"tlv": "listen_in"}])
    add("ack_all_commands", type="ACK", device_id=1, seq=6, time=T + 96, acked_seq=6, commands=[{"tlv": "tracking", "interval_s": 10}, {"tlv": "listen_in"}, {"tlv": "stand_down"}])
    add("ack_unknown_command_ignored", type="ACK", device_id=1, seq=7, time=T + 97, acked_seq=7, commands=[{"tlv": 0x9A, "hex": "0102"}])
    add("ack_clock_unknown_max_seq", type="ACK", device_id=0xFFFFFFFF, seq=0xFFFFFFFF, time=0, acked_seq=0xFFFFFFFF)
    for i in range(6):
        lat = rnd.randint(-900000000, 900000000)
        lon = rnd.randint(-1800000000, 1800000000)
        add("random_alert_%d" % i, type=rnd.choice(["ALERT", "TRACK", "CANCEL"]), device_id=rnd.getrandbits(32), seq=rnd.getrandbits(32), time=rnd.getrandbits(32),
            source=rnd.choice(SOURCES[1:]), lat_e7=lat, lon_e7=lon, accuracy_m=rnd.randint(0, 5000), age_s=rnd.randint(0, 600), battery=rnd.randint(0, 100), csq=rnd.randint(0, 31),
            duress=rnd.random() < 0.3, tlvs=[CELL] + WIFI[: rnd.randint(0, 3)])
    return v


def master_for(i):
    if i % 3 == 0:
        return bytes(range(32))
    if i % 3 == 1:
        return b"\xff" * 32
    return hashlib.sha256(b"wearable-panic vector key %d" % i).digest()


def invalid_specs(master):
    T = 1795900000
    good, _, plain = build(master, {"type": "ALERT", "device_id": 1, "seq": 9, "time": T, "source": "gnss", "lat_e7": 1, "lon_e7": 2, "accuracy_m": 3, "age_s": 0, "battery": 50, "csq": 10, "tlvs": [CELL]})
    other = hashlib.sha256(b"another device").digest()
    rep = bytearray(plain[:16])

    def body(b, ftype=1):
        return seal(master, ftype, 1, 9, T, bytes(b))

    def flip(raw, i):
        b = bytearray(raw)
        b[i] ^= 0x01
        return bytes(b)

    bad = bytearray(rep)
    bad[0] |= 0x20
    reserved = body(bad)
    bad = bytearray(rep)
    bad[1] = 0
    posflag = body(bad)
    bad = bytearray(rep)
    bad[1] = 5
    badsrc = body(bad)
    bad = bytearray(rep)
    bad[2:6] = struct.pack(">i", 900000001)
    badlat = body(bad)
    bad = bytearray(rep)
    bad[14] = 101
    badbatt = body(bad)
    bad = bytearray(rep)
    bad[15] = 32
    badcsq = body(bad)
    yield "truncated_by_one", good[:-1], "BadLength"
    yield "extended_by_one", good + b"\x00", "BadLength"
    yield "shorter_than_header", good[:10], "BadLength"
    yield "empty", b"", "BadLength"
    yield "body_len_lies", seal(master, 1, 1, 9, T, plain, body_len=len(plain) - 1), "BadLength"
    yield "version_2", seal(master, 1, 1, 9, T, plain, version=2), "UnknownVersion"
    yield "version_0", seal(master, 1, 1, 9, T, plain, version=0), "UnknownVersion"
    yield "unknown_type_0x07", seal(master, 7, 1, 9, T, plain), "UnknownType"
    yield "unknown_type_0x81", seal(master, 0x81, 1, 9, T, plain), "UnknownType"
    yield "tag_bit_flipped", flip(good, len(good) - 1), "BadTag"
    yield "body_bit_flipped", flip(good, 20), "BadTag"
    yield "header_seq_flipped", flip(good, 9), "BadTag"
    yield "cross_device_key", seal(other, 1, 1, 9, T, plain), "BadTag"
    yield "uplink_sealed_with_downlink_keys", seal(master, 1, 1, 9, T, plain, direction="down"), "BadTag"
    yield "empty_uplink_body", body(b""), "BadBody"
    yield "short_uplink_body", body(rep[:15]), "BadBody"
    yield "reserved_flag_bits", reserved, "BadBody"
    yield "position_flag_without_source", posflag, "BadBody"
    yield "unknown_source", badsrc, "BadBody"
    yield "latitude_out_of_range", badlat, "BadBody"
    yield "battery_101", badbatt, "BadBody"
    yield "csq_32", badcsq, "BadBody"
    yield "tlv_runs_past_body", body(rep + b"\x01\x0e" + bytes(13)), "BadTLV"
    yield "tlv_header_cut", body(rep + b"\x01"), "BadTLV"
    yield "cell_tlv_wrong_length", body(rep + b"\x01\x0d" + bytes(13)), "BadTLV"
    yield "four_wifi_tlvs", body(rep + (b"\x02\x07" + bytes(7)) * 4), "BadTLV"
    yield "course_36000", body(rep + b"\x03\x06" + struct.pack(">hHH", 0, 0, 36000)), "BadTLV"
    yield "ack_body_too_short", seal(master, 0x80, 1, 9, T, b"\x00\x00\x09"), "BadBody"
    yield "ack_tracking_wrong_length", seal(master, 0x80, 1, 9, T, b"\x00\x00\x00\x09\x81\x01\x05"), "BadTLV"
    yield "ack_listen_in_with_value", seal(master, 0x80, 1, 9, T, b"\x00\x00\x00\x09\x83\x01\x05"), "BadTLV"


def main():
    vectors = []
    for i, (name, f) in enumerate(valid_specs()):
        m = master_for(i)
        raw, full, _ = build(m, f)
        vectors.append({"name": name, "kind": "frame", "key": m.hex(), "frame": full, "hex": raw.hex(),
                        "sms": sms_text(raw) if len(raw) <= 114 else None})
    m = master_for(1)
    big = {"type": "ALERT", "device_id": 21, "seq": 5, "time": 1795900000, "source": "gnss", "lat_e7": -338688197, "lon_e7": 1512092955,
           "accuracy_m": 6, "age_s": 0, "battery": 70, "csq": 19, "tlvs": [CELL, MOTION, GNSS, CELL2, CELL3] + WIFI}
    for name, f in [
        ("sms_alert_drops_wifi_then_cells", big),
        ("sms_alert_drops_some_wifi", dict(big, tlvs=[CELL, MOTION, GNSS, CELL2] + WIFI)),
        ("sms_cancel_duress_fits", dict(big, type="CANCEL", duress=True, tlvs=[CELL])),
        ("sms_track_drops_wifi", dict(big, type="TRACK", seq=6, tlvs=[CELL, MOTION, GNSS, CELL2, {"tlv": "event", "code": 3, "detail": 1}] + WIFI)),
    ]:
        text, sent = sms_shorten(m, f)
        full = build(m, f)[1]
        vectors.append({"name": name, "kind": "sms", "key": m.hex(), "frame": full, "sms": text, "sent": sent})
    for name, raw, err in invalid_specs(master_for(0)):
        vectors.append({"name": "invalid_" + name, "kind": "invalid", "key": master_for(0).hex(), "hex": raw.hex(), "error": err})
    for name, text in [("sms_no_prefix", "PNC2 AQE="), ("sms_bad_base64_char", "PNC1 AQ*B"), ("sms_bad_length", "PNC1 AQEAA"),
                       ("sms_too_long", "PNC1 " + "A" * 160), ("sms_padding_in_middle", "PNC1 AQ==AQEA")]:
        vectors.append({"name": "invalid_" + name, "kind": "invalid_sms", "sms": text, "error": "BadSms"})
    lines = ['{"spec": "protocol-v1", "generator": "tools/gen_vectors.py", "vectors": [']
    for i, v in enumerate(vectors):
        lines.append(json.dumps(v, separators=(", ", ": ")) + ("," if i < len(vectors) - 1 else ""))
    lines.append("]}")
    with open(OUT, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    kinds = {}
    for v in vectors:
        kinds[v["kind"]] = kinds.get(v["kind"], 0) + 1
    print("wrote %d vectors to %s: %s" % (len(vectors), os.path.relpath(OUT), kinds))


if __name__ == "__main__":
    sys.exit(main())
