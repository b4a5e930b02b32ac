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
from firmware.nmea import NmeaReader

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
