"""Position semantics on the device (docs/protocol.md, "Position
semantics", normative): coordinates go on the wire only from a position the
device holds. The encoder refuses a position source without coordinates, a
cell or Wi-Fi source at (0, 0) (the placeholder older firmware sent), and
coordinates under source 0; a device with only cell or Wi-Fi observations
sends source 0, flag clear, and the TLVs. Runs on CPython and on the
MicroPython unix port (96 KB heap)."""

from alert_env import CELL, LAST, LIVE, Env, frames, make
from fw_fakes import Position
from mpcheck import raises

from firmware import alert as A
from protocol import frame as F
from protocol import sms
from protocol.crypto import DeviceKeys
from protocol.errors import EncodeError

K = DeviceKeys(bytes(range(32)))
_CELL_TLV = (F.T_CELL, (234, 15, 0x1A2B, 30125732, -97))


def _frame(r):
    return F.Frame(F.TRACK, 42, 131, 1795900000, r)


def test_a_position_source_without_coordinates_is_refused():
    for src in (F.SRC_GNSS, F.SRC_LAST_FIX, F.SRC_CELL, F.SRC_WIFI):
        e = raises(EncodeError, F.encode, K, _frame(F.Report(src, tlvs=[_CELL_TLV])))
        assert "position source" in str(e)
        raises(EncodeError, F.encode, K, _frame(F.Report(src, 515007292, None)))
        raises(EncodeError, F.encode, K, _frame(F.Report(src, None, -1246254)))


def test_a_cell_or_wifi_source_at_zero_zero_is_refused():
    for src in (F.SRC_CELL, F.SRC_WIFI):
        e = raises(EncodeError, F.encode, K, _frame(F.Report(src, 0, 0, 1500, 0, tlvs=[_CELL_TLV])))
        assert "not 0,0" in str(e)
    # a GNSS fix can be at (0, 0): a real place, if an unlikely one
    fr = _frame(F.Report(F.SRC_GNSS, 0, 0, 5, 0))
    assert F.decode(K, F.encode(K, fr)).body.source == F.SRC_GNSS


def test_source_none_carries_no_coordinates():
    raises(EncodeError, F.encode, K, _frame(F.Report(F.SRC_NONE, 515007292, -1246254)))
    raises(EncodeError, F.encode, K, _frame(F.Report(F.SRC_NONE, 0, 1)))
    # observations only: source 0, the position flag clear, the TLVs kept
    r = F.Report(F.SRC_NONE, tlvs=[_CELL_TLV, (F.T_WIFI, (b"\x02\x11\x22\x33\x44\x55", -61))])
    body = F.decode(K, F.encode(K, _frame(r))).body
    assert body.source == F.SRC_NONE and body.flags & F.F_POSITION == 0
    assert (body.lat, body.lon) == (0, 0) and body.tlv_values(F.T_CELL) == [_CELL_TLV[1]]
    assert body == r  # zeros on the wire are the coordinates never given


def test_a_refused_report_is_refused_in_its_sms_form_too():
    raises(EncodeError, sms.to_sms, K, _frame(F.Report(F.SRC_CELL, tlvs=[_CELL_TLV])))


def test_the_device_sends_observations_as_source_none():
    """No GNSS position at all: the ALERT carries the serving cell as a TLV
    under source 0, never a made-up cell position."""
    ctl, ob, fs = make(Env(None))
    ctl.fire(A.SOS, 0)
    r = frames(ob, F.ALERT)[0].body
    assert r.source == F.SRC_NONE and r.flags & F.F_POSITION == 0
    assert r.tlv_values(F.T_CELL) == [CELL]


def test_wifi_observations_alone_are_source_none_too():
    ctl, ob, fs = make(Env(None, None))
    ctl.fire(A.SOS, 0)
    ctl.on_scan([(b"\x02\x11\x22\x33\x44\x55", -61)], 10)
    ctl.step(10)
    (tr,) = frames(ob, F.TRACK)
    assert tr.body.source == F.SRC_NONE and len(tr.body.tlv_values(F.T_WIFI)) == 1


def test_a_gnss_position_keeps_its_source_with_the_cell_beside_it():
    for pos, src in ((LIVE, F.SRC_GNSS), (LAST, F.SRC_LAST_FIX)):
        ctl, ob, fs = make(Env(pos))
        ctl.fire(A.SOS, 0)
        r = frames(ob, F.ALERT)[0].body
        assert r.source == src and (r.lat, r.lon) == (pos.lat, pos.lon) and r.tlv_values(F.T_CELL) == [CELL]


def test_a_position_no_frame_can_carry_falls_back_to_source_none():
    bad = Position(F.SRC_GNSS, 10 ** 10, 0)
    ctl, ob, fs = make(Env(bad))
    ctl.fire(A.SOS, 0)
    r = frames(ob, F.ALERT)[0].body
    assert r.source == F.SRC_NONE and r.tlv_values(F.T_CELL) == [CELL] and ctl.state == A.ALERTING

