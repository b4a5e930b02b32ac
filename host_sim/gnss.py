"""GNSS module emulator: NMEA 0183 bytes along a route, as a UART would
deliver them to the device.

Owns: what an NMEA GNSS module (u-blox M8 or Quectel L76 class) says at
1 Hz: GGA, RMC, GSA, GSV (and VTG, GLL where the module style has them),
start-up banners, acquisition after power-on (cold / warm / hot start, time
fields empty until the module knows the time, RMC status V with empty
fields), fix loss indoors and re-acquisition, satellites and HDOP that change
with the sky condition (open / urban / indoor), and a position error that
grows with HDOP. The byte timing follows the baud rate: a `read(now)` in the
middle of a sentence returns the bytes already on the wire.

Never does: know the device's state or parse anything; touch real time.
Never advances on its own: every epoch up to `now` is produced lazily on
`read(now)` (or `advance(now)`), in order, so the output depends only on the
route, the seed and the power on/off calls, not on how often it is read.

Error model (documented in docs/scenarios.md and host_sim/README.md): per
axis an AR(1) Gaussian process (a = 0.95 per second) with RMS horizontal
error `uere_m * hdop` (uere_m default 2.5 m), radial error clipped at
`max_error_m(hdop) = ERROR_CLIP * uere_m * hdop` using the HDOP printed in
the sentence. A device claiming accuracy >= max_error_m(hdop) is always right;
one claiming 2x RMS is wrong on about 2 % of fixes (Rayleigh tail).

Stays in sync with: firmware NMEA reader (sentence shapes it must accept),
host_sim/route.py (truth), docs/scenarios.md ([gnss] fields).
"""

import math
import random
from collections import deque
from typing import Any

from host_sim.errors import InputError
from host_sim.route import offset_deg

ERROR_CLIP = 3.0
_AR = 0.95

# Module styles: sentence sets, number formats and start-up behaviour.
# ttff_* are seconds of open-sky time needed (datasheet typicals).
STYLES = {
    "ublox-m8": {
        "talker": "GN",
        "sentences": ("RMC", "VTG", "GGA", "GSA", "GSV", "GLL"),
        "lat_dec": 5,
        "time_dec": 2,
        "gsa_talker_per_system": False,  # two $GNGSA, one per constellation
        "stale_on_loss": False,
        "banner": (
            "GPTXT,01,01,02,u-blox ag - www.u-blox.com",
            "GPTXT,01,01,02,HW UBX-M8030 00080000",
            "GPTXT,01,01,02,ROM CORE 3.01 (107888)",
            "GPTXT,01,01,02,PROTVER=18.00",
            "GPTXT,01,01,02,ANTSTATUS=OK",
        ),
        "ttff_cold": 26.0,
        "ttff_warm": 25.0,
        "ttff_hot": 1.0,
        "baud": 9600,
    },
    "quectel-l76": {
        "talker": "GN",
        "sentences": ("RMC", "VTG", "GGA", "GSA", "GSV", "GLL"),
        "lat_dec": 4,
        "time_dec": 3,
        "gsa_talker_per_system": True,  # $GPGSA and $GLGSA
        "stale_on_loss": True,  # RMC V keeps the last position
        "banner": ("PMTK011,MTKGPS", "PMTK010,001"),
        "ttff_cold": 35.0,
        "ttff_warm": 30.0,
        "ttff_hot": 1.0,
        "baud": 9600,
    },
    "minimal": {
        "talker": "GP",
        "sentences": ("GGA", "RMC", "GSA", "GSV"),
        "lat_dec": 4,
        "time_dec": 2,
        "gsa_talker_per_system": False,
        "stale_on_loss": False,
        "banner": (),
        "ttff_cold": 30.0,
        "ttff_warm": 25.0,
        "ttff_hot": 1.0,
        "baud": 9600,
    },
    # The SIM7600's own receiver as AT+CGPSINFOCFG reports it on the AT
    # port, shaped like the manual's capture (AT Command Manual V3.00,
    # 17.2.16, example of AT+CGPSINFOCFG=10,31):
    #   $GPGGA,051147.0,3113.320991,N,12121.248076,E,1,10,0.8,47.5,M,0,M,,*45
    #   $GPVTG,NaN,T,,M,0.0,N,0.0,K,A*42
    #   $GPRMC,051147.0,A,3113.320991,N,12121.248076,E,0.0,0.0,211211,,,A*66
    #   $GPGSA,A,3,02,04,05,10,12,13,17,23,25,26,,,1.4,0.8,1.2*3B
    # GP talker, 6 decimals of minutes, time to 0.1 s, one decimal for
    # HDOP/DOPs, speed and course, geoid separation "0". TTFF: Hardware
    # Design V1.02 3.12 "Hot start <1s, Cold start<35s" (warm: assumed as
    # cold, pessimistic). The "baud" is the AT UART's, which carries it.
    "sim7600": {
        "talker": "GP",
        "sentences": ("GGA", "VTG", "RMC", "GSA", "GSV"),
        "lat_dec": 6,
        "time_dec": 1,
        "gsa_talker_per_system": False,
        "stale_on_loss": False,
        "banner": (),
        "ttff_cold": 35.0,
        "ttff_warm": 35.0,
        "ttff_hot": 1.0,
        "baud": 115200,
        "dop_dec": 1,
        "geoid": "0",
        "nan_course": True,
    },
}
SENTENCE_TYPES = ("GGA", "RMC", "GSA", "GSV", "VTG", "GLL")
TALKERS = ("GP", "GN", "GL")
STARTS = ("auto", "cold", "warm", "hot")

# Sky model per condition: (min used, max used, hdop lo, hdop hi, snr lo, snr hi)
_SKY = {
    "open": (9, 12, 0.7, 1.2, 36, 48),
    "urban": (5, 8, 1.3, 3.2, 24, 38),
    "indoor": (0, 0, 99.99, 99.99, 8, 20),
}
_EPHEMERIS_MS = 2 * 3600 * 1000  # hot start / fast re-acquisition window
_SKY_BLOCK_MS = 10000  # satellites and HDOP change every 10 s
# NMEA 0183's longest sentence, "$" to LF; every GSA and GSV this emulator
# makes is shorter (fixed-width fields), which a lazy read relies on
_MAX_SENTENCE = 82


class GnssError(InputError):
    """Bad emulator configuration (a bug or a bad scenario)."""


def checksum(body):
    """XOR of the bytes between '$' and '*' (str). Folds the sentence as one
    big integer (halves XORed together) instead of a per-byte loop."""
    b = body.encode("ascii")
    n = len(b)
    x = int.from_bytes(b, "little")
    while n > 1:
        h = (n + 1) >> 1
        x = (x & ((1 << (h << 3)) - 1)) ^ (x >> (h << 3))
        n = h
    return x


def sentence(body):
    """'$' + body + '*HH\\r\\n' as str."""
    return "$%s*%02X\r\n" % (body, checksum(body))


def fmt_latlon(deg, is_lat, dec):
    """(field, hemisphere) for NMEA ddmm.mmmm / dddmm.mmmm with dec decimals."""
    hemi = ("N" if deg >= 0 else "S") if is_lat else ("E" if deg >= 0 else "W")
    scale = 10**dec
    mm = int(round(abs(deg) * 60 * scale))
    d = mm // (60 * scale)
    rem = mm - d * 60 * scale
    whole, frac = divmod(rem, scale)
    return ("%02d%02d.%0*d" if is_lat else "%03d%02d.%0*d") % (d, whole, dec, frac), hemi


class GnssEmulator:
    """One NMEA module. `route` is a host_sim.route.Route (or anything with
    state(t_ms), condition(t_ms), true_position(t_ms)).

    start_utc_ms: unix time in ms at sim t=0 (NMEA time and date).
    style: key of STYLES; talker: "GP", "GN" or "GL" (default: the style's);
    sentences: override the style's sentence set (subset of SENTENCE_TYPES).
    start: "auto" (hot if a fix is < 2 h old and backup power held, warm if
    the module knows the time, else cold), or force "cold"/"warm"/"hot".
    rxbuf: the device UART receive buffer in bytes (None: unbounded); bytes
    arriving while it is full are dropped and counted in `overrun_bytes`.
    """

    def __init__(
        self,
        route,
        start_utc_ms=1773524400000,
        style="ublox-m8",
        talker=None,
        sentences=None,
        baud=None,
        seed=0,
        start="auto",
        uere_m=2.5,
        rxbuf=None,
        out_delay_ms=60,
        keep_log=False,
    ):
        if style not in STYLES:
            raise GnssError("unknown GNSS style %r (known: %s)" % (style, ", ".join(sorted(STYLES))))
        st = STYLES[style]
        self.style = style
        self.talker = talker or st["talker"]
        if self.talker not in TALKERS:
            raise GnssError("talker %r is not one of %s" % (self.talker, ", ".join(TALKERS)))
        sents = tuple(sentences) if sentences else st["sentences"]
        for s in sents:
            if s not in SENTENCE_TYPES:
                raise GnssError("sentence type %r is not one of %s" % (s, ", ".join(SENTENCE_TYPES)))
        if start not in STARTS:
            raise GnssError("start %r is not one of %s" % (start, ", ".join(STARTS)))
        self.sentences = sents  # what the module sends now (PMTK314 / PUBX,40 change it)
        self.default_sentences = sents
        self.baud = int(baud or st["baud"])
        if self.baud < 1200:
            raise GnssError("baud %d too low" % self.baud)
        self._st = st
        self.route = route
        self.start_utc_ms = int(start_utc_ms)
        self.seed = seed
        self.start_mode = start
        self.uere_m = float(uere_m)
        self.rxbuf = rxbuf
        self.out_delay_ms = int(out_delay_ms)
        self._dec = st["lat_dec"]
        self._dopf = "%%.%df" % st.get("dop_dec", 2)
        self._geoid = st.get("geoid", "47.0")
        self._kn = "%.1f" if st.get("dop_dec") == 1 else "%.3f"
        self._nan_crs = st.get("nan_course", False)
        self._last_info = None  # (t, fix, lat, lon, alt, spd, crs, used, hdop) of the last epoch
        self._tfmt = "%02d%02d%02d." + "0" * st["time_dec"]
        self._rng = random.Random(seed)
        # systems tracked by this talker choice
        self._systems = {"GP": ("GP",), "GL": ("GL",), "GN": ("GP", "GL")}[self.talker]
        # power and acquisition state
        self.on = False
        self._next_epoch = None  # sim ms of the next epoch to produce
        self._need_ms = 0  # open-sky ms still needed before a fix
        self._time_known = False  # module knows UTC (RTC / backup / sats)
        self._time_at_ms = None  # sim ms at which a cold start learns time
        self._backup = True  # V_BCKP held (lost on a battery cut)
        self._last_fix_ms = None
        self._stale = None  # (lat, lon) for stale-on-loss styles (lazy: a _Place, placed when formatted)
        self._err = (0.0, 0.0)
        self._sky_cache: tuple[Any, Any] = (None, None)  # (key, value) of the last 10 s block
        self._block_cache = {}
        self._day_cache = (None, "")
        self._has_fix = False
        self.last_start = None  # "cold"/"warm"/"hot" of the last power-on
        self.first_fix_ms = None  # sim ms of the first fix after power-on
        # output queue: [start_ms, end_ms, bytes]
        self._q = deque()
        # lazy: the owner takes only the latest epoch now and then (the
        # SIM7600 reporting every <time> s, AT+CGPSINFOCFG): epochs are still
        # computed one by one (acquisition, noise, the log), but only the
        # last two are kept, unformatted, and read() formats the newest one
        # that has finished going out (only the kinds the modem reports,
        # when told: then bytes_out counts those). Off for a module on a UART.
        self.lazy = False
        self._pend = deque(maxlen=2)
        self._tx_free = 0
        self._since_read = 0
        # counters
        self.epochs = 0
        self.sentences_out = 0
        self.bytes_out = 0
        self.overrun_bytes = 0
        self.bytes_in = 0
        self.rejected_commands = 0
        self.commands = []  # good-checksum sentences the device sent (bodies)
        self._cmd = b""
        self.standby = False
        self.log = [] if keep_log else None

    # -- power ------------------------------------------------------------
    def power(self, on, now, start=None, banner=True):
        """Switch the module on/off at sim time now (GNSS enable pin).
        Powering on a module in standby wakes it (without the banner)."""
        self.advance(now)
        if self.standby:
            self.standby = False
            self.on = False  # so that on=True below is a (banner-less) start
            banner = False
            if not on:
                self._cut_tx(now)
                return
        if on == self.on:
            return
        if not on:
            self.on = False
            self._next_epoch = None
            self._has_fix = False
            self._cut_tx(now)
            # output set back to the style's: whether PMTK314 / PUBX,40
            # settings outlive a power-off is not documented for these
            # modules (kept in RAM; backup RAM unknown): the pessimistic case
            self.sentences = self.default_sentences
            return
        self.on = True
        mode = start or self.start_mode
        if mode == "auto":
            if not self._backup:
                mode = "cold"
            elif self._last_fix_ms is not None and now - self._last_fix_ms < _EPHEMERIS_MS:
                mode = "hot"
            elif self._time_known:
                mode = "warm"
            else:
                mode = "cold"
        self.last_start = mode
        self.first_fix_ms = None
        jitter = 0.8 + 0.4 * random.Random("%s/ttff/%d" % (self.seed, now)).random()
        self._need_ms = int(self._st["ttff_" + mode] * 1000 * (jitter if mode != "hot" else 1.0))
        if mode == "cold":
            self._time_known = False
            self._last_fix_ms = None
            self._stale = None
            self._time_at_ms = now + self._need_ms // 2
        else:
            self._time_known = True
            self._time_at_ms = None
        # boot: banner ~100 ms after power, first epoch at the next UTC second
        boot = now + 100
        self._tx_free = boot
        for b in self._st["banner"] if banner else ():
            self._emit(sentence(b), boot)
        u = self.start_utc_ms + boot + 1
        self._next_epoch = ((u + 999) // 1000) * 1000 - self.start_utc_ms

    def _cut_tx(self, now):
        """Power gone at now: bytes already on the wire stay in the device's
        UART buffer; the rest of the burst is never sent."""
        keep = deque()
        for item in self._q:
            st, e, b = item
            if e <= now:
                keep.append(item)
            elif st < now:
                n = (now - st) * self.baud // 10000
                if n > 0:
                    keep.append([st, st + (n * 10000 + self.baud - 1) // self.baud, b[:n]])
        self._q = keep
        self._tx_free = now

    def lose_backup(self):
        """Battery cut: the module forgets time and ephemeris (next start cold)."""
        self._backup = False
        self._time_known = False
        self._last_fix_ms = None

    def restore_backup(self):
        self._backup = True

    def power_state(self):
        """"off", "standby", "acquire" or "tracking" (for the energy model)."""
        if self.standby:
            return "standby"
        if not self.on:
            return "off"
        return "tracking" if self._has_fix else "acquire"

    # -- commands from the device (UART TX side) -------------------------------
    def write(self, data, now):
        """Bytes the device sends to the module. Quectel style: $PMTK
        commands with a good checksum are answered with $PMTK001,cmd,flag
        (3 done, 1 unsupported); 101/102/103/104 restart hot/warm/cold/full
        cold, 161 enters standby (no output) until the next byte arrives,
        314 sets which sentences it sends (_pmtk314). u-blox style: PUBX,40
        switches one message on or off (_pubx40). A module ignores the
        other family's commands; junk and bad checksums are counted.
        Returns the number of bytes taken (all of them)."""
        self.advance(now)
        self.bytes_in += len(data)
        if self.standby and data:
            self.power(True, now)  # any byte wakes it
        self._cmd = (self._cmd + bytes(data))[-512:]
        while b"\n" in self._cmd:
            line, self._cmd = self._cmd.split(b"\n", 1)
            self._command(line.strip(), now)
        return len(data)

    def _command(self, line, now):
        try:
            text = line.decode("ascii")
        except UnicodeDecodeError:
            self.rejected_commands += 1
            return
        if not text.startswith("$") or "*" not in text:
            if text:
                self.rejected_commands += 1
            return
        body, cs = text[1:].rsplit("*", 1)
        if cs.upper() != "%02X" % checksum(body):
            self.rejected_commands += 1
            return
        self.commands.append(body)
        if body.startswith("PUBX,40,") and self.style == "ublox-m8" and self.on:
            self._pubx40(body)
            return
        if not body.startswith("PMTK") or self.style != "quectel-l76" or not self.on:
            return
        cmd = body[4:7]
        flag = 1
        if cmd == "314":
            flag = 3 if self._pmtk314(body) else 1
        elif cmd in ("101", "102", "103", "104"):
            flag = 3
            mode = {"101": "hot", "102": "warm", "103": "cold", "104": "cold"}[cmd]
            self.power(False, now)
            if mode == "cold":
                self.lose_backup()
                self.restore_backup()
            self.power(True, now, start=mode)
        elif cmd == "161":
            flag = 3
        self._emit(sentence("PMTK001,%s,%d" % (cmd, flag)), now + 10)
        if cmd == "161":
            self.advance(now)
            self._next_epoch = None
            self.standby = True
            self._has_fix = False

    def _pmtk314(self, body):
        """PMTK314 (MTK, Quectel L80 GPS Protocol Specification 3.19
        PMTK_API_SET_NMEA_OUTPUT): 19 per-sentence output intervals in the
        order GLL, RMC, VTG, GGA, GSA, GSV, ..., 0 = off; "-1" restores the
        defaults. Intervals above 1 (every n-th fix) are taken as on.
        Returns False (answered flag 1) for a malformed field list."""
        f = body.split(",")[1:]
        if f == ["-1"]:
            self.sentences = self.default_sentences
            return True
        if len(f) != 19 or not all(x.isdigit() and int(x) <= 5 for x in f):
            return False
        on = {n for n, x in zip(("GLL", "RMC", "VTG", "GGA", "GSA", "GSV"), f) if x != "0"}
        self.sentences = tuple(n for n in self.default_sentences if n in on)
        return True

    def _pubx40(self, body):
        """$PUBX,40,msgId,rddc,rus1,rus2,rusb,rspi,reserved (u-blox 8/M8
        Receiver Description, PUBX,40 RATE): the message's rate per port;
        the module's UART1 (rus1) is the one wired to the ESP32. No answer.
        A malformed one is ignored and counted."""
        f = body.split(",")
        if len(f) != 9 or not all(x.isdigit() for x in f[3:]):
            self.rejected_commands += 1
            return
        msg = f[2]
        if msg not in SENTENCE_TYPES:
            return  # a message this emulator does not produce
        on = f[4] != "0"
        cur = self.sentences
        self.sentences = tuple(n for n in self.default_sentences if (n == msg and on) or (n != msg and n in cur))

    # -- truth --------------------------------------------------------------
    def true_position(self, t_ms):
        """(lat_e7, lon_e7) where the person truly is at t_ms."""
        return self.route.true_position(t_ms)

    def has_fix(self):
        return self._has_fix

    def max_error_m(self, hdop):
        """Largest radial error this emulator ever adds for a given HDOP."""
        return ERROR_CLIP * self.uere_m * hdop

    # -- UART side ------------------------------------------------------------
    def read(self, now, kinds=None):
        """Bytes the device UART has received since the last read, up to now
        (lazy: the newest whole epoch's sentences, older ones dropped; with
        `kinds`, only those sentence kinds of it: see _lazy_read)."""
        self.advance(now)
        if self.lazy:
            self._q.clear()  # a power-on banner: the modem's port never shows it
            out = b""
            for p in reversed(self._pend):
                text = self._lazy_read(p, now, kinds)
                if text is not None:
                    out = text.encode("ascii")
                    self.bytes_out += len(out)
                    break
            self._pend.clear()
            return out
        q = self._q
        out = []
        while q and q[0][0] <= now:
            item = q[0]
            s, e, b = item
            if e <= now:
                q.popleft()
                out.append(b)
            else:
                n = (now - s) * self.baud // 10000
                if n <= 0:
                    break
                out.append(b[:n])
                item[2] = b[n:]
                item[0] = s + (n * 10000 + self.baud - 1) // self.baud
                break
        data = b"".join(out)
        self._since_read = sum(len(item[2]) for item in q)
        if self.rxbuf is not None and len(data) > self.rxbuf:
            self.overrun_bytes += len(data) - self.rxbuf
            data = data[: self.rxbuf]
        return data

    def next_output_ms(self, now):
        """Sim ms at which the next byte arrives (>= now), or None if off."""
        self.advance(now)
        if self._q:
            return max(now, self._q[0][0] + (10000 + self.baud - 1) // self.baud)
        if self._next_epoch is None:
            return None
        return max(now, self._next_epoch + self.out_delay_ms + (10000 + self.baud - 1) // self.baud)

    def burst_end_ms(self, now):
        """Sim ms at which the burst carrying the next byte has fully
        arrived (>= now), or None if off: when a device woken by the UART
        has the whole epoch to read."""
        t = self.next_output_ms(now)
        if t is None:
            return None
        self.advance(t)
        if not self._q:
            return t
        s0 = self._q[0][0]
        end = self._q[0][1]
        for s, e, _ in self._q:  # one epoch's burst may be queued in pieces
            if s > end + 50 or s - s0 >= 1000:
                break
            end = e
        return max(now, end)

    def advance(self, now):
        """Produce every epoch whose time is <= now."""
        if not self.on:
            return
        while self._next_epoch is not None and self._next_epoch <= now:
            t = self._next_epoch
            self._next_epoch = t + 1000
            self._epoch(t)

    def _emit(self, text, earliest, count=1):
        """Queue one burst of sentences (str) to go out from `earliest`."""
        b = text.encode("ascii")
        if self.rxbuf is not None and self._since_read >= self.rxbuf:
            # the device buffer is already full: these bytes are lost anyway
            self.overrun_bytes += len(b)
            self._tx_free = max(self._tx_free, earliest) + (len(b) * 10000) // self.baud
            return
        s = max(self._tx_free, earliest)
        e = s + (len(b) * 10000 + self.baud - 1) // self.baud
        self._tx_free = e
        self._q.append([s, e, b])
        self._since_read += len(b)
        self.sentences_out += count
        self.bytes_out += len(b)

    # -- one epoch --------------------------------------------------------------
    def _sky(self, t, cond):
        """(used_gp, used_gl, view_gp, view_gl, hdop) for the 10 s block."""
        block = t // _SKY_BLOCK_MS
        key = (block, cond)
        if self._sky_cache[0] == key:
            return self._sky_cache[1]
        r = random.Random("%s/sky/%d/%s" % (self.seed, block, cond))
        umin, umax, hlo, hhi, slo, shi = _SKY[cond]
        # a fixed constellation slowly turning with time (4 deg per 10 min)
        rot = (t / 1000.0) * (4.0 / 600.0)
        gp_all = [(p, (p * 37) % 80 + 5, (p * 71 + rot) % 360) for p in (2, 5, 6, 9, 12, 13, 15, 17, 19, 20, 24, 25, 29)]
        gl_all = [(p, (p * 23) % 75 + 8, (p * 53 + rot) % 360) for p in (65, 66, 72, 73, 74, 80, 81, 82)]
        n_used = r.randint(umin, umax) if umax else 0
        if self.talker == "GP":
            n_gp, n_gl = n_used, 0
        elif self.talker == "GL":
            n_gp, n_gl = 0, min(n_used, len(gl_all))
        else:
            n_gl = n_used // 3
            n_gp = n_used - n_gl
        n_gp = min(n_gp, len(gp_all))
        vis_gp = gp_all[: max(n_gp + 2, 8)] if "GP" in self._systems else []
        vis_gl = gl_all[: max(n_gl + 1, 4)] if "GL" in self._systems else []
        view_gp = [(p, el, int(az), r.randint(slo, shi) if cond != "indoor" or r.random() < 0.5 else None) for p, el, az in vis_gp]
        view_gl = [(p, el, int(az), r.randint(slo, shi) if cond != "indoor" or r.random() < 0.5 else None) for p, el, az in vis_gl]
        used_gp = [v[0] for v in view_gp[:n_gp]]
        used_gl = [v[0] for v in view_gl[:n_gl]]
        # used satellites must have a signal
        view_gp = [(p, el, az, s if s is not None or p not in used_gp else slo) for p, el, az, s in view_gp]
        view_gl = [(p, el, az, s if s is not None or p not in used_gl else slo) for p, el, az, s in view_gl]
        hdop = round(hlo + (hhi - hlo) * r.random(), 2) if umax else 99.99
        val = (used_gp, used_gl, view_gp, view_gl, hdop)
        self._sky_cache = (key, val)
        return val

    def _epoch(self, t):
        self.epochs += 1
        route = self.route
        cond = route.condition(t)
        # acquisition progresses only under an open or urban sky
        if cond != "indoor":
            if self._need_ms > 0:
                self._need_ms -= 1000
            if not self._time_known and self._time_at_ms is not None and t >= self._time_at_ms:
                self._time_known = True
        else:
            if self._last_fix_ms is not None:
                # lost it: fast re-acquisition while the ephemeris is fresh, warm after
                fresh = t - self._last_fix_ms < _EPHEMERIS_MS
                self._need_ms = int((self._st["ttff_hot"] + 1.0) * 1000) if fresh else int(self._st["ttff_warm"] * 1000)
            if self._time_at_ms is not None and not self._time_known:
                self._time_at_ms += 1000  # no satellites: time not learnt yet
        fix = cond != "indoor" and self._need_ms <= 0
        if fix and self.first_fix_ms is None:
            self.first_fix_ms = t
        self._has_fix = fix
        used_gp, used_gl, view_gp, view_gl, hdop = self._sky(t, cond)
        lat = lon = alt = spd = crs = None
        place = None  # a fix not yet worked out (lazy mode)
        err_m = None
        if fix:
            sig = self.uere_m * hdop / math.sqrt(2.0)
            r = self._rng
            k = math.sqrt(1 - _AR * _AR)
            en = _AR * self._err[0] + k * r.gauss(0.0, sig)
            ee = _AR * self._err[1] + k * r.gauss(0.0, sig)
            lim = self.max_error_m(hdop)
            m = math.hypot(en, ee)
            if m > lim:
                en, ee = en * lim / m, ee * lim / m
                m = lim
            self._err = (en, ee)
            err_m = m
            self._last_fix_ms = t
            place = _Place(t, en, ee, r.gauss(0.0, 0.05))
            if self.lazy and self.log is None:
                self._stale = place  # most epochs are never formatted: placed if one is
            else:
                lat, lon, alt, spd, crs = self._place(place)
                self._stale = (lat, lon)
                place = None
        else:
            self._err = (0.0, 0.0)
        if self.log is not None:
            self.log.append((t, fix, hdop, err_m, int(round(lat * 1e7)) if lat is not None else None,
                             int(round(lon * 1e7)) if lon is not None else None))  # (set only with a fix)
        self._write(t, fix, lat if place is None else place, lon, alt, spd, crs, used_gp, used_gl, view_gp, view_gl, hdop)

    def _write(self, t, fix, lat, lon, alt, spd, crs, used_gp, used_gl, view_gp, view_gl, hdop):
        args = (t, fix, lat, lon, alt, spd, crs, used_gp, used_gl, view_gp, view_gl, hdop,
                self._time_known, self._stale, self._sky_cache[0])
        if self.lazy:
            self._pend.append(args)
            self._last_info = args
            return
        text, n, self._last_info, _ = self._text(*args)
        self._emit(text, t + self.out_delay_ms, n)

    def _lazy_read(self, p, now, kinds):
        """The text of pending epoch p if it has finished going out by now
        (its last byte sent: out_delay_ms, then every sentence the module
        makes at the baud rate), else None. With `kinds` (the SIM7600's
        AT+CGPSINFOCFG mask) only those sentences are formatted; the rest
        count for the epoch's length only: the simple ones' bodies without
        a checksum (every sentence is body + 6 bytes), the GSA/GSV blocks
        at most _MAX_SENTENCE bytes each, counted as _sat_block makes them
        (their fields have fixed widths: tests/test_modem_gnss.py), and
        made whole only in the instants where that bound cannot tell done
        from not yet."""
        t0 = p[0] + self.out_delay_ms
        baud = self.baud
        if kinds is None:
            text, n, _, _ = self._text(*p)
            if t0 + (len(text) * 10000 + baud - 1) // baud > now:
                return None
            self.sentences_out += n
            return text
        text, n, _, rest = self._text(*p, only=kinds)
        assert rest is not None
        known = len(text) + rest[0]
        if t0 + (known * 10000 + baud - 1) // baud > now:
            return None  # not out yet, whatever the blocks' length
        blocks = rest[1]
        if blocks:
            fix, hdop, sky_key = p[1], p[11], p[14]
            used_gp, used_gl, view_gp, view_gl = p[7], p[8], p[9], p[10]
            nb = 0
            for s in blocks:
                if s == "GSA":
                    nb += len(self._systems)
                else:
                    for sys_t, view in (("GP", view_gp), ("GL", view_gl)):
                        if sys_t in self._systems:
                            nb += max(1, (len(view) + 3) // 4)
            if t0 + ((known + nb * _MAX_SENTENCE) * 10000 + baud - 1) // baud > now:
                whole = sum(len(self._sat_block(s, fix, used_gp, used_gl, view_gp, view_gl, hdop, sky_key))
                            for s in blocks)
                if t0 + ((known + whole) * 10000 + baud - 1) // baud > now:
                    return None
            n += nb
        self.sentences_out += n + rest[2]
        return text

    def _place(self, p):
        """(lat, lon, alt, speed, course) of a fix: the route's truth at its
        time, moved by its error, its speed by its noise."""
        lat, lon, alt, spd, crs = self.route.state(p.t)
        dlat, dlon = offset_deg(lat, p.en, p.ee)
        return lat + dlat, lon + dlon, alt, max(0.0, spd + p.dspd), crs

    def _text(self, t, fix, lat, lon, alt, spd, crs, used_gp, used_gl, view_gp, view_gl, hdop,
              time_known, stale, sky_key, only=None):
        """(NMEA text, sentence count, last-info tuple, rest) of one epoch.
        With `only` (sentence kinds), the text of those alone, and `rest`
        what was left out: (bytes of the other simple sentences, the GSA/GSV
        kinds, how many simple sentences); else rest is None."""
        if type(lat) is _Place:
            lat, lon, alt, spd, crs = self._place(lat)
        if type(stale) is _Place:
            stale = self._place(stale)[:2]
        T = self.talker
        dec = self._dec
        if time_known:
            secs = (self.start_utc_ms + t) // 1000
            day, sod = divmod(secs, 86400)
            hh, rem = divmod(sod, 3600)
            mi, ss = divmod(rem, 60)
            tstr = self._tfmt % (hh, mi, ss)
            if self._day_cache[0] != day:
                y, mo, d = _civil(day)
                self._day_cache = (day, "%02d%02d%02d" % (d, mo, y % 100))
            dstr = self._day_cache[1]
        else:
            tstr = dstr = ""
        if fix:
            la, ns = fmt_latlon(lat, True, dec)
            lo, ew = fmt_latlon(lon, False, dec)
            nused = len(used_gp) + len(used_gl)
            kn = spd * 1.943844
            spd_s = self._kn % kn
            crs_s = ("%.1f" if self._nan_crs else "%.2f") % crs if kn > 0.1 else ("NaN" if self._nan_crs else "")
            # the SIM7600 says 0.0 in RMC and NaN in VTG when it has no course (manual 17.2.16's capture)
            rmc_crs = "0.0" if crs_s == "NaN" else crs_s
        out = []
        add = out.append
        skipped = 0  # bytes of the simple sentences left out (with `only`)
        n_skipped = 0
        blocks = []
        for s in self.sentences:
            if only is not None and s not in only:
                if s == "GSA" or s == "GSV":
                    blocks.append(s)
                    continue
            if s == "GGA":
                if fix:
                    body = ("%sGGA,%s,%s,%s,%s,%s,1,%02d," + self._dopf + ",%.1f,M,%s,M,,") % (
                        T, tstr, la, ns, lo, ew, nused, hdop, alt, self._geoid)
                else:
                    body = "%sGGA,%s,,,,,0,00,99.99,,,,,," % (T, tstr)
            elif s == "RMC":
                if fix:
                    body = "%sRMC,%s,A,%s,%s,%s,%s,%s,%s,%s,,,A" % (T, tstr, la, ns, lo, ew, spd_s, rmc_crs, dstr)
                elif self._st["stale_on_loss"] and stale is not None:
                    sla, sns = fmt_latlon(stale[0], True, dec)
                    slo, sew = fmt_latlon(stale[1], False, dec)
                    body = "%sRMC,%s,V,%s,%s,%s,%s,,,%s,,,N" % (T, tstr, sla, sns, slo, sew, dstr)
                else:
                    body = "%sRMC,%s,V,,,,,,,%s,,,N" % (T, tstr, dstr)
            elif s == "VTG":
                if fix:
                    body = ("%sVTG,%s,T,,M,%s,N," + self._kn + ",K,A") % (T, crs_s, spd_s, spd * 3.6)
                else:
                    body = "%sVTG,,,,,,,,,N" % T
            elif s == "GLL":
                if fix:
                    body = "%sGLL,%s,%s,%s,%s,%s,A,A" % (T, la, ns, lo, ew, tstr)
                else:
                    body = "%sGLL,,,,,%s,V,N" % (T, tstr)
            else:  # GSA, GSV: no time in them, constant within a sky block
                add(self._sat_block(s, fix, used_gp, used_gl, view_gp, view_gl, hdop, sky_key))
                continue
            if only is not None and s not in only:
                skipped += len(body) + 6  # "$" body "*HH\r\n"
                n_skipped += 1
                continue
            add(sentence(body))
        text = "".join(out)
        info = (t, fix, lat, lon, alt, spd, crs, len(used_gp), len(used_gl), hdop, tstr, dstr)
        return text, text.count("\n"), info, None if only is None else (skipped, blocks, n_skipped)

    def cgnssinfo(self, now):
        """The fields of the SIM7600's +CGNSSINFO: for the last epoch, in
        the manual's shape (AT Command Manual V3.00 17.2.21 example:
        2,09,05,00,3113.330650,N,12121.262554,E,131117,091918.0,32.9,0.0,255.0,1.1,0.8,0.7)."""
        self.advance(now)
        li = self._last_info
        if li is not None and len(li) == 15:  # lazy: formatted when asked
            li = self._text(*li)[2]
        if li is None or not li[1]:
            return ",,,,,,,,,,,,,,"
        t, fix, lat, lon, alt, spd, crs, ngp, ngl, hdop, tstr, dstr = li
        la, ns = fmt_latlon(lat, True, 6)
        lo, ew = fmt_latlon(lon, False, 6)
        return "3,%02d,%02d,00,%s,%s,%s,%s,%s,%s,%.1f,%.1f,%.1f,%.1f,%.1f,%.1f" % (
            ngp, ngl, la, ns, lo, ew, dstr, tstr, alt, spd * 1.943844, crs, min(99.9, hdop * 1.6), hdop,
            min(99.9, hdop * 1.3))

    def _sat_block(self, s, fix, used_gp, used_gl, view_gp, view_gl, hdop, sky_key):
        key = (s, fix, sky_key)
        hit = self._block_cache.get(s)
        if hit is not None and hit[0] == key:
            return hit[1]
        parts = []
        if s == "GSA":
            f3 = ",".join([self._dopf] * 3)
            pd = f3 % (min(99.99, hdop * 1.6), hdop, min(99.99, hdop * 1.3)) if fix else "99.99,99.99,99.99"
            groups = []
            if "GP" in self._systems:
                groups.append(("GP", used_gp))
            if "GL" in self._systems:
                groups.append(("GL", used_gl))
            for sys_t, used in groups:
                tk = sys_t if self._st["gsa_talker_per_system"] or self.talker != "GN" else "GN"
                ids = [("%02d" % p) for p in used[:12]] if fix else []
                ids += [""] * (12 - len(ids))
                parts.append(sentence("%sGSA,A,%d,%s,%s" % (tk, 3 if fix else 1, ",".join(ids), pd)))
        else:
            for sys_t, view in (("GP", view_gp), ("GL", view_gl)):
                if sys_t not in self._systems:
                    continue
                n = len(view)
                total = max(1, (n + 3) // 4)
                for i in range(total):
                    chunk = view[i * 4 : i * 4 + 4]
                    f = ["%02d,%02d,%03d,%s" % (p, el, az, "" if snr is None else "%02d" % snr) for p, el, az, snr in chunk]
                    parts.append(sentence("%sGSV,%d,%d,%02d%s" % (sys_t, total, i + 1, n, "".join("," + x for x in f))))
        text = "".join(parts)
        self._block_cache[s] = (key, text)
        return text


class _Place:
    """A fix's position before it is worked out: its time, its error (m
    north, m east) and its speed noise (m/s), all drawn at its epoch."""

    __slots__ = ("t", "en", "ee", "dspd")

    def __init__(self, t, en, ee, dspd):
        self.t, self.en, self.ee, self.dspd = t, en, ee, dspd


def _civil(days):
    """(year, month, day) from days since 1970-01-01 (proleptic Gregorian)."""
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return (y + (m <= 2), m, d)
