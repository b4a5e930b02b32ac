"""GNSS emulator: sentences pynmea2 accepts, acquisition, indoor loss,
error bounds, byte timing, talkers and module styles, real-capture shapes."""

import os

import pynmea2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpsd_compare import corpus_path
from host_sim.gnss import STYLES, GnssEmulator, GnssError, checksum, fmt_latlon, sentence
from host_sim.route import Route, distance_m

HERE = os.path.dirname(os.path.abspath(__file__))
WALK = os.path.join(HERE, "..", "host_sim", "scenarios", "walk_home.gpx")
START_UTC = 1773524400000  # 2026-03-14T21:40:00Z


def walk(indoor=None):
    r = Route([(0, 54.3321, -2.7399), (600_000, 54.3212, -2.7535)])
    if indoor:
        r.add_window(indoor[0], indoor[1], "indoor")
    return r


def lines(data):
    text = data.decode("ascii")
    assert text.endswith("\r\n")
    return text[:-2].split("\r\n")


def run(g, until, step=1000):
    """Read every `step` ms; return [(read_time, sentence)]."""
    out = []
    buf = b""
    t = 0
    while t <= until:
        buf += g.read(t)
        while b"\r\n" in buf:
            ln, buf = buf.split(b"\r\n", 1)
            out.append((t, ln.decode("ascii")))
        t += step
    return out


def fix_epochs(sents):
    """[(epoch_ms, lat, lon, hdop, nsat)] from GGA sentences with a fix."""
    res = []
    for _, s in sents:
        if s[3:6] == "GGA":
            m = pynmea2.parse(s, check=True)
            if m.gps_qual and int(m.gps_qual) > 0:
                hh, mm, ss = int(s[7:9]), int(s[9:11]), int(s[11:13])
                epoch = ((hh * 3600 + mm * 60 + ss) - (21 * 3600 + 40 * 60)) * 1000
                res.append((epoch, m.latitude, m.longitude, float(m.horizontal_dil), int(m.num_sats)))
    return res


@pytest.mark.parametrize("style", sorted(STYLES))
@pytest.mark.parametrize("talker", ["GP", "GN", "GL"])
def test_every_sentence_parses_with_pynmea2_and_fits_82_chars(style, talker):
    g = GnssEmulator(walk(indoor=(120_000, 180_000)), style=style, talker=talker, start="cold", seed=3)
    g.power(True, 0)
    sents = run(g, 240_000, step=1000)
    assert len(sents) > 240 * 4
    kinds = set()
    for _, s in sents:
        msg = pynmea2.parse(s, check=True)  # raises on a bad checksum
        kinds.add(getattr(msg, "sentence_type", None) or s[1:6])
        assert len(s) + 2 <= 82, s
        body, cs = s[1:].split("*")
        assert int(cs, 16) == checksum(body)
    for want in STYLES[style]["sentences"]:
        assert want in kinds
    # talker: the position sentences carry the chosen talker
    for _, s in sents:
        if s[3:6] in ("GGA", "RMC"):
            assert s.startswith("$" + talker)
        if s[3:6] == "GSV":
            assert s[1:3] in {"GP": ("GP",), "GL": ("GL",), "GN": ("GP", "GL")}[talker]


def test_cold_start_gives_empty_fields_then_a_fix_within_datasheet_time():
    g = GnssEmulator(walk(), style="ublox-m8", start="cold", seed=1)
    g.power(True, 0)
    sents = run(g, 60_000)
    rmc = [(t, pynmea2.parse(s)) for t, s in sents if s[3:6] == "RMC"]
    first = rmc[0][1]
    assert first.status == "V" and first.lat == "" and first.timestamp is None  # no time yet on a cold start
    fixed = [t for t, m in rmc if m.status == "A"]
    assert fixed, "never got a fix"
    ttff = g.first_fix_ms / 1000
    assert 0.8 * 26 <= ttff <= 1.2 * 26 + 2
    assert g.last_start == "cold"
    # before the first fix no GGA claims a fix
    for t, s in sents:
        if s[3:6] == "GGA" and t < g.first_fix_ms:
            assert pynmea2.parse(s).gps_qual == 0


def test_auto_start_is_hot_after_a_recent_fix_and_cold_after_a_battery_cut():
    g = GnssEmulator(walk(), start="auto", seed=2)
    g.power(True, 0)
    g.read(60_000)
    assert g.has_fix()
    g.power(False, 60_000)
    assert g.read(61_000) == b""
    assert g.next_output_ms(61_000) is None
    g.power(True, 600_000)
    assert g.last_start == "hot"
    g.advance(603_000)
    assert g.has_fix() and g.first_fix_ms - 600_000 <= 3000
    g.power(False, 604_000)
    g.lose_backup()
    g.power(True, 605_000)
    assert g.last_start == "cold"


def test_no_fix_indoors_and_fast_reacquisition_outside():
    g = GnssEmulator(walk(indoor=(100_000, 200_000)), start="hot", seed=4)
    g.power(True, 0)
    fixes = fix_epochs(run(g, 260_000))
    times = {f[0] for f in fixes}
    assert not any(100_000 <= t < 200_000 for t in times)
    back = min(t for t in times if t >= 200_000)
    assert back - 200_000 <= 4000
    assert any(t < 100_000 for t in times)


def test_l76_keeps_a_stale_position_in_rmc_v_after_losing_the_fix():
    g = GnssEmulator(walk(indoor=(60_000, 120_000)), style="quectel-l76", start="hot", seed=5)
    g.power(True, 0)
    sents = run(g, 90_000)
    assert sents[0][1].startswith("$PMTK011")
    stale = [pynmea2.parse(s) for t, s in sents if s[3:6] == "RMC" and t > 65_000]
    assert stale and all(m.status == "V" and m.lat != "" for m in stale)


def test_ublox_rmc_v_has_empty_position_after_losing_the_fix():
    g = GnssEmulator(walk(indoor=(60_000, 120_000)), style="ublox-m8", start="hot", seed=5)
    g.power(True, 0)
    sents = run(g, 90_000)
    assert sents[0][1].startswith("$GPTXT")
    lost = [pynmea2.parse(s) for t, s in sents if s[3:6] == "RMC" and t > 65_000]
    assert lost and all(m.status == "V" and m.lat == "" for m in lost)


def test_fix_error_stays_within_the_documented_bound_of_the_printed_hdop():
    r = walk()
    g = GnssEmulator(r, start="hot", seed=6, uere_m=2.5)
    g.power(True, 0)
    fixes = fix_epochs(run(g, 600_000))
    assert len(fixes) > 550
    errs = []
    for t, lat, lon, hdop, _n in fixes:
        tl, tn = r.true_position(t)
        d = distance_m(lat, lon, tl / 1e7, tn / 1e7)
        # printed position is rounded to 1e-5 minute (~2 cm)
        assert d <= g.max_error_m(hdop) + 0.05
        errs.append(d)
    # and it is a real error, not zero
    assert sum(errs) / len(errs) > 0.5


def test_urban_sky_means_fewer_satellites_and_higher_hdop_than_open_sky():
    r = walk()
    r.add_window(300_000, 600_000, "urban")
    g = GnssEmulator(r, start="hot", seed=7)
    g.power(True, 0)
    fixes = fix_epochs(run(g, 590_000))
    open_ = [f for f in fixes if f[0] < 300_000]
    urban = [f for f in fixes if f[0] >= 300_000]
    assert max(f[4] for f in urban) < min(f[4] for f in open_)
    assert sum(f[3] for f in urban) / len(urban) > sum(f[3] for f in open_) / len(open_)
    assert len({f[3] for f in open_}) > 3  # HDOP changes over time


def test_output_is_the_same_however_often_the_uart_is_read():
    a = GnssEmulator(walk(indoor=(30_000, 50_000)), seed=8, start="cold")
    b = GnssEmulator(walk(indoor=(30_000, 50_000)), seed=8, start="cold")
    a.power(True, 0)
    b.power(True, 0)
    whole = a.read(90_000)
    parts = []
    partial = 0
    for t in range(0, 90_001, 7):
        chunk = b.read(t)
        if chunk and not chunk.endswith(b"\n"):
            partial += 1
        parts.append(chunk)
    assert b"".join(parts) == whole
    assert partial > 100  # reads in the middle of a sentence return its first bytes


def test_bytes_arrive_at_the_baud_rate_after_the_epoch():
    g = GnssEmulator(walk(), start="hot", style="minimal", baud=9600, seed=9, out_delay_ms=50)
    g.power(True, 0)
    g.read(1000)  # boot; first epoch at 1000 (start_utc is on a whole second)
    assert g.read(1050) == b""
    nxt = g.next_output_ms(1050)
    assert 1050 < nxt <= 1052
    data = g.read(1050 + 100)
    assert 90 <= len(data) <= 100  # ~9.6 bytes per ms at 9600 baud, 10 bits a byte
    g2 = GnssEmulator(walk(), start="hot", style="minimal", baud=115200, seed=9, out_delay_ms=50)
    g2.power(True, 0)
    g2.read(1000)
    fast = g2.read(1150)
    assert len(fast) > 4 * len(data) and fast.endswith(b"\r\n")  # the whole epoch is already in


def test_a_small_uart_buffer_overflows_and_counts_the_loss():
    g = GnssEmulator(walk(), start="hot", seed=10, rxbuf=256)
    g.power(True, 0)
    data = g.read(10_000)
    assert len(data) == 256
    assert g.overrun_bytes > 1000
    # the buffer drains on read: the next second fits again
    assert 0 < len(g.read(11_900)) <= 256


def test_rmc_date_and_time_follow_the_start_time():
    g = GnssEmulator(walk(), start="hot", seed=11, start_utc_ms=START_UTC)
    g.power(True, 0)
    rmc = [pynmea2.parse(s) for _, s in run(g, 5000) if s[3:6] == "RMC"]
    m = rmc[-1]
    assert m.datestamp.isoformat() == "2026-03-14"
    assert m.timestamp.hour == 21 and m.timestamp.minute == 40


def test_ublox_style_matches_real_neo_m8n_capture_field_counts():
    real = {}
    with open(corpus_path("neo-m8n.log"), "rb") as f:
        for ln in f.read().decode("ascii", "replace").splitlines():
            if ln.startswith("$G") and "*" in ln:
                real.setdefault(ln[3:6], set()).add(ln.count(","))
    g = GnssEmulator(walk(), style="ublox-m8", start="hot", seed=12)
    g.power(True, 0)
    ours = {}
    for _, s in run(g, 20_000):
        if s.startswith("$G") and not s.startswith("$GPTXT"):
            ours.setdefault(s[3:6], set()).add(s.count(","))
    for typ in ("GGA", "RMC", "GSA", "VTG", "GLL"):
        assert ours[typ] <= real[typ], typ
    # GSV field counts vary with the satellites in the last message; every one of ours exists in the capture
    assert ours["GSV"] <= real["GSV"]


def test_bad_configuration_is_a_named_error():
    with pytest.raises(GnssError, match="style"):
        GnssEmulator(walk(), style="sirf")
    with pytest.raises(GnssError, match="talker"):
        GnssEmulator(walk(), talker="GA")
    with pytest.raises(GnssError, match="sentence"):
        GnssEmulator(walk(), sentences=["ZDA"])


def test_latlon_formatting_carries_rounded_minutes():
    assert fmt_latlon(54.999999999, True, 4) == ("5500.0000", "N")
    assert fmt_latlon(-2.7399, False, 5) == ("00244.39400", "W")
    assert sentence("GPTXT,01,01,02,x").endswith("\r\n")


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(-80, 80), st.floats(-179, 179), st.integers(1, 600)),
        min_size=1,
        max_size=5,
    ),
    st.sampled_from(sorted(STYLES)),
    st.integers(0, 2**32),
)
def test_any_route_yields_checksummed_parseable_sentences(legs, style, seed):
    pts = []
    t = 0
    for lat, lon, dt in legs:
        pts.append((t, lat, lon))
        t += dt * 1000
    g = GnssEmulator(Route(pts), style=style, seed=seed, start="hot")
    g.power(True, 0)
    for _, s in run(g, 8000):
        pynmea2.parse(s, check=True)


def test_walk_home_gpx_is_a_plausible_walk():
    r = Route.from_gpx(WALK)
    assert 1000 < r.length_m() < 2000
    assert 15 * 60_000 < r.end_ms < 25 * 60_000
    lat, lon, _alt, speed, _crs = r.state(r.end_ms // 2)
    assert 1.0 < speed < 1.8
    assert 54.3 < lat < 54.34 and -2.76 < lon < -2.73


def test_output_does_not_depend_on_the_process_hash_seed():
    import hashlib
    import subprocess
    import sys

    code = (
        "import hashlib;from host_sim.route import Route;from host_sim.gnss import GnssEmulator;"
        "r=Route([(0,54.3321,-2.7399),(600000,54.3212,-2.7535)]);r.add_window(100000,150000,'urban');"
        "g=GnssEmulator(r,seed=5,start='cold');g.power(True,0);print(hashlib.sha256(g.read(200000)).hexdigest())"
    )
    root = os.path.join(HERE, "..")
    outs = set()
    for hs in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hs)
        outs.add(subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, check=True).stdout)
    r = walk()
    r.add_window(100_000, 150_000, "urban")
    g = GnssEmulator(r, seed=5, start="cold")
    g.power(True, 0)
    outs.add(hashlib.sha256(g.read(200_000)).hexdigest() + "\n")
    assert len(outs) == 1


def _pmtk(body):
    return sentence(body).encode("ascii")


def test_l76_acks_pmtk_commands_restarts_and_sleeps_in_standby():
    g = GnssEmulator(walk(), style="quectel-l76", start="hot", seed=13)
    g.power(True, 0)
    g.read(10_000)
    assert g.has_fix()
    # byte by byte, as a UART might deliver it
    for b in _pmtk("PMTK103"):
        g.write(bytes([b]), 10_000)
    out = g.read(11_000).decode()
    assert "$PMTK001,103,3*" in out
    assert g.last_start == "cold" and not g.has_fix()
    assert out.startswith("$PMTK011")  # the restart banner
    assert "$GNRMC,,V,,,,," in g.read(11_900).decode()  # a cold start forgets the last position too
    g.write(_pmtk("PMTK161,0"), 12_000)
    assert "$PMTK001,161,3*" in g.read(13_500).decode()  # queued behind the epoch's burst
    assert g.power_state() == "standby"
    assert g.read(20_000) == b""  # no output while in standby
    g.write(b"\r\n", 20_000)  # any byte wakes it
    assert g.power_state() != "standby"
    assert b"GGA" in g.read(22_000)
    g.write(_pmtk("PMTK999,1"), 22_000)
    assert "$PMTK001,999,1*" in g.read(23_000).decode()


def kinds(data):
    """The NMEA sentence types in some module output (not $P... ones)."""
    return {x[3:6] for x in data.decode("ascii").split("\r\n") if x.startswith("$G")}


FULL = {"RMC", "VTG", "GGA", "GSA", "GSV", "GLL"}
TRIMMED = {"RMC", "GGA", "GSA"}
PMTK314 = "PMTK314,0,1,0,1,1,0,0,0,0,0,0,0,0,0,0,0,0,0,0"


def test_l76_sends_only_the_sentences_pmtk314_asks_for_until_it_is_switched_off():
    g = GnssEmulator(walk(), style="quectel-l76", start="hot", seed=18)
    g.power(True, 0)
    assert kinds(g.read(3000)) == FULL
    for m in ("GSV", "VTG", "GLL"):  # the u-blox form: not for an MTK module
        g.write(_pmtk("PUBX,40,%s,0,0,0,0,0,0" % m), 3000)
    out = g.read(5000)
    assert kinds(out) == FULL and b"PMTK001" not in out
    g.write(_pmtk(PMTK314), 5000)
    out = g.read(6000)  # the epoch already formed goes out whole, then the answer
    assert "$PMTK001,314,3*" in out.decode()
    assert kinds(g.read(10_000)) == TRIMMED
    g.write(_pmtk("PMTK314,1,1"), 10_000)  # malformed: answered "unsupported", nothing changes
    out = g.read(13_000)
    assert "$PMTK001,314,1*" in out.decode() and kinds(out) == TRIMMED
    g.write(_pmtk("PMTK314,-1"), 13_000)  # the defaults again
    g.read(14_000)
    assert kinds(g.read(17_000)) == FULL
    g.write(_pmtk(PMTK314), 17_000)
    g.read(18_000)
    g.power(False, 20_000)
    g.read(20_000)
    g.power(True, 21_000)  # not assumed to outlive a power-off (pessimistic)
    assert kinds(g.read(25_000)) == FULL


def test_ublox_m8_switches_messages_off_by_pubx40_and_ignores_pmtk():
    g = GnssEmulator(walk(), style="ublox-m8", start="hot", seed=19)
    g.power(True, 0)
    g.read(3000)
    g.write(_pmtk(PMTK314), 3000)
    out = g.read(6000)
    assert kinds(out) == FULL and b"PMTK001" not in out
    for m in ("GSV", "VTG", "GLL"):
        g.write(_pmtk("PUBX,40,%s,0,0,0,0,0,0" % m), 6000)
    g.read(7000)
    out = g.read(10_000)
    assert kinds(out) == TRIMMED and b"PUBX" not in out  # no answer
    g.write(_pmtk("PUBX,40,VTG,0,1,0,0,0,0"), 10_000)  # on again on UART1 (rus1)
    g.write(_pmtk("PUBX,40,GSV,0,0"), 10_000)  # malformed: counted, ignored
    g.read(11_000)
    assert kinds(g.read(14_000)) == TRIMMED | {"VTG"}
    assert g.rejected_commands == 1


def test_a_device_with_an_nmea_module_gets_it_to_send_only_what_it_uses():
    # the whole device on the ext-gnss board: the firmware's request (app.py
    # _read_gnss) goes out on the ESP32 model's UART2 TX to the module; an MTK and a
    # u-blox module obey, a module that obeys neither is asked ever less
    # often; the alert's positions are live GNSS fixes in all three
    from host_sim import runner
    from host_sim import scenario as S

    toml = """
[scenario]
name = "trim"
duration = "6m"
seed = 4
[device]
board = "t-sim7600e-ext-gnss"
[gnss]
style = "%s"
start = "hot"
[route]
points = [ { at = 0, lat = 54.3212, lon = -2.7535 }, { at = "6m", lat = 54.3250, lon = -2.7475 } ]
[[action]]
at = "1m"
kind = "sos"
"""
    for style, obeys in (("quectel-l76", True), ("ublox-m8", True), ("minimal", False)):
        r = runner.Runner(S.loads(toml % style, "trim.toml"))
        res = r.run()
        assert runner.failures(res) == [], (style, runner.failures(res))
        g = r.world.gnss
        asks = sum(1 for c in g.commands if c.startswith("PMTK314"))
        if obeys:
            assert set(g.sentences) == TRIMMED and asks == 1, (style, g.sentences, asks)
        else:
            assert set(g.sentences) == set(g.default_sentences) and 2 <= asks <= 6, (style, asks)
        pos = [p for p in res["positions"] if p["type"] in ("ALERT", "TRACK")]
        assert pos and all(p["source"] == 1 and p["error_m"] <= p["accuracy_m"] for p in pos), (style, pos[:2])


def test_bad_commands_are_counted_and_never_crash():
    g = GnssEmulator(walk(), style="quectel-l76", start="hot", seed=14)
    g.power(True, 0)
    g.write(b"$PMTK101*00\r\n", 100)  # wrong checksum
    g.write(bytes(range(256)) + b"\n", 200)  # junk
    g.write(b"\xb5\x62\x06\x08\x06\x00", 300)  # a UBX frame (u-blox binary)
    assert g.rejected_commands >= 2
    assert g.last_start == "hot"  # the bad restart was not obeyed
    assert g.bytes_in > 256


def test_after_hours_indoors_the_fix_takes_a_warm_start_to_come_back():
    r = Route([(0, 54.3321, -2.7399)])
    r.add_window(60_000, 60_000 + 3 * 3_600_000, "indoor")
    g = GnssEmulator(r, start="hot", seed=15)
    g.power(True, 0)
    g.advance(59_000)
    assert g.has_fix()
    back = 60_000 + 3 * 3_600_000
    g.advance(back + 5000)
    assert not g.has_fix()  # ephemeris expired: not a 2 s re-acquisition
    g.advance(back + 30_000)
    assert g.has_fix()


def test_power_calls_on_a_module_in_standby_wake_or_stop_it_cleanly():
    g = GnssEmulator(walk(), style="quectel-l76", start="hot", seed=16)
    g.power(True, 0)
    g.write(_pmtk("PMTK161,0"), 5000)
    g.read(7000)
    assert g.power_state() == "standby"
    g.power(True, 8000)
    assert g.power_state() in ("acquire", "tracking")
    assert b"GGA" in g.read(10_000) and b"PMTK011" not in g.read(10_000)
    g.write(_pmtk("PMTK161,0"), 11_000)
    g.read(12_000)
    g.power(False, 12_000)
    assert g.power_state() == "off" and g.read(20_000) == b""


def test_power_off_mid_burst_keeps_only_the_bytes_already_sent():
    g = GnssEmulator(walk(), style="ublox-m8", start="hot", seed=17)
    g.power(True, 0)
    g.read(3000)
    g.power(False, 3300)  # ~230 bytes of the 3 s burst are on the wire
    data = g.read(5000)
    assert 200 <= len(data) <= 260
    assert g.read(9000) == b""


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=120))
def test_checksum_is_the_xor_of_every_byte(body):
    x = 0
    for c in body.encode("ascii"):
        x ^= c
    assert checksum(body) == x
