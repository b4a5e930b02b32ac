"""GNSS fix tracker: what the device believes about where it is.

Owns: the current fix built from NMEA sentences (firmware/nmea.py), its
validity and gpsd-style mode, the last known good fix with the monotonic
time it was taken, and GNSS UTC for setting the wall clock.

Never does: I/O or reading a clock (the caller passes now_ms, a monotonic
ms count), floats, waiting for a fix (position() answers at once).

Trust rules (a wrong position sends help to the wrong door):
  - A position is taken only from a sentence that says it is a fix:
    RMC status A/D, GGA quality > 0 with satellites in use, GNS whose
    first mode character is not N, GLL status A; and never when the NMEA
    2.3 FAA mode is N. RMC V, GGA 0 and GLL V positions are never used,
    however plausible (the refused one is kept in `rejected`).
  - A sentence that says "no fix" (RMC V, GGA quality 0, GNS N, GLL V,
    GSA fix type 1) ends the live fix at once; the last known fix stays,
    with the monotonic time it arrived.
  - mode follows gpsd's TPV mode (1 no fix, 2 2D, 3 3D) with gpsd's
    rules per sentence (docs/firmware-sensing.md lists them); it is
    checked against gpsd on its whole corpus (tests/device/gpsd_compare.py).
  - A live fix is one whose last position arrived within live_max_age_ms
    (the tracker's live_ms unless given: 3 s for a receiver reporting every
    second; the owner widens it when the receiver reports less often) and
    that no later sentence revoked.

Accuracy estimate: accuracy_m = ceil((HDOP + 0.05) * 7.5 m), at least 1 m;
100 m when HDOP is unknown (the 0.05: HDOP arrives rounded to tenths);
plus two seconds of motion at the fix's speed (ceil(2 x speed m/s)
metres): the age counts whole seconds from the sentence's arrival, and the
epoch it describes is up to a second before that plus the time the
receiver takes to report it (a module reporting every few seconds, as the
SIM7600 with AT+CGPSINFOCFG=<time>, may report when its newest epoch is
not yet out: the one before, over a second old; not documented, so
another second is allowed). 7.5 m is three times the typical 2.5 m RMS user range
error of a consumer receiver: the claim is a radius responders can search
inside, not a 1- or 2-sigma figure (HDOP x 5 m is exceeded by ~2 % of
fixes, and an understated radius sends people to the wrong door).

Must stay in sync with: protocol/frame.py SRC_GNSS / SRC_LAST_FIX, the
Report position fields (accuracy and age are u16, 0xFFFF unknown).
"""

from firmware.nmea import GGA, GLL, GNS, GSA, RMC, VTG, NmeaReader

try:
    from micropython import const  # pyright: ignore[reportAssignmentType]
except ImportError:  # CPython

    def const(x):
        return x


SRC_GNSS = const(1)  # == protocol.frame.SRC_GNSS
SRC_LAST_FIX = const(2)  # == protocol.frame.SRC_LAST_FIX

MODE_NO_FIX = const(1)
MODE_2D = const(2)
MODE_3D = const(3)

UERE_DM = const(75)  # claimed radius per unit HDOP, decimetres (3 x 2.5 m RMS)
ACCURACY_UNKNOWN_HDOP_M = const(100)
AGE_CAP_S = const(0xFFFE)
ACC_CAP_M = const(0xFFFE)


def days_from_civil(y, m, d):
    """Days since 1970-01-01 of a proleptic Gregorian date (integer only)."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def accuracy_from_hdop(hdop_x10):
    if hdop_x10 is None:
        return ACCURACY_UNKNOWN_HDOP_M
    # hdop_x10 was rounded to tenths from the sentence (0.81 -> 8): claim
    # for the largest HDOP that rounds to it (+0.05), then round the metres up
    a = ((2 * hdop_x10 + 1) * UERE_DM + 199) // 200
    if a < 1:
        return 1
    return ACC_CAP_M if a > ACC_CAP_M else a


class Position:
    """A position as the alert controller needs it (all ints)."""

    def __init__(self, source, lat, lon, accuracy_m, age_s, alt_m, speed_cms, course_cdeg, sats, hdop_x10):
        self.source = source
        self.lat = lat
        self.lon = lon
        self.accuracy_m = accuracy_m
        self.age_s = age_s
        self.alt_m = alt_m
        self.speed_cms = speed_cms
        self.course_cdeg = course_cdeg
        self.sats = sats
        self.hdop_x10 = hdop_x10

    def __repr__(self):
        return "Position(src=%d lat=%d lon=%d acc=%dm age=%ds)" % (
            self.source, self.lat, self.lon, self.accuracy_m, self.age_s)


class FixTracker:
    """Feed it GNSS bytes (feed) or parsed sentences (apply)."""

    def __init__(self, min_year=2020):
        self.reader = NmeaReader()
        self.min_year = min_year
        self.live_ms = 3000  # a position this recent is live (see the module doc)
        self.mode = MODE_NO_FIX
        self.valid = False  # a trusted position is current (not revoked)
        # current fix (values from the latest sentences that carried them)
        self.lat_e7 = None
        self.lon_e7 = None
        self.alt_m = None
        self.hdop_x10 = None
        self.sats = None
        self.speed_cms = None
        self.course_cdeg = None
        self.time_ms = None  # UTC ms of day of the latest timed sentence
        self.fix_ms = None  # monotonic ms when the current position arrived
        # last known good fix: (lat, lon, alt, hdop, sats, speed, course)
        self.last = None
        self.last_ms = None
        # GNSS clock: unix ms at a monotonic instant (from RMC A with date)
        self._utc_unix_ms = None
        self._utc_at_ms = None
        self._utc_tms = None  # UTC ms of day of the RMC that set it (redate)
        self._pos_tms = None  # ... of the sentence that set the live position
        self._last_tms = None  # ... and the last known one
        # last position a receiver sent but marked invalid: (kind, lat, lon)
        self.rejected = None
        self.spare = 0  # GLL and VTG applied: sentences a module asked to send less does not send (app.py _read_gnss)
        # gpsd-compatible mode bookkeeping
        self._alt_known = False  # the latest GGA/GNS carried an altitude
        self._sats_used = 0  # PRNs in this cycle's GSAs
        self._gsa_talker = None  # second letter of the last GSA talker
        self._gsa_other = False  # a non-GP GSA has been seen
        self._gga_talker = None
        self._gga_time = None
        self._latch = False  # last GGA repeated its timestamp
        self._rmc_time = -1  # time of the last RMC with a fix

    # ---- input ----------------------------------------------------------

    def feed(self, data, now_ms, end=-1):
        """Bytes from the GNSS UART (data[:end] when end >= 0: a buffer read
        into). Returns the number of sentences used."""
        n = 0
        for s in self.reader.feed(data, end):
            self.apply(s, now_ms)
            n += 1
        return n

    def redate(self, now_ms, span_ms, age=0):
        """After a UART read that may have held up to span_ms of epochs, all
        fed at now_ms: date the position (live and last known) and the UTC
        clock by their sentences' own UTC times against the newest sentence
        read, which arrived age ms before now_ms (0: a read while fresh),
        never more than span_ms back. So only the newest epoch counts as
        arriving then. Holds nothing: the read's bytes are fed as they
        come (the device's heap)."""
        newest = self.time_ms
        if newest is None:
            return
        span_ms -= age
        at = now_ms - age
        if self.fix_ms == now_ms and self._pos_tms is not None:
            self.fix_ms = at - self._lag(newest, self._pos_tms, span_ms)
        if self.last_ms == now_ms and self._last_tms is not None:
            self.last_ms = at - self._lag(newest, self._last_tms, span_ms)
        if self._utc_at_ms == now_ms and self._utc_tms is not None:
            self._utc_at_ms = at - self._lag(newest, self._utc_tms, span_ms)

    @staticmethod
    def _lag(newest, t, span_ms):
        lag = (newest - t) % 86400000  # ms of day: a read across midnight
        return lag if lag < span_ms else span_ms

    def apply(self, s, now_ms):
        """One parsed sentence. The rules are gpsd's NMEA driver rules
        (docs/firmware-sensing.md), except where the device is stricter:
        GGA quality 0 / empty and FAA mode N never give a position."""
        k = s.kind
        if s.time_ms is not None:
            self.time_ms = s.time_ms
        if k == GGA:
            self._gga(s, now_ms)
        elif k == RMC:
            self._rmc(s, now_ms)
        elif k == GSA:
            self._gsa(s)
        elif k == GNS:
            self._gns(s, now_ms)
        elif k == GLL:
            self.spare += 1
            self._gll(s, now_ms)
        elif k == VTG:
            self.spare += 1
            if s.faa == "N" or s.faa == "E" or s.course_cdeg is None or s.speed_cms is None:
                return
            self._motion(s)

    def _gga(self, s, now_ms):
        # a repeated GGA timestamp (same talker) means a receiver that lost
        # lock and repeats its last fix: GSAs that follow are not trusted
        t = s.talker
        if self._gga_talker is not None and self._gga_talker != t:
            self._latch = False
        else:
            self._latch = s.time_ms == self._gga_time
        self._gga_talker = t
        if not self._latch:
            self._gga_time = s.time_ms
        if s.hdop_x10 is not None and s.hdop_x10 < 990:
            self.hdop_x10 = s.hdop_x10
        self._alt_known = s.alt_m is not None
        sats = s.sats or 0
        if s.lat_e7 is None or s.lon_e7 is None:
            self._revoke()
        elif not s.quality or sats == 0:  # quality 0 / empty, or no satellites
            self._reject(s)
        else:
            self.sats = sats
            mode = MODE_3D if s.alt_m is not None and sats >= 4 else MODE_2D
            if mode == MODE_2D and self.mode == MODE_3D and self._rmc_time == s.time_ms and s.alt_m is not None:
                mode = MODE_3D  # the RMC of this epoch already showed a 3D fix
            self._position(s, now_ms, mode)

    def _rmc(self, s, now_ms):
        if s.status != "A" and s.status != "D":
            self._revoke()
            return
        if s.lat_e7 is None or s.lon_e7 is None:
            self._revoke()
            return
        if s.faa == "N":
            self._reject(s)
            return
        self._rmc_time = s.time_ms
        mode = MODE_3D if self.mode == MODE_3D else MODE_2D
        if self._sats_used > 3 or self._alt_known:
            mode = MODE_3D
        self._position(s, now_ms, mode)
        self._motion(s)
        if s.date is not None and s.time_ms is not None and s.date[0] >= self.min_year:
            y, m, d = s.date
            self._utc_unix_ms = days_from_civil(y, m, d) * 86400000 + s.time_ms
            self._utc_at_ms = now_ms
            self._utc_tms = s.time_ms

    def _gll(self, s, now_ms):
        if s.status != "A" or s.lat_e7 is None or s.lon_e7 is None:
            self._revoke()
            return
        if s.faa == "N":
            self._reject(s)
            return
        if self._alt_known or self._sats_used > 3:
            mode = MODE_3D
        elif self.mode < MODE_2D or not self._alt_known:
            mode = MODE_2D
        else:
            mode = self.mode
        self._position(s, now_ms, mode)

    def _gns(self, s, now_ms):
        gm = s.gns_mode
        if not gm or gm[0] == "N":  # gpsd reads the first (GPS) character only
            self._revoke()
            return
        if s.status == "U" or s.status == "V":  # NMEA 4.1 nav status: unsafe
            return
        if s.hdop_x10 is not None:
            self.hdop_x10 = s.hdop_x10
        if s.lat_e7 is None or s.lon_e7 is None:
            self._revoke()
            return
        sats = s.sats or 0
        self._alt_known = s.alt_m is not None
        self.sats = sats
        self._position(s, now_ms, MODE_3D if s.alt_m is not None and sats > 3 else MODE_2D)

    def _gsa(self, s):
        ft = s.fix_type
        if ft is None or self._latch:
            return
        t = s.talker[1]
        last = self._gsa_talker
        # GSAs of several constellations in one cycle add up; a GSA of the
        # same talker again (other than GN, which comes once per system)
        # starts a new count
        if last is None or (t == last and t != "N"):
            self._sats_used = 0
        self._sats_used += s.sats
        self._gsa_talker = t
        if t != "P":
            self._gsa_other = True
        if s.hdop_x10 is not None and s.hdop_x10 < 990:
            self.hdop_x10 = s.hdop_x10
        if t == "P" and self._gsa_other:
            return  # a GPGSA after GN/GL/BD GSAs: the combined ones rule the mode
        if ft == MODE_3D or (ft == MODE_2D and not (self.mode == MODE_3D and self._alt_known)):
            # a 2D GSA does not undo a 3D fix whose GGA/GNS had an altitude
            self.mode = ft
        elif ft == MODE_NO_FIX:
            self._revoke()

    def _motion(self, s):
        if s.speed_cms is not None:
            self.speed_cms = s.speed_cms
        if s.course_cdeg is not None:
            self.course_cdeg = s.course_cdeg
        if self.valid and self.last is not None:
            self._snapshot(self.last_ms)

    def _position(self, s, now_ms, mode):
        self.lat_e7 = s.lat_e7
        self.lon_e7 = s.lon_e7
        if s.alt_m is not None:
            self.alt_m = s.alt_m
        self.mode = mode
        self.valid = True
        self.rejected = None
        self.fix_ms = now_ms
        self._snapshot(now_ms)
        self._pos_tms = self._last_tms = s.time_ms if s.time_ms is not None else self.time_ms

    def _reject(self, s):
        """A position the receiver itself marks invalid: never used."""
        self.rejected = (s.kind, s.lat_e7, s.lon_e7)
        self._revoke()

    def _snapshot(self, now_ms):
        self.last = (self.lat_e7, self.lon_e7, self.alt_m, self.hdop_x10, self.sats, self.speed_cms,
                     self.course_cdeg)
        self.last_ms = now_ms

    def _revoke(self):
        self.mode = MODE_NO_FIX
        self.valid = False

    # ---- output ---------------------------------------------------------

    def has_live_fix(self, now_ms, live_max_age_ms=None):
        if live_max_age_ms is None:
            live_max_age_ms = self.live_ms
        return (self.valid and self.mode >= MODE_2D and self.fix_ms is not None
                and 0 <= now_ms - self.fix_ms <= live_max_age_ms)

    def position(self, now_ms, live_max_age_ms=None):
        """Best GNSS position now: the live fix (source 1), else the last
        known good fix (source 2) with its age, else None."""
        if self.last is None:
            return None
        live = self.has_live_fix(now_ms, live_max_age_ms)
        lat, lon, alt, hdop, sats, speed, course = self.last
        age = (now_ms - self.last_ms) // 1000
        if age < 0:
            age = 0
        elif age > AGE_CAP_S:
            age = AGE_CAP_S
        acc = accuracy_from_hdop(hdop)
        if speed:
            # the age counts from the sentence's arrival, but the fix is of
            # its epoch, up to a second earlier plus the module's report
            # delay (module doc): cover two seconds of motion
            acc += (2 * speed + 99) // 100
            if acc > ACC_CAP_M:
                acc = ACC_CAP_M
        return Position(SRC_GNSS if live else SRC_LAST_FIX, lat, lon, acc, age, alt,
                        speed, course, sats, hdop)

    def utc_seconds(self, now_ms):
        """Unix seconds now, from the latest RMC with status A and a date
        (year >= min_year), advanced by the monotonic time since; else None."""
        if self._utc_unix_ms is None:
            return None
        return (self._utc_unix_ms + (now_ms - self._utc_at_ms)) // 1000

    def counters(self):
        return self.reader.counters()
