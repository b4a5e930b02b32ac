"""The DC-09 codec (receiver/forward/dc09.py): known answers from public
sources, AES against an independent implementation (pycryptodome, which
pysiaalarm uses), our decoder on every message shape, whole, truncated,
with junk and bit flips, and the answers real receivers send."""

import os
import time

import pytest
from Crypto.Cipher import AES
from hypothesis import given, settings
from hypothesis import strategies as st

from receiver.forward import dc09 as D

NOW = 1_790_000_000  # 2026-09-21


def test_crc_is_crc16_arc_with_its_catalogue_check_value():
    assert D.crc16(b"123456789") == 0xBB3D


@pytest.mark.parametrize("body, crc, length", [
    # fioletoven/dc09 common/src/dc09/message.tests.rs (a DC-09 dialler and receiver in Rust)
    ('"SIA-DCS"0001RF3L77#1234[#1234|NRR|Atest]', "F4D2", "0029"),
    ('"SIA-DCS"0001L0#1234[]', "96ED", "0016"),
    ('"NAK"0000R0L0A0[]_16:20:01,09-24-2025', "E441", "0025"),
    # pysiaalarm tests/test_sia_package_cases.py, case_cl (its CRC; its length field there is not checked)
    ('"SIA-DCS"6002L0#AAA[|Nri1/CL501]_14:12:04,09-25-2019', "E5D5", None),
])
def test_crc_and_length_of_published_messages(body, crc, length):
    assert "%04X" % D.crc16(body.encode()) == crc
    if length is not None:
        raw = b"\n" + crc.encode() + length.encode() + body.encode() + b"\r"
        msg, quirks = D.decode(raw, strict=True)
        assert quirks == [] and "%04X" % len(body) == length


def test_the_published_messages_decode_field_by_field():
    msg, _ = D.decode(b'\nF4D20029"SIA-DCS"0001RF3L77#1234[#1234|NRR|Atest]\r')
    assert (msg.token, msg.seq, msg.receiver, msg.line, msg.account, msg.data, msg.ext, msg.time) == (
        "SIA-DCS", 1, "F3", "77", "1234", "#1234|NRR|Atest", (), None)
    nak, _ = D.decode(b'\nE4410025"NAK"0000R0L0A0[]_16:20:01,09-24-2025\r')
    assert nak.token == "NAK" and nak.account == "A0" and nak.line == "0"
    assert time.strftime("%H:%M:%S %m-%d-%Y", time.gmtime(nak.time)) == "16:20:01 09-24-2025"


def msg_adm(**kw):
    base = dict(token=D.ADM_CID, seq=42, account="1234", data=D.adm_cid("1234", 1, 122, 0, 1), ext=(),
                receiver="1", line="0")
    base.update(kw)
    return D.Message(**base)


def test_encode_layout_in_the_clear():
    raw = D.encode(msg_adm(), None, NOW)
    body = b'"ADM-CID"0042R1L0#1234[#1234|1122 00 001]_14:13:20,09-21-2026'
    assert raw == b"\n%04X%04X" % (D.crc16(body), len(body)) + body + b"\r"


def test_encryption_matches_pycryptodome_with_a_known_pad():
    key = bytes.fromhex("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F")
    m = msg_adm(ext=("X-0.124625", "Y51.500729"))
    pad_src = bytes(range(1, 17))
    raw = D.encode(m, key, NOW, rand=lambda n: pad_src[:n])
    plain = "|#1234|1122 00 001][X-0.124625][Y51.500729]_14:13:20,09-21-2026"
    pad = D.pad_for(len(plain), lambda n: pad_src[:n])
    want = AES.new(key, AES.MODE_CBC, bytes(16)).encrypt(pad + plain.encode()).hex().upper()
    body = ('"*ADM-CID"0042R1L0#1234[' + want).encode()
    assert raw == b"\n%04X%04X" % (D.crc16(body), len(body)) + body + b"\r"
    back, quirks = D.decode(raw, key)
    assert quirks == [] and back == D.Message(D.ADM_CID, 42, "1234", m.data, m.ext, "1", "0", NOW, True)


@pytest.mark.parametrize("n", range(0, 40))
def test_pad_makes_a_multiple_of_16_and_never_holds_the_separators(n):
    pad = D.pad_for(n)
    assert 1 <= len(pad) <= 16 and (len(pad) + n) % 16 == 0
    assert len(pad) == 16 or n % 16 != 0  # already a multiple: 16 bytes of pad [D13 5.4.4.3]
    assert not set(pad) & set(b"|[]")


@pytest.mark.parametrize("bits", [128, 192, 256])
def test_aes_key_sizes_round_trip(bits):
    key = os.urandom(bits // 8)
    m = D.Message(D.SIA_DCS, 9999, "ABCDEF0123456789", D.sia_dcs("ABCDEF0123456789", "PA", 12, 3),
                  ("Ixyz", "Vhttps://c.example/i/9"), "ABCDEF", "123456")
    back, _ = D.decode(D.encode(m, key, NOW), key)
    assert back.data == "#ABCDEF0123456789|Nri3/PA012" and back.ext == m.ext and back.encrypted
    with pytest.raises(D.Dc09Garbage):
        D.decode(D.encode(m, key, NOW), os.urandom(bits // 8))


def test_key_encodings():
    assert D.key_from_text("00112233445566778899aabbccddeeff\n") == bytes.fromhex("00112233445566778899AABBCCDDEEFF")
    assert D.key_from_text("0123456789ABCDEF", D.KEY_ASCII) == b"0123456789ABCDEF"
    assert len(D.key_from_text("0" * 48)) == 24 and len(D.key_from_text("0" * 32, D.KEY_ASCII)) == 32
    for text, enc in (("0123456789ABCDEF", D.KEY_BINARY), ("0" * 32, "hex"), ("XYZ" * 11, D.KEY_BINARY),
                      ("0" * 20, D.KEY_ASCII)):
        with pytest.raises(D.Dc09Error) as e:
            D.key_from_text(text, enc)
        assert text not in str(e.value)  # an error never quotes the key


def test_fields_are_checked_before_anything_is_sent():
    for bad in (lambda: D.check_account("12"), lambda: D.check_account("12G4"), lambda: D.check_prefix("1234567", "x"),
                lambda: D.adm_cid("1234", 2, 120, 0, 0), lambda: D.adm_cid("1234", 1, 1200, 0, 0),
                lambda: D.sia_dcs("1234", "pa", 1), lambda: D.ext_block("I", "a]b"), lambda: D.ext_block("x", "1"),
                lambda: D.encode(msg_adm(seq=10000)), lambda: D.encode(msg_adm(), os.urandom(16)),
                lambda: D.encode(msg_adm(ext=("I" + "x" * 5000,)))):
        with pytest.raises(D.Dc09Error):
            bad()


def test_degrees_keep_six_decimals_and_the_sign():
    assert D.degrees(515007292) == "51.500729" and D.degrees(-1246254) == "-0.124625"
    assert D.degrees(-1799999999) == "-180.000000" and D.degrees(5) == "0.000001" and D.degrees(4) == "0.000000"
    assert len(D.degrees(-1799999999)) <= 12


def _samples():
    key = os.urandom(16)
    out = [(D.encode(msg_adm(), None, NOW), None), (D.encode(msg_adm(), key, NOW), key),
           (D.encode(D.Message(D.NULL, 0, "1234", "", (), None, "0"), None), None),
           (D.encode(D.Message(D.NULL, 0, "1234", "", (), "1", "0"), key, NOW), key),
           (D.encode(msg_adm(token=D.SIA_DCS, data=D.sia_dcs("1234", "HA", 1), ext=("X1.5", "Y2.5", "Ia b")), key,
                     NOW), key)]
    return out


def test_every_truncation_and_trailing_junk_is_rejected_as_garbage():
    for raw, key in _samples():
        assert D.decode(raw, key)[0]
        for n in range(len(raw)):
            with pytest.raises(D.Dc09Garbage):
                D.decode(raw[:n], key)
        for junk in (b"x", b"\r", b"[", b"_12:00:00,01-01-2026"):
            with pytest.raises(D.Dc09Garbage):
                D.decode(raw[:-1] + junk + b"\r", key)


def test_every_single_bit_flip_is_rejected():
    """The CRC catches every single-bit error (CRC-16 detects all of
    them); a flip in the CRC or length field itself fails its check."""
    for raw, key in _samples():
        for i in range(len(raw)):
            for bit in range(8):
                bad = bytearray(raw)
                bad[i] ^= 1 << bit
                with pytest.raises(D.Dc09Garbage):
                    D.decode(bytes(bad), key)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_only_ever_raise_garbage(data):
    for raw in (data, b"\n" + data + b"\r", b"\n%04X%04X" % (D.crc16(data), len(data)) + data + b"\r"):
        try:
            D.decode(raw, os.urandom(16))
            D.decode(raw, os.urandom(16), strict=False)
        except D.Dc09Garbage:
            pass


# ---------------------------------------------------------------- answers

def test_standard_answers_are_taken_and_checked():
    key = os.urandom(32)
    m = msg_adm()
    assert D.read_answer(D.answer(D.ACK, m, key, NOW), m, key, NOW).kind == D.ACK
    assert D.read_answer(D.answer(D.ACK, m), m).kind == D.ACK
    assert D.read_answer(D.answer(D.DUH, m, key, NOW), m, key, NOW).kind == D.DUH
    nak = D.read_answer(D.nak(NOW + 3600), m, key, NOW)
    assert nak.kind == D.NAK and nak.time == NOW + 3600
    refused = [
        (D.answer(D.ACK, msg_adm(seq=41), key, NOW), "answer to another sequence number"),
        (D.answer(D.ACK, msg_adm(account="9999", data=""), key, NOW), "answer to another account"),
        (D.answer(D.ACK, m), "plain ACK to an encrypted message"),
        (D.answer(D.ACK, m, key, NOW - 41), "stale ACK"),
        (D.answer(D.ACK, m, key, NOW + 21), "stale ACK"),
        (D.answer(D.ACK, m, os.urandom(32), NOW), None),
        (D.encode(m, None, NOW), "not an answer"),
    ]
    for raw, reason in refused:
        with pytest.raises(D.Dc09Garbage) as e:
            D.read_answer(raw, m, key, NOW)
        assert reason is None or e.value.reason == reason


def test_pysiaalarm_answers_are_read_with_their_quirks_named():
    """What pysiaalarm 3.2.2 really sends (made by its own create_response):
    'None' where the receiver number belongs when our message had none (its
    issue #88), a '0'-padded encrypted ACK without the '|', its own NAK
    with L0R0. Our decoder in strict mode refuses each; read_answer takes
    them and names the quirk."""
    from pysiaalarm import SIAAccount
    from pysiaalarm.event import NAKEvent, SIAEvent

    acc = {"1234": SIAAccount("1234", "0123456789ABCDEF")}
    key = b"0123456789ABCDEF"
    now = time.time()
    m = msg_adm(receiver=None)
    ev = SIAEvent.from_line(D.encode(m, None, now).decode().strip(), {"1234": SIAAccount("1234")})
    raw = ev.create_response()
    assert b"None" in raw
    a = D.read_answer(raw, m, None, now)
    assert a.kind == D.ACK and a.quirks == ["receiver None"]
    with pytest.raises(D.Dc09Garbage):
        D.decode(raw, strict=True)

    m = msg_adm()
    ev = SIAEvent.from_line(D.encode(m, key, now).decode().strip(), acc)
    raw = ev.create_response()
    a = D.read_answer(raw, m, key, now)
    assert a.kind == D.ACK and a.quirks == ["pad without '|'"]
    with pytest.raises(D.Dc09Garbage):
        D.decode(raw, key, strict=True)

    raw = NAKEvent().create_response()
    a = D.read_answer(raw, m, key, now)
    assert a.kind == D.NAK and a.quirks == ["line before receiver"] and abs(a.time - now) < 5
