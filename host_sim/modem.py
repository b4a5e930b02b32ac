"""SIM7600 emulator in virtual time: the AT dialogue of SIMCom's SIM7500/
SIM7600 AT manual V3.00 on a byte stream, carrying TCP through a pluggable
backend (host_sim/tcp.py) and SMS through the network model to an endpoint.

Owns: when the modem says what, in which state, and the lines only it
says (errors, read commands' answers); the text of every line the
scripted modems say too, and the golden answers of a registered module,
are host_sim/sim7600_answers.py's (shared with the device tests' scripted
modem and the heap bench). Device side:
    write(data, now)        bytes from the device's UART TX
    read(now) -> bytes      bytes due on the device's UART RX by `now`
    next_event_ms() -> int or None   when something next happens (for a
                            discrete-event loop to jump to)
    power(on, now), pwrkey(level, now), dtr(level, now)   the board's pins
                            (pwrkey level 1 = key pressed, PWRKEY pulled low)
Never sleeps and never reads a clock. All randomness (garbage, truncation)
comes from one seeded random.Random.

Timings (defaults from the hardware design and the AT manual): PWRKEY pulse
>= 100 ms powers on, RDY 11.5 s later (UART ready 11-12 s); a >= 2.5 s pulse
powers off; +CPIN: READY 1 s after RDY, SMS DONE 4 s, PB DONE 5 s;
registration 3 s after the SIM is ready (and after coverage returns);
20 ms per command; NETOPEN 1 s; SMS submit 2.5 s.

Faults (keyword arguments, see DEFAULTS): boot_ms, reg_ms, cmd_latency_ms,
echo (on until ATE0, like the real module), sim ("ok", "missing", "pin"),
sim_missing_boots, coverage schedule [(from_ms, "full"|"sms"|"none")],
open_fail (first N CIPOPEN fail), remote_close_at / silent_close_at (ms),
short_send (first N CIPSEND confirm fewer bytes), garbage_p / truncate_p
(per output line), hang_at_ms / hang_after_cmds (stops answering until the
power pin or PWRKEY power-cycles it), babble_at_ms (answers with printable
noise until power-cycled), reset_at / quiet_reset_at (restarts by itself,
with / without RDY), start_on (already booted at 0).

Must stay in sync with: firmware/modem/sim7600.py (the engine's view of the
same dialect), host_sim/sim7600_answers.py (tests/test_modem_answers.py
holds this emulator to its golden answers), host_sim/README.md (the API),
docs/modem.md.
"""

import binascii
import heapq
import random
from typing import Any

from host_sim import sim7600_answers as A
from host_sim.network import Network
from host_sim.tcp import ModelTcp

DEFAULTS = {
    # Hardware Design V1.02 Table 8: UART ready 11-12 s (typ. 12) and STATUS
    # high 12-13 s (typ. 13) after the PWRKEY press; Table 9: STATUS low
    # 25-26 s (typ. 26) after a power-off (PWRKEY >= 2.5 s or AT+CPOF)
    "boot_ms": 12000,
    "status_on_ms": 13000,
    "status_off_ms": 26000,
    "cpin_after_ms": 1000,
    "sms_done_after_ms": 4000,
    "pb_done_after_ms": 5000,
    "reg_ms": 3000,
    "cmd_latency_ms": 20,
    "netopen_ms": 1000,
    "send_ms": 20,
    "sms_submit_ms": 2500,
    "call_setup_ms": 3000,
    "open_fail_ms": 7000,
    "echo": True,
    "sim": "ok",
    "sim_missing_boots": 0,
    "pin_code": "1234",
    "coverage": ((0, "full"),),
    "open_fail": 0,
    "remote_close_at": (),
    "silent_close_at": (),
    "short_send": 0,
    "garbage_p": 0.0,
    "truncate_p": 0.0,
    "hang_at_ms": None,
    # from then on the module ignores PWRKEY too (only a battery cycle helps;
    # the board has no supply switch and RESET is not wired: t_sim7600e.py)
    "wedged_at_ms": None,
    "hang_after_cmds": None,
    "babble_at_ms": None,
    "reset_at": (),
    "quiet_reset_at": (),
    "start_on": False,
    "call_answer": True,
    "rssi": 21,
    # the serving cell (AT+CPSI?, manual 4.2.14; RSRP in tenths of a dBm), or
    # a callable now -> such a tuple or None (no service): host_sim/cells.py
    "cell": ("LTE", 234, 15, 0x1A2B, 30125732, -971),
    "own_number": "+447700900123",
    # RI low per URC after AT+CFGRI=1 (manual 19.2.16 default <URC time> 60;
    # Sleep Mode application note 5)
    "ri_urc_ms": 60,
    # the UART line rate: every byte takes 10 bits each way (8N1)
    "uart_baud": 115200,
    # UART sleep entered this long after DTR high with AT+CSCLK=1 and
    # nothing to do ("about 15 to 20 seconds", Sleep Mode application note 2)
    "sleep_entry_ms": 20000,
    # an LTE-only network (coverage "lte"): CREG never registers (EPS-only
    # attach, as seen on SIMCom's SIM7000 and Quectel's BG96: research
    # notes in docs/modem.md); SMS (over SGs or IMS) and VoLTE calls work
    # unless these say otherwise: the manual has no command for either
    "lte_sms": True,
    "volte": True,
}
_GNSS_BIT = {"GGA": 0, "RMC": 1, "GSV": 2, "GSA": 3, "VTG": 4}  # AT+CGPSINFOCFG <config> bits (manual 17.2.16)

_CTRL_Z = 0x1A
_ESC = 0x1B


class Sim7600:
    def __init__(self, endpoint=None, network=None, tcp=None, seed=0, gnss=None, **faults):
        bad = [k for k in faults if k not in DEFAULTS]
        if bad:
            raise ValueError("unknown modem fault/setting: %s" % ", ".join(sorted(bad)))
        self.f = dict(DEFAULTS)
        self.f.update(faults)
        self.endpoint = endpoint
        self.network = network if network is not None else Network(seed=seed)
        self.tcp = tcp if tcp is not None else ModelTcp(self.network, endpoint)
        self.rng = random.Random(seed ^ 0x5A5A)
        self.events = []  # (t, kind, ...) for tests and the scenario runner
        self.deaf = []  # (t, why): bytes written while the module could not listen
        self.transcript = []  # (t, ">"|"<", bytes): ">" to the modem, "<" from it
        self.record = True
        self._timers = []
        self._tn = 0
        self._out = []  # (t, bytes) in time order
        self._last_out = 0
        self.powered = True
        self.on = False
        self.hung = False
        self._key_down = None
        self._dtr = 0
        self._boots = 0
        self._cmds = 0
        self._open_fails = 0
        self._short_sends = 0
        self._draining = []  # connections the modem closed, with data still in flight
        self.gnss = gnss  # a GnssEmulator in the "sim7600" style: the module's own receiver
        self._line_free = 0  # the UART towards the device is busy until then
        self._ri_lows = []  # (from, to) ms: RI held low
        self._ri_max = -1  # the latest fall in _ri_lows
        self._status_since = None  # STATUS high from (None: low)
        self._off_at = None  # shutting down: STATUS low then
        self._dtr_high_at = None
        self.wedged = False
        self.cov = self._cov_at(0)
        self._reset_state()
        if self.f["start_on"]:
            self.on = True
            self._boots = 1
            self._ready_at = 0
            self._status_since = 0
            self._sim_ready(0)
            self._cs_at = 0
            self._ps_at = 0 if self.cov == "full" else None
            self._echo = False
        for t in self.f["coverage"]:
            self._timer(t[0], self._coverage, t[1])
        for t in self.f["remote_close_at"]:
            self._timer(t, self._remote_close, 1)
        for t in self.f["silent_close_at"]:
            self._timer(t, self._remote_close, 0)
        if self.f["hang_at_ms"] is not None:
            self._timer(self.f["hang_at_ms"], self._hang)
        for t in self.f["reset_at"]:
            self._timer(t, self._self_reset)
        for t in self.f["quiet_reset_at"]:
            self._timer(t, self._self_reset, True)
        if self.f["babble_at_ms"] is not None:
            self._timer(self.f["babble_at_ms"], self._start_babble)
        if self.f["wedged_at_ms"] is not None:
            self._timer(self.f["wedged_at_ms"], self._wedge)

    def _reset_state(self):
        self._echo = self.f["echo"]
        self._line = bytearray()
        self._mode = "cmd"  # "cmd", "cipsend", "cmgs"
        self._need = 0
        self._payload = bytearray()
        self._sms_to = None
        self._busy_until = 0
        self.sim_state = None  # None, "ready", "pin", "missing"
        self._cs_at = None
        self._ps_at = None
        # AT+CREG/CGREG/CEREG=<n> (manual 4.2.1, 8.2.1, 4.2.16): <n> 0 after
        # every boot (not known to persist: assumed not, pessimistic), and
        # the <stat> a URC last said
        self._reg_n = {"+CREG": 0, "+CGREG": 0, "+CEREG": 0}
        self._reg_said = {}
        self.net_open = False
        self.conn = None
        self.sock = False
        self._dead_sock = False
        self._rx = bytearray()
        self._rxmode = 0
        self._cmgf = 0
        self._csclk = 0
        self._cvhu = 1
        self.call = None
        self._ready_at = None
        self.babble = False
        self._cfgri = 0  # AT+CFGRI: not kept across a restart (unknown: assumed not)
        self._cvaux = 0  # AT+CVAUXS: VDD_AUX feeds the GNSS antenna's LNA
        self._gps = 0  # AT+CGPS
        self._nmea_period = 0  # AT+CGPSINFOCFG <time> s (0: off)
        self._nmea_mask = 0
        self._nmea_timer_on = False

    # ---- scheduling -----------------------------------------------------

    def _timer(self, t, fn, *args):
        self._tn += 1
        heapq.heappush(self._timers, (t, self._tn, fn, args))

    def next_event_ms(self):
        c = []
        if self._out:
            c.append(self._out[0][0])
        for d in self._draining:
            t = d.next_event_ms()
            if t is not None:
                c.append(t)
        if self._timers:
            c.append(self._timers[0][0])
        if self.conn is not None:
            t = self.conn.next_event_ms()
            if t is not None:
                c.append(t)
        return min(c) if c else None

    def next_event_after(self, now):
        """The first instant after `now` at which anything happens: a timer,
        a connection event, a byte that is still on its way (bytes already
        due and not yet read do not count: they are waiting for the reader)."""
        self._advance(now)
        best = None
        for t, _ in self._out:
            if t > now:
                best = t
                break
        for d in self._draining:
            t = d.next_event_ms()
            if t is not None and t > now and (best is None or t < best):
                best = t
        if self._timers:
            t = self._timers[0][0]
            if t <= now:
                t = now + 1
            if best is None or t < best:
                best = t
        if self.conn is not None:
            t = self.conn.next_event_ms()
            if t is not None:
                if t <= now:
                    t = now + 1
                if best is None or t < best:
                    best = t
        if self._ri_max > now:  # RI falls then (a pin: it can wake a sleeping ESP32)
            t = min(a for a, _ in self._ri_lows if a > now)
            if best is None or t < best:
                best = t
        return best

    def _advance(self, now):
        if not self._draining:
            # nothing due: the common case, answered without the loop below
            # (a real-time connection is always polled: it has no queue)
            t = self._timers[0][0] if self._timers else None
            if t is None or t > now:
                conn = self.conn
                if conn is None:
                    return
                if getattr(type(conn), "virtual", False):
                    t = conn.next_event_ms()
                    if t is None or t > now:
                        return
        while True:
            t_timer = self._timers[0][0] if self._timers else None
            t_conn = self.conn.next_event_ms() if self.conn is not None else None
            if t_timer is not None and t_timer <= now and (t_conn is None or t_timer <= t_conn):
                t, _, fn, args = heapq.heappop(self._timers)
                fn(t, *args)
                continue
            conn = self.conn
            if t_conn is not None and t_conn <= now and conn is not None:  # (t_conn is set only with a conn)
                for t, kind, value in conn.poll(t_conn):
                    self._conn_event(conn, t, kind, value)
                continue
            t_drain = None
            for c in self._draining:
                tc = c.next_event_ms()
                if tc is not None and tc <= now:
                    t_drain = c
                    break
            if t_drain is not None:
                t_drain.poll(now)  # in-flight data reaches the server; the modem no longer listens
                if t_drain.next_event_ms() is None:
                    self._draining.remove(t_drain)
                continue
            conn = self.conn
            if conn is not None and not getattr(type(conn), "virtual", False):
                for t, kind, value in conn.poll(now):  # a real-time backend: what came by now
                    self._conn_event(conn, t, kind, value)
            break

    # ---- output ---------------------------------------------------------

    def _xfer(self, n):
        """ms the UART needs for n bytes (10 bits a byte, rounded up)."""
        return (n * 10000 + self.f["uart_baud"] - 1) // self.f["uart_baud"]

    def _raw(self, t, data):
        """Bytes leave in order, one after another at the line rate; each
        chunk is due at the device when its last byte has arrived."""
        start = max(t, self._line_free)
        end = start + self._xfer(len(data))
        self._line_free = end
        self._last_out = end
        self._out.append((end, bytes(data)))

    def _urc(self, t, *lines):
        """Unsolicited lines: RI pulses low for each (AT+CFGRI=1; by
        default only SMS and calls move it: Sleep Mode application note 5)."""
        if self._cfgri:
            self._ri_lows.append((t, t + self.f["ri_urc_ms"]))
            self._ri_max = max(self._ri_max, t)
            if len(self._ri_lows) > 64:
                del self._ri_lows[:32]
        self._say(t, *lines)

    def _say(self, t, *lines):
        """Each line framed as the module frames it: <CR><LF>line<CR><LF>."""
        for line in lines:
            b = line.encode()
            if self.babble:  # wrong baud rate / confused firmware: noise instead of answers
                b = bytes(self.rng.randrange(32, 127) for _ in range(len(b)))
            if self.f["truncate_p"] and len(b) > 2 and self.rng.random() < self.f["truncate_p"]:
                b = b[: self.rng.randrange(1, len(b))]
            if self.f["garbage_p"] and self.rng.random() < self.f["garbage_p"]:
                n = self.rng.randrange(1, 24)
                self._raw(t, bytes(self.rng.randrange(256) for _ in range(n)))
            self._raw(t, b"\r\n" + b + b"\r\n")

    def output_due(self, now):
        """True when bytes are due at the device by now (cheap: no timers
        run). Bytes are never due at the instant their cause happens (a
        chunk takes >= 1 ms on the line), and the world stops at every
        cause, so what is due by now is already queued."""
        return bool(self._out) and self._out[0][0] <= now

    def read(self, now):
        self._advance(now)
        if not self._out or self._out[0][0] > now:
            return b""
        chunks = []
        while self._out and self._out[0][0] <= now:
            chunks.append(self._out.pop(0)[1])
        data = b"".join(chunks)
        if self.record:
            self.transcript.append((now, "<", data))
        return data

    # ---- pins -----------------------------------------------------------

    def power(self, on, now):
        """The board's battery (the T-SIM7600E has no modem supply switch):
        a cut is the only thing that clears a wedged module."""
        self._advance(now)
        self.events.append((now, "power", bool(on)))
        if not on and self.powered:
            self._off(now)
            self.wedged = False
            self._key_down = None  # the board's line goes with its power
        self.powered = bool(on)

    def status(self, now):
        """The STATUS line: high from Ton(status) after power-on until
        Toff(status) after a power-off (Hardware Design Tables 8, 9)."""
        self._advance(now)
        return 1 if self._status_since is not None and now >= self._status_since else 0

    def ri(self, now):
        """The RI line: 0 while a URC pulse holds it low."""
        self._advance(now)
        for a, b in self._ri_lows:
            if a <= now < b:
                return 0
        return 1

    def next_ri_fall(self, after, until):
        """The first time in (after, until] RI goes low, or None."""
        best = None
        for a, b in self._ri_lows:
            if after < a <= until and (best is None or a < best):
                best = a
            elif a <= after < b:
                return after  # already low
        return best

    def shutting_down(self):
        return self._off_at is not None

    def pwrkey(self, level, now, held=None):
        """PWRKEY (1 = pressed, pulled low at the module): a press of
        >= 100 ms switches an off module on, a hold of >= 2.5 s switches a
        running one off (Hardware Design 3.2.1-3.2.2, Tables 8, 9). While it
        shuts down (until STATUS falls) a press does nothing (an assumption:
        the manual gives Toff-on >= 0 s but not what a press then does)."""
        self._advance(now)
        if not self.powered or self.wedged:
            return
        if level and self._key_down is None:
            self._key_down = now
        elif not level and self._key_down is not None:
            # held: how long the board says it held the key (its own clock,
            # faithful mode: the two lines may reach the host far apart or
            # together); else the time between the two calls
            if held is None:
                held = now - self._key_down
            t0 = self._key_down
            self._key_down = None
            if self._off_at is not None:
                return
            if self.on and held >= 2500:
                self._shutdown(now, "pwrkey")
            elif not self.on and held >= 100:
                self._boot(t0)

    def _shutdown(self, now, how):
        """Power-off issued (how: "pwrkey" or "cpof"): the module stops
        answering at once (its UART is "undefined" until off, Table 9) and
        STATUS falls Toff(status) later, when it is off."""
        self.events.append((now, "shutdown", how))
        self._drop_conn(now)
        self.hung = False
        self._out = [o for o in self._out if o[0] <= now]
        self._off_at = now + self.f["status_off_ms"]
        self._timer(self._off_at, self._shutdown_done)

    def _shutdown_done(self, t):
        if self._off_at is not None and t >= self._off_at:
            self._off(t)

    def dtr(self, level, now):
        self._advance(now)
        level = 1 if level else 0
        if level and not self._dtr:
            self._dtr_high_at = now
        self._dtr = level

    def asleep(self):
        """UART asleep: input is ignored (the host must pull DTR low and
        wait 20 ms first: UART application note 3.1.4)."""
        return self.on and self._csclk == 1 and self._dtr == 1

    def low_power(self, now):
        """Drawing sleep current: asleep for long enough to have entered
        sleep mode, and nothing keeping it awake (GNSS, a call)."""
        return (self.asleep() and self._dtr_high_at is not None and now - self._dtr_high_at >= self.f["sleep_entry_ms"]
                and not self._gps and self.call is None)

    def _off(self, now):
        self.events.append((now, "off"))
        self._drop_conn(now)
        self.on = False
        self.hung = False
        self._off_at = None
        self._status_since = None
        if self._gps and self.gnss is not None:
            self.gnss.power(False, now)
        self._out = []
        self._timers = [e for e in self._timers if getattr(e[2], "__name__", "") in ("_coverage", "_remote_close", "_hang", "_start_babble", "_self_reset", "_wedge")]
        heapq.heapify(self._timers)
        self._reset_state()

    def _boot(self, t0):
        self.on = True
        self._boots += 1
        self._reset_state()
        self.events.append((t0, "boot"))
        self._status_since = t0 + self.f["status_on_ms"]
        self._timer(t0 + self.f["boot_ms"], self._rdy)

    def _rdy(self, t):
        if not self.on:
            return
        self._ready_at = t
        self.events.append((t, "ready"))
        if not getattr(self, "_quiet", False):
            self._urc(t, A.RDY)
        self._timer(t + self.f["cpin_after_ms"], self._cpin_urc)

    def _cpin_urc(self, t):
        sim = self.f["sim"]
        if sim == "ok" and self._boots <= self.f["sim_missing_boots"]:
            sim = "missing"
        if sim == "missing":
            self.sim_state = "missing"
            return  # nothing: the module stays silent without a SIM
        if sim == "pin":
            self.sim_state = "pin"
            self._urc(t, A.CPIN % "SIM PIN")
            return
        self._sim_ready(t)
        self._urc(t, A.CPIN % "READY")

    def _sim_ready(self, t):
        self.sim_state = "ready"
        self._timer(t + self.f["sms_done_after_ms"] - self.f["cpin_after_ms"], self._say_urc, "SMS DONE")
        self._timer(t + self.f["pb_done_after_ms"] - self.f["cpin_after_ms"], self._say_urc, "PB DONE")
        self._coverage(t, self._cov_at(t))

    def _say_urc(self, t, text):
        if self.on and not self.hung:
            self._urc(t, text)

    def _cov_at(self, t):
        mode = "none"
        for a, m in self.f["coverage"]:
            if a <= t:
                mode = m
        return mode

    def _coverage(self, t, mode):
        """"full" (LTE with combined attach: CREG and CEREG registered),
        "lte" (LTE-only, EPS attach: CEREG registered, CREG never), "sms"
        (circuit services only: no data), "none"."""
        self.cov = mode
        if not self.on or self.sim_state != "ready":
            return
        reg = t + self.f["reg_ms"]
        if mode == "none":
            self._cs_at = None
            self._ps_at = None
        else:
            if mode == "lte":
                self._cs_at = None
            elif self._cs_at is None:
                self._cs_at = reg
            if mode in ("full", "lte"):
                if self._ps_at is None:
                    self._ps_at = reg
            else:
                self._ps_at = None
        self._reg_urcs(t)  # what changed now (lost, or searching)
        if reg in (self._cs_at, self._ps_at):
            self._timer(reg, self._reg_urcs)  # and when it registers
        if mode not in ("full", "lte") and self.net_open:
            self.events.append((t, "network_lost"))
            if self.conn is not None:
                self._drop_conn(t)
            self.sock = False
            self.net_open = False
            if not self.hung:
                self._urc(t, "+CIPEVENT: NETWORK CLOSED UNEXPECTEDLY")

    def _drop_conn(self, t):
        c = self.conn
        self.conn = None
        if c is not None:
            c.close(t)
            if c.next_event_ms() is not None:
                self._draining.append(c)

    def _remote_close(self, t, loud):
        if self.conn is None or not self.sock:
            return
        self.events.append((t, "remote_close" if loud else "silent_close"))
        if loud:
            self.conn.remote_close(t)
        else:
            self.conn.close(t)
            self._dead_sock = True

    def _self_reset(self, t, quiet=False):
        """A brown-out or firmware crash: the module restarts by itself
        (quiet: without RDY, as with auto-bauding, manual 1.4)."""
        if self.on:
            self.events.append((t, "self_reset"))
            self._off(t)
            self._boot(t)
            self._quiet = quiet

    def _start_babble(self, t):
        if self.on:
            self.babble = True
            self.events.append((t, "babble"))

    def _wedge(self, t):
        if self.on:
            self.wedged = True
            self.hung = True
            self.events.append((t, "wedged"))
            self._out = [o for o in self._out if o[0] <= t]

    def _hang(self, t):
        if self.on:
            self.hung = True
            self.events.append((t, "hang"))
            self._out = [o for o in self._out if o[0] <= t]

    def cs_reg(self, t):
        return self._cs_at is not None and t >= self._cs_at

    def ps_reg(self, t):
        return self._ps_at is not None and t >= self._ps_at

    # ---- input ----------------------------------------------------------

    def write(self, data, now):
        self._advance(now)
        if self.record:
            self.transcript.append((now, ">", bytes(data)))
        if not self.on or self.hung or self._ready_at is None or now < self._ready_at or self.asleep() \
                or self._off_at is not None:
            # nobody listening: the bytes are lost, as on the wire
            if data and len(self.deaf) < 100:
                why = ("off" if not self.on else "hung" if self.hung else "shutting down" if self._off_at is not None
                       else "asleep, DTR high" if self.asleep() else "booting")
                self.deaf.append((now, why))
            return
        now += self._xfer(len(data))  # the module has the bytes when the last one arrived
        data = bytes(data)
        i, n = 0, len(data)
        while i < n:
            if self._mode == "cmd":
                # a command line, taken whole up to its CR (LFs dropped, at most 600 bytes kept)
                j = data.find(b"\r", i)
                seg = data[i:] if j < 0 else data[i:j]
                if 10 in seg:
                    seg = seg.replace(b"\n", b"")
                room = 600 - len(self._line)
                if room > 0 and seg:
                    self._line += seg[:room]
                if j < 0:
                    return
                i = j + 1
                line = bytes(self._line)
                self._line = bytearray()
                if self._echo:
                    self._raw(now, line + b"\r")
                self._command(now, line)
                continue
            b = data[i]  # a payload byte (AT+CIPSEND, AT+CMGS), one at a time: its end changes the mode
            i += 1
            if self._mode == "cipsend":
                self._payload.append(b)
                if len(self._payload) >= self._need:
                    self._mode = "cmd"
                    self._cipsend_done(now, bytes(self._payload))
            elif b == _CTRL_Z:
                self._mode = "cmd"
                self._cmgs_done(now, bytes(self._payload))
            elif b == _ESC:
                self._mode = "cmd"
                self._reply(now, A.OK)
            else:
                self._payload.append(b)

    def _t(self, now):
        t = max(now, self._busy_until) + self.f["cmd_latency_ms"]
        self._busy_until = t
        return t

    def _reply(self, now, *lines):
        self._say(self._t(now), *lines)

    def _command(self, now, raw):
        try:
            line = raw.decode("ascii").strip()
        except UnicodeDecodeError:
            self._reply(now, A.ERROR)
            return
        if not line:
            return
        if not line.upper().startswith("AT"):
            self._reply(now, A.ERROR)
            return
        self._cmds += 1
        hc = self.f["hang_after_cmds"]
        if hc is not None and self._cmds > hc and self._boots <= 1:
            self._hang(now)
            return
        body = line[2:]
        up = body.upper()
        h = _HANDLERS.get(_name(up))
        if h is None:
            self._reply(now, A.ERROR)
            return
        h(self, now, body, up)

    # ---- command handlers --------------------------------------------------

    def _c_at(self, now, body, up):
        self._reply(now, A.OK)

    def _c_e(self, now, body, up):
        if up in ("E0", "E1", "E"):
            self._echo = up == "E1"
            self._reply(now, A.OK)
        else:
            self._reply(now, A.ERROR)

    def _c_ok(self, now, body, up):
        self._reply(now, A.OK)

    def _c_vmute(self, now, body, up):
        self._reply(now, A.OK if self.call == "active" else A.ERROR)

    def _sim_err(self, now):
        if self.sim_state == "missing":
            self._reply(now, "+CME ERROR: 10")
            return True
        if self.sim_state == "pin":
            self._reply(now, "+CME ERROR: 11")
            return True
        if self.sim_state is None:
            self._reply(now, "+CME ERROR: 14")
            return True
        return False

    def _c_cpin(self, now, body, up):
        if up == "+CPIN?":
            if self.sim_state == "ready":
                self._reply(now, A.CPIN % "READY", A.OK)
            elif self.sim_state == "pin":
                self._reply(now, A.CPIN % "SIM PIN", A.OK)
            elif self.sim_state == "missing":
                self._reply(now, "+CME ERROR: 10")
            else:
                self._reply(now, "+CME ERROR: 14")
            return
        if up.startswith("+CPIN="):
            code = body[6:].strip().strip('"')
            if self.sim_state != "pin":
                self._reply(now, "+CME ERROR: 3")
            elif code == self.f["pin_code"]:
                t = self._t(now)
                self._say(t, A.OK)
                self._sim_ready(t + 1000)
                self._timer(t + 1000, self._say_urc, A.CPIN % "READY")
            else:
                self._reply(now, "+CME ERROR: 16")
            return
        self._reply(now, A.ERROR)

    def _c_csq(self, now, body, up):
        rssi = self.f["rssi"] if self.cov != "none" and self.sim_state == "ready" else 99
        self._reply(now, A.CSQ % (rssi, 99), A.OK)

    def _reg_stat(self, name, t):
        if name == "+CREG":
            ok = self.cs_reg(t)
        elif name == "+CGREG":
            ok = self.ps_reg(t) and self.cov != "lte"  # pessimistic: only CEREG on an EPS-only attach
        else:
            ok = self.ps_reg(t)
        searching = self.sim_state == "ready" and self.cov != "none"
        return 1 if ok else (2 if searching else 0)

    def _reg_urcs(self, t):
        """With <n>=1, "+CREG: <stat>" (and +CGREG, +CEREG) when the status
        changes (manual 4.2.1: "presentation of an unsolicited result code
        +CREG: <stat> when <n>=1 and there is a change"; <n>=2's <lac>,<ci>
        are not modelled: the firmware asks for 1)."""
        if not self.on or self.hung:
            return
        for name, n in self._reg_n.items():
            if n:
                st = self._reg_stat(name, t)
                if self._reg_said.get(name) != st:
                    self._reg_said[name] = st
                    self._urc(t, A.REG_URC % (name, st))

    def _c_reg(self, now, body, up):
        name = _name(up)
        if up.endswith("=?"):
            self._reply(now, "%s: (0-2)" % name, A.OK)
            return
        if not up.endswith("?"):
            args = _args(body)
            if len(args) != 1 or args[0] not in ("0", "1", "2"):
                self._reply(now, A.ERROR)
                return
            self._reg_n[name] = int(args[0])
            self._reg_said[name] = self._reg_stat(name, now)  # a URC comes at the next change
            self._reply(now, A.OK)
            return
        self._reply(now, A.REG % (name, self._reg_n[name], self._reg_stat(name, now)), A.OK)

    def _c_cpsi(self, now, body, up):
        cell: Any = self.f["cell"]  # a 6-tuple, or a function of time giving one (or None)
        if callable(cell):  # a scenario's towers: the cell serving the person now (host_sim/cells.py)
            cell = cell(now)
        if self.cov == "none" or not self.cs_reg(now) or cell is None:
            self._reply(now, "+CPSI: NO SERVICE,Online", A.OK)
            return
        sysm, mcc, mnc, tac, cid, rsrp = cell
        self._reply(now, A.CPSI % (sysm, mcc, mnc, tac, cid, rsrp), A.OK)

    def _c_cmgf(self, now, body, up):
        if up in ("+CMGF=0", "+CMGF=1"):
            self._cmgf = int(up[-1])
            self._reply(now, A.OK)
        elif up == "+CMGF?":
            self._reply(now, "+CMGF: %d" % self._cmgf, A.OK)
        else:
            self._reply(now, A.ERROR)

    def _c_cmgs(self, now, body, up):
        if self._sim_err(now):
            return
        if self._cmgf != 1 or not up.startswith('+CMGS="'):
            self._reply(now, "+CMS ERROR: 305")
            return
        self._sms_to = body[6:].split(",")[0].strip().strip('"')
        self._payload = bytearray()
        self._mode = "cmgs"
        self._raw(self._t(now), A.SMS_PROMPT)

    def _cmgs_done(self, now, text_bytes):
        t = self._t(now) + self.f["sms_submit_ms"]
        self._timer(t, self._cmgs_result, self._sms_to, text_bytes.decode("latin-1"))

    def _sms_service(self, t):
        """SMS can go: circuit-switched registration, or LTE-only with SMS
        over SGs/IMS (the network's business, fault "lte_sms")."""
        return self.cs_reg(t) or (self.cov == "lte" and self.ps_reg(t) and self.f["lte_sms"])

    def _cmgs_result(self, t, to, text):
        if not self.on or self.hung:
            return
        if not self._sms_service(t):
            self._say(t, "+CMS ERROR: 331")  # no network service
            return
        mr = (len([e for e in self.events if e[1] == "sms"]) + 1) % 256
        self.events.append((t, "sms", to, text))
        self._say(t, A.CMGS % mr, A.OK)
        arr = self.network.sms(t)
        if arr is not None and self.endpoint is not None:
            self._timer(arr, self._deliver_sms, self.f["own_number"], text)

    def _deliver_sms(self, t, sender, text):
        if self.endpoint is not None:  # (scheduled only with one)
            self.endpoint.on_sms(sender, text, t)

    def _c_dial(self, now, body, up):
        number = body[1:].rstrip(";")
        if not body.endswith(";"):
            self._reply(now, "NO CARRIER")  # data calls are not emulated
            return
        if self._sim_err(now):
            return
        if not (self.cs_reg(now) or (self.cov == "lte" and self.ps_reg(now) and self.f["volte"])):
            self._reply(now, "NO CARRIER")
            return
        self.call = "dialling"
        t = self._t(now)
        self.events.append((t, "call", number))
        self._say(t, A.OK)
        if self.f["call_answer"]:
            self._timer(t + self.f["call_setup_ms"], self._call_up)

    def _call_up(self, t):
        if self.call == "dialling" and self.on and not self.hung:
            self.call = "active"
            self._urc(t, A.CALL_BEGIN)

    def _c_cvhu(self, now, body, up):
        if up in ("+CVHU=0", "+CVHU=1"):
            self._cvhu = int(up[-1])
            self._reply(now, A.OK)
        else:
            self._reply(now, A.ERROR)

    def _c_hangup(self, now, body, up):
        t = self._t(now)
        if up == "H" and self._cvhu != 0:
            self._say(t, A.OK)  # ATH is ignored unless AT+CVHU=0 (manual 2.2.7)
            return
        if self.call is not None:
            self.events.append((t, "hangup"))
            if self.call == "active":
                self._say(t, A.CALL_END)
            self.call = None
        self._say(t, A.OK)

    def _c_csclk(self, now, body, up):
        if up in ("+CSCLK=0", "+CSCLK=1", "+CSCLK=2"):
            self._csclk = int(up[-1])
            self._reply(now, A.OK)
        else:
            self._reply(now, A.ERROR)

    def _c_cfgri(self, now, body, up):
        """AT+CFGRI=<status>[,<URC time>[,<SMS time>]] (manual 19.2.16)."""
        args = _args(body)
        if up == "+CFGRI?":
            self._reply(now, "+CFGRI: %d,%d,120" % (self._cfgri, self.f["ri_urc_ms"]), A.OK)
        elif args and args[0] in ("0", "1"):
            self._cfgri = int(args[0])
            self._reply(now, A.OK)
        elif up == "+CFGRI":
            self._cfgri = 0
            self._reply(now, A.OK)
        else:
            self._reply(now, A.ERROR)

    def _c_cpof(self, now, body, up):
        """AT+CPOF: OK, then power-off as with a PWRKEY hold (manual 3.2.12;
        Hardware Design 3.2.2)."""
        t = self._t(now)
        self._say(t, A.OK)
        self._timer(self._line_free, self._cpof)  # once its OK is on the wire

    def _cpof(self, t):
        if self.on and self._off_at is None:
            self._shutdown(t, "cpof")

    def _c_cmut(self, now, body, up):
        """AT+CMUT (manual 5.2.20): "If there is not a connected call, write
        command can't be used"."""
        if up.startswith("+CMUT=") and self.call != "active":
            self._reply(now, A.ERROR)
        else:
            self._reply(now, A.OK)

    def _c_chup(self, now, body, up):
        """AT+CHUP ends a voice call whatever AT+CVHU says (manual 5.2.2)."""
        t = self._t(now)
        if self.call is not None:
            self.events.append((t, "hangup"))
            if self.call == "active":
                self._say(t, A.CALL_END)
            self.call = None
        self._say(t, A.OK)

    def _c_ciptimeout(self, now, body, up):
        args = _args(body)
        if up == "+CIPTIMEOUT?":
            self._reply(now, "+CIPTIMEOUT: 120000,120000,120000", A.OK)
        elif 1 <= len(args) <= 3 and all(a == "" or (a.isdigit() and 3000 <= int(a) <= 120000) for a in args):
            self._reply(now, A.OK)
        else:
            self._reply(now, A.ERROR)

    # ---- GNSS (manual chapter 17; GNSS application note) ----------------------

    def _c_cvauxs(self, now, body, up):
        """AT+CVAUXS=<0|1>: VDD_AUX, which feeds the antenna's LNA on the
        T-SIM7600E (manual 19.2.2; LilyGO "GPS Enabled: Modem AUXVDD")."""
        if up in ("+CVAUXS=0", "+CVAUXS=1"):
            self._cvaux = int(up[-1])
            self._antenna(now)
            self._reply(now, A.OK)
        elif up == "+CVAUXS?":
            self._reply(now, "+CVAUXS: %d" % self._cvaux, A.OK)
        else:
            self._reply(now, A.ERROR)

    def _c_cvauxv(self, now, body, up):
        args = _args(body)
        if args and args[0].isdigit() and 1700 <= int(args[0]) <= 3050 and int(args[0]) % 50 == 0:
            self._reply(now, A.OK)
        elif up == "+CVAUXV?":
            self._reply(now, "+CVAUXV: 2850", A.OK)
        else:
            self._reply(now, A.ERROR)

    def _antenna(self, now):
        """GNSS hears satellites only with the session on and the active
        antenna fed (an unfed active antenna: no fix, pessimistically)."""
        g = self.gnss
        if g is not None:
            g.power(bool(self._gps and self._cvaux), now)

    def _c_cgps(self, now, body, up):
        """AT+CGPS=<on/off>[,<mode>] (manual 17.2.1): OK; a stop is reported
        later by +CGPS: 0."""
        args = _args(body)
        if up == "+CGPS?":
            self._reply(now, "+CGPS: %d,1" % self._gps, A.OK)
            return
        if not args or args[0] not in ("0", "1"):
            self._reply(now, A.ERROR)
            return
        on = int(args[0])
        if on == self._gps:
            self._reply(now, A.ERROR)  # already in that state (manual: ERROR)
            return
        self._gps = on
        t = self._t(now)
        self._say(t, A.OK)
        if self.gnss is not None:
            self.gnss.read(t)  # a new or ended session reports nothing from before it
        self._antenna(t)
        if not on:
            self._timer(t + 1000, self._say_urc, A.CGPS_OFF)
        self._nmea_schedule(t)

    def _c_cgpsinfocfg(self, now, body, up):
        """AT+CGPSINFOCFG=<time>[,<config>] (manual 17.2.16): NMEA on the AT
        port every <time> s, sentences by the <config> bit mask."""
        args = _args(body)
        if not args or not args[0].isdigit() or int(args[0]) > 255:
            self._reply(now, A.ERROR)
            return
        self._nmea_period = int(args[0])
        if len(args) > 1:
            if not args[1].isdigit() or int(args[1]) > 262143:
                self._reply(now, A.ERROR)
                return
            self._nmea_mask = int(args[1])
        t = self._t(now)
        self._say(t, A.OK)
        self._nmea_schedule(t)

    def _nmea_schedule(self, t):
        if self._gps and self._nmea_period and not self._nmea_timer_on and self.gnss is not None:
            self._nmea_timer_on = True
            self._timer(t + 1000 * self._nmea_period, self._nmea_out)

    def _nmea_out(self, t):
        """Every <time> s the sentences of the receiver's latest epoch, one
        set: the manual's capture for AT+CGPSINFOCFG=10,31 (17.2.16) is a
        single epoch (all at 051147.0), not the ten since the last report."""
        self._nmea_timer_on = False
        if not self.on or not self._gps or not self._nmea_period or self.gnss is None:
            return
        mask = self._nmea_mask
        data = self.gnss.read(t, tuple(k for k, bit in _GNSS_BIT.items() if mask >> bit & 1))
        lines = []
        kinds = set()
        for raw in data.split(b"\r\n"):
            if len(raw) < 7 or raw[:1] != b"$":
                continue
            kind = raw[3:6].decode("ascii", "replace")
            bit = _GNSS_BIT.get(kind)
            if bit is not None and self._nmea_mask >> bit & 1:
                if kind in kinds and kind != "GSV":
                    lines = []  # a kind again: a newer epoch, and the report carries only the latest
                    kinds = set()
                kinds.add(kind)
                lines.append(raw.decode("ascii"))
        if lines and not self.hung:
            self._urc(t, *lines)
        self._nmea_schedule(t)

    def _c_cgnssinfo(self, now, body, up):
        """AT+CGNSSINFO (manual 17.2.21): without a fix 15 empty fields."""
        g = self.gnss
        if g is None or not self._gps or not g.has_fix():
            self._reply(now, "+CGNSSINFO: ,,,,,,,,,,,,,,,", A.OK)
            return
        self._reply(now, "+CGNSSINFO: " + g.cgnssinfo(now), A.OK)

    # ---- TCP/IP (manual chapter 11) ---------------------------------------

    def _c_netopen(self, now, body, up):
        if up == "+NETOPEN?":
            self._reply(now, A.NETOPEN % (1 if self.net_open else 0), A.OK)
            return
        if self.net_open:
            self._reply(now, "+IP ERROR: Network is already opened", A.ERROR)
            return
        t = self._t(now)
        self._say(t, A.OK)
        self._timer(t + self.f["netopen_ms"], self._netopen_done)

    def _netopen_done(self, t):
        if not self.on or self.hung:
            return
        if self.ps_reg(t):
            self.net_open = True
            self._urc(t, A.NETOPEN % 0)
        else:
            self._urc(t, A.NETOPEN % 1)

    def _c_netclose(self, now, body, up):
        if not self.net_open:
            self._reply(now, A.NETCLOSE % 2, A.ERROR)
            return
        if self.conn is not None:
            self._drop_conn(now)
        self.sock = False
        self.net_open = False
        self._reply(now, A.OK, A.NETCLOSE % 0)

    def _c_cipopen(self, now, body, up):
        args = _args(body)
        if len(args) < 4 or args[0] != "0" or args[1].upper() != "TCP":
            self._reply(now, "+IP ERROR: Invalid parameter", A.ERROR)
            return
        if not self.net_open:
            self._reply(now, A.CIPOPEN % 2, A.ERROR)
            return
        if self.sock or self.conn is not None:
            self._reply(now, A.CIPOPEN % 4, A.ERROR)
            return
        host, port = args[2], int(args[3]) if args[3].isdigit() else 0
        t = self._t(now)
        self._say(t, A.OK)
        self._dead_sock = False
        self._rx = bytearray()
        if self._open_fails < self.f["open_fail"]:
            self._open_fails += 1
            self.events.append((t, "open_failed"))
            self._timer(t + self.f["open_fail_ms"], self._say_urc, A.CIPOPEN % 10)
            return
        self.conn = self.tcp.connect(host, port, t)

    def _conn_event(self, conn, t, kind, value):
        if conn is not self.conn or not self.on:
            return
        if kind == "open":
            if self.hung:
                return
            if value:
                self.sock = True
                self.events.append((t, "tcp_open"))
                self._urc(t, A.CIPOPEN % 0)
            else:
                self.conn = None
                self._urc(t, A.CIPOPEN % 10)
        elif kind == "data":
            was_empty = not self._rx
            self._rx.extend(value)
            if self.hung:
                return
            if self._rxmode == 1:
                if was_empty:
                    self._urc(t, A.CIPRXGET_NEW)
            else:
                self._urc(t, "RECV FROM:0.0.0.0:0")
                self._raw(t, b"+IPD%d\r\n" % len(self._rx) + bytes(self._rx))
                self._rx = bytearray()
        elif kind == "closed":
            self.sock = False
            self.conn = None
            self.events.append((t, "tcp_closed", value))
            if not self.hung:
                self._urc(t, "+IPCLOSE: 0,%d" % value)

    def _c_cipsend(self, now, body, up):
        args = _args(body)
        if up == "+CIPSEND?" or len(args) < 2 or args[0] != "0":
            self._reply(now, A.ERROR)
            return
        n = int(args[1]) if args[1].isdigit() else 0
        if not self.sock:
            self._reply(now, "+CIPERROR: 4", A.ERROR)
            return
        if not 1 <= n <= 1500:
            self._reply(now, A.ERROR)
            return
        self._need = n
        self._payload = bytearray()
        self._mode = "cipsend"
        self._raw(self._t(now), A.SEND_PROMPT)

    def _cipsend_done(self, now, data):
        t = self._t(now)
        self._say(t, A.OK)
        n = len(data)
        if self._dead_sock:
            cnf = -1
        elif self._short_sends < self.f["short_send"]:
            self._short_sends += 1
            cnf = n // 2
            self.events.append((t, "short_send", cnf))
        else:
            cnf = n
        if cnf > 0 and self.conn is not None:
            self.conn.send(data[:cnf], t)
        t2 = t + self.f["send_ms"]
        self._timer(t2, self._say_urc, A.CIPSEND % (n, cnf))

    def _c_ciprxget(self, now, body, up):
        args = _args(body)
        if up == "+CIPRXGET?":
            self._reply(now, "+CIPRXGET: %d" % self._rxmode, A.OK)
            return
        if not args or not args[0].isdigit():
            self._reply(now, A.ERROR)
            return
        mode = int(args[0])
        if mode in (0, 1) and len(args) == 1:
            self._rxmode = mode
            self._reply(now, A.OK)
            return
        if mode not in (2, 3, 4) or len(args) < 2 or args[1] != "0" or self._rxmode != 1:
            self._reply(now, "+IP ERROR: Invalid parameter", A.ERROR)
            return
        if mode == 4:
            self._reply(now, A.CIPRXGET_LEFT % len(self._rx), A.OK)
            return
        if not self._rx:
            self._reply(now, A.IP_ERROR % "No data", A.ERROR)
            return
        cap = 1500 if mode == 2 else 750
        want = int(args[2]) if len(args) > 2 and args[2].isdigit() else cap
        k = min(want, cap, len(self._rx))
        chunk = bytes(self._rx[:k])
        del self._rx[:k]
        t = self._t(now)
        self._say(t, A.CIPRXGET % (mode, k, len(self._rx)))
        if mode == 2:
            self._raw(t, chunk + b"\r\n")
            self._say(t, A.OK)
        else:
            self._say(t, binascii.hexlify(chunk).decode().upper(), A.OK)

    def _c_cipclose(self, now, body, up):
        args = _args(body)
        if not args or args[0] != "0":
            self._reply(now, A.ERROR)
            return
        if self.conn is None and not self.sock:
            self._reply(now, A.CIPCLOSE % 4, A.ERROR)
            return
        if self.conn is not None:
            self._drop_conn(now)
        self.sock = False
        self._reply(now, A.OK, A.CIPCLOSE % 0)


def _name(up):
    """Command name of the text after "AT": "+CSQ", "+CPIN", "D", "E", ""."""
    if not up:
        return ""
    if up[0] == "+":
        i = 1
        while i < len(up) and up[i].isalnum():
            i += 1
        return up[:i]
    return up[0]


def _args(body):
    i = body.find("=")
    if i < 0:
        return []
    return [a.strip().strip('"') for a in body[i + 1 :].split(",")]


_HANDLERS = {
    "": Sim7600._c_at,
    "E": Sim7600._c_e,
    "D": Sim7600._c_dial,
    "H": Sim7600._c_hangup,
    "+CVHU": Sim7600._c_cvhu,
    "+CMEE": Sim7600._c_ok,
    "+CGDCONT": Sim7600._c_ok,
    "+CLVL": Sim7600._c_ok,
    "+CMUT": Sim7600._c_cmut,
    "+CHUP": Sim7600._c_chup,
    "+CFGRI": Sim7600._c_cfgri,
    "+CPOF": Sim7600._c_cpof,
    "+CIPTIMEOUT": Sim7600._c_ciptimeout,
    "+CVAUXS": Sim7600._c_cvauxs,
    "+CVAUXV": Sim7600._c_cvauxv,
    "+CGPS": Sim7600._c_cgps,
    "+CGPSINFOCFG": Sim7600._c_cgpsinfocfg,
    "+CGNSSINFO": Sim7600._c_cgnssinfo,
    "+VMUTE": Sim7600._c_vmute,
    "+CPIN": Sim7600._c_cpin,
    "+CSQ": Sim7600._c_csq,
    "+CREG": Sim7600._c_reg,
    "+CGREG": Sim7600._c_reg,
    "+CEREG": Sim7600._c_reg,
    "+CPSI": Sim7600._c_cpsi,
    "+CMGF": Sim7600._c_cmgf,
    "+CMGS": Sim7600._c_cmgs,
    "+CSCLK": Sim7600._c_csclk,
    "+NETOPEN": Sim7600._c_netopen,
    "+NETCLOSE": Sim7600._c_netclose,
    "+CIPOPEN": Sim7600._c_cipopen,
    "+CIPSEND": Sim7600._c_cipsend,
    "+CIPRXGET": Sim7600._c_ciprxget,
    "+CIPCLOSE": Sim7600._c_cipclose,
}
