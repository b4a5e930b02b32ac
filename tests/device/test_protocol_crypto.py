"""Crypto primitives pinned by published vectors (RFC 4231, SP 800-38A)."""

from mpcheck import hexs, raises, unhex

from protocol.crypto import AesCtr, DeviceKeys, Hmac, derive, hmac_sha256, tags_equal


def test_hmac_rfc4231_case1():
    assert hexs(hmac_sha256(b"\x0b" * 20, b"Hi There")) == (
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")


def test_hmac_rfc4231_case2_short_key():
    assert hexs(hmac_sha256(b"Jefe", b"what do ya want for nothing?")) == (
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")


def test_hmac_rfc4231_case6_long_key():
    key = b"\xaa" * 131
    msg = b"Test Using Larger Than Block-Size Key - Hash Key First"
    assert hexs(hmac_sha256(key, msg)) == "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"


def test_hmac_object_reusable_and_parts_concatenate():
    h = Hmac(b"Jefe")
    a = h.digest(b"what do ya want ", b"for nothing?")
    b = h.digest(b"what do ya want for nothing?")
    assert a == b == hmac_sha256(b"Jefe", b"what do ya want for nothing?")


def test_aes_ctr_sp800_38a_f51():
    key = unhex("2b7e151628aed2a6abf7158809cf4f3c")
    ctr = unhex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff")
    pt = unhex("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51")
    ct = AesCtr(key).crypt(ctr, pt)
    # the counter wraps its low 32 bits here, exactly as standard CTR does
    assert hexs(ct) == "874d6191b620e3261bef6864990db6ce9806f66b7970fdff8617187bb9fffdff"


def test_aes_ctr_partial_block_and_empty():
    key = unhex("2b7e151628aed2a6abf7158809cf4f3c")
    ctr = unhex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff")
    pt = unhex("6bc1bee22e409f96e93d7e117393172aae2d8a")
    assert hexs(AesCtr(key).crypt(ctr, pt)) == "874d6191b620e3261bef6864990db6ce9806f6"
    assert AesCtr(key).crypt(ctr, b"") == b""


def test_ctr_is_its_own_inverse():
    c = AesCtr(b"k" * 16)
    block0 = bytes(16)
    msg = bytes(range(200))
    assert c.crypt(block0, c.crypt(block0, msg)) == msg


def test_derive_is_hkdf_expand_one_block():
    # HKDF-Expand(PRK, info, 32) == HMAC(PRK, info || 0x01)
    prk = bytes(range(32))
    assert derive(prk, b"pnc1 mac up") == hmac_sha256(prk, b"pnc1 mac up\x01")
    assert derive(prk, b"pnc1 mac up") != derive(prk, b"pnc1 mac down")


def test_tags_equal():
    assert tags_equal(b"abcd", b"abcd")
    assert not tags_equal(b"abcd", b"abce")
    assert not tags_equal(b"abcd", b"abc")
    assert tags_equal(b"", b"")


def test_keys_never_in_repr():
    k = DeviceKeys(bytes(range(32)))
    for obj in (k, k.mac_up, k.enc_up):
        assert "00010203" not in repr(obj)


def test_wrong_key_sizes_are_local_errors():
    raises(ValueError, DeviceKeys, b"short")
    raises(ValueError, AesCtr, b"x" * 15)
