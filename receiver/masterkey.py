"""The receiver master key and the encryption of device keys at rest.

Owns: loading the 32-byte master key (env PANIC_RECEIVER_KEY as hex, or a
file holding hex), and sealing/opening device keys with AES-256-GCM. The
associated data binds a sealed key to its device id, so a sealed key copied
onto another device's row does not open.

Never logs, prints or puts key bytes into an exception message or repr.
A key file that anyone but its owner can read is refused (the master key
opens every device key in the store).
Must stay in sync with: the `devices.key_sealed` column in sqlite_store.py
(layout: 12-byte nonce || ciphertext || 16-byte GCM tag).
"""

import binascii
import os
import stat
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from receiver.errors import MasterKeyError, MasterKeyUnavailable

ENV = "PANIC_RECEIVER_KEY"
_CHECK_PLAIN = b"wearable-panic receiver master key check v1"


def _parse_hex(text, where):
    text = "".join(text.split())
    try:
        raw = binascii.unhexlify(text)
    except (binascii.Error, ValueError):
        raise MasterKeyError("the master key in %s is not hex" % where)
    if len(raw) != 32:
        raise MasterKeyError("the master key in %s must be 32 bytes (64 hex digits), got %d bytes" % (where, len(raw)))
    return raw


def load(path=None, environ=None):
    """The master key from `path` if given, else from the environment.

    Raises MasterKeyError with a clear message when neither is usable."""
    if path:
        try:
            with open(path) as f:
                mode = stat.S_IMODE(os.fstat(f.fileno()).st_mode)
                text = f.read()
        except OSError as e:
            raise MasterKeyUnavailable("cannot read master key file %s: %s" % (path, e.strerror))
        if mode & 0o077:
            raise MasterKeyUnavailable("master key file %s is readable by other users (mode %04o): run chmod 600 %s"
                                       % (path, mode, path))
        return MasterKey(_parse_hex(text, "file %s" % path))
    env = os.environ if environ is None else environ
    text = env.get(ENV)
    if not text:
        raise MasterKeyUnavailable("no receiver master key: set %s to 64 hex digits or pass --master-key-file FILE" % ENV)
    return MasterKey(_parse_hex(text, "$" + ENV))


def generate_hex():
    return binascii.hexlify(os.urandom(32)).decode()


class MasterKey:
    def __init__(self, raw):
        if len(raw) != 32:
            raise MasterKeyError("master key must be 32 bytes")
        self._aead = AESGCM(bytes(raw))

    def __repr__(self):
        return "<MasterKey>"

    @staticmethod
    def _aad(device_id):
        return b"pnc1 device key" + struct.pack(">I", device_id)

    def seal(self, device_id, key):
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, bytes(key), self._aad(device_id))

    def open(self, device_id, sealed):
        sealed = bytes(sealed)
        try:
            return self._aead.decrypt(sealed[:12], sealed[12:], self._aad(device_id))
        except (InvalidTag, ValueError):
            raise MasterKeyError("the key of device %d does not open with this master key" % device_id)

    def check_value(self):
        """A sealed constant stored once per database, so a wrong master key
        is reported at start-up instead of as a flood of bad tags."""
        return self.seal(0, _CHECK_PLAIN)

    def matches(self, check):
        try:
            return self.open(0, check) == _CHECK_PLAIN
        except MasterKeyError:
            return False
