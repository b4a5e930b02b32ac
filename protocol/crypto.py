"""Primitives for protocol v1: HMAC-SHA256, AES-128-CTR, key derivation.

Owns: the only crypto code path on both interpreters.
- HMAC is our own small implementation over hashlib.sha256 (MicroPython has
  no hmac module and its sha256 has no copy()); the padded keys are computed
  once per key, so each MAC costs two sha256 objects and nothing else.
- AES-CTR is built here from AES-ECB: `cryptolib.aes(key, 1)` on
  MicroPython, `cryptography`'s ECB on CPython; the counter blocks and the
  XOR are one code path on both. The vectors (sealed with `cryptography`'s
  own CTR mode) and SP 800-38A pin it.
- tags_equal compares in constant time (no early exit; on CPython
  hmac.compare_digest, in C).
Never logs or formats key material.
"""

import hashlib

try:
    from hmac import compare_digest as _compare  # CPython: constant time, in C
except ImportError:  # MicroPython has no hmac module
    _compare = None

try:
    import cryptolib  # MicroPython

    def _ecb(key):
        return cryptolib.aes(key, 1)

    BACKEND = "cryptolib"
except ImportError:  # CPython
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    class _CryptographyEcb:
        # one long-lived ECB context per key: ECB keeps no state between
        # blocks, and building a Cipher per frame costs more than the AES
        def __init__(self, key):
            self._enc = Cipher(algorithms.AES(bytes(key)), modes.ECB()).encryptor()

        def encrypt(self, data):
            return self._enc.update(bytes(data))

    _ecb = _CryptographyEcb
    BACKEND = "cryptography"
_BLOCK = 64  # sha256 block size
_IPAD = bytes(0x36 for _ in range(_BLOCK))


class Hmac:
    """HMAC-SHA256 with the inner and outer padded keys computed once."""

    def __init__(self, key):
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        k = bytearray(_BLOCK)
        k[: len(key)] = key
        ipad = bytearray(_BLOCK)
        opad = bytearray(_BLOCK)
        for i in range(_BLOCK):
            ipad[i] = k[i] ^ 0x36
            opad[i] = k[i] ^ 0x5C
        self._ipad = bytes(ipad)
        self._opad = bytes(opad)

    def digest(self, msg, more=None):
        """HMAC of msg (followed by `more`, when given)."""
        h = hashlib.sha256(self._ipad)
        h.update(msg)
        if more is not None:
            h.update(more)
        o = hashlib.sha256(self._opad)
        o.update(h.digest())
        return o.digest()

    def __repr__(self):
        return "<Hmac>"


def hmac_sha256(key, msg):
    return Hmac(key).digest(msg)


def tags_equal(a, b):
    """Constant-time comparison of two byte strings (length is not secret)."""
    if len(a) != len(b):
        return False
    if _compare is not None:
        return _compare(a, b)
    acc = 0
    for i in range(len(a)):
        acc |= a[i] ^ b[i]
    return acc == 0


def derive(master, label):
    """HKDF-Expand with PRK = master, info = label, one block."""
    return Hmac(master).digest(label, b"\x01")


class AesCtr:
    """AES-128 in counter mode; the caller gives the 16-byte initial block.

    The counter is the last 4 bytes of the block, counting blocks from the
    initial value (protocol v1 always starts it at 0, so it never wraps for
    bodies of at most 255 bytes)."""

    def __init__(self, key):
        if len(key) != 16:
            raise ValueError("AES-128 key must be 16 bytes")
        self._ecb = _ecb(key)

    def crypt(self, block0, data):
        n = len(data)
        if n == 0:
            return b""
        nblocks = (n + 15) >> 4
        last = block0[15]
        if last + nblocks <= 256:
            # the common case (protocol v1 counters start at 0): only the
            # last byte of each block differs
            ctrs = bytearray(bytes(block0) * nblocks)
            for b in range(1, nblocks):
                ctrs[16 * b + 15] = last + b
        else:
            ctrs = bytearray(16 * nblocks)
            whole = int.from_bytes(block0, "big")
            high = whole >> 32 << 32
            low = whole & 0xFFFFFFFF
            for b in range(nblocks):
                ctrs[16 * b : 16 * b + 16] = (high | ((low + b) & 0xFFFFFFFF)).to_bytes(16, "big")
        stream = self._ecb.encrypt(ctrs)
        # XOR as one big-integer operation: a per-byte loop costs ~10x more
        x = int.from_bytes(bytes(data), "big") ^ int.from_bytes(stream[:n], "big")
        return x.to_bytes(n, "big")

    def __repr__(self):
        return "<AesCtr>"


class DeviceKeys:
    """The four working keys of one device, derived once from its master key.

    repr() never shows key bytes."""

    def __init__(self, master):
        if len(master) != 32:
            raise ValueError("device master key must be 32 bytes")
        self.enc_up = AesCtr(derive(master, b"pnc1 enc up")[:16])
        self.mac_up = Hmac(derive(master, b"pnc1 mac up"))
        self.enc_down = AesCtr(derive(master, b"pnc1 enc down")[:16])
        self.mac_down = Hmac(derive(master, b"pnc1 mac down"))

    def __repr__(self):
        return "<DeviceKeys>"
