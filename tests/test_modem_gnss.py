"""The SIM7600's own GNSS, as the T-SIM7600E has it: the emulator's AT
dialogue and NMEA against the SIMCom AT manual V3.00's own examples (17.2.1
AT+CGPS, 17.2.16 AT+CGPSINFOCFG, 17.2.21 AT+CGNSSINFO), the firmware's
reader on the manual's capture, and the engine that switches it."""

from firmware.fix import FixTracker
from firmware.nmea import NmeaReader
from host_sim.gnss import GnssEmulator, checksum
from host_sim.modem import Sim7600
from host_sim.network import Network
from host_sim.route import Route

# AT manual V3.00, 17.2.16, the example of AT+CGPSINFOCFG=10,31 (the
# manual wraps long lines; joined here), and 17.2.21's AT+CGNSSINFO
MANUAL_NMEA = [
    "$GPGSV,4,1,16,04,53,057,44,02,55,334,44,10,61,023,44,05,45,253,43*7D",
    "$GPGGA,051147.0,3113.320991,N,12121.248076,E,1,10,0.8,47.5,M,0,M,,*45",
    "$GPVTG,NaN,T,,M,0.0,N,0.0,K,A*42",
    "$GPRMC,051147.0,A,3113.320991,N,12121.248076,E,0.0,0.0,211211,,,A*66",
    "$GPGSA,A,3,02,04,05,10,12,13,17,23,25,26,,,1.4,0.8,1.2*3B",
]
MANUAL_CGNSSINFO_FIX = "2,09,05,00,3113.330650,N,12121.262554,E,131117,091918.0,32.9,0.0,255.0,1.1,0.8,0.7"
MANUAL_CGNSSINFO_NOFIX = ",,,,,,,,,,,,,,,"
# where the manual's capture was taken (3113.320991 N, 12121.248076 E)
LAT, LON = 31 + 13.320991 / 60, 121 + 21.248076 / 60


def _shape(line):
    """Field count and, per field, (digits before ".", digits after ".")
    for numbers, or the text for words: what the format fixes."""
    body = line[1:].split("*")[0]
    out = []
    for f in body.split(","):
        if f.replace(".", "", 1).isdigit() and "." in f:
            a, b = f.split(".")
            out.append(("num", len(b)))
        elif f.isdigit():
            out.append(("int",))
        else:
            out.append(f if f in ("N", "S", "E", "W", "A", "V", "M", "T", "K", "") or f.startswith("GP") else "?")
    return out


def test_the_manuals_capture_has_valid_checksums_and_the_reader_takes_its_position():
    for line in MANUAL_NMEA:
        body, cs = line[1:].split("*")
        assert "%02X" % checksum(body) == cs
    r = NmeaReader()
    f = FixTracker()
    data = "".join(x + "\r\n" for x in MANUAL_NMEA).encode()
    f.feed(data, 1000)
    assert r.feed(data) and r.bad_checksum == 0
    pos = f.position(1000)
    assert pos is not None and pos.source == 1
    assert abs(pos.lat - round(LAT * 1e7)) <= 1 and abs(pos.lon - round(LON * 1e7)) <= 1


def test_the_emulators_sim7600_sentences_have_the_manuals_shapes():
    route = Route([(0, LAT, LON), (600000, LAT + 0.0001, LON)])
    g = GnssEmulator(route, style="sim7600", start="hot", seed=2)
    g.power(True, 0)
    got = {}
    for line in g.read(4000).decode().split("\r\n"):
        if line.startswith("$"):
            got.setdefault(line[3:6], line)
    for ref in MANUAL_NMEA:
        kind = ref[3:6]
        if kind == "GSV":
            continue  # how many satellites are in view is the sky's business
        assert _shape(got[kind]) == _shape(ref), (kind, got[kind], ref)


def _emu(**kw):
    route = Route([(0, LAT, LON), (600000, LAT + 0.001, LON)])
    gnss = GnssEmulator(route, style="sim7600", start="hot", seed=3)
    emu = Sim7600(None, Network(seed=1), gnss=gnss, start_on=True, echo=False, **kw)
    return emu


def _at(emu, cmd, now, wait=50):
    emu.write(cmd + b"\r", now)
    return emu.read(now + wait)


def test_cgps_reports_gga_and_rmc_every_second_on_the_at_port_and_stops_with_a_urc():
    emu = _emu()
    assert _at(emu, b"AT+CGNSSINFO", 1000) == b"\r\n+CGNSSINFO: " + MANUAL_CGNSSINFO_NOFIX.encode() + b"\r\n\r\nOK\r\n"
    assert _at(emu, b"AT+CVAUXS=1", 1100) == b"\r\nOK\r\n"
    assert _at(emu, b"AT+CGPS=1", 1200) == b"\r\nOK\r\n"
    assert _at(emu, b"AT+CGPS=1", 1300) == b"\r\nERROR\r\n"  # already on
    assert _at(emu, b"AT+CGPSINFOCFG=1,3", 1400) == b"\r\nOK\r\n"
    out = emu.read(6000).decode()
    lines = [x for x in out.split("\r\n") if x.startswith("$")]
    assert lines and {x[3:6] for x in lines} == {"GGA", "RMC"}  # the mask: bits 0 and 1
    assert 8 <= len(lines) <= 10  # one GGA and one RMC a second
    info = _at(emu, b"AT+CGNSSINFO", 6100).decode()
    fields = info.split("+CGNSSINFO: ")[1].split("\r\n")[0].split(",")
    assert len(fields) == len(MANUAL_CGNSSINFO_FIX.split(",")) and fields[0] in ("2", "3")
    assert _at(emu, b"AT+CGPS=0", 7000).endswith(b"\r\nOK\r\n")  # (NMEA due before it comes first)
    assert b"+CGPS: 0" in emu.read(9000)
    assert b"$GP" not in emu.read(20000)


def test_without_the_antenna_fed_there_is_no_fix():
    # the T-SIM7600E's active antenna is powered from VDD_AUX (AT+CVAUXS):
    # unfed, the receiver hears nothing (pessimistic: no fix at all)
    emu = _emu()
    _at(emu, b"AT+CGPS=1", 1000)
    _at(emu, b"AT+CGPSINFOCFG=1,1", 1100)
    lines = [x for x in emu.read(60000).decode().split("\r\n") if x.startswith("$GPGGA")]
    assert lines == []  # the session is on, nothing is received (and nothing is reported)


def test_a_report_every_n_seconds_carries_only_the_latest_epoch():
    # the manual's capture for AT+CGPSINFOCFG=10,31 (17.2.16) is one epoch's
    # sentences, not ten seconds of them; both emulator modes agree
    for lazy in (False, True):
        emu = _emu()
        emu.gnss.lazy = lazy
        _at(emu, b"AT+CVAUXS=1", 1000)
        _at(emu, b"AT+CGPS=1", 1100)
        _at(emu, b"AT+CGPSINFOCFG=5,3", 1200)
        out = emu.read(22300).decode()
        lines = [x for x in out.split("\r\n") if x.startswith("$")]
        assert [x[3:6] for x in lines] == ["GGA", "RMC"] * 4, lines  # at 6.2, 11.2, 16.2, 21.2 s
        times = [x.split(",")[1] for x in lines]
        assert all(times[i] == times[i + 1] for i in range(0, 8, 2))  # each report one epoch
        secs = [int(t[4:6]) for t in times[::2]]
        assert all((b - a) % 60 == 5 for a, b in zip(secs, secs[1:]))


def test_a_lazy_read_of_the_reported_kinds_is_the_whole_epoch_filtered_at_every_instant():
    # The modem reports only the kinds its AT+CGPSINFOCFG mask asks for; the
    # emulator formats only those, but an epoch still counts as sent only
    # once all of it (GSV and GSA included) has gone out. Two emulators from
    # one seed, read at the same instants, the ages of the newest epoch
    # swept across its going out (the 60 ms output delay, then ~30-70 ms of
    # bytes): the filtered whole and the lazy part agree on every read, the
    # instants the GSV/GSA bound cannot settle included.
    for style, talker, kinds in (("sim7600", None, ("GGA", "RMC")), ("sim7600", None, ("RMC",)),
                                 ("ublox-m8", "GN", ("GGA", "RMC")), ("quectel-l76", None, ("GSA", "RMC"))):
        route = Route([(0, LAT, LON), (3600000, LAT + 0.02, LON + 0.01, None, "urban"), (3700000, LAT + 0.021, LON)])
        a, b = (GnssEmulator(route, style=style, talker=talker, start="hot", seed=5, baud=115200) for _ in "ab")
        exact = []

        def counted(*x, exact=exact, block=b._sat_block):
            exact.append(1)  # a lazy read makes a block only to settle its length
            return block(*x)

        b._sat_block = counted
        for g in (a, b):
            g.lazy = True
            g.power(True, 0)
        for k in range(2, 1500):
            now = k * 1000 + (k * 7) % 180
            whole = [x for x in a.read(now).decode().split("\r\n") if x and x[3:6] in kinds]
            part = b.read(now, kinds).decode()
            assert part == "".join(x + "\r\n" for x in whole), (style, now)
            assert a.sentences_out == b.sentences_out
        assert exact, style  # the exact path ran (this sweep dwells where it must)


def test_every_gsa_and_gsv_the_emulator_makes_fits_nmeas_82_characters():
    # the lazy read above bounds a GSA or GSV it did not format by NMEA 0183's
    # longest sentence (host_sim/gnss.py _MAX_SENTENCE)
    for style, talker in (("sim7600", None), ("ublox-m8", "GN"), ("quectel-l76", None), ("ublox-m8", "GL")):
        route = Route([(0, LAT, LON), (1800000, LAT + 0.01, LON, None, "urban"), (2400000, LAT, LON, None, "indoor"),
                       (3600000, LAT, LON + 0.01)])
        g = GnssEmulator(route, style=style, talker=talker, start="hot", seed=9, sentences=("GSA", "GSV"))
        g.power(True, 0, banner=False)
        lines = [x for x in g.read(3600000).decode().split("\r\n") if x.startswith("$")]
        assert {x[3:6] for x in lines} == {"GSA", "GSV"}
        assert max(len(x) + 2 for x in lines) <= 82, style


def test_the_engine_slows_the_reports_once_asked_and_a_restart_starts_again_at_one_second():
    from modem_world import World

    w = World(start_on=True)
    w.rig.run_until(w.t.data_ready, 60000)
    e = w.t.engine
    w.t.gnss(True, 1)
    w.rig.run_until(lambda: e.gnss_on, w.rig.now + 10000)
    assert e.nmea_s == 1
    w.t.gnss(True, 5)
    w.rig.run_until(lambda: e.nmea_s == 5, w.rig.now + 5000)
    sent = [b for (_, dr, b) in w.emu.transcript if dr == ">"]
    assert [b for b in sent if b.startswith(b"AT+CGPSINFOCFG")] == [b"AT+CGPSINFOCFG=1,3\r", b"AT+CGPSINFOCFG=5,3\r"]
    assert sum(b.startswith(b"AT+CGPS=") for b in sent) == 1  # the session kept running
    w.t.gnss(False)
    w.rig.run_until(lambda: not e.gnss_on, w.rig.now + 10000)
    assert e.nmea_s == 0
