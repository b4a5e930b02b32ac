"""Fix tracker: trust rules, last known fix, position provenance, UTC."""

import heap
from nmeautil import ck

from firmware import fix
from firmware.fix import FixTracker, accuracy_from_hdop, days_from_civil

heap.release()

GGA1 = ck("GPGGA,120000.00,5130.0000,N,00007.5000,W,1,08,0.9,35.4,M,46.9,M,,")
RMC_A = ck("GPRMC,120000.00,A,5130.0000,N,00007.5000,W,3.0,90.0,281126,,,A")
RMC_V = ck("GPRMC,120001.00,V,5131.0000,N,00008.0000,W,,,281126,,,N")
GGA0 = ck("GPGGA,120002.00,5132.0000,N,00009.0000,W,0,00,,,M,,M,,")
LAT = 515000000
LON = -1250000


def test_constants_match_protocol():
    from protocol import frame

    ok = fix.SRC_GNSS == frame.SRC_GNSS and fix.SRC_LAST_FIX == frame.SRC_LAST_FIX
    frame = None
    heap.release()  # protocol.frame is big; this file's other tests need no copy
    assert ok


def test_live_fix_then_last_known():
    t = FixTracker()
    assert t.position(0) is None and t.mode == 1
    t.feed(GGA1 + RMC_A, 1000)
    assert t.mode == 3 and t.valid
    p = t.position(1500)
    assert (p.source, p.lat, p.lon, p.alt_m, p.sats, p.hdop_x10, p.age_s) == (1, LAT, LON, 35, 8, 9, 0)
    assert p.speed_cms == 154 and p.course_cdeg == 9000 and p.accuracy_m == 8 + 4  # (0.9 + 0.05) * 7.5 m rounded up, + 2 s at 1.54 m/s
    # silence: after 3 s the fix is no longer live, it is the last known one
    p = t.position(1000 + 3001)
    assert (p.source, p.lat, p.age_s) == (2, LAT, 3)
    assert t.position(1000 + 3001, live_max_age_ms=10000).source == 1


def test_rmc_v_and_gga_0_positions_never_trusted():
    t = FixTracker()
    t.feed(RMC_V + GGA0, 100)
    assert t.position(200) is None and t.mode == 1 and not t.valid
    t.feed(GGA1, 1000)
    t.feed(RMC_V, 2000)  # revokes the live fix at once; its stale position is ignored
    p = t.position(2000)
    assert (p.source, p.lat, p.lon, p.age_s) == (2, LAT, LON, 1)
    t.feed(GGA0, 3000)
    p = t.position(3000)
    assert (p.source, p.lat) == (2, LAT)
    assert t.rejected == (1, 515333333, -1500000)  # GGA 0 position seen, refused


def test_faa_mode_n_refused():
    t = FixTracker()
    t.feed(ck("GPRMC,120000.00,A,5130.0000,N,00007.5000,W,0.0,0.0,281126,,,N"), 10)
    assert t.position(10) is None and t.mode == 1


def test_gsa_no_fix_revokes_and_2d_3d_modes():
    t = FixTracker()
    t.feed(ck("GPGGA,120000.00,5130.0000,N,00007.5000,W,1,03,2.0,,M,,M,,"), 0)
    assert t.mode == 2 and t.position(0).source == 1
    t.feed(ck("GPGSA,A,1,,,,,,,,,,,,,,,"), 100)
    assert t.mode == 1 and t.position(100).source == 2
    t.feed(ck("GPGSA,A,3,04,05,09,12,,,,,,,,,2.5,1.3,2.1"), 200)
    assert t.mode == 3 and not t.valid  # a mode alone is not a position
    t.feed(GGA1, 300)
    assert t.position(300).source == 1


def test_gns_and_gll():
    t = FixTracker()
    t.feed(ck("GNGNS,120000.00,5130.0000,N,00007.5000,W,AA,10,0.8,35.0,46.9,,,S"), 0)
    assert t.mode == 3 and t.position(0).lat == LAT
    t.feed(ck("GNGNS,120001.00,5130.0000,N,00007.5000,W,NN,00,,,,,,V"), 10)
    assert t.mode == 1
    t.feed(ck("GPGLL,5130.0000,N,00007.5000,W,120002.00,A,A"), 20)
    assert t.mode >= 2 and t.position(20).source == 1
    t.feed(ck("GPGLL,5131.0000,N,00007.5000,W,120003.00,V,N"), 30)
    assert t.mode == 1 and t.position(30).lat == LAT


def test_vtg_sets_motion():
    t = FixTracker()
    t.feed(GGA1 + ck("GPVTG,054.7,T,034.4,M,005.5,N,010.2,K,A"), 0)
    p = t.position(0)
    assert (p.course_cdeg, p.speed_cms) == (5470, 283)
    t.feed(ck("GPVTG,,T,,M,,N,,K,N"), 10)
    assert t.position(10).speed_cms == 283


def test_utc_seconds():
    t = FixTracker()
    assert t.utc_seconds(0) is None
    t.feed(RMC_V, 0)  # a V sentence's date/time is not trusted
    assert t.utc_seconds(0) is None
    t.feed(RMC_A, 5000)
    unix = days_from_civil(2026, 11, 28) * 86400 + 12 * 3600
    assert t.utc_seconds(5000) == unix and t.utc_seconds(7500) == unix + 2
    # receivers after a GPS week rollover report 1999: below min_year, ignored
    t = FixTracker()
    t.feed(ck("GPRMC,120000.00,A,5130.0000,N,00007.5000,W,0,0,220899,,,A"), 0)
    assert t.utc_seconds(0) is None and t.position(0) is not None


def test_days_from_civil():
    assert days_from_civil(1970, 1, 1) == 0
    assert days_from_civil(2000, 1, 1) == 10957
    assert days_from_civil(2024, 2, 29) == 19782
    assert days_from_civil(2026, 11, 28) * 86400 == 1795824000


def test_accuracy_and_age_caps():
    assert accuracy_from_hdop(None) == 100
    assert accuracy_from_hdop(0) == 1  # never 0
    assert accuracy_from_hdop(9) == 8 and accuracy_from_hdop(13) == 11 and accuracy_from_hdop(999) == 750
    # HDOP 0.81 prints as 0.81 but is kept as 8 tenths: the claim still covers 7.5 m x 0.81
    assert accuracy_from_hdop(8) >= 7.5 * 0.849
    t = FixTracker()
    t.feed(GGA1, 0)
    assert t.position(0xFFFF * 1000 + 5000).age_s == 0xFFFE


def test_garbage_never_crashes_and_is_counted():
    t = FixTracker()
    junk = bytes(range(256)) * 4 + b"$GPGGA,,,,*" + b"$" * 300 + b"\r\n" + b"$GPRMC,*00\r\n"
    for i in range(0, len(junk), 13):
        t.feed(junk[i:i + 13], i)
    c = t.counters()
    assert c["garbage"] > 0 and c["ok"] == 0 and t.position(0) is None
    t.feed(GGA1, 10)
    assert t.position(10).lat == LAT


def test_a_read_holding_several_epochs_dates_each_by_its_utc_time():
    # an NMEA UART read every few seconds holds several epochs: only the
    # newest arrived "now"; one 2 s older is 2 s old, and if it is the last
    # position it is reported with that age, never as newer than it is
    old = ck("GPGGA,120000.00,5130.0000,N,00007.5000,W,1,08,0.9,35.4,M,46.9,M,,")
    nofix = ck("GPGGA,120002.00,,,,,0,00,,,M,,M,,")
    t = FixTracker()
    t.feed(old[:30], 10000)
    t.feed(old[30:] + nofix, 10000)  # one read, fed as it came
    t.redate(10000, 3000)
    assert t.last_ms == 8000 and not t.has_live_fix(10000)
    p = t.position(10000)
    assert (p.source, p.age_s) == (2, 2)
    # the same bytes fed as one instant would have called the fix 0 s old
    u = FixTracker()
    u.feed(old + nofix, 10000)
    assert u.last_ms == 10000


def test_a_read_is_never_dated_before_the_previous_one_and_crosses_midnight():
    late = ck("GPGGA,235959.00,5130.0000,N,00007.5000,W,1,08,0.9,35.4,M,46.9,M,,")
    early = ck("GPGGA,000001.00,5131.0000,N,00007.5000,W,0,00,,,M,,M,,")
    t = FixTracker()
    t.feed(late + early, 50000)
    t.redate(50000, 3000)
    assert t.last_ms == 48000  # 23:59:59 is 2 s before 00:00:01
    far = ck("GPGGA,115950.00,5130.0000,N,00007.5000,W,1,08,0.9,35.4,M,46.9,M,,")
    t = FixTracker()
    t.feed(far + GGA0, 50000)
    t.redate(50000, 3000)  # 12 s apart by their times, but the last read was 3 s ago
    assert t.last_ms == 47000


def test_live_window_follows_the_report_interval():
    t = FixTracker()
    t.live_ms = 7000  # a receiver reporting every 5 s (App: gnss_report_s + 2 s)
    t.feed(GGA1 + RMC_A, 1000)
    assert t.position(1000 + 6000).source == 1
    assert t.position(1000 + 7001).source == 2
