"""Frame behaviour beyond the vectors: encode refuses what the spec forbids,
replay window, SMS decoding, header peek."""

from mpcheck import raises

from protocol import frame as F
from protocol import replay, sms
from protocol.crypto import DeviceKeys
from protocol.errors import BadLength, BadSms, BadTag, EncodeError, ProtocolError, UnknownType

K = DeviceKeys(bytes(range(32)))
K2 = DeviceKeys(bytes(range(1, 33)))


def alert(**kw):
    r = F.Report(F.SRC_GNSS, 515007292, -1246254, 5, 0, 80, 20, tlvs=[(F.T_CELL, (234, 15, 1, 2, -90))])
    for k, v in kw.items():
        setattr(r, k, v)
    return F.Frame(F.ALERT, 42, 7, 1795900000, r)


def test_round_trip_every_uplink_type():
    for t in (F.ALERT, F.TRACK, F.CANCEL, F.HEARTBEAT, F.TEST, F.STATUS):
        fr = alert()
        fr.ftype = t
        assert F.decode(K, F.encode(K, fr)) == fr


def test_duress_cancel_same_size_and_type_as_plain_cancel():
    a = alert()
    a.ftype = F.CANCEL
    b = alert(duress=True)
    b.ftype = F.CANCEL
    ra, rb = F.encode(K, a), F.encode(K, b)
    assert len(ra) == len(rb) and ra[:15] == rb[:15]
    assert F.decode(K, rb).body.duress and not F.decode(K, ra).body.duress


def test_encode_refuses_out_of_range():
    raises(EncodeError, F.encode, K, alert(lat=900000001))
    raises(EncodeError, F.encode, K, alert(battery=101))
    raises(EncodeError, F.encode, K, alert(csq=40))
    raises(EncodeError, F.encode, K, alert(tlvs=[(F.T_WIFI, (b"123456", -50))] * 4))
    raises(EncodeError, F.encode, K, F.Frame(F.ALERT, 1 << 32, 1, 0, F.Report()))
    raises(EncodeError, F.encode, K, F.Frame(F.ACK, 1, 1, 0, F.Report()))
    raises(EncodeError, F.encode_raw, K, F.ALERT, 1, 1, 0, bytes(256))


def test_encode_errors_are_not_protocol_errors():
    e = raises(EncodeError, F.encode, K, alert(lat=10 ** 10))
    assert not isinstance(e, ProtocolError)


def test_expected_direction_enforced():
    up = F.encode(K, alert())
    raises(UnknownType, F.decode, K, up, F.DOWNLINK)
    ack = F.encode(K, F.Frame(F.ACK, 42, 1, 0, F.Ack(7)))
    raises(UnknownType, F.decode, K, ack, F.UPLINK)
    assert F.decode(K, ack, F.DOWNLINK).body.acked_seq == 7


def test_cross_device_key_rejected():
    raises(BadTag, F.decode, K2, F.encode(K, alert()))


def test_bad_tag_message_has_no_frame_content():
    raw = bytearray(F.encode(K, alert()))
    raw[-1] ^= 1
    e = raises(BadTag, F.decode, K, bytes(raw))
    assert "515007292" not in str(e) and "42" not in str(e)


def test_peek_reads_header_without_key():
    raw = F.encode(K, alert())
    assert F.peek(raw) == (F.ALERT, 42, 7)
    raises(BadLength, F.peek, raw[:30])


def test_sms_round_trip_and_limits():
    text, sent = sms.to_sms(K, alert())
    assert text.startswith("PNC1 ") and len(text) <= 160
    assert F.decode(K, sms.from_sms(text)) == alert()
    assert F.decode(K, sms.from_sms(text + "\r\n")) == alert()
    raises(BadSms, sms.from_sms, "PNC1 ")
    raises(BadSms, sms.from_sms, b"PNC1 AAAA")


def test_sms_shortened_body_is_prefix_of_full_body_in_sms_order():
    tl = F.sms_order([(F.T_WIFI, (b"ABCDEF", -60))] * 3 + [(F.T_CELL, (1, 2, 3, i, -80)) for i in range(3)] + [(F.T_GNSS, (8, 10))])
    fr = alert(tlvs=tl)
    full = F.encode(K, fr)
    text, sent = sms.to_sms(K, fr)
    short = sms.from_sms(text)
    assert len(short) <= 114 < len(full)
    n = short[14]
    assert short[15:15 + n] == full[15:15 + n]  # same keystream, same plaintext prefix


def test_sms_order_puts_droppable_tlvs_last():
    tl = [(F.T_WIFI, 1), (F.T_CELL, 1), (F.T_CELL, 2), (F.T_GNSS, 1), (F.T_MOTION, 1)]
    assert [t for t, _ in F.sms_order(tl)] == [F.T_CELL, F.T_MOTION, F.T_GNSS, F.T_CELL, F.T_WIFI]


def test_replay_window_basics():
    w = replay.ReplayWindow()
    assert w.check(5) == replay.NEW
    w.mark(5)
    assert w.check(5) == replay.DUPLICATE
    assert w.check(4) == replay.NEW  # late but inside the window
    w.mark(4)
    assert w.check(4) == replay.DUPLICATE
    w.mark(5 + 1024)
    assert w.check(5) == replay.STALE
    assert w.check(6) == replay.NEW
    assert w.check(5 + 1024) == replay.DUPLICATE


def test_replay_window_big_jump_clears_and_persists():
    w = replay.ReplayWindow()
    for s in range(0, 50):
        w.mark(s)
    w.mark(100000)
    assert w.check(99999) == replay.NEW
    assert w.check(49) == replay.STALE
    w2 = replay.ReplayWindow.from_bytes(w.to_bytes())
    assert w2.highest == 100000 and w2.check(100000) == replay.DUPLICATE and w2.check(99990) == replay.NEW
    raises(ValueError, replay.ReplayWindow.from_bytes, b"\x00")


def test_replay_window_seq_zero_and_max():
    w = replay.ReplayWindow()
    assert w.check(0) == replay.NEW
    w.mark(0)
    assert w.check(0) == replay.DUPLICATE
    w.mark(0xFFFFFFFF)
    assert w.check(0xFFFFFFFF) == replay.DUPLICATE
    assert w.check(0) == replay.STALE
