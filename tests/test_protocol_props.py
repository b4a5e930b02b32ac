"""Properties of protocol v1, checked with hypothesis on CPython."""

import hashlib
import hmac as std_hmac
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import frame as F
from protocol import replay, sms
from protocol.crypto import DeviceKeys, Hmac
from protocol.errors import ProtocolError

KEY_A = DeviceKeys(bytes(range(32)))
KEY_B = DeviceKeys(bytes(range(100, 132)))

u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
cell = st.tuples(u16, u16, u32, u32, st.integers(-32768, 32767)).map(lambda v: (F.T_CELL, v))
wifi = st.tuples(st.binary(min_size=6, max_size=6), st.integers(-128, 127)).map(lambda v: (F.T_WIFI, v))
motion = st.tuples(st.integers(-32768, 32767), u16, st.integers(0, 35999)).map(lambda v: (F.T_MOTION, v))
gnss = st.tuples(st.integers(0, 255), st.integers(0, 255)).map(lambda v: (F.T_GNSS, v))
event = st.tuples(st.integers(0, 255), u16).map(lambda v: (F.T_EVENT, v))
unknown = st.tuples(st.integers(0x06, 0xFF), st.binary(max_size=20))


@st.composite
def reports(draw):
    tl = draw(st.lists(st.one_of(cell, motion, gnss, event, unknown), max_size=6))
    tl += draw(st.lists(wifi, max_size=3))
    source = draw(st.integers(0, 4))
    lat, lon = None, None  # source 0: no coordinates (position semantics, docs/protocol.md)
    if source:
        lat = draw(st.integers(-900000000, 900000000))
        lon = draw(st.integers(-1800000000, 1800000000))
        if source >= F.SRC_CELL and lat == lon == 0:
            lon = 1  # (0, 0) from a cell or Wi-Fi source is the refused placeholder
    r = F.Report(
        source,
        lat,
        lon,
        draw(u16),
        draw(u16),
        draw(st.one_of(st.integers(0, 100), st.just(0xFF))),
        draw(st.one_of(st.integers(0, 31), st.just(99))),
        draw(st.booleans()),
        draw(st.booleans()),
        draw(st.booleans()),
        draw(st.booleans()),
        draw(st.permutations(tl)),
    )
    return r


@st.composite
def uplinks(draw):
    return F.Frame(draw(st.sampled_from([1, 2, 3, 4, 5, 6])), draw(u32), draw(u32), draw(u32), draw(reports()))


@st.composite
def acks(draw):
    cmds = draw(st.lists(st.one_of(
        u16.map(lambda v: (F.C_TRACKING, v)),
        st.just((F.C_STAND_DOWN, None)),
        st.just((F.C_LISTEN_IN, None)),
        st.tuples(st.integers(0x84, 0xFF), st.binary(max_size=8)),
    ), max_size=5))
    return F.Frame(F.ACK, draw(u32), draw(u32), draw(u32), F.Ack(draw(u32), cmds))


frames = st.one_of(uplinks(), acks())


@settings(max_examples=300)
@given(frames)
def test_round_trip(fr):
    assert F.decode(KEY_A, F.encode(KEY_A, fr)) == fr


@settings(max_examples=200)
@given(frames, st.data())
def test_any_single_bit_flip_is_rejected(fr, data):
    raw = bytearray(F.encode(KEY_A, fr))
    bit = data.draw(st.integers(0, len(raw) * 8 - 1))
    raw[bit // 8] ^= 1 << (bit % 8)
    try:
        F.decode(KEY_A, bytes(raw))
    except ProtocolError:
        return
    raise AssertionError("flipped bit %d accepted" % bit)


@settings(max_examples=200)
@given(frames, st.data())
def test_truncation_and_extension_rejected(fr, data):
    raw = F.encode(KEY_A, fr)
    cut = data.draw(st.integers(0, len(raw) - 1))
    extra = data.draw(st.binary(min_size=1, max_size=40))
    for bad in (raw[:cut], raw + extra):
        try:
            F.decode(KEY_A, bad)
        except ProtocolError:
            continue
        raise AssertionError("altered length accepted")


@settings(max_examples=200)
@given(frames)
def test_frame_of_one_device_never_verifies_under_another(fr):
    raw = F.encode(KEY_A, fr)
    try:
        F.decode(KEY_B, raw)
    except ProtocolError:
        return
    raise AssertionError("cross-device frame accepted")


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_protocol_errors(data):
    try:
        F.decode(KEY_A, data)
    except ProtocolError:
        pass


@settings(max_examples=300)
@given(st.lists(u32, min_size=1, max_size=200))
def test_replay_window_accepts_each_seq_once(seqs):
    w = replay.ReplayWindow()
    accepted = []
    for s in seqs:
        verdict = w.check(s)
        if verdict == replay.NEW:
            w.mark(s)
            accepted.append(s)
        elif verdict == replay.DUPLICATE:
            assert s in accepted
        else:
            assert s <= w.highest - replay.WINDOW
    assert len(accepted) == len(set(accepted))
    # anything accepted and still inside the window is now a duplicate
    for s in accepted:
        if s > w.highest - replay.WINDOW:
            assert w.check(s) == replay.DUPLICATE


@settings(max_examples=200)
@given(uplinks())
def test_alert_track_cancel_always_fit_one_sms(fr):
    fr.body.tlvs = F.sms_order([t for t in fr.body.tlvs if t[0] in (F.T_CELL, F.T_WIFI, F.T_MOTION, F.T_GNSS)])
    for t in (F.ALERT, F.TRACK, F.CANCEL):
        fr.ftype = t
        text, sent = sms.to_sms(KEY_A, fr)
        assert len(text) <= 160
        got = F.decode(KEY_A, sms.from_sms(text))
        assert got.seq == fr.seq and got.body.lat == (fr.body.lat or 0) and got.body.duress == fr.body.duress


@settings(max_examples=200)
@given(st.binary(max_size=200), st.binary(max_size=300))
def test_hmac_matches_stdlib(key, msg):
    assert Hmac(key).digest(msg) == std_hmac.new(key, msg, hashlib.sha256).digest()


def test_counter_block_layout():
    assert F.counter_block(0x01020304, 0x0A0B0C0D, 1) == bytes.fromhex("010203040a0b0c0d01000000") + struct.pack(">I", 0)
