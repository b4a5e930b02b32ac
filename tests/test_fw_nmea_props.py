"""Property tests of the NMEA reader and fix tracker (host only).

1. Any bytes, in any chunking, never raise and never yield a sentence
   whose checksum was wrong: every yielded sentence is one of the valid
   sentences that were put in the stream.
2. Chunking never changes the result: valid sentences mixed with junk,
   fed whole and fed split at random points, give the same sentences and
   the same counters.
PANIC_PROPS_EXAMPLES raises the example count for long runs.
"""

import os

from hypothesis import given, settings
from hypothesis import strategies as st
from nmeautil import ck

from firmware.fix import FixTracker
from firmware.nmea import Malformed, NmeaReader, coord, dec, utc_time

EXAMPLES = int(os.environ.get("PANIC_PROPS_EXAMPLES", "60"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None)

VALID = [
    ck("GPGGA,123519,4807.038,N,01131.324,E,1,08,0.9,545.4,M,46.9,M,,"),
    ck("GNRMC,225446.33,A,4916.45,N,12311.12,W,000.5,054.7,191194,020.3,E,A"),
    ck("GPGSA,A,3,04,05,,09,12,,,24,,,,,2.5,1.3,2.1"),
    ck("GNGNS,224749.00,3333.4268304,N,11153.3538273,W,DA,19,0.6,406.110,-26.294,6.0,0138,S"),
    ck("GLGLL,4916.45,N,12311.12,W,225444,A,A"),
    ck("BDVTG,054.7,T,034.4,M,005.5,N,010.2,K,A"),
    ck("GPRMC,,V,,,,,,,,,,N"),
]
JUNK = st.binary(max_size=40).filter(lambda b: b"$" not in b)
pieces = st.lists(st.one_of(st.sampled_from(VALID), JUNK.map(lambda b: b + b"\r\n")), max_size=25)


def sig(s):
    return (s.kind, s.talker, s.time_ms, s.date, s.lat_e7, s.lon_e7, s.status, s.faa, s.quality, s.gns_mode,
            s.fix_type, s.sats, s.hdop_x10, s.alt_m, s.speed_cms, s.course_cdeg)


VALID_SIGS = {sig(NmeaReader().feed(v)[0]) for v in VALID}


def feed_split(stream, cuts):
    r = NmeaReader()
    out = []
    prev = 0
    for c in sorted(set(cuts)) + [len(stream)]:
        out += r.feed(stream[prev:c])
        prev = c
    return [sig(s) for s in out], r.counters()


@SETTINGS
@given(st.binary(max_size=600), st.lists(st.integers(0, 600), max_size=20))
def test_random_bytes_never_raise_nor_fake_sentences(data, cuts):
    got, _ = feed_split(data, [c for c in cuts if c <= len(data)])
    assert all(g in VALID_SIGS for g in got)
    t = FixTracker()
    t.feed(data, 0)
    assert t.position(0) is None and t.mode == 1  # random bytes are never a fix


@SETTINGS
@given(pieces, st.lists(st.integers(0, 3000), max_size=30))
def test_chunking_never_changes_the_result(parts, cuts):
    stream = b"".join(parts)
    whole, cw = feed_split(stream, [])
    split, cs = feed_split(stream, [c for c in cuts if c <= len(stream)])
    assert split == whole and cs == cw
    # every valid sentence put in is found (junk lines end in CRLF, so
    # they cannot swallow a sentence)
    assert len(whole) == sum(1 for p in parts if p in VALID)


@SETTINGS
@given(pieces, st.lists(st.integers(0, 3000), max_size=30), st.integers(1, 300), st.binary(min_size=1, max_size=8))
def test_a_buffer_read_into_again_and_again_gives_what_the_bytes_give(parts, cuts, size, stale):
    # the device reads its NMEA UART into one buffer (app.py gnss_rx):
    # what the buffer held before, past this read's end, is never read
    stream = b"".join(parts)
    whole, cw = feed_split(stream, [])
    r = NmeaReader()
    buf = bytearray((stale * (size // len(stale) + 1))[:size])
    got = []
    prev = 0
    for c in sorted(set(x for x in cuts if x <= len(stream))) + [len(stream)]:
        while prev < c:  # a UART read returns at most len(buf)
            n = min(size, c - prev)
            buf[:n] = stream[prev:prev + n]
            got += r.feed(buf, n)
            prev += n
    assert [sig(x) for x in got] == whole and r.counters() == cw


# ---- field parsers against references built from the NMEA text rules ----
# (exact arithmetic with Fraction; each rule written from the field's
# definition, not from the parser's code)

FIELD = st.one_of(
    st.text("0123456789.+-", max_size=14),
    st.text("0123456789.+-NSx ", max_size=14),
    st.from_regex(r"\A[+-]?[0-9]{0,6}\.?[0-9]{0,9}\Z"),
).map(str.encode)
COORD = st.one_of(FIELD, st.from_regex(r"\A[0-9]{3,6}(\.[0-9]{0,10})?\Z").map(str.encode))
TIME = st.one_of(FIELD, st.from_regex(r"\A[0-2][0-9][0-6][0-9][0-6][0-9](\.[0-9]{0,6})?\Z").map(str.encode))
HEMI = st.sampled_from([b"N", b"S", b"E", b"W", b"", b"X", b"n"])


def outcome(fn, *args):
    try:
        return fn(*args)
    except Malformed:
        return "malformed"


def ref_dec(b, places):
    """Decimal text -> value * 10**places, rounded half away from zero."""
    import re
    from fractions import Fraction

    if not b:
        return None
    m = re.fullmatch(rb"([+-]?)([0-9]*)(?:\.([0-9]*))?", b)
    if not m or not (m.group(2) or m.group(3)):
        return "malformed"
    v = Fraction(int(m.group(2) or b"0")) + Fraction(int(m.group(3) or b"0"), 10 ** len(m.group(3) or b""))
    r = int(v * 10 ** places + Fraction(1, 2))
    return -r if m.group(1) == b"-" else r


def ref_coord(b, hemi, maxdeg):
    """[d]ddmm[.mmmm]: degrees, then two digits of whole minutes; minutes
    to 7 decimals (truncated), then to 1e-7 degree, rounded half up."""
    import re
    from fractions import Fraction

    if not b and not hemi:
        return None
    m = re.fullmatch(rb"([0-9]+)([0-9][0-9])(?:\.([0-9]*))?", b)
    if not m or len(m.group(1)) < 1:
        return "malformed"
    deg, mins = int(m.group(1)), int(m.group(2))
    frac = (m.group(3) or b"")[:7].ljust(7, b"0")
    minutes = Fraction(mins) + Fraction(int(frac), 10 ** 7)
    if mins >= 60 or deg > maxdeg:
        return "malformed"
    v = deg * 10 ** 7 + int(minutes * 10 ** 7 / 60 + Fraction(1, 2))
    if v > maxdeg * 10 ** 7 or hemi not in (b"N", b"S", b"E", b"W"):
        return "malformed"
    return -v if hemi in (b"S", b"W") else v


def ref_time(b):
    """hhmmss[.f...]: ms of the day; fraction digits past the third dropped."""
    import re

    if not b:
        return None
    m = re.fullmatch(rb"([0-9]{2})([0-9]{2})([0-9]{2})(?:\.([0-9]*))?", b)
    if not m:
        return "malformed"
    h, mi, s = int(m.group(1)), int(m.group(2)), int(m.group(3))
    if h > 23 or mi > 59 or s > 60:
        return "malformed"
    return ((h * 60 + mi) * 60 + s) * 1000 + int((m.group(4) or b"")[:3].ljust(3, b"0"))


@SETTINGS
@given(FIELD, st.integers(0, 7))
def test_dec_matches_the_decimal_rule(b, places):
    assert outcome(dec, b, places) == ref_dec(b, places), b


@SETTINGS
@given(COORD, HEMI, st.sampled_from([90, 180]))
def test_coord_matches_the_ddmm_rule(b, hemi, maxdeg):
    assert outcome(coord, b, hemi, maxdeg) == ref_coord(b, hemi, maxdeg), (b, hemi)


@SETTINGS
@given(TIME)
def test_utc_time_matches_the_hhmmss_rule(b):
    assert outcome(utc_time, b) == ref_time(b), b
