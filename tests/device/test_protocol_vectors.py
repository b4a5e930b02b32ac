"""Every vector in protocol/vectors.json, on CPython and on MicroPython."""

from mpcheck import hexs, load_vectors, raises, unhex

from protocol import errors, frame, jsonform, sms
from protocol.crypto import DeviceKeys

_last = [None, None]


def keys_for(hexkey):
    # one key cached: a table of every key would not fit a 96 KB heap
    if _last[0] != hexkey:
        _last[1] = None
        _last[1] = DeviceKeys(unhex(hexkey))
        _last[0] = hexkey
    return _last[1]


def same_dict(got, want, name):
    for k in want:
        if k in ("lat", "lon"):
            assert abs(got[k] - want[k]) < 1e-9, (name, k)
        else:
            assert got[k] == want[k], (name, k, got[k], want[k])
    assert sorted(got.keys()) == sorted(want.keys()), name


def test_vector_counts():
    kinds = {}
    for v in load_vectors():
        kinds[v["kind"]] = kinds.get(v["kind"], 0) + 1
    assert kinds["frame"] + kinds["sms"] >= 40, kinds
    assert kinds["invalid"] + kinds["invalid_sms"] >= 10, kinds


def test_valid_frames_encode_byte_exact():
    n = 0
    for v in load_vectors():
        if v["kind"] != "frame":
            continue
        k = keys_for(v["key"])
        got = frame.encode(k, jsonform.from_dict(v["frame"]))
        assert hexs(got) == v["hex"], v["name"]
        n += 1
    assert n >= 40


def test_valid_frames_decode_to_expected_fields():
    for v in load_vectors():
        if v["kind"] != "frame":
            continue
        fr = frame.decode(keys_for(v["key"]), unhex(v["hex"]))
        same_dict(jsonform.to_dict(fr), v["frame"], v["name"])


def test_sms_text_of_fitting_frames():
    n = 0
    for v in load_vectors():
        if v["kind"] != "frame" or not v["sms"]:
            continue
        k = keys_for(v["key"])
        text, sent = sms.to_sms(k, jsonform.from_dict(v["frame"]))
        assert text == v["sms"], v["name"]
        assert len(text) <= 160
        assert hexs(sms.from_sms(text)) == v["hex"], v["name"]
        n += 1
    assert n > 20


def test_sms_size_rule_drops_wifi_then_extra_cells():
    n = 0
    for v in load_vectors():
        if v["kind"] != "sms":
            continue
        k = keys_for(v["key"])
        text, sent = sms.to_sms(k, jsonform.from_dict(v["frame"]))
        assert text == v["sms"], v["name"]
        assert len(text) <= 160
        fr = frame.decode(k, sms.from_sms(text))
        same_dict(jsonform.to_dict(fr), v["sent"], v["name"])
        n += 1
    assert n >= 3


def test_invalid_frames_raise_the_named_error():
    n = 0
    for v in load_vectors():
        if v["kind"] != "invalid":
            continue
        exc = errors.ERRORS[v["error"]]
        e = raises(exc, frame.decode, keys_for(v["key"]), unhex(v["hex"]))
        assert isinstance(e, errors.ProtocolError)
        n += 1
    assert n >= 10


def test_invalid_sms_rejected():
    n = 0
    for v in load_vectors():
        if v["kind"] == "invalid_sms":
            raises(errors.BadSms, sms.from_sms, v["sms"])
            n += 1
    assert n >= 3
