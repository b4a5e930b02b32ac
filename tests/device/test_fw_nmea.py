"""NMEA reader: parsed whole, one byte at a time and with trailing junk,
plus real captures from gpsd's corpus (fed in several chunkings)."""

import heap
from mpcheck import raises
from nmeautil import ck

from firmware import nmea
from firmware.nmea import GGA, GLL, GNS, GSA, RMC, VTG, Malformed, NmeaReader

heap.release()


GGA_L = ck("GPGGA,123519,4807.038,N,01131.324,E,1,08,0.9,545.4,M,46.9,M,,")
RMC_L = ck("GNRMC,225446.33,A,4916.45,N,12311.12,W,000.5,054.7,191194,020.3,E,A")
GSA_L = ck("GPGSA,A,3,04,05,,09,12,,,24,,,,,2.5,1.3,2.1")
GNS_L = ck("GNGNS,224749.00,3333.4268304,N,11153.3538273,W,DA,19,0.6,406.110,-26.294,6.0,0138,S")
GLL_L = ck("GLGLL,4916.45,N,12311.12,W,225444,A,A")
VTG_L = ck("BDVTG,054.7,T,034.4,M,005.5,N,010.2,K,A")
STREAM = GGA_L + RMC_L + GSA_L + GNS_L + GLL_L + VTG_L


def sig(s):
    return (s.kind, s.talker, s.time_ms, s.date, s.lat_e7, s.lon_e7, s.status, s.faa, s.quality, s.gns_mode,
            s.fix_type, s.sats, s.hdop_x10, s.alt_m, s.speed_cms, s.course_cdeg)


def check_stream(got):
    assert [s.kind for s in got] == [GGA, RMC, GSA, GNS, GLL, VTG]
    g, r, a, n, gl, v = got
    assert (g.talker, g.time_ms, g.lat_e7, g.lon_e7, g.quality, g.sats, g.hdop_x10, g.alt_m) == (
        "GP", (12 * 3600 + 35 * 60 + 19) * 1000, 481173000, 115220667, 1, 8, 9, 545)
    assert (r.talker, r.time_ms, r.status, r.date, r.lat_e7, r.lon_e7, r.faa) == (
        "GN", (22 * 3600 + 54 * 60 + 46) * 1000 + 330, "A", (1994, 11, 19), 492741667, -1231853333, "A")
    assert r.speed_cms == 26 and r.course_cdeg == 5470  # 0.5 kn = 25.7 cm/s
    assert (a.fix_type, a.sats, a.hdop_x10) == (3, 5, 13)
    assert (n.gns_mode, n.sats, n.hdop_x10, n.alt_m, n.lat_e7, n.lon_e7) == ("DA", 19, 6, 406, 335571138, -1118892305)
    assert (gl.talker, gl.status, gl.faa, gl.lat_e7, gl.time_ms) == ("GL", "A", "A", 492741667, 82484000)
    assert (v.talker, v.course_cdeg, v.speed_cms, v.faa) == ("BD", 5470, 283, "A")  # 5.5 kn


def test_whole_input():
    r = NmeaReader()
    check_stream(r.feed(STREAM))
    assert r.ok == 6 and r.garbage == 0 and r.bad_checksum == 0


def test_one_byte_at_a_time():
    r = NmeaReader()
    got = []
    for i in range(len(STREAM)):
        got.extend(r.feed(STREAM[i:i + 1]))
    check_stream(got)


def test_trailing_and_leading_junk():
    r = NmeaReader()
    junk = b"\x00\xff garbage\r\n"
    got = r.feed(junk + STREAM + junk + b"$GPGGA,1235")
    check_stream(got)
    assert r.garbage == 2 * len(b"\x00\xff garbage")  # CR/LF are not garbage
    # the cut-off sentence is held, not reported, until its line ends
    assert r.feed(b"\r\n") == [] and r.bad_checksum == 1


def test_bytearray_chunks_split_anywhere():
    # the UART may hand over bytearrays, cut at any byte, CR and LF apart
    r = NmeaReader()
    got = []
    cut = (5, len(GGA_L) - 1, len(GGA_L) + 3, len(GGA_L + RMC_L) - 2, len(STREAM) - 40)
    prev = 0
    for c in cut + (len(STREAM),):
        got.extend(r.feed(bytearray(STREAM[prev:c])))
        prev = c
    check_stream(got)
    assert r.garbage == 0


def test_line_endings_and_lowercase_checksum():
    body = "GPGLL,4916.45,N,12311.12,W,225444,A"
    c = 0
    for b in body.encode():
        c ^= b
    for end in (b"\r\n", b"\n", b"\r"):
        line = ("$%s*%02x" % (body, c)).encode() + end
        got = NmeaReader().feed(line)
        assert len(got) == 1 and got[0].kind == GLL, (end, got)


def test_bad_checksum_missing_checksum_counted():
    r = NmeaReader()
    bad = bytearray(GGA_L)
    bad[10] ^= 1
    assert r.feed(bytes(bad)) == []
    assert r.feed(b"$GPGGA,123519,4807.038,N,01131.324,E,1,08,0.9,545.4,M,46.9,M,,\r\n") == []
    assert r.feed(b"$GPGGA,1*ZZ\r\n") == []
    assert r.bad_checksum == 3 and r.ok == 0


def test_proprietary_unknown_malformed_counted():
    r = NmeaReader()
    r.feed(ck("PGRME,15.0,M,45.0,M,25.0,M") + ck("GPGSV,1,1,01,05,40,083,46") + ck("GPZDA,201530.00,04,07,2002,00,00"))
    r.feed(ck("GPGGA,123519,48x7.038,N,01131.324,E,1,08,0.9,545.4,M,46.9,M,,"))
    r.feed(ck("GPRMC,225446,A,9107.0,N,01131.324,E,0,0,191194,,"))  # latitude > 90
    r.feed(ck("GPRMC,256446,A,4807.0,N,01131.324,E,0,0,191194,,"))  # hour 25
    r.feed(ck("gpGGA,123519,4807.038,N,01131.324,E,1,08,0.9,545.4,M,46.9,M,,"))  # talker not upper case
    assert (r.proprietary, r.unknown, r.malformed, r.ok) == (1, 3, 3, 0), r.counters()


def test_non_text_mode_field_is_malformed_not_a_crash():
    # a GNS whose mode field holds a byte that is not text, under a
    # checksum that matches: counted as malformed, the reader carries on
    bad = b"GNGNS,191442.96,4111.59903,N,11156.54809,W,A\xffN,13,0.93,01482.5,-016.5,,"
    c = 0
    for b in bad:
        c ^= b
    r = NmeaReader()
    got = r.feed(b"$%s*%02X\r\n" % (bad, c) + GGA_L)
    assert [s.kind for s in got] == [GGA] and r.malformed == 1 and r.ok == 1


def test_too_long_lines_dropped_and_reader_recovers():
    r = NmeaReader()
    long_line = b"$GPTXT," + b"A" * 300 + b"*00\r\n"
    got = r.feed(long_line + GGA_L)
    assert [s.kind for s in got] == [GGA] and r.too_long == 1
    # a real 203-byte sentence (gpsd's mtk-3301 log) fits the cap
    assert nmea.MAX_LINE >= 203


def test_dollar_inside_a_line_restarts_the_sentence():
    r = NmeaReader()
    got = r.feed(b"$GPGSV,4,1,15,02,11,115,36,0" + GGA_L)
    assert [s.kind for s in got] == [GGA]
    assert r.garbage == len(b"$GPGSV,4,1,15,02,11,115,36,0")


def test_empty_fields_without_fix():
    got = NmeaReader().feed(ck("GPRMC,,V,,,,,,,,,,N") + ck("GPGGA,,,,,,0,,,,,,,,") + ck("GPGSA,A,1,,,,,,,,,,,,,,,"))
    r, g, a = got
    assert (r.status, r.lat_e7, r.time_ms, r.date, r.faa) == ("V", None, None, None, "N")
    assert (g.quality, g.lat_e7, g.alt_m, g.sats) == (0, None, None, None)
    assert (a.fix_type, a.sats) == (1, 0)
    # i.Trek's short GSA has too few fields: no fix type at all
    assert NmeaReader().feed(ck("GPGSA,A,1,,,"))[0].fix_type is None


def test_coordinates_exact_integers():
    c = nmea.coord
    assert c(b"4807.038", b"N", 90) == 481173000
    assert c(b"00000.0000", b"E", 180) == 0
    assert c(b"17959.999994", b"E", 180) == 1799999999  # 59.999994 min = 0.9999999 deg
    assert c(b"17959.9999999", b"W", 180) == -1800000000  # rounds to the nearest 1e-7
    assert c(b"4404.1237962", b"S", 90) == -440687299  # 7 decimal minutes
    assert c(b"3645.854306", b"N", 90) == 367642384
    assert c(b"", b"", 90) is None
    raises(Malformed, c, b"4860.0", b"N", 90)  # 60 minutes
    raises(Malformed, c, b"9000.1", b"N", 90)
    raises(Malformed, c, b"4807.038", b"X", 90)
    raises(Malformed, c, b"48", b"N", 90)
    raises(Malformed, c, b"4807.0-8", b"N", 90)


def test_decimal_and_time_parsers():
    assert nmea.dec(b"-30.40", 1) == -304 and nmea.dec(b"1.25", 1) == 13 and nmea.dec(b"-1.25", 1) == -13
    assert nmea.dec(b"7.", 2) == 700 and nmea.dec(b".5", 1) == 5 and nmea.dec(b"+3", 0) == 3
    assert nmea.dec(b"", 1) is None
    raises(Malformed, nmea.dec, b"1.2.3", 1)
    raises(Malformed, nmea.dec, b"-", 1)
    assert nmea.utc_time(b"235959.999") == 86399999 and nmea.utc_time(b"000000") == 0
    assert nmea.utc_time(b"120000.5") == 43200500
    raises(Malformed, nmea.utc_time, b"12000")
    raises(Malformed, nmea.utc_time, b"126000")


def _corpus_file(name):
    from gpsd_compare import corpus_path

    p = corpus_path(name)
    corpus_path = None
    heap.release()
    return p


def _sigs_by_chunks(path, size):
    """(sha256 of every parsed sentence's fields, count, counters)."""
    import hashlib

    h = hashlib.sha256()
    n = 0
    r = NmeaReader()
    with open(path, "rb") as f:
        while True:
            b = f.read(size)
            if not b:
                break
            for s in r.feed(b):
                h.update(repr(sig(s)).encode())
                n += 1
    return (h.digest(), n), r.counters()


def test_real_captures_any_chunking():
    # CRLF u-blox, the 203-byte MTK lines, binary junk from a cold boot,
    # a sentence interrupted by another one
    for name in ("ublox-neo-m9n-nmea.log", "mtk-3301.log", "gp-320fw-2019-04-07-coldboot.log", "isync.log"):
        p = _corpus_file(name)
        whole, cw = _sigs_by_chunks(p, 4096)
        assert whole[1] > 0 and cw["ok"] == whole[1], name
        for size in (1, 7, 64):
            got, c = _sigs_by_chunks(p, size)
            assert got == whole and c == cw, (name, size)


def test_real_capture_counters():
    _, c = _sigs_by_chunks(_corpus_file("mtk-3301.log"), 512)
    assert c["too_long"] == 0 and c["proprietary"] > 0 and c["ok"] > 0, c
    _, c = _sigs_by_chunks(_corpus_file("gp-320fw-2019-04-07-coldboot.log"), 512)
    assert c["bad_checksum"] > 0 and c["garbage"] > 0, c
    _, c = _sigs_by_chunks(_corpus_file("hp58534a.log"), 512)
    assert c["ok"] == 0 and c["bad_checksum"] > 0, c  # a receiver that sends no checksums


def test_kinds_table():
    assert sorted(nmea.KIND_NAMES.values()) == ["GGA", "GLL", "GNS", "GSA", "RMC", "VTG"]
    assert (GGA, RMC, GSA, GNS, GLL, VTG) == (1, 2, 3, 4, 5, 6)
