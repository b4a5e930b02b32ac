"""Streaming NMEA 0183 reader for the GNSS UART.

Owns: framing a byte stream into sentences, the checksum check, and turning
GGA, RMC, GSA, GNS, GLL and VTG (any two-letter talker: GP, GN, GL, GA, GB,
BD, GQ, ...) into Sentence objects whose numbers are all integers:

    lat_e7 / lon_e7   1e-7 degrees, straight from the ddmm.mmmm text
    alt_m             metres above mean sea level (rounded)
    speed_cms         cm/s          course_cdeg   centidegrees (true)
    hdop_x10          HDOP tenths   time_ms       ms since 00:00 UTC
    date              (year, month, day) from RMC

Never does: I/O, clocks, floats (ESP32 floats are 32-bit and would lose
metres), fix decisions (firmware/fix.py decides what is trustworthy).

Rules (from gpsd's corpus of real receivers, see docs/firmware-sensing.md):
  - A sentence starts at '$' and ends at CR or LF. A '$' inside a line
    restarts the sentence (receivers drop bytes mid-line).
  - The checksum '*HH' is required; hex in either case. A sentence without
    one counts as bad_checksum: a position that cannot be verified is never
    used on this device.
  - Lines longer than MAX_LINE are dropped and counted as too_long. The
    longest real sentence in the corpus is 203 bytes (an MTK $POLYN line);
    the longest of the six types used here is 91 bytes.
  - Proprietary ($P...) and other sentence types are skipped and counted.
  - Numeric fields are checked (and GNS's mode field must be text); a
    sentence with a malformed field is dropped whole and counted as
    malformed (never half-applied).
  - Bytes outside sentences (other than CR/LF) count as garbage.

The line buffer is one preallocated bytearray; feed() copies runs of bytes
into it with slice assignment, never builds strings per character, and
reads a buffer the UART is read into (feed(buf, n)) only up to n.
parse_line checks the checksum, splits the body once (GGA only as far as
its altitude) and converts each field with one isdigit() and one int();
bench/bench_nmea.py measures it against pynmea2 and pynmeagps on the same
sentences, on CPython and MicroPython (rate, instructions, heap allocated
per sentence).
Must stay in sync with: firmware/fix.py (Sentence attributes), the
docs/firmware-sensing.md table of counters.
"""

try:
    from micropython import const  # pyright: ignore[reportAssignmentType]
except ImportError:  # CPython

    def const(x):
        return x


MAX_LINE = const(256)  # bytes from '$' to the last checksum digit

# Sentence kinds
GGA = const(1)
RMC = const(2)
GSA = const(3)
GNS = const(4)
GLL = const(5)
VTG = const(6)

KINDS = {b"GGA": GGA, b"RMC": RMC, b"GSA": GSA, b"GNS": GNS, b"GLL": GLL, b"VTG": VTG}
KIND_NAMES = {GGA: "GGA", RMC: "RMC", GSA: "GSA", GNS: "GNS", GLL: "GLL", VTG: "VTG"}

_HEX = b"0123456789ABCDEF0123456789abcdef"


class Malformed(Exception):
    """A field of a checksummed sentence does not parse (remote garbage)."""


class Sentence:
    """One parsed sentence. Attributes not carried by the kind stay None.

    kind, talker (str, e.g. "GN"); time_ms; date (y, m, d); lat_e7, lon_e7;
    status ("A"/"V", RMC and GLL; GNS: NMEA 4.1 navigational status);
    faa ("A", "D", "N", ... RMC/GLL/VTG NMEA 2.3+ mode indicator);
    quality (GGA fix quality int); gns_mode (GNS mode characters, str);
    fix_type (GSA 1/2/3); sats (GGA/GNS in use, GSA count of PRNs);
    hdop_x10; alt_m; speed_cms; course_cdeg.
    """

    # defaults live on the class: a parser sets only what its kind carries
    time_ms = None
    date = None
    lat_e7 = None
    lon_e7 = None
    status = None
    faa = None
    quality = None
    gns_mode = None
    fix_type = None
    sats = None
    hdop_x10 = None
    alt_m = None
    speed_cms = None
    course_cdeg = None

    def __init__(self, kind, talker):
        self.kind = kind
        self.talker = talker

    def __repr__(self):
        return "<%s%s t=%r lat=%r lon=%r>" % (self.talker, KIND_NAMES.get(self.kind, "?"), self.time_ms,
                                             self.lat_e7, self.lon_e7)


# ---- field parsers (bytes in, ints out; raise Malformed) -------------------
#
# Cost (bench/bench_nmea.py): after the checksum loop and split(), parsing
# the fields is all of parse_line's time. Each run of digits is checked
# with one isdigit() and converted with one int() (both in C on CPython and
# MicroPython), helpers are called once per field, never per digit run,
# and intermediate values stay below 2**30: small ints on the ESP32, which
# cost no heap. Helpers are few on purpose: each function costs about
# 200 bytes of heap when the module is loaded as .mpy (bench_firmware.py).

_POW = (1, 10, 100, 1000, 10000, 100000, 1000000, 10000000)


def dec(b, places):
    """Decimal text to int scaled by 10**places (places <= 7), rounded half
    away from zero. Empty -> None. '-1.25', '+3', '.5', '7.' are accepted."""
    if not b:
        return None
    c = b[0]
    neg = c == 45  # '-'
    if neg or c == 43:  # '+'
        b = b[1:]
    p = b.find(b".")
    if p < 0:
        if not b.isdigit():  # False for b"" too
            raise Malformed("bad digit")
        v = int(b) * _POW[places]
        return -v if neg else v
    n = len(b) - p - 1  # digits after the point
    d = b.replace(b".", b"", 1)
    if not d.isdigit():  # a second point, a sign, no digit at all
        raise Malformed("bad decimal")
    if n <= places:
        v = int(d) * _POW[places - n]
    else:
        k = len(d) - n + places  # digits kept; d[k] rounds
        v = int(d[:k]) if k else 0
        if d[k] >= 53:  # '5'
            v += 1
    return -v if neg else v


def coord(b, hemi, maxdeg):
    """'ddmm.mmmm' (or 'dddmm.mmmm') + hemisphere to 1e-7 degrees.
    Both empty -> None. Exact integer arithmetic: minutes are taken to
    7 decimals (1e-7 minute < 2e-9 degree) and divided by 60 with rounding."""
    if not b and not hemi:
        return None
    p = b.find(b".")
    n = len(b) - p - 1  # digits after the point
    if p >= 3 and p + n <= 9 and n <= 7:
        # all digits as one int below 10**9 (a small int on the ESP32)
        d = b.replace(b".", b"", 1)
        if not d.isdigit():
            raise Malformed("bad digit")
        v = int(d)
        k = _POW[n] * 100
        deg = v // k
        me7 = (v - deg * k) * _POW[7 - n]  # minutes, 1e-7
    else:
        if p < 0:
            ip = b
            frac = 0
        else:
            ip = b[:p]
            if n:
                fp = b[p + 1:]
                if not fp.isdigit():
                    raise Malformed("bad digit")
                frac = int(fp[:7]) if n > 7 else int(fp) * _POW[7 - n]
            else:
                frac = 0
        if len(ip) < 3 or not ip.isdigit():
            raise Malformed("bad coordinate")
        deg = int(ip)
        me7 = deg % 100 * 10000000 + frac
        deg //= 100
    if me7 >= 600000000 or deg > maxdeg:
        raise Malformed("coordinate out of range")
    v = deg * 10000000 + (me7 + 30) // 60
    if v > maxdeg * 10000000:
        raise Malformed("coordinate out of range")
    if hemi == b"N" or hemi == b"E":
        return v
    if hemi == b"S" or hemi == b"W":
        return -v
    raise Malformed("bad hemisphere")


def utc_time(b):
    """'hhmmss[.sss]' to ms since midnight (fraction digits past the third
    are checked, then dropped); empty -> None."""
    if not b:
        return None
    n = len(b)
    if n == 6:
        if not b.isdigit():
            raise Malformed("bad time")
        v = int(b)
        ms = 0
    elif n < 6 or b[6] != 46:  # '.'
        raise Malformed("bad time")
    elif n <= 10:
        # up to 3 fraction digits: one int of hhmmss and the fraction
        # (at most 235959999, a small int on the ESP32)
        d = b.replace(b".", b"", 1)
        if not d.isdigit():
            raise Malformed("bad time")
        v = int(d)
        k = _POW[n - 7]
        ms = v % k * _POW[10 - n]
        v //= k
    else:
        hms = b[:6]
        fp = b[7:]
        if not hms.isdigit() or not fp.isdigit():
            raise Malformed("bad time")
        v = int(hms)
        ms = int(fp[:3])
    h = v // 10000
    m = v // 100 % 100
    s = v % 100
    if h > 23 or m > 59 or s > 60:
        raise Malformed("time out of range")
    return ((h * 60 + m) * 60 + s) * 1000 + ms


def _speed(b, per, div):
    """Speed text to cm/s: dec(b, 3) * per / div, rounded half away from
    zero (knots: per 1852, div 36000, as 1 kn = 1852/3600 m/s; km/h: per
    100, div 3600)."""
    k = dec(b, 3)
    if k is None:
        return None
    return (abs(k) * per + div // 2) // div * (1 if k >= 0 else -1)


# one-letter status / mode fields; any other letter reads as absent (None)
_CH = {}
for _c in "ACDEFMNPRSUV":
    _CH[_c.encode()] = _c


# ---- per-kind parsers -----------------------------------------------------
# f is the list of fields (f[0] the address); nf how many the sentence had.
# parse_line pads f with empty fields up to _NEED[kind] (the highest index
# the kind's parser reads, plus one), so a short sentence reads as one
# with its trailing fields empty.

def _position(s, f, i):
    # lat, N/S, lon, E/W in fields i..i+3 (the layout every position sentence shares)
    b = f[i]
    h = f[i + 1]
    if b or h:
        s.lat_e7 = coord(b, h, 90)
    b = f[i + 2]
    h = f[i + 3]
    if b or h:
        s.lon_e7 = coord(b, h, 180)


def _gga(s, f, nf):
    # $xxGGA,time,lat,N,lon,E,quality,sats,hdop,alt,M,sep,M,age,station
    b = f[1]
    if b:
        s.time_ms = utc_time(b)
    _position(s, f, 2)
    b = f[6]
    if b:
        if not b.isdigit():
            raise Malformed("bad digit")
        s.quality = int(b)
    b = f[7]
    if b:
        if not b.isdigit():
            raise Malformed("bad digit")
        s.sats = int(b)
    b = f[8]
    if b:
        s.hdop_x10 = dec(b, 1)
    b = f[9]
    if b:
        a = dec(b, 1)  # decimetres, to metres rounded half away from zero
        s.alt_m = (a + 5) // 10 if a >= 0 else -((-a + 5) // 10)  # pyright: ignore[reportOptionalOperand]


def _rmc(s, f, nf):
    # $xxRMC,time,status,lat,N,lon,E,sog_kn,cog,ddmmyy,magvar,E/W[,faa[,navstatus]]
    b = f[1]
    if b:
        s.time_ms = utc_time(b)
    s.status = _CH.get(f[2])
    _position(s, f, 3)
    b = f[7]
    if b:
        s.speed_cms = _speed(b, 1852, 36000)
    b = f[8]
    if b:
        s.course_cdeg = dec(b, 2)
    b = f[9]
    if b:
        # ddmmyy; years 80-99 are 19xx (NMEA's two-digit year; GPS began in 1980)
        if len(b) != 6 or not b.isdigit():
            raise Malformed("bad date")
        v = int(b)
        d = v // 10000
        m = v // 100 % 100
        y = v % 100
        if not (1 <= d <= 31 and 1 <= m <= 12):
            raise Malformed("date out of range")
        s.date = (y + (1900 if y >= 80 else 2000), m, d)
    s.faa = _CH.get(f[12][:1])


def _gsa(s, f, nf):
    # $xxGSA,A/M,fixtype,prn*12,pdop,hdop,vdop[,systemid]
    # A GSA with fewer than 12 PRN slots is malformed (i.Trek M3 sends
    # "$GPGSA,A,1,,,,*32"): fix_type stays None and the tracker ignores it.
    s.sats = 0
    if nf < 18:
        return
    b = f[2]
    if b:
        if not b.isdigit():
            raise Malformed("bad digit")
        s.fix_type = int(b)
    std = nf <= 19  # 12 PRN slots, 3 DOPs, optional NMEA 4.1 system id
    prns = f[3:15] if std else f[3:nf - 3]
    # empty slots and PRN 0 are not satellites
    s.sats = len(prns) - prns.count(b"") - prns.count(b"0") - prns.count(b"00")
    if std:  # DOPs of longer forms (24 PRN slots) are not trusted
        s.hdop_x10 = dec(f[16], 1)


def _gns(s, f, nf):
    # $xxGNS,time,lat,N,lon,E,modes,sats,hdop,alt,sep,age,station[,navstatus]
    # (fields 1-5 and 7-9 as GGA's, written out again: a shared helper
    # would cost a function's heap, see the field parsers' note)
    b = f[1]
    if b:
        s.time_ms = utc_time(b)
    _position(s, f, 2)
    b = f[6]
    if b:
        try:
            s.gns_mode = b.decode()
        except UnicodeError:  # not text: garbage that passed the checksum
            raise Malformed("bad mode")
    b = f[7]
    if b:
        if not b.isdigit():
            raise Malformed("bad digit")
        s.sats = int(b)
    b = f[8]
    if b:
        s.hdop_x10 = dec(b, 1)
    b = f[9]
    if b:
        a = dec(b, 1)  # decimetres, to metres rounded half away from zero
        s.alt_m = (a + 5) // 10 if a >= 0 else -((-a + 5) // 10)  # pyright: ignore[reportOptionalOperand]
    s.status = _CH.get(f[13][:1])  # NMEA 4.1 navigational status (S/C/U/V)


def _gll(s, f, nf):
    # $xxGLL,lat,N,lon,E,time,status[,faa]
    _position(s, f, 1)
    b = f[5]
    if b:
        s.time_ms = utc_time(b)
    s.status = _CH.get(f[6])
    s.faa = _CH.get(f[7][:1])


def _vtg(s, f, nf):
    # $xxVTG,cog,T,cogm,M,sog,N,kph,K[,faa]   (old form: $xxVTG,cog,cogm,sog,kph)
    if f[2] == b"T":
        s.course_cdeg = dec(f[1], 2)
        s.speed_cms = _speed(f[5], 1852, 36000)
        if s.speed_cms is None:
            s.speed_cms = _speed(f[7], 100, 3600)
        s.faa = _CH.get(f[9][:1])
    else:
        s.course_cdeg = dec(f[1], 2)
        s.speed_cms = _speed(f[3], 1852, 36000)


# indexed by kind: the parser, and how many fields it reads (f[0] included;
# GSA checks its own count). _NEED is bytes: a constant, no heap object.
_PARSERS = (None, _gga, _rmc, _gsa, _gns, _gll, _vtg)
_NEED = b"\x00\x0a\x0d\x00\x0e\x08\x0a"
_PAD = [b""] * 14  # max(_NEED)


def parse_line(line):
    """Parse one whole sentence (bytes from '$' to the last checksum digit,
    no line ending). Returns a Sentence, or one of the strings 'checksum',
    'proprietary', 'unknown', 'malformed' naming why it was dropped.
    Proprietary and unknown sentences are classified from their address
    alone; the checksum is verified on the sentences that are used."""
    n = len(line)
    if n < 7:
        return "unknown"
    if line[1] == 80:  # 'P'
        return "proprietary"
    kind = KINDS.get(line[3:6])
    if kind is None or line[6] != 44 or not (65 <= line[1] <= 90 and 65 <= line[2] <= 90):
        return "unknown"
    if n < 10 or line[n - 3] != 42:  # '*'
        return "checksum"
    body = line[1:n - 3]
    c = 0
    for b in body:
        c ^= b
    # '*HH': each digit must be the hex digit of its half, either case
    b = line[n - 2]
    if b != _HEX[c >> 4] and b != _HEX[(c >> 4) + 16]:
        return "checksum"
    b = line[n - 1]
    if b != _HEX[c & 15] and b != _HEX[(c & 15) + 16]:
        return "checksum"
    # GGA is split only as far as its altitude: nothing after it is read
    f = body.split(b",", 10) if kind == GGA else body.split(b",")
    nf = len(f)
    if nf < _NEED[kind]:
        f.extend(_PAD[:_NEED[kind] - nf])
    s = Sentence(kind, line[1:3].decode())
    try:
        _PARSERS[kind](s, f, nf)  # pyright: ignore[reportOptionalCall]
    except Malformed:
        return "malformed"
    return s


def _eol(data, i, end):
    """Index of the first CR or LF in data[i:end], or -1."""
    a = data.find(b"\n", i, end)
    b = data.find(b"\r", i, end if a < 0 else a)
    return a if b < 0 else b


class NmeaReader:
    """Frames a byte stream into sentences. feed(data) -> list of Sentence.

    Counters (ints, only ever grow): ok, bad_checksum, too_long, unknown,
    proprietary, malformed, garbage (bytes outside any sentence, CR/LF not
    counted).
    """

    def __init__(self, max_line=MAX_LINE):
        self._buf = bytearray(max_line)
        self._mv = memoryview(self._buf)
        self._max = max_line
        self._n = 0
        self._in = False  # inside a sentence
        self._over = False  # current line overflowed: drop to end of line
        self.ok = 0
        self.bad_checksum = 0
        self.too_long = 0
        self.unknown = 0
        self.proprietary = 0
        self.malformed = 0
        self.garbage = 0

    def counters(self):
        return {
            "ok": self.ok,
            "bad_checksum": self.bad_checksum,
            "too_long": self.too_long,
            "unknown": self.unknown,
            "proprietary": self.proprietary,
            "malformed": self.malformed,
            "garbage": self.garbage,
        }

    def feed(self, data, end=-1):
        """Bytes (or bytearray) from the UART, any chunking: data[:end] when
        end >= 0 (a buffer the UART is read into again and again: nothing
        past end is looked at, and nothing of it is kept but copies).
        Returns the list of Sentence objects completed by this chunk."""
        out = []
        i = 0
        if end < 0 or end > len(data):
            end = len(data)
        mv = None if isinstance(data, bytes) else memoryview(data)
        while i < end:
            if self._in:
                # a sentence begun in an earlier chunk: copy up to its end
                a = _eol(data, i, end)
                stop = end if a < 0 else a
                k = stop - i
                if not self._over:
                    n = self._n
                    if n + k > self._max:
                        self._over = True
                    else:
                        self._mv[n:n + k] = data[i:stop] if mv is None else mv[i:stop]
                        self._n = n + k
                if a < 0:
                    return out
                i = a
                self._in = False
                if self._over:
                    self.too_long += 1
                else:
                    self._take(bytes(self._mv[:self._n]), out)
                continue
            j = data.find(b"$", i, end)
            if j != i:
                stop = end if j < 0 else j
                seg = data[i:stop]  # outside a sentence; CR and LF are not garbage
                self.garbage += len(seg) - seg.count(b"\r") - seg.count(b"\n")
                if j < 0:
                    return out
            a = data.find(b"\n", j, end)
            b = data.find(b"\r", j, end if a < 0 else a)
            if b >= 0:
                a = b
            if a < 0:
                # the sentence goes on in the next chunk: keep what we have
                k = end - j
                self._in = True
                self._over = k > self._max
                if not self._over:
                    self._mv[:k] = data[j:end] if mv is None else mv[j:end]
                    self._n = k
                return out
            if a - j > self._max:
                self.too_long += 1
            else:
                # one copy: bytes of a slice of bytes, or of a view of a buffer
                self._take(data[j:a] if mv is None else bytes(mv[j:a]), out)
            i = a + 1
            if i < end and data[i] == 10 and data[a] == 13:
                i += 1  # CRLF
        return out

    def _take(self, line, out):
        d = line.rfind(b"$")
        if d > 0:  # restart at the last '$': what precedes it was cut short
            self.garbage += d
            line = line[d:]
        r = parse_line(line)
        if type(r) is str:
            if r == "checksum":
                self.bad_checksum += 1
            elif r == "proprietary":
                self.proprietary += 1
            elif r == "unknown":
                self.unknown += 1
            else:
                self.malformed += 1
            return
        self.ok += 1
        out.append(r)
