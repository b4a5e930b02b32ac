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
  - Numeric fields are checked; a sentence with a malformed field is
    dropped whole and counted as malformed (never half-applied).
  - Bytes outside sentences (other than CR/LF) count as garbage.

The line buffer is one preallocated bytearray; feed() copies runs of bytes
into it with slice assignment, never builds strings per character.
Must stay in sync with: firmware/fix.py (Sentence attributes), the
docs/firmware-sensing.md table of counters.
"""

try:
    from micropython import const
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
    status ("A"/"V", RMC and GLL); faa ("A", "D", "N", ... RMC/GLL/VTG
    NMEA 2.3+ mode indicator); quality (GGA fix quality int); gns_mode
    (GNS mode characters, str); fix_type (GSA 1/2/3); sats (GGA/GNS in use,
    GSA count of PRNs); hdop_x10; alt_m; speed_cms; course_cdeg.
    """

    def __init__(self, kind, talker):
        self.kind = kind
        self.talker = talker
        self.time_ms = None
        self.date = None
        self.lat_e7 = None
        self.lon_e7 = None
        self.status = None
        self.faa = None
        self.quality = None
        self.gns_mode = None
        self.fix_type = None
        self.sats = None
        self.hdop_x10 = None
        self.alt_m = None
        self.speed_cms = None
        self.course_cdeg = None

    def __repr__(self):
        return "<%s%s t=%r lat=%r lon=%r>" % (self.talker, KIND_NAMES.get(self.kind, "?"), self.time_ms,
                                             self.lat_e7, self.lon_e7)


# ---- field parsers (bytes in, ints out; raise Malformed) -------------------

def _digits(b):
    """Unsigned decimal integer from bytes of digits only."""
    if not b:
        raise Malformed("empty number")
    v = 0
    for c in b:
        if c < 48 or c > 57:
            raise Malformed("bad digit")
        v = v * 10 + c - 48
    return v


def dec(b, places):
    """Decimal text to int scaled by 10**places, rounded half away from
    zero. Empty -> None. '-1.25', '+3', '.5', '7.' are accepted."""
    if not b:
        return None
    neg = False
    if b[0] == 45:  # '-'
        neg = True
        b = b[1:]
    elif b[0] == 43:  # '+'
        b = b[1:]
    p = b.find(b".")
    if p < 0:
        ip, fp = b, b""
    else:
        ip, fp = b[:p], b[p + 1:]
    if not ip and not fp:
        raise Malformed("bad decimal")
    v = _digits(ip) if ip else 0
    for _ in range(places):
        v *= 10
    if fp:
        if len(fp) > places:
            f = _digits(fp[:places]) if places else 0
            if fp[places] >= 53:  # rounding digit >= '5'
                f += 1
            _digits(fp[places:])  # the rest must be digits too
        else:
            f = _digits(fp)
            for _ in range(places - len(fp)):
                f *= 10
        v += f
    return -v if neg else v


def coord(b, hemi, maxdeg):
    """'ddmm.mmmm' (or 'dddmm.mmmm') + hemisphere to 1e-7 degrees.
    Both empty -> None. Exact integer arithmetic: minutes are taken to
    7 decimals (1e-7 minute < 2e-9 degree) and divided by 60 with rounding."""
    if not b and not hemi:
        return None
    p = b.find(b".")
    ip = b if p < 0 else b[:p]
    fp = b"" if p < 0 else b[p + 1:]
    if len(ip) < 3:
        raise Malformed("bad coordinate")
    deg = _digits(ip[:-2])
    mins = _digits(ip[-2:])
    frac = 0
    if fp:
        f7 = fp[:7]
        frac = _digits(f7)
        for _ in range(7 - len(f7)):
            frac *= 10
        if len(fp) > 7:
            _digits(fp[7:])
    if mins >= 60 or deg > maxdeg:
        raise Malformed("coordinate out of range")
    m7 = mins * 10000000 + frac  # minutes * 1e7
    v = deg * 10000000 + (m7 + 30) // 60
    if v > maxdeg * 10000000:
        raise Malformed("coordinate out of range")
    if hemi == b"S" or hemi == b"W":
        return -v
    if hemi == b"N" or hemi == b"E":
        return v
    raise Malformed("bad hemisphere")


def utc_time(b):
    """'hhmmss[.sss]' to ms since midnight; empty -> None."""
    if not b:
        return None
    if len(b) < 6:
        raise Malformed("bad time")
    h = _digits(b[0:2])
    m = _digits(b[2:4])
    s = _digits(b[4:6])
    ms = 0
    if len(b) > 6:
        if b[6] != 46:
            raise Malformed("bad time")
        fp = b[7:10]
        if fp:
            ms = _digits(fp)
            for _ in range(3 - len(fp)):
                ms *= 10
    if h > 23 or m > 59 or s > 60:
        raise Malformed("time out of range")
    return ((h * 60 + m) * 60 + s) * 1000 + ms


def _date(b):
    """RMC 'ddmmyy' to (year, month, day); empty -> None. Years 80-99 are
    19xx (NMEA's two-digit year; GPS began in 1980)."""
    if not b:
        return None
    if len(b) != 6:
        raise Malformed("bad date")
    d = _digits(b[0:2])
    m = _digits(b[2:4])
    y = _digits(b[4:6])
    if not (1 <= d <= 31 and 1 <= m <= 12):
        raise Malformed("date out of range")
    return (y + (1900 if y >= 80 else 2000), m, d)


def _int(b):
    return _digits(b) if b else None


def _knots_to_cms(b):
    k = dec(b, 3)  # milli-knots
    if k is None:
        return None
    # 1 kn = 1852/3600 m/s = 51.444 cm/s
    return (abs(k) * 1852 + 18000) // 36000 * (1 if k >= 0 else -1)


def _kmh_to_cms(b):
    k = dec(b, 3)
    if k is None:
        return None
    # 1 km/h = 100000/3600 cm/s; k is in 1/1000 km/h
    return (abs(k) * 100 + 1800) // 3600 * (1 if k >= 0 else -1)


def _ch(b):
    return b.decode() if b else None


def _f(fields, i):
    return fields[i] if i < len(fields) else b""


# ---- per-kind parsers -----------------------------------------------------

def _gga(s, f):
    # $xxGGA,time,lat,N,lon,E,quality,sats,hdop,alt,M,sep,M,age,station
    s.time_ms = utc_time(_f(f, 1))
    s.lat_e7 = coord(_f(f, 2), _f(f, 3), 90)
    s.lon_e7 = coord(_f(f, 4), _f(f, 5), 180)
    s.quality = _int(_f(f, 6))
    s.sats = _int(_f(f, 7))
    s.hdop_x10 = dec(_f(f, 8), 1)
    a = dec(_f(f, 9), 1)
    s.alt_m = None if a is None else (a + 5) // 10 if a >= 0 else -((-a + 5) // 10)


def _rmc(s, f):
    # $xxRMC,time,status,lat,N,lon,E,sog_kn,cog,ddmmyy,magvar,E/W[,faa[,navstatus]]
    s.time_ms = utc_time(_f(f, 1))
    s.status = _ch(_f(f, 2))
    s.lat_e7 = coord(_f(f, 3), _f(f, 4), 90)
    s.lon_e7 = coord(_f(f, 5), _f(f, 6), 180)
    s.speed_cms = _knots_to_cms(_f(f, 7))
    s.course_cdeg = dec(_f(f, 8), 2)
    s.date = _date(_f(f, 9))
    s.faa = _ch(_f(f, 12)[:1])


def _gsa(s, f):
    # $xxGSA,A/M,fixtype,prn*12,pdop,hdop,vdop[,systemid]
    # A GSA with fewer than 12 PRN slots is malformed (i.Trek M3 sends
    # "$GPGSA,A,1,,,,*32"): fix_type stays None and the tracker ignores it.
    s.sats = 0
    if len(f) < 18:
        return
    s.fix_type = _int(_f(f, 2))
    std = len(f) <= 19  # 12 PRN slots, 3 DOPs, optional NMEA 4.1 system id
    n = 0
    for i in range(3, 15 if std else len(f) - 3):
        if f[i] and _digits(f[i]) > 0:
            n += 1
    s.sats = n
    if std:  # DOPs of longer forms (24 PRN slots) are not trusted
        s.hdop_x10 = dec(f[16], 1)


def _gns(s, f):
    # $xxGNS,time,lat,N,lon,E,modes,sats,hdop,alt,sep,age,station[,navstatus]
    s.time_ms = utc_time(_f(f, 1))
    s.lat_e7 = coord(_f(f, 2), _f(f, 3), 90)
    s.lon_e7 = coord(_f(f, 4), _f(f, 5), 180)
    s.gns_mode = _ch(_f(f, 6))
    s.sats = _int(_f(f, 7))
    s.hdop_x10 = dec(_f(f, 8), 1)
    a = dec(_f(f, 9), 1)
    s.alt_m = None if a is None else (a + 5) // 10 if a >= 0 else -((-a + 5) // 10)
    s.status = _ch(_f(f, 13)[:1])  # NMEA 4.1 navigational status (S/C/U/V)


def _gll(s, f):
    # $xxGLL,lat,N,lon,E,time,status[,faa]
    s.lat_e7 = coord(_f(f, 1), _f(f, 2), 90)
    s.lon_e7 = coord(_f(f, 3), _f(f, 4), 180)
    s.time_ms = utc_time(_f(f, 5))
    s.status = _ch(_f(f, 6))
    s.faa = _ch(_f(f, 7)[:1])


def _vtg(s, f):
    # $xxVTG,cog,T,cogm,M,sog,N,kph,K[,faa]   (old form: $xxVTG,cog,cogm,sog,kph)
    if _f(f, 2) == b"T":
        s.course_cdeg = dec(_f(f, 1), 2)
        s.speed_cms = _knots_to_cms(_f(f, 5))
        if s.speed_cms is None:
            s.speed_cms = _kmh_to_cms(_f(f, 7))
        s.faa = _ch(_f(f, 9)[:1])
    else:
        s.course_cdeg = dec(_f(f, 1), 2)
        s.speed_cms = _knots_to_cms(_f(f, 3))


_PARSERS = {GGA: _gga, RMC: _rmc, GSA: _gsa, GNS: _gns, GLL: _gll, VTG: _vtg}


def parse_line(line):
    """Parse one whole sentence (bytes from '$' to the last checksum digit,
    no line ending). Returns a Sentence, or one of the strings 'checksum',
    'proprietary', 'unknown', 'malformed' naming why it was dropped."""
    n = len(line)
    if n < 9 or line[n - 3] != 42:  # '*'
        return "checksum"
    hi = _HEX.find(line[n - 2:n - 1])
    lo = _HEX.find(line[n - 1:n])
    if hi < 0 or lo < 0:
        return "checksum"
    c = 0
    for b in line[1:n - 3]:
        c ^= b
    if c != ((hi & 15) << 4 | (lo & 15)):
        return "checksum"
    if line[1] == 80:  # 'P'
        return "proprietary"
    kind = KINDS.get(line[3:6])
    if kind is None or line[6] != 44:
        return "unknown"
    t0 = line[1]
    t1 = line[2]
    if not (65 <= t0 <= 90 and 65 <= t1 <= 90):
        return "unknown"
    s = Sentence(kind, line[1:3].decode())
    try:
        _PARSERS[kind](s, line[1:n - 3].split(b","))
    except Malformed:
        return "malformed"
    return s


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

    def feed(self, data):
        out = []
        i = 0
        end = len(data)
        mv = memoryview(data)
        while i < end:
            if not self._in:
                j = data.find(b"$", i)
                stop = end if j < 0 else j
                for k in range(i, stop):
                    c = data[k]
                    if c != 10 and c != 13:
                        self.garbage += 1
                if j < 0:
                    return out
                self._in = True
                self._over = False
                self._n = 0
                i = j
            # inside a sentence: copy up to the line end
            a = data.find(b"\n", i)
            b = data.find(b"\r", i)
            if a < 0 or (0 <= b < a):
                a = b
            stop = end if a < 0 else a
            k = stop - i
            if not self._over:
                n = self._n
                if n + k > self._max:
                    self._over = True
                else:
                    self._mv[n:n + k] = mv[i:stop]
                    self._n = n + k
            i = stop
            if a < 0:
                return out
            # line complete
            self._in = False
            if self._over:
                self.too_long += 1
                continue
            s = self._line()
            if s is not None:
                out.append(s)
        return out

    def _line(self):
        line = bytes(self._mv[:self._n])
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
            return None
        self.ok += 1
        return r
