"""SIA DC-09 messages, sans-I/O: build what a transmitter sends, read what
a receiver answers, and read whole messages back (our own decoder, which
the tests hold every message we send to).

Owns: the byte layout of a DC-09 message and its answers. Never opens a
socket and never reads a clock: callers pass `now` (Unix seconds) and,
for encryption, the pad bytes' source.

A message on the wire (DC-09 section 5.5.1; the standard is not free, so
every fact here cites a public text: the 2013 public-review draft [D13],
the 2021 draft as published at readkong [D21], pysiaalarm 3.2.2's receiver
[PSA], and the open transmitters dc09_spt [SPT] and fioletoven/dc09 [FIO]):

    <LF> crc(4 hex) 0LLL(4 hex) "id" seq(4 digits) [R rcvr] L pref #acct [data][ext]...[ext] _HH:MM:SS,MM-DD-YYYY <CR>

  - crc: CRC-16 as DC-07 defines it (polynomial 0x8005 reflected = 0xA001,
    initial value 0: the CRC-16/ARC of catalogues, check value 0xBB3D), over
    the bytes from the first '"' to the last timestamp character, as 4
    upper-case hex digits [D13 5.5.1.2; PSA event._crc_calc; SPT dc09crc].
  - 0LLL: the length of the same bytes, '0' and 3 hex digits [D13 5.5.1.3].
  - id: SIA-DCS, ADM-CID, NULL (answers: ACK, NAK, DUH, RSP); '*' in front
    of the id when the message is encrypted ("*SIA-DCS") [D13 5.5.1.4].
  - seq: 0001..9999, a new one per new message, the same one on every
    repeat of it, 9999 followed by 0001 [D13 5.5.1.5; SPT send_msg]. NULL
    link tests carry 0000, as in pysiaalarm's own encrypted NULL sample
    and SPT's polls.
  - R (receiver number, optional) and L (line prefix): 1 to 6 hex digits;
    #acct: 3 to 16 hex digits [D13 5.5.1.6; PSA MAIN_MATCHER].
  - data: "#acct|QEEE GG ZZZ" (ADM-CID, Contact ID per SIA DC-05:
    qualifier 1 new event / 3 restore, event code, group, zone or user)
    or "#acct|N..." (SIA-DCS, SIA DC-03 blocks) or empty (NULL) [SPT
    dc05_msg, dc03_msg; PSA regexes].
  - ext: extended data blocks, one letter then the value: X longitude,
    Y latitude, I alarm text, V verification (a link), ... [PSA xdata.py,
    SPT dc09_extra, D21 contents].
  - timestamp: UTC; required when encrypted, optional otherwise. A
    receiver refuses a message stamped more than 20 s ahead or 40 s behind
    its clock and answers NAK with its own time [D13 5.5.1.8, 5.5.3.2; PSA
    allowed_timeband (40, 20)].

Encryption [D13 5.4.4-5.4.6]: AES in CBC mode with an all-zero IV and a
128, 192 or 256-bit key, over everything after the data's '[' up to and
including the timestamp, sent as upper-case hex. Before the data goes a
pad of pseudo-random bytes that are not '|', '[' or ']', then '|'; the pad
makes the encrypted region a multiple of 16 bytes, and is 16 bytes when
the region already was one. The '|' after the pad appears in every
encrypted message. Our pad bytes are printable ASCII (a subset of what
the draft allows; some receivers decode the plaintext as ASCII).

The key: the standard's key is binary (128/192/256 bits, written as 32,
48 or 64 hex digits; SPT takes 16 or 32 raw bytes). pysiaalarm uses the
characters of a 16/24/32-character hex string themselves as the key bytes
(account.py: key.encode("utf-8")). Both are supported, by name:
KEY_BINARY (the default, the standard's) and KEY_ASCII (pysiaalarm's).

Answers [D13 5.5.3]: ACK echoes seq, R, L and #acct, with an empty data
block; to an encrypted message the ACK is encrypted ("*ACK", pad and
timestamp required), which also makes it fresh. NAK ("NAK"0000R0L0A0[]
with the receiver's timestamp, never encrypted) says the timestamp failed:
the transmitter corrects its clock offset from it and sends again. DUH
says the receiver could not process an otherwise correct message.

Peer quirks we read but never write (design.md "Known quirks of peers"):
pysiaalarm 3.2.2 puts the literal text "None" where the receiver number
belongs when the message had none (its issue #88), writes its own NAK as
L0R0 instead of R0L0, and pads an encrypted ACK with '0' characters and no
'|'. read_answer() accepts those and counts them in Answer.quirks; the
strict decoder (decode(strict=True), what the tests use on our messages)
does not.

Errors: Dc09Error (our misuse: a bad account, key or field) and
Dc09Garbage (the peer's bytes do not parse; .reason names why).
Must stay in sync with: docs/arc.md (the message layout and the key
encodings), tests/test_forward_dc09.py (the known answers).
"""

import datetime
import os

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

LF = 0x0A
CR = 0x0D
SIA_DCS = "SIA-DCS"
ADM_CID = "ADM-CID"
NULL = "NULL"
ACK = "ACK"
NAK = "NAK"
DUH = "DUH"
RSP = "RSP"
TOKENS = (SIA_DCS, ADM_CID, NULL, ACK, NAK, DUH, RSP)

KEY_BINARY = "binary"  # the standard: 32/48/64 hex digits are the key's 16/24/32 bytes
KEY_ASCII = "ascii"    # pysiaalarm: the 16/24/32 characters themselves are the key bytes
KEY_ENCODINGS = (KEY_BINARY, KEY_ASCII)

MAX_BODY = 0xFFF  # 0LLL: three hex digits of length
WINDOW_BEHIND_S = 40  # a receiver accepts a timestamp up to 40 s behind its clock ...
WINDOW_AHEAD_S = 20   # ... and 20 s ahead of it [D13 5.5.1.8; PSA allowed_timeband]
_IV = bytes(16)
_HEX = frozenset("0123456789ABCDEF")
_PAD_CHARS = bytes(c for c in range(0x21, 0x7F) if c not in b"|[]")
_TS_LEN = 20  # "_HH:MM:SS,MM-DD-YYYY"


class Dc09Error(ValueError):
    """Our own misuse: a field or key that cannot go into a message."""


class Dc09Garbage(ValueError):
    """The peer's bytes are not a DC-09 message we can read; .reason is a
    short counter key."""

    def __init__(self, reason, detail=""):
        super().__init__("%s%s" % (reason, (": " + detail) if detail else ""))
        self.reason = reason


# ---------------------------------------------------------------- CRC, time, keys

def _crc_table():
    t = []
    for b in range(256):
        c = b
        for _ in range(8):
            c = (c >> 1) ^ 0xA001 if c & 1 else c >> 1
        t.append(c)
    return tuple(t)


_CRC = _crc_table()


def crc16(data):
    """CRC-16 of DC-07/DC-09 (CRC-16/ARC): reflected 0x8005, init 0."""
    c = 0
    for b in data:
        c = (c >> 8) ^ _CRC[(c ^ b) & 0xFF]
    return c


def timestamp(now):
    """'_HH:MM:SS,MM-DD-YYYY' of Unix time `now`, UTC."""
    return datetime.datetime.fromtimestamp(int(now), datetime.timezone.utc).strftime("_%H:%M:%S,%m-%d-%Y")


def parse_timestamp(text):
    """Unix seconds of 'HH:MM:SS,MM-DD-YYYY' (UTC), or Dc09Garbage."""
    if len(text) != 19 or text[2] != ":" or text[5] != ":" or text[8] != "," or text[11] != "-" or text[14] != "-":
        raise Dc09Garbage("bad timestamp", text[:24])
    try:
        t = datetime.datetime.strptime(text, "%H:%M:%S,%m-%d-%Y").replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        raise Dc09Garbage("bad timestamp", text[:24])
    return t.timestamp()


def fresh(ts, now, behind=WINDOW_BEHIND_S, ahead=WINDOW_AHEAD_S):
    """True when timestamp `ts` is inside the receiver's window around `now`."""
    return now - behind <= ts <= now + ahead


def key_from_text(text, encoding=KEY_BINARY):
    """The AES key a key file's text stands for (whitespace ignored).
    KEY_BINARY: 32, 48 or 64 hex digits -> 16, 24 or 32 bytes (the
    standard). KEY_ASCII: 16, 24 or 32 hex characters used as the key
    bytes themselves (pysiaalarm). Errors never quote the key."""
    t = "".join(text.split()).upper()
    if not t or any(c not in _HEX for c in t):
        raise Dc09Error("the key must be hex digits only")
    if encoding == KEY_BINARY:
        if len(t) not in (32, 48, 64):
            raise Dc09Error("a binary key is 32, 48 or 64 hex digits (AES-128/192/256), got %d" % len(t))
        return bytes.fromhex(t)
    if encoding == KEY_ASCII:
        if len(t) not in (16, 24, 32):
            raise Dc09Error("an ascii key is 16, 24 or 32 hex characters (AES-128/192/256), got %d" % len(t))
        return t.encode("ascii")
    raise Dc09Error("key encoding must be one of %s" % ", ".join(KEY_ENCODINGS))


def _cipher(key):
    if len(key) not in (16, 24, 32):
        raise Dc09Error("an AES key is 16, 24 or 32 bytes")
    return Cipher(algorithms.AES(key), modes.CBC(_IV))


def pad_for(n, rand=os.urandom):
    """The pad for a region of n bytes after it (the '|' included): 1..16
    bytes so that pad + n is a multiple of 16, never '|', '[' or ']'."""
    k = 16 - n % 16  # 16 when n already is a multiple of 16
    return bytes(_PAD_CHARS[b % len(_PAD_CHARS)] for b in rand(k))


# ---------------------------------------------------------------- fields

def check_account(acct):
    if not isinstance(acct, str) or not 3 <= len(acct) <= 16 or any(c not in _HEX for c in acct):
        raise Dc09Error("a DC-09 account is 3 to 16 hex digits (0-9, A-F)")
    return acct


def check_prefix(v, what):
    """A receiver number or line prefix: 1 to 6 upper-case hex digits."""
    if v is None:
        return None
    v = str(v).upper()
    if not 1 <= len(v) <= 6 or any(c not in _HEX for c in v):
        raise Dc09Error("%s must be 1 to 6 hex digits" % what)
    return v


def _check_text(s, what):
    if any(c in s for c in "[]|\r\n") or any(not " " <= c <= "~" for c in s):
        raise Dc09Error("%s may hold printable ASCII without '[', ']' or '|'" % what)
    return s


def adm_cid(acct, qualifier, code, group, zone):
    """ADM-CID data: '#acct|QEEE GG ZZZ' (Contact ID, SIA DC-05)."""
    if qualifier not in (1, 3, 6):
        raise Dc09Error("a Contact ID qualifier is 1 (new event), 3 (restore) or 6 (status)")
    if not 0 <= code <= 999 or not 0 <= group <= 99 or not 0 <= zone <= 999:
        raise Dc09Error("Contact ID code 0..999, group 0..99, zone or user 0..999")
    return "#%s|%d%03d %02d %03d" % (check_account(acct), qualifier, code, group, zone)


def sia_dcs(acct, code, zone, area=0):
    """SIA-DCS data: '#acct|N[riA/]CCzzz' (SIA DC-03 new event block)."""
    if len(code) != 2 or not code.isalpha() or not code.isupper():
        raise Dc09Error("a SIA event code is two upper-case letters")
    if not 0 <= zone <= 9999 or not 0 <= area <= 99:
        raise Dc09Error("SIA zone 0..9999, area 0..99")
    return "#%s|N%s%s%03d" % (check_account(acct), ("ri%d/" % area) if area else "", code, zone)


def ext_block(letter, value):
    """One extended data block's text (without its brackets)."""
    if len(letter) != 1 or not "A" <= letter <= "Z":
        raise Dc09Error("an extended data block starts with one upper-case letter")
    return letter + _check_text(str(value), "extended data")


def degrees(e7):
    """A coordinate in 1e-7 degrees as the decimal degrees [X]/[Y] carry:
    '-' for west and south, six decimals (about 0.1 m), at most 11
    characters (pysiaalarm's table gives these blocks 12)."""
    s = "-" if e7 < 0 else ""
    a = abs(int(e7))
    micro = (a + 5) // 10  # 1e-7 -> 1e-6 degree, rounded
    return "%s%d.%06d" % (s, micro // 1000000, micro % 1000000)


# ---------------------------------------------------------------- messages

class Message:
    """One DC-09 message: token (SIA_DCS, ADM_CID, NULL, or an answer's),
    seq (0..9999), receiver and line prefix (hex text or None), account,
    data (the text inside the first brackets), ext (the extended blocks'
    texts) and time (Unix seconds of its timestamp, or None)."""

    __slots__ = ("token", "encrypted", "seq", "receiver", "line", "account", "data", "ext", "time")

    def __init__(self, token, seq, account, data="", ext=(), receiver: str | None = None, line: str | None = "0",
                 time=None, encrypted=False):
        self.token = token
        self.encrypted = encrypted
        self.seq = seq
        self.receiver = receiver
        self.line = line
        self.account = account
        self.data = data
        self.ext = tuple(ext)
        self.time = time

    def __repr__(self):
        return "<Message %s%s seq=%04d acct=%s>" % ("*" if self.encrypted else "", self.token, self.seq, self.account)

    def __eq__(self, other):
        return isinstance(other, Message) and all(getattr(self, k) == getattr(other, k) for k in self.__slots__)


def encode(msg, key=None, now=None, rand=os.urandom):
    """The message's bytes, LF to CR, ready for one write. With a key it
    is encrypted (and timestamped); without one it is timestamped when
    `now` is given. The timestamp is `now` (the caller adds its offset)."""
    if msg.token not in TOKENS:
        raise Dc09Error("unknown DC-09 id token %r" % (msg.token,))
    if not 0 <= msg.seq <= 9999:
        raise Dc09Error("a DC-09 sequence number is 0000..9999")
    rcv = check_prefix(msg.receiver, "the receiver number")
    line = check_prefix(msg.line, "the line prefix")
    head = '"%s%s"%04d%s%s#%s[' % (
        "*" if key is not None else "", msg.token, msg.seq, "" if rcv is None else "R" + rcv,
        "" if line is None else "L" + line, check_account(msg.account))
    rest = msg.data + "]" + "".join("[%s]" % x for x in msg.ext)
    if key is not None:
        if now is None:
            raise Dc09Error("an encrypted message needs a timestamp")
        plain = "|" + rest + timestamp(now)
        region = pad_for(len(plain), rand) + plain.encode("ascii")
        enc = _cipher(key).encryptor()
        body = head.encode("ascii") + (enc.update(region) + enc.finalize()).hex().upper().encode("ascii")
    else:
        body = (head + rest + ("" if now is None else timestamp(now))).encode("ascii")
    if len(body) > MAX_BODY:
        raise Dc09Error("message longer than %d bytes" % MAX_BODY)
    return b"\n%04X%04X" % (crc16(body), len(body)) + body + b"\r"


def _header(body, quirks):
    """(token, encrypted, seq, receiver, line, account, index of '[')."""
    if not body.startswith('"'):
        raise Dc09Garbage("bad id token")
    q = body.find('"', 1)
    if q < 0:
        raise Dc09Garbage("bad id token")
    tok = body[1:q]
    enc = tok.startswith("*")
    if enc:
        tok = tok[1:]
    if tok not in TOKENS:
        raise Dc09Garbage("unknown id token", tok[:12])
    i = q + 1
    seq = body[i:i + 4]
    if len(seq) != 4 or not seq.isdigit():
        raise Dc09Garbage("bad sequence number")
    i += 4
    b = body.find("[", i)
    if b < 0:
        raise Dc09Garbage("no data block")
    hdr = body[i:b]
    rcv = line = acct = None
    if tok == NAK:  # "NAK"0000R0L0A0[]: the account field is "A0" [D13 5.5.3.2; FIO parse_nak_test]
        a = hdr.rfind("A")
        while a > 0 and not all(c in _HEX for c in hdr[a + 1:]):
            a = hdr.rfind("A", 0, a)
        if a > 0 and hdr[a + 1:] and hdr[a - 1] in _HEX:
            acct, hdr = hdr[a:], hdr[:a]
    seen = set()
    k = 0
    while k < len(hdr):
        c = hdr[k]
        if hdr.startswith("None", k) and "R" not in seen:  # pysiaalarm issue #88
            quirks.append("receiver None")
            seen.add("R")
            k += 4
            continue
        j = k + 1
        if c in "RL":
            while j < len(hdr) and hdr[j] in _HEX and j - k <= 6:
                j += 1
            v = hdr[k + 1:j]
            if not v or c in seen:
                raise Dc09Garbage("bad header field", c)
            if c == "L" and "R" not in seen and hdr.startswith("R", j):
                quirks.append("line before receiver")  # pysiaalarm's own NAK: L0R0
            seen.add(c)
            if c == "R":
                rcv = v
            else:
                line = v
        elif c == "#" and acct is None:
            while j < len(hdr) and hdr[j] in _HEX:
                j += 1
            acct = hdr[k + 1:j]
            if not 3 <= len(acct) <= 16:
                raise Dc09Garbage("bad account")
        else:
            raise Dc09Garbage("bad header field", c)
        k = j
    i = b
    return tok, enc, int(seq), rcv, line, acct, i


def _content(text, strict):
    """(data, ext blocks, timestamp text or None) of what follows the '['."""
    end = text.find("]")
    if end < 0:
        raise Dc09Garbage("unterminated data block")
    data = text[:end]
    if "[" in data:
        raise Dc09Garbage("bad data block")
    i = end + 1
    ext = []
    while i < len(text) and text[i] == "[":
        e = text.find("]", i + 1)
        if e < 0 or "[" in text[i + 1:e]:
            raise Dc09Garbage("bad extended data block")
        ext.append(text[i + 1:e])
        i = e + 1
    ts = None
    if i < len(text):
        if text[i] != "_" or len(text) - i != _TS_LEN:
            raise Dc09Garbage("junk after the data", text[i:i + 24])
        ts = text[i + 1:]
    return data, ext, ts


def decode(raw, key=None, strict=True):
    """A whole message (LF .. CR, bytes) as (Message, quirks). key: the
    AES key for an encrypted one (or a callable account -> key). strict:
    our decoder of the standard (every check, no peer quirks); False
    reads what real receivers answer and lists what it forgave."""
    quirks = []
    if not isinstance(raw, (bytes, bytearray)) or len(raw) < 12 or raw[0] != LF or raw[-1] != CR:
        raise Dc09Garbage("framing")
    try:
        crc_t, len_t, body = raw[1:5].decode("ascii"), raw[5:9].decode("ascii"), raw[9:-1].decode("ascii")
    except UnicodeDecodeError:
        raise Dc09Garbage("not ascii")
    if any(c not in _HEX for c in (crc_t + len_t).upper()):  # int() would forgive spaces and '+'
        raise Dc09Garbage("bad crc or length field")
    crc_v, len_v = int(crc_t, 16), int(len_t, 16)
    if len_t[0] != "0" or len_v != len(body):
        raise Dc09Garbage("bad length", "%s for %d bytes" % (len_t, len(body)))
    if crc_v != crc16(raw[9:-1]):
        raise Dc09Garbage("bad crc")
    if (crc_t + len_t).upper() != crc_t + len_t:  # the standard writes them in upper case
        if strict:
            raise Dc09Garbage("lower-case hex")
        quirks.append("lower-case hex")
    tok, enc, seq, rcv, line, acct, i = _header(body, quirks)
    if strict and quirks:
        raise Dc09Garbage("bad header field", ", ".join(quirks))
    text = body[i + 1:]
    if enc:
        k = key(acct) if callable(key) else key
        if k is None:
            raise Dc09Garbage("no key for an encrypted message")
        if not text or len(text) % 32 or any(c not in _HEX for c in text):
            raise Dc09Garbage("bad ciphertext")
        dec = _cipher(k).decryptor()
        plain = dec.update(bytes.fromhex(text)) + dec.finalize()
        n = 0
        while n < len(plain) and plain[n] not in b"|[]":
            n += 1
        if n < len(plain) and plain[n] == 0x7C:
            if n == 0 or n > 16:
                raise Dc09Garbage("bad pad")
            n += 1
        elif strict:
            raise Dc09Garbage("bad pad", "no '|' after the pad")
        else:
            quirks.append("pad without '|'")  # pysiaalarm's encrypted answers
        try:
            text = plain[n:].decode("ascii")
        except UnicodeDecodeError:
            raise Dc09Garbage("does not decrypt")  # a wrong key gives bytes, not ASCII
    data, ext, ts = _content(text, strict)
    if enc and ts is None:
        raise Dc09Garbage("encrypted message without timestamp")
    t = parse_timestamp(ts) if ts is not None else None
    msg = Message(tok, seq, acct, data, ext, rcv, line, t, enc)
    return msg, quirks


class Answer:
    """A receiver's answer to one of our messages: kind (ACK, NAK, DUH,
    RSP), its time (Unix seconds, or None), what was forgiven (quirks)."""

    __slots__ = ("kind", "time", "quirks", "message")

    def __init__(self, kind, t, quirks, message):
        self.kind = kind
        self.time = t
        self.quirks = quirks
        self.message = message

    def __repr__(self):
        return "<Answer %s%s>" % (self.kind, " (%s)" % ", ".join(self.quirks) if self.quirks else "")


def read_answer(raw, sent, key=None, now=None, behind=WINDOW_BEHIND_S, ahead=WINDOW_AHEAD_S):
    """The receiver's answer `raw` to our message `sent` (a Message), or
    Dc09Garbage. An ACK or DUH must name our seq and account; an ACK to an
    encrypted message must be encrypted under our key and stamped inside
    the window around `now` (our clock plus the path's offset), so an old
    or forged ACK is not taken. A NAK carries the receiver's time."""
    msg, quirks = decode(bytes(raw), key, strict=False)
    kind = msg.token
    if kind not in (ACK, NAK, DUH, RSP):
        raise Dc09Garbage("not an answer", kind)
    if kind == NAK:
        if msg.time is None:
            raise Dc09Garbage("NAK without timestamp")
        return Answer(kind, msg.time, quirks, msg)
    if msg.seq != sent.seq:
        raise Dc09Garbage("answer to another sequence number", "%04d" % msg.seq)
    if msg.account is not None and msg.account != sent.account:
        raise Dc09Garbage("answer to another account")
    if kind in (ACK, RSP) and key is not None:
        if not msg.encrypted:
            raise Dc09Garbage("plain ACK to an encrypted message")
        if now is not None and not fresh(msg.time, now, behind, ahead):
            raise Dc09Garbage("stale ACK")
    return Answer(kind, msg.time, quirks, msg)


def nak(now, receiver="0", line="0"):
    """A receiver's NAK (for tests and the decoder's known answers)."""
    body = ('"NAK"0000R%sL%sA0[]' % (receiver, line) + timestamp(now)).encode("ascii")
    return b"\n%04X%04X" % (crc16(body), len(body)) + body + b"\r"


def answer(kind, to, key=None, now=None, rand=os.urandom):
    """A standard receiver's ACK or DUH to message `to` (what our decoder
    expects; the tests' own receiver and the known answers use it)."""
    m = Message(kind, to.seq, to.account, "", (), to.receiver, to.line)
    return encode(m, key if kind != DUH else None, now if key is not None and kind != DUH else None, rand)
