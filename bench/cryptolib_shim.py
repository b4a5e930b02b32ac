"""`cryptolib.aes(key, 1).encrypt(data)` (AES-ECB, encrypt only) in plain
Python, for bench/wasm_firmware.mjs only: the MicroPython webassembly
build it runs in has no cryptolib, which every ESP32 build has in C.
protocol/crypto.py needs nothing more (CTR is built from ECB there).

It is imported before the bench measures its baseline, so its code is not
counted as the firmware's; what it allocates per call is (the C version
allocates the same output bytes). Checked against the FIPS-197 AES-256
vector at every start (bench/wasm_firmware.mjs calls selftest()).

Never shipped: firmware/ and protocol/ do not import it by this name
except through `import cryptolib`, which on a board is the C module.
"""


def _tables():
    sbox = bytearray(256)
    p = q = 1
    while True:
        # p runs over GF(2^8)*, q over the inverses (multiply by 3, divide by 3)
        p = p ^ ((p << 1) & 0xFF) ^ (0x1B if p & 0x80 else 0)
        q ^= q << 1
        q ^= q << 2
        q ^= q << 4
        q &= 0xFF
        if q & 0x80:
            q ^= 0x09
        x = q ^ ((q << 1) | (q >> 7)) ^ ((q << 2) | (q >> 6)) ^ ((q << 3) | (q >> 5)) ^ ((q << 4) | (q >> 4))
        sbox[p] = (x ^ 0x63) & 0xFF
        if p == 1:
            break
    sbox[0] = 0x63
    return bytes(sbox)


_S = _tables()
_SHIFT = bytes((j + 4 * (j % 4)) % 16 for j in range(16))


def _xt(a):
    return ((a << 1) ^ 0x1B) & 0xFF if a & 0x80 else a << 1


class aes:
    def __init__(self, key, mode):
        if mode != 1:
            raise ValueError("ECB only")
        nk = len(key) // 4
        if nk not in (4, 6, 8):
            raise ValueError("key length")
        self.nr = nk + 6
        w = bytearray(key)
        rcon = 1
        i = nk
        while len(w) < 16 * (self.nr + 1):
            t = w[-4:]
            if i % nk == 0:
                t = bytearray((_S[t[1]] ^ rcon, _S[t[2]], _S[t[3]], _S[t[0]]))
                rcon = _xt(rcon)
            elif nk > 6 and i % nk == 4:
                t = bytearray((_S[t[0]], _S[t[1]], _S[t[2]], _S[t[3]]))
            b = len(w) - 4 * nk
            w.extend(bytes((w[b] ^ t[0], w[b + 1] ^ t[1], w[b + 2] ^ t[2], w[b + 3] ^ t[3])))
            i += 1
        self.w = bytes(w)
        self.t = bytearray(16)

    def _block(self, s, o):
        """Encrypt s[o:o+16] in place; allocates nothing (the C module's
        only allocation is its output, and so is encrypt()'s here)."""
        w, S, t, nr = self.w, _S, self.t, self.nr
        for j in range(16):
            s[o + j] ^= w[j]
        for r in range(1, nr + 1):
            for j in range(16):
                t[j] = S[s[o + _SHIFT[j]]]  # SubBytes + ShiftRows
            k = 16 * r
            if r < nr:
                for c in range(0, 16, 4):
                    a0, a1, a2, a3 = t[c], t[c + 1], t[c + 2], t[c + 3]
                    x = a0 ^ a1 ^ a2 ^ a3
                    s[o + c] = a0 ^ x ^ _xt(a0 ^ a1) ^ w[k + c]
                    s[o + c + 1] = a1 ^ x ^ _xt(a1 ^ a2) ^ w[k + c + 1]
                    s[o + c + 2] = a2 ^ x ^ _xt(a2 ^ a3) ^ w[k + c + 2]
                    s[o + c + 3] = a3 ^ x ^ _xt(a3 ^ a0) ^ w[k + c + 3]
            else:
                for j in range(16):
                    s[o + j] = t[j] ^ w[k + j]

    def encrypt(self, data):
        if len(data) % 16:
            raise ValueError("blocks of 16")
        out = bytearray(data)
        for i in range(0, len(out), 16):
            self._block(out, i)
        return out


def selftest():
    """FIPS-197 appendix C.3 (AES-256) and C.1 (AES-128)."""
    pt = bytes.fromhex("00112233445566778899aabbccddeeff")
    ok256 = aes(bytes(range(32)), 1).encrypt(pt) == bytes.fromhex("8ea2b7ca516745bfeafc49904b496089")
    ok128 = aes(bytes(range(16)), 1).encrypt(pt) == bytes.fromhex("69c4e0d86a7b0430d8cdb78070b4c55a")
    return ok256 and ok128
