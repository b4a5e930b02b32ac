"""`panic frame` end to end, and frames made by an independent
implementation of the spec (tools/gen_vectors.py seals with stdlib hmac and
cryptography) accepted by the decoder; tampered ones rejected."""

import json
import os
import subprocess
import sys

import pytest

from tools import gen_vectors as ref

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MASTER = bytes(range(7, 39))


def panic(*args, stdin=None):
    p = subprocess.run([sys.executable, "-m", "tools", *args], cwd=ROOT, capture_output=True, text=True, input=stdin)
    return p.returncode, p.stdout, p.stderr


def ref_alert(**kw):
    f = {"type": "ALERT", "device_id": 77, "seq": 5, "time": 1795900000, "source": "gnss", "lat_e7": -338688197,
         "lon_e7": 1512092955, "accuracy_m": 6, "age_s": 0, "battery": 70, "csq": 19, "tlvs": [ref.CELL, ref.GNSS]}
    f.update(kw)
    raw, full, _ = ref.build(MASTER, f)
    return raw, full


def test_decode_independent_frame_hex():
    raw, full = ref_alert()
    rc, out, err = panic("frame", "decode", "--key-hex", MASTER.hex(), "--hex", raw.hex())
    assert rc == 0, err
    d = json.loads(out)
    assert d["type"] == "ALERT" and d["lat"] == pytest.approx(-33.8688197) and d["lon"] == pytest.approx(151.2092955)
    for k in ("device_id", "seq", "time", "flags", "duress", "source", "accuracy_m", "age_s", "battery", "csq", "tlvs"):
        assert d[k] == full[k], k


def test_decode_independent_duress_cancel_via_sms():
    raw, _ = ref_alert(type="CANCEL", duress=True)
    rc, out, err = panic("frame", "decode", "--key-hex", MASTER.hex(), "--sms", ref.sms_text(raw))
    assert rc == 0, err
    d = json.loads(out)
    assert d["type"] == "CANCEL" and d["duress"] is True


@pytest.mark.parametrize("where", [0, 1, 9, 15, 30, -1])
def test_tampered_frames_exit_1_with_one_line(where):
    raw = bytearray(ref_alert()[0])
    raw[where] ^= 0x40
    rc, out, err = panic("frame", "decode", "--key-hex", MASTER.hex(), "--hex", raw.hex())
    assert rc == 1 and out == ""  # the check failed (exit codes: tools/errors.py)
    assert err.startswith("rejected: ") and err.count("\n") == 1


def test_wrong_key_rejected_and_key_never_printed():
    raw, _ = ref_alert()
    other = "ab" * 32
    rc, out, err = panic("frame", "decode", "--key-hex", other, "--hex", raw.hex())
    assert rc == 1 and "bad tag" in err
    assert other not in err + out and MASTER.hex() not in err + out


def test_bad_command_lines_give_clear_errors():
    assert panic("frame", "decode", "--key-hex", "zz", "--hex", "00")[0] == 2
    rc, _, err = panic("frame", "decode", "--key-hex", MASTER.hex())
    assert rc == 2 and "--hex" in err
    rc, _, err = panic("frame", "decode", "--key-hex", MASTER.hex(), "--hex", "not hex")
    assert rc == 2 and "not hex" in err
    rc, _, err = panic("frame", "decode", "--key-file", "/nonexistent/key")
    assert rc == 3 and "cannot read key file /nonexistent/key" in err


def test_encode_then_decode_round_trip(tmp_path):
    keyfile = tmp_path / "k"
    keyfile.write_text(MASTER.hex())
    _, full = ref_alert()
    rc, hexframe, err = panic("frame", "encode", "--key-file", str(keyfile), "--json", json.dumps(full))
    assert rc == 0, err
    assert hexframe.strip() == ref_alert()[0].hex()  # byte-identical to the independent sealer
    rc, text, err = panic("frame", "encode", "--key-file", str(keyfile), "--sms", "--json", "-", stdin=json.dumps(full))
    assert rc == 0 and text.startswith("PNC1 ")
    rc, out, _ = panic("frame", "decode", "--key-file", str(keyfile), "--sms", text.strip())
    assert rc == 0 and json.loads(out)["seq"] == 5


def test_encode_refuses_bad_json():
    rc, _, err = panic("frame", "encode", "--key-hex", MASTER.hex(), "--json", "{")
    assert rc == 2 and "does not parse" in err
    rc, _, err = panic("frame", "encode", "--key-hex", MASTER.hex(), "--json", '{"type": "ALERT", "device_id": 1, "seq": 1, "lat": 91}')
    assert rc == 2 and "latitude" in err
    rc, _, err = panic("frame", "encode", "--key-hex", MASTER.hex(), "--json", '{"type": "NOPE", "device_id": 1, "seq": 1}')
    assert rc == 2 and '"type" must be one of' in err and "NOPE" in err


def test_vectors_file_is_what_the_generator_writes(tmp_path, monkeypatch):
    monkeypatch.setattr(ref, "OUT", str(tmp_path / "v.json"))
    ref.main()
    with open(os.path.join(ROOT, "protocol", "vectors.json")) as a, open(tmp_path / "v.json") as b:
        assert a.read() == b.read(), "protocol/vectors.json is stale: run `make vectors` and review the diff"
    json.load(open(tmp_path / "v.json"))


def test_decode_shows_an_uplink_tlv_numbered_like_a_command_as_hex():
    # an uplink TLV 0x81 is not a tracking command: decoding it must not crash
    from protocol import frame as F
    from protocol import jsonform
    from protocol.crypto import DeviceKeys

    keys = DeviceKeys(bytes(32))
    rep = F.Report(F.SRC_GNSS, 515007292, -1246254, 5, 0, 80, 20, tlvs=[(0x81, b"\x00\x3c"), (0x82, b"")])
    fr = F.decode(keys, F.encode(keys, F.Frame(F.ALERT, 1, 1, 0, rep)), F.UPLINK)
    d = jsonform.to_dict(fr)
    assert d["tlvs"] == [{"tlv": 0x81, "hex": "003c"}, {"tlv": 0x82, "hex": ""}]
    assert json.loads(json.dumps(d)) == d
