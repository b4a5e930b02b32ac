"""Modem engine: generic 3GPP (27.007 / 27.005) behaviour over one AtChannel,
with the data path delegated to a dialect (firmware/modem/sim7600.py).

Owns: modem power and bring-up, registration, recovery, sleep, and the
services the outbox uses (frame by TCP, SMS, covert voice call, cell info,
signal, GNSS). Never does I/O and never reads a clock: feed(data, now)
takes UART bytes, poll(now) advances and returns ms until it next wants a
poll; bytes to write are in `ch.out`, pin changes in `actions`
("pwrkey"/"dtr", level), transport events in `events` (names from
firmware/transport.py). The board's STATUS line comes in through
`status` (1 on, 0 off, None when the board does not wire it).

How it runs: at most one job at a time. A job is a generator that yields
requests, made by the request builders, and the engine resumes it when the
request completes:
    e.cmd(text, final, info, timeout, prompt, hexdata)  a command    -> result
    e.payload(data, final, info, timeout)  after a prompt: bytes     -> result
    e.wait(ms, cond)    wait ms, or until cond() is true             -> None
    e.pin(name, level)  pin action ("pwrkey", "dtr"), immediate      -> None
A result is a tuple read by the names of firmware/modem/at.py: r[R_END]
(which `final` prefix ended it, or P_TIMEOUT / P_PROMPT), r[R_LINE] (that
line), r[R_INFOS] (its info lines). So every wait is "wait N ms", never a
sleep. A job ends by returning nothing, or the outcome it found (O_* of
at.py: the rare jobs of services.py), or by raising Fail or Hung.

The engine alone changes its state: the dialect's hooks and services.py
return what they found as O_* bits (urc(line) and resync(e) return them,
a socket hook raises Fail(reason, outcome), a service job returns them)
and _apply() changes the fields they stand for. The one call a dialect
makes into the engine is frames_in(frames), as it reads them.

When no job runs, pick() starts
the most urgent one, in this order: power-cycle a hung modem, boot, wake,
re-synchronise after an RI wake, the caller's request
(send/sms/call/hang-up), speaker mute in a call, read received data, GNSS
on/off, bring the data path up, refresh signal and cell, and last, sleep
when the caller asked for it.

Power (SIM7600 Hardware Design V1.02 3.2, Tables 8 and 9; the T-SIM7600E
has no supply switch, firmware/boards/t_sim7600e.py): on is a PWRKEY press
of pwrkey_ms (>= 100, typ. 500 ms), then RDY on the UART 11-12 s later;
off is AT+CPOF when the modem answers, else a PWRKEY hold of pwrkey_off_ms
(>= 2.5 s); either way STATUS falls 25-26 s later, and off counts as done
only when STATUS is seen low (without a STATUS line: after the whole
off_timeout_ms). A modem whose STATUS stays high after a power-off is
wedged: only a battery cycle helps; it is retried with back-off.

Bring-up is a step table (BOOT_STEPS below): each step is a command with a
timeout, a number of tries, a retry interval and a handler that judges the
answer. Recovery rules:
  - hung: a command times out with no byte from the modem since it was sent,
    twice running (or five commands in a row time out whatever it says)
    -> power-cycle (PWRKEY hold, STATUS low, PWRKEY press),
    then boot again; cycles back off 2 s, 4 s ... 120 s.
  - RDY out of the blue: the modem restarted; everything is re-initialised.
  - network lost (+CIPEVENT, NETOPEN failure, registration lost): the data
    path is reopened by the net job, with back-off, while SMS stays usable
    if registration holds (CREG, or CEREG on an LTE-only network).
  - socket: opened on demand per delivery; closed (+IPCLOSE, short send,
    +CIPERROR, garbage in the TCP stream) it is simply reopened next time.
  - an RI wake (the board woke from light sleep on the modem's RI, so the
    URC that pulsed it was lost with the UART off): a sync job asks what
    the URC could have said (dialect.resync: data path, buffered data).
A request killed by a power cycle reports send_failed/sms_failed; the outbox
owns the retry. Every bad byte is counted (stats()), never raised.

Sleep: the caller says what it wants (want_sleep); the engine puts the
modem to sleep (AT+CSCLK=1, DTR high; the saver profile powers it off)
whenever it has nothing else to do, and wakes it (DTR low, 20 ms: UART
application note 3.1.4) when there is. quiet() is true when no command is
outstanding and none is queued: only then may the board stop the UART's
clock (ESP32 light sleep loses UART bytes, esp-idf#8098).

GNSS (boards whose GNSS is the modem's): want_gnss switches it on and off
(dialect.gnss); want_nmea_s is how often it reports (the caller asks for
every second until a session's first fix, then less often; a change is
one dialect.gnss_rate command); its NMEA arrives on the AT port and is kept in `nmea`
(at most NMEA_MAX bytes, newest dropped and counted when full) for the
caller's fix tracker. The modem is never put to sleep with GNSS on.

Must stay in sync with: firmware/transport.py (events), firmware/modem/at.py
(result indices, outcomes), docs/modem.md (requests, step table, timings
and rules: tests/test_docs_firmware.py checks the tables against this code),
firmware/boards/t_sim7600e.py (timings).
"""

from firmware.modem.at import (
    O_ASLEEP,
    O_BAD_RX,
    O_CALL_ENDED,
    O_CELL,
    O_CLOSED,
    O_DATA,
    O_DIALLING,
    O_NET_LOST,
    O_OFF,
    OKERR,
    P_PROMPT,
    P_TIMEOUT,
    R_END,
    R_INFOS,
    R_LINE,
    AtChannel,
    Fail,
    Hung,
    cfg as _cfg,
    fields,
    to_int,
)
from firmware.transport import EV_CALL, EV_FRAME, EV_LINK, EV_SEND_FAILED, EV_SENT, EV_SMS_FAILED, EV_SMS_SENT

try:
    from micropython import const  # pyright: ignore[reportAssignmentType]
except ImportError:  # CPython

    def const(x):
        return x


# Job kinds
J_BOOT = const(1)
J_NET = const(2)
J_SEND = const(3)
J_SMS = const(4)
J_CALL = const(5)
J_HANGUP = const(6)
J_SLEEP = const(7)
J_WAKE = const(8)
J_READ = const(9)
J_STATUS = const(10)
J_MUTE = const(11)
J_SYNC = const(12)
J_GNSS = const(13)

NMEA_MAX = const(2048)  # NMEA held for the caller at most (the UART rxbuf size)

# Request kinds (the first item of what the request builders below return)
_Q_CMD = const(0)
_Q_PAYLOAD = const(1)
_Q_WAIT = const(2)
_Q_PIN = const(3)

DEFAULTS = {
    "pwrkey_ms": 500,  # power-on press (Hardware Design Table 8: Ton >= 100, typ. 500 ms)
    "pwrkey_off_ms": 3000,  # power-off hold (Table 9: Toff >= 2.5 s)
    "off_timeout_ms": 30000,  # STATUS low 25-26 s after power-off (Table 9 Toff(status))
    "boot_timeout_ms": 30000,  # RDY 11-12 s after PWRKEY (Table 8 Ton(uart)); no maximum given
    "dtr_wake_ms": 20,  # DTR low, then 20 ms before sending (UART application note 3.1.4)
    "cmd_timeout_ms": 3000,
    "reg_timeout_ms": 120000,  # give up one registration round after this
    "reg_poll_ms": 1000,
    # unregistered for longer than reg_fast_ms (one reg_timeout_ms round:
    # a network found after a boot or a move is seen within the second),
    # the poll interval doubles up to reg_poll_max_ms: three commands a
    # second for a whole coverage gap kept the modem and the ESP32 awake
    "reg_fast_ms": 120000,
    "reg_poll_max_ms": 10000,
    # with the registration URCs on, a change ends the wait as it comes: the
    # poll is a backstop for one lost in light sleep (standby only: an
    # alert keeps the ESP32 awake)
    "reg_backstop_ms": 30000,
    # the module's own NETOPEN/CIPOPEN/CIPSEND timeouts are set by
    # AT+CIPTIMEOUT (manual 11.2.12) to these minus IP_MARGIN_MS, so the
    # engine never gives up before the module does (its default is 120 s)
    "netopen_timeout_ms": 35000,
    "open_timeout_ms": 20000,
    "send_timeout_ms": 20000,
    "sms_timeout_ms": 120000,  # AT+CMGS: no maximum in the manual; the IP commands have 120 s
    "call_timeout_ms": 30000,
    "hangup_timeout_ms": 120000,  # AT+CHUP: 120000 ms (manual 5.2.2)
    "rx_check_ms": 3000,  # poll for data that lost its URC, 3 s then 6, 12
    "status_ms": 60000,  # idle CSQ/CPSI refresh
    "net_retry_ms": 5000,  # first data-path retry back-off (doubles, max 60 s)
    "gnss_retry_ms": 5000,  # AT+CGPS may refuse for 2-30 s after a stop (manual 17.2.1)
    "read_chunk": 300,
}
IP_MARGIN_MS = const(5000)


def _reg_ok(line):
    """+CREG:/+CGREG:/+CEREG: <n>,<stat>[...] -> registered (home or roaming,
    stat 1 or 5: manual 4.2.1, 4.2.16)."""
    f = fields(line)
    st = to_int(f[1]) if len(f) > 1 else to_int(f[0])
    return st == 1 or st == 5


class Engine:
    def __init__(self, dialect, cfg=None):
        self.d = dialect
        self.cfg = cfg
        tm = DEFAULTS  # shared and read-only unless the config overrides a timing
        for k in DEFAULTS:
            v = _cfg(cfg, k, None)
            if v is not None and v != DEFAULTS[k]:
                if tm is DEFAULTS:
                    tm = dict(DEFAULTS)
                tm[k] = v
        self.timings = tm  # DEFAULTS' keys, in ms (read_chunk in bytes)
        # power profile "saver": sleep switches the modem off, a wake boots it
        self.saver = _cfg(cfg, "power_profile", "ready") == "saver"
        self.off = False
        self.status = None  # the board's STATUS line: 1 on, 0 off, None not wired
        self.want_sleep = False  # the caller has nothing for the modem: sleep when idle
        self.want_gnss = False
        self.gnss_on = False
        self.want_nmea_s = 1  # NMEA report interval the caller wants, s
        self.nmea_s = 0  # the interval the modem was last told (0: not reporting)
        self.nmea = bytearray()  # NMEA lines from the AT port, for the caller
        self.nmea_dropped = 0
        self.nmea_lines = 0  # NMEA sentences the modem's GNSS reported (the field self-test asks)
        self.ri_urc = False  # AT+CFGRI=1 accepted at the last boot (RI pulses for every URC)
        self.wedged = False  # STATUS stayed high after a power-off: needs a battery cycle
        self._sync = False  # an RI wake: what did the lost URC say?
        self._moved = False  # retarget(): close the socket before the next send
        self._gnss_at = 0
        self._reg_since = None  # when the present unregistered stretch began (None: registered)
        self.reg_urcs = 0  # registration URCs (AT+CREG/CGREG/CEREG=1) the modem accepted at the last boot
        self._cond_look = True
        self._reg_poll = 0  # the present poll interval of that stretch, ms
        self.sim_pin = _cfg(cfg, "pin", None)  # the SIM PIN from the config (services.enter_pin)
        self.ch = AtChannel(self._urc)
        self.events = []
        self.actions = []
        self.now = 0
        # counters (stats)
        self.unknown = 0  # unsolicited lines nobody understands
        self.bad_rx = 0  # bad hex / bad TCP stream from the modem
        self.cycles = 0
        self.boots = 0
        self.timeouts = 0  # commands that got no final answer in time
        self.syncs = 0
        self._job = None
        self._kind = 0
        self._wait = None  # request the job is blocked on
        self._until = 0
        self._cond = None
        self._req = None  # (kind, args) from the caller
        self._cycle_at = 0
        self._backoff = 2000
        self._silent = 0
        self._timeouts = 0
        self._echoes = 0
        self._down()
        self.booted = False
        self.hung = False
        self.sim = None  # None unknown, "ready", or a fault word
        self.asleep = False
        self.csq_v = 99
        self.cell_v = None
        self.cell_at = None  # when cell_v was read (ms): a frame carries only a recent one (firmware/app.py)
        self.call = None  # None, "dialling", "active"
        self._mute_due = False
        self._status_at = 0
        self._first = True

    def _down(self):
        self.cs_reg = False
        self.ps_reg = False
        self._eps = False
        self._gprs = False
        self.data_up = False
        self.sock = False
        self.rx_pending = False
        self._rx_checks = 0
        self._rx_check_at = 0
        self._reply_wait = False  # a frame went out and nothing came back yet: no status polls in the way
        self._net_at = 0
        self._net_backoff = self.timings["net_retry_ms"]
        self._reg_since = None  # a boot registers within seconds: poll fast again
        self._rdy = False
        self.d.reset()

    # ---- caller API -----------------------------------------------------

    def busy(self):
        return self._req is not None or self._kind in (J_SEND, J_SMS, J_CALL, J_HANGUP)

    def data_ready(self):
        return self.booted and self.data_up and not self.hung

    def sms_ready(self):
        """SMS (and a voice call) may be tried: registered for circuit
        services (CREG) or, on an LTE-only network that never gives CREG, on
        LTE (CEREG): SMS over SGs or IMS and VoLTE are the network's
        business (the manual has no command for either); a failure is
        reported like any other and the outbox retries."""
        return self.booted and self.sim == "ready" and (self.cs_reg or self.ps_reg) and not self.hung

    def quiet(self):
        """No command outstanding, none queued, nothing the modem is about
        to answer: the UART may lose its clock (the board may light-sleep)."""
        return self._job is None and self._req is None and not self._sync

    def ri(self):
        """The board woke from light sleep on the modem's RI: the URC that
        pulsed it was lost with the UART clock stopped."""
        self._sync = True
        self.syncs += 1

    def take_nmea(self):
        n = self.nmea
        if not n:
            return None
        self.nmea = bytearray()
        return bytes(n)

    def request(self, kind, args=None):
        """Queue one caller request; False if one is already in progress."""
        if self.busy():
            return False
        self._req = (kind, args)
        return True

    def stats(self):
        ch = self.ch
        return {
            "garbage_lines": ch.rejected,
            "overlong_lines": ch.overflow,
            "stray_results": ch.stray,
            "unknown_urcs": self.unknown,
            "bad_rx": self.bad_rx,
            "power_cycles": self.cycles,
            "boots": self.boots,
            "timeouts": self.timeouts,
            "ri_syncs": self.syncs,
            "nmea_dropped": self.nmea_dropped,
            "wedged": self.wedged,
            "sim": self.sim,
        }

    def take_events(self):
        ev = self.events
        self.events = []
        return ev

    # ---- driving --------------------------------------------------------

    def feed(self, data, now):
        self.now = now
        if data:
            self._silent = 0
            self.ch.feed(data, now)
            if self.ch.echoes != self._echoes:
                self._echoes = self.ch.echoes
                if self.booted and self._kind != J_BOOT:
                    # echo is back after ATE0: it restarted and its RDY was lost
                    self._restarted()

    def _restarted(self):
        """The modem restarted by itself: drop the job and all state, and
        initialise again (it is up: no power cycle)."""
        if self._job is not None:
            self._kill(Fail("modem restarted"))
        if self.data_up:
            self.events.append((EV_LINK, False))
        self.booted = False
        self._down()
        self._rdy = True
        self._cycle_at = 0
        self._first = True

    def poll(self, now):
        self.now = now
        self.ch.check(now)
        for _ in range(50):  # bound the work per poll; the rest runs next poll
            if self._job is None:
                if not self._pick(now):
                    break
            if not self._step(now):
                break
        return self._next(now)

    def _next(self, now):
        cands = []
        w = self._wait
        if self._job is not None and w is not None:
            if w[0] == _Q_WAIT:
                cands.append(self._until)
                if self._cond is not None and self._cond_look:
                    cands.append(now + 500)  # a pin (STATUS) cannot wake anyone: look again
            else:
                dl = self.ch.deadline()
                if dl is not None:
                    cands.append(dl)
        elif self._job is None and not self.off:
            for t in (self._cycle_at, self._net_at, self._rx_check_at, self._status_at, self._gnss_at):
                if t and t > now:
                    cands.append(t)
        if not cands:
            return 60000 if (self.asleep or self.off) and self._req is None else 1000
        dt = min(cands) - now
        return 0 if dt < 0 else (dt if dt < 60000 else 60000)

    def _step(self, now):
        """Resume the job if what it waits for is done. True if it moved."""
        w = self._wait
        val = None
        if w is not None:
            if w[0] == _Q_WAIT:
                if now < self._until and not (self._cond is not None and self._cond()):
                    return False
            else:
                r = self.ch.result
                if r is None:
                    return False
                idx, line = r
                val = (idx, line, self.ch.infos)  # the result: R_END, R_LINE, R_INFOS
                self.ch.result = None
                if idx != P_TIMEOUT:
                    self._timeouts = 0
                else:
                    self.timeouts += 1
                if idx == P_TIMEOUT and self.booted:
                    self._timeouts += 1
                    if self.ch.last_rx < self._sent_at:
                        self._silent += 1
                    if self._silent >= 2:
                        return self._kill(Hung())
                    if self._timeouts >= 5:  # talking, but never an answer
                        return self._kill(Hung("modem babbling"))
        try:
            req = self._job.send(val)  # pyright: ignore[reportOptionalMemberAccess]
        except StopIteration as done:
            self._end()
            self._apply(done.value)  # what a rare job found (services.py), or None
            return True
        except Hung as e:
            return self._kill(e)
        except Fail as e:
            return self._kill(e)
        op = req[0]
        self._wait = req
        if op == _Q_CMD:
            self._sent_at = now
            self.ch.send(req[1], req[2], req[3], req[4], now, req[5], req[6])
        elif op == _Q_PAYLOAD:
            self._sent_at = now
            self.ch.payload(req[1], req[2], req[3], req[4], now)
        elif op == _Q_WAIT:
            self._until = now + req[1]
            self._cond = req[2]
            self._cond_look = not req[3]
        elif op == _Q_PIN:
            self.actions.append((req[1], req[2]))
            self._wait = (_Q_WAIT,)
            self._until = now
            self._cond = None
        return True

    def _end(self):
        self._job = None
        self._kind = 0
        self._wait = None
        self._cond = None

    def _kill(self, exc):
        kind = self._kind
        if self._job is not None:
            try:
                self._job.close()
            except Exception:
                pass
        self._end()
        self.ch.cancel()
        if len(exc.args) > 1:
            self._apply(exc.args[1])  # what the dialect found on the way (Fail(reason, outcome))
        reason = exc.args[0] if exc.args else "modem not answering"
        if kind == J_SEND:
            self.events.append((EV_SEND_FAILED, reason))
        elif kind == J_SMS:
            self.events.append((EV_SMS_FAILED, reason))
        elif kind == J_CALL:
            self.call = None
            self.events.append((EV_CALL, "ended"))
        if isinstance(exc, Hung) or kind == J_BOOT:
            # power-cycle, backing off 2 s, 4 s ... 120 s while it keeps failing
            self.hung = isinstance(exc, Hung) or self.hung
            if self.data_up:
                self.events.append((EV_LINK, False))
            self._down()
            self.booted = False
            self._cycle_at = self.now + self._backoff
            self._backoff = min(self._backoff * 2, 120000)
        return True

    def _start(self, kind, gen):
        self._job = gen
        self._kind = kind
        self._wait = None
        return True

    def _fail_req(self, reason):
        """Answer a queued request that cannot run now, so the caller is
        never left waiting on busy() (it owns the retry)."""
        req = self._req
        self._req = None
        if req is not None:
            if req[0] == J_SEND:
                self.events.append((EV_SEND_FAILED, reason))
            elif req[0] == J_SMS:
                self.events.append((EV_SMS_FAILED, reason))
            elif req[0] == J_CALL:
                self.events.append((EV_CALL, "ended"))

    def _pick(self, now):
        if self.off:
            # saver profile: switched off on purpose; work boots it
            if self.want_sleep and self._req is None and not self.want_gnss:
                return False
            self.off = False
            self.asleep = False
            return self._start(J_BOOT, self._j_boot(False))
        if self.hung or not self.booted:
            self._fail_req("modem not ready")
            if now < self._cycle_at:
                return False
            return self._start(J_BOOT, self._j_boot(self.hung or not self._first))
        if self.sim != "ready":
            self._fail_req("sim: %s" % self.sim)
            return False  # a SIM fault: nothing works until someone fixes it
        req = self._req
        gnss_due = (self.want_gnss != self.gnss_on or (self.gnss_on and self.want_nmea_s != self.nmea_s)) \
            and now >= self._gnss_at
        if self.asleep:
            if req is not None or self.rx_pending or self._mute_due or self._sync or gnss_due or not self.want_sleep \
                    or (not self.data_up and self._net_at and now >= self._net_at):
                return self._start(J_WAKE, self._j_wake())  # work to do, or data waiting
            return False
        if self._sync:
            return self._start(J_SYNC, self._j_sync())
        if req is not None:
            self._req = None
            kind, args = req
            if kind == J_SEND:
                return self._start(kind, self._j_send(args))
            if kind == J_SMS:
                return self._start(kind, self._j_sms(args[0], args[1]))  # pyright: ignore[reportOptionalSubscript]
            if kind == J_CALL:
                return self._start(kind, _svc().j_call(self, args))
            if kind == J_HANGUP:
                return self._start(kind, _svc().j_hangup(self))
        if self._mute_due:
            self._mute_due = False
            return self._start(J_MUTE, _svc().j_mute(self))
        if self.rx_pending or (self.sock and self._rx_check_at and now >= self._rx_check_at):
            if not self.rx_pending:
                self._reply_wait = False  # its URC is late or lost: poll, and stop holding polls back
                self._rx_checks += 1
                self._rx_check_at = now + (self.timings["rx_check_ms"] << self._rx_checks) if self._rx_checks < 3 else 0
            return self._start(J_READ, self._j_read())
        if gnss_due and not self._reply_wait:
            # (after the reply: its CIPRXGET read would wait behind four
            # GNSS commands; a round trip is nothing beside a fix's TTFF)
            if self.want_gnss and self.gnss_on:
                return self._start(J_GNSS, self._j_gnss_rate(self.want_nmea_s))
            return self._start(J_GNSS, self._j_gnss(self.want_gnss))
        if not self.data_up and now >= self._net_at:
            return self._start(J_NET, self._j_net())
        if now >= self._status_at and not self._reply_wait:
            # (not while a reply is due: four status commands on the UART
            # would hold its CIPRXGET read, and the ACK, back by ~100 ms)
            self._status_at = now + self.timings["status_ms"]
            return self._start(J_STATUS, self._j_status())
        if self.want_sleep and not self.gnss_on and self.call is None:
            return self._start(J_SLEEP, _svc().j_sleep(self))
        return False

    # ---- request builders used by jobs ----------------------------------

    def cmd(self, text, final=OKERR, info=(), timeout=None, prompt=False, hexdata=False):
        """Send `text` and wait for a line starting with one of `final`,
        keeping the lines of `info` (and, with hexdata, lines of hex
        digits); with prompt, a ">" ends it too (P_PROMPT). -> result"""
        return (_Q_CMD, text, final, info, timeout or self.timings["cmd_timeout_ms"], prompt, hexdata)

    def payload(self, data, final, info, timeout):
        """After P_PROMPT: write `data` (bytes) and wait as cmd() does."""
        return (_Q_PAYLOAD, data, final, info, timeout)

    def wait(self, ms, cond=None, lines=False):
        """Wait `ms`, or until cond() is true. -> None. lines: only a line
        from the modem can make cond() true (a URC), so the engine is
        stepped when bytes come, not looked at every 500 ms as for a pin."""
        return (_Q_WAIT, ms, cond, lines)

    def pin(self, name, level):
        """Set a modem pin ("pwrkey": 1 = key pressed; "dtr") now. -> None"""
        return (_Q_PIN, name, level)

    # ---- URCs -----------------------------------------------------------

    def _urc(self, line):
        if line[:1] == "$":
            self.nmea_in(line)  # the modem's GNSS on the AT port (AT+CGPSINFOCFG)
            return
        if line == "OK" or line == "ERROR":
            return  # the OK that precedes +CIPOPEN:/+NETOPEN:/+CIPSEND:
        if line == "RDY":
            self._rdy = True
            if self._kind != J_BOOT and self.booted:
                self._restarted()
            return
        if line.startswith("+CPIN:"):
            if line.endswith("READY"):
                self.sim = "ready" if self.sim in (None, "ready") else self.sim
            elif self.booted:
                self.sim = None
                self.booted = False
                self._first = True  # re-initialise; a power cycle only if the SIM stays away
            return
        if line in ("SMS DONE", "PB DONE", "RING") or line.startswith("+CMTI:") or line.startswith("+CLIP:"):
            return
        if line.startswith("VOICE CALL:"):
            if "BEGIN" in line:
                self.call = "active"
                self._mute_due = True
                self.events.append((EV_CALL, "active"))
            elif "END" in line and self.call is not None:
                self.call = None
                self.events.append((EV_CALL, "ended"))
            return
        if line == "NO CARRIER" or line == "BUSY" or line == "NO ANSWER":
            if self.call is not None:
                self.call = None
                self.events.append((EV_CALL, "ended"))
            return
        if line.startswith("+CSQ:"):
            self.csq_v = to_int(fields(line)[0], 99)
            return
        if line.startswith("+CREG:"):
            self.cs_reg = _reg_ok(line)
            return
        if line.startswith("+CEREG:"):
            self._eps = _reg_ok(line)  # EPS (LTE) or GPRS attach: either carries data
            self.ps_reg = self._eps or self._gprs
            return
        if line.startswith("+CGREG:"):
            self._gprs = _reg_ok(line)
            self.ps_reg = self._eps or self._gprs
            return
        o = self.d.urc(line)
        if not o:
            self.unknown += 1
        elif o == O_CELL:
            c = self.d.cell_of(line)
            if c is not None:
                self.cell_v = c
                self.cell_at = self.now
        else:
            self._apply(o)

    def _apply(self, o):
        """Change the engine's state for what a dialect hook or a rare job
        found (O_* bits of firmware/modem/at.py): they answer, the engine
        owns its fields."""
        if not o:
            return
        if o & O_NET_LOST:
            self._net_lost()
        elif o & O_CLOSED:
            self.sock = False
        if o & O_DATA:
            self.rx_pending = True
        if o & O_BAD_RX:
            self.bad_rx += 1
        if o & O_DIALLING and self.call is None:
            self.call = "dialling"
            self.events.append((EV_CALL, "dialling"))
        if o & O_CALL_ENDED and self.call is not None:
            self.call = None
            self.events.append((EV_CALL, "ended"))
        if o & O_ASLEEP:
            self.asleep = True
        if o & O_OFF:
            if self.data_up:
                self.events.append((EV_LINK, False))
            self._down()
            self.booted = False
            self.off = True
            self.asleep = True

    # ---- jobs -----------------------------------------------------------

    def _j_boot(self, cycle):
        """Bring the modem up. cycle: it is (or may be) on and not answering:
        switch it off first. Otherwise it may already be on (the ESP32
        reset under a running modem): STATUS (or, without it, an AT) says."""
        self.boots += 1
        self.ch.reset()
        was_up = self.data_up
        self._down()
        if was_up:
            self.events.append((EV_LINK, False))
        self.ri_urc = False
        self.reg_urcs = 0
        if self.gnss_on:
            self.gnss_on = False  # a restarted modem has GNSS off (manual 17.2.1: off by default)
            self.nmea_s = 0
        if not cycle:
            self._first = False
            if self.status != 0:
                for _ in range(2):
                    r = yield self.cmd("AT", OKERR, (), 500)
                    if r[R_END] == 0:
                        yield from self._init()
                        return
                cycle = self.status == 1  # on, but silent: hung
        if cycle:
            self.cycles += 1
            yield from self.power_off(False)
        yield from self._power_on()
        yield from self._init()

    def _power_on(self):
        """PWRKEY press, then RDY (Hardware Design Table 8)."""
        self._rdy = False
        self.ch.reset()
        yield self.pin("pwrkey", 1)
        yield self.wait(self.timings["pwrkey_ms"])
        yield self.pin("pwrkey", 0)
        yield self.wait(self.timings["boot_timeout_ms"], self._is_rdy, True)  # RDY is a line
        ok = self._rdy
        if not ok:
            for _ in range(3):
                r = yield self.cmd("AT", OKERR, ())
                if r[R_END] == 0:
                    ok = True
                    break
        if not ok:
            raise Hung("no RDY after power on")

    def power_off(self, graceful):
        """Switch the modem off and see it off: AT+CPOF when it answers
        (graceful), else a PWRKEY hold of >= 2.5 s; then STATUS low, which
        comes 25-26 s later (Hardware Design 3.2.2, Table 9). Without a
        STATUS line the whole off_timeout_ms is waited out. STATUS still
        high after that: the modem is wedged (Hung; retried with back-off)."""
        ok = False
        if graceful:
            r = yield self.cmd("AT+CPOF", OKERR, (), 3000)
            ok = r[R_END] == 0
        if not ok:
            yield self.pin("pwrkey", 1)
            yield self.wait(self.timings["pwrkey_off_ms"])
            yield self.pin("pwrkey", 0)
        self.ch.reset()  # what it says while shutting down is not an answer
        if self.status is None:
            yield self.wait(self.timings["off_timeout_ms"])
        else:
            yield self.wait(self.timings["off_timeout_ms"], self._is_off)
            if self.status != 0:
                self.wedged = True
                raise Hung("modem will not power off")
        self.wedged = False
        self.gnss_on = False
        self.nmea_s = 0

    def _is_rdy(self):
        return self._rdy

    def _is_off(self):
        return self.status == 0

    def _init(self):
        """Run the bring-up step table."""
        for step in BOOT_STEPS + self.d.steps:
            name, text, info, timeout, tries, interval, judge = step
            if callable(text):
                text = text(self)
            verdict = "retry"
            for _ in range(tries):
                r = yield self.cmd(text, OKERR, info, timeout)
                verdict = judge(self, r) if judge else ("ok" if r[R_END] == 0 else "retry")
                if verdict == "ri":  # ok, and RI now pulses for every URC (sim7600: AT+CFGRI=1)
                    self.ri_urc = True
                    verdict = "ok"
                if verdict != "retry":
                    break
                yield self.wait(interval)
            if verdict == "pin":
                self.sim = yield from _svc().enter_pin(self)
                verdict = "ok" if self.sim == "ready" else "fail"
            if verdict == "ok":
                continue
            if verdict == "retry" and r[R_END] == P_TIMEOUT:
                raise Hung("%s: no answer" % name)
            if name == "sim":
                if self.sim in (None, "ready"):
                    self.sim = "missing"
                if self.sim in ("pin_required", "pin_rejected", "puk_required"):
                    # never guess or retry a PIN: three wrong ones lock the SIM
                    self.booted = True
                    self.hung = False
                    return
                raise Fail("sim: %s" % self.sim)  # missing/failure: power-cycle later
            raise Fail("%s failed" % name)
        self.booted = True
        self.hung = False
        self._backoff = 2000
        self._status_at = self.now
        self._echoes = self.ch.echoes

    def _j_net(self):
        """Registration, then the dialect opens the data path."""
        deadline = self.now + self.timings["reg_timeout_ms"]
        while True:
            r = yield self.cmd("AT+CREG?", OKERR, ("+CREG:",))
            self.cs_reg = r[R_END] == 0 and bool(r[R_INFOS]) and _reg_ok(r[R_INFOS][0])
            ps = False
            for q, p in (("AT+CEREG?", "+CEREG:"), ("AT+CGREG?", "+CGREG:")):
                r = yield self.cmd(q, OKERR, (p,))
                if r[R_END] == 0 and r[R_INFOS] and _reg_ok(r[R_INFOS][0]):
                    ps = True
                    break
            self.ps_reg = self._eps = self._gprs = ps
            if ps:
                self._reg_since = None
                break
            if self.now >= deadline:
                self._net_later()
                return
            if self._req is not None:
                self._net_at = self.now  # let the caller's SMS or call go first
                return
            yield self.wait(self._reg_wait(), self._ps_up, True)
        ok = yield from self.d.net_open(self)
        if ok:
            self.data_up = True
            self._net_backoff = self.timings["net_retry_ms"]
            self.events.append((EV_LINK, True))
        else:
            self._net_later()

    def _ps_up(self):
        return self.ps_reg

    def _reg_wait(self):
        """The next registration poll's delay. With all three registration
        URCs on (AT+CREG=1, AT+CGREG=1, AT+CEREG=1 at bring-up), a change
        ends the wait as it comes and the poll is only a backstop (a URC
        lost in light sleep pulsed RI, but the resync asks about data):
        reg_backstop_ms. Without them, reg_poll_ms for the first
        reg_fast_ms of an unregistered stretch, then doubling up to it."""
        tm = self.timings
        if self.reg_urcs == 3:
            return tm["reg_backstop_ms"]
        if self._reg_since is None:
            self._reg_since = self.now
            self._reg_poll = tm["reg_poll_ms"]
        elif self.now - self._reg_since >= tm["reg_fast_ms"]:
            self._reg_poll = min(self._reg_poll * 2, tm["reg_poll_max_ms"])
        return self._reg_poll

    def _net_later(self):
        self._net_at = self.now + self._net_backoff
        # asleep with nobody waiting, a data path that will not come up is
        # retried more slowly: each wake keeps the modem awake for the
        # 15-20 s it takes to sleep again (Sleep Mode application note 2)
        cap = 600000 if self.want_sleep else 60000
        self._net_backoff = min(self._net_backoff * 2, cap)

    def _net_lost(self):
        """The data path went away (O_NET_LOST)."""
        was = self.data_up
        self.data_up = False
        self.sock = False
        self.rx_pending = False
        self._rx_check_at = 0
        self._reply_wait = False
        self._net_at = self.now
        self._reg_since = None
        if was:
            self.events.append((EV_LINK, False))

    def retarget(self, host, port):
        """The next connection goes to host:port (firmware/failover.py); a
        socket open to another receiver is closed before the next send."""
        if self.d.host != host or self.d.port != port:
            self.d.host, self.d.port = host, port
            self._moved = True

    def _j_send(self, raw):
        from protocol.stream import pack

        if not self.data_up:
            raise Fail("no data path")
        if self._moved:
            self._moved = False
            if self.sock:
                self.sock = False
                self.rx_pending = False
                yield from self.d.sock_close(self)
        if not self.sock:
            yield from self.d.sock_open(self)  # returns once open; else Fail(reason, what it found)
            self.sock = True
        yield from self.d.sock_send(self, pack(raw))
        self.events.append((EV_SENT, len(raw)))
        self._reply_wait = True
        self._rx_checks = 0
        self._rx_check_at = self.now + self.timings["rx_check_ms"]

    def _j_read(self):
        self.rx_pending = False
        self._apply((yield from self.d.sock_read(self)))

    def frames_in(self, frames):
        """Whole frames the dialect read off the socket, handed here as it
        reads them (the one call a dialect makes into the engine: a reply
        reaches the caller before the next chunk is asked for). The reply
        is in: the polls for one whose URC was lost stop (3, 9 and 21 s
        after every send, each a wake; data after it has a URC of its own,
        and one lost in light sleep pulsed RI: ri_wake)."""
        self._reply_wait = False
        self._rx_check_at = 0
        for f in frames:
            self.events.append((EV_FRAME, f))

    def _j_sms(self, number, text):
        r = yield self.cmd('AT+CMGS="%s"' % number, ("ERROR", "+CMS ERROR:", "+CME ERROR:"), (), 10000, True)
        if r[R_END] == 1 and to_int(fields(r[R_LINE])[0]) == 305:
            # "invalid text mode parameter": text mode was lost; set it and try once more
            yield self.cmd("AT+CMGF=1")
            r = yield self.cmd('AT+CMGS="%s"' % number, ("ERROR", "+CMS ERROR:", "+CME ERROR:"), (), 10000, True)
        if r[R_END] != P_PROMPT:
            if r[R_END] == P_TIMEOUT:
                self.ch.out.extend(b"\x1b")  # cancel a prompt we may have missed
            raise Fail("cmgs: %s" % (r[R_LINE] or "no prompt"))
        r = yield self.payload(text.encode() + b"\x1a", OKERR + ("+CMS ERROR:",), ("+CMGS:",), self.timings["sms_timeout_ms"])
        if r[R_END] == 0 and r[R_INFOS]:
            self.events.append((EV_SMS_SENT, to_int(fields(r[R_INFOS][0])[0], -1)))
            return
        if r[R_LINE].startswith("+CMS ERROR:") and to_int(fields(r[R_LINE])[0]) in (330, 331, 332):
            # no service / network timeout: not ready for SMS until CREG says so
            self.cs_reg = False
            self._status_at = self.now
        raise Fail("sms: %s" % (r[R_LINE] or "timeout"))

    def _j_wake(self):
        """DTR low, then 20 ms before the first byte (UART application note
        3.1.4); one AT shows it is listening (a second only if the first went
        unanswered)."""
        yield self.pin("dtr", 0)
        yield self.wait(self.timings["dtr_wake_ms"])
        self.asleep = False
        r = yield self.cmd("AT", OKERR, ())
        if r[R_END] != 0:
            yield self.cmd("AT", OKERR, ())

    def _j_sync(self):
        """After an RI wake: the URC that pulsed RI was lost, so ask what
        it could have said. An echo of this AT shows a modem that restarted
        (feed() notices); the dialect asks about the data path and any
        buffered data."""
        self._sync = False
        yield self.cmd("AT", OKERR, ())
        self._apply((yield from self.d.resync(self)))

    def _j_gnss(self, on):
        s = self.want_nmea_s
        ok = yield from self.d.gnss(self, on, s)
        if ok:
            self.gnss_on = on
            self.nmea_s = s if on else 0
            self._gnss_at = 0
        else:
            self._gnss_at = self.now + self.timings["gnss_retry_ms"]

    def _j_gnss_rate(self, s):
        ok = yield from self.d.gnss_rate(self, s)
        if ok:
            self.nmea_s = s
            self._gnss_at = 0
        else:
            self._gnss_at = self.now + self.timings["gnss_retry_ms"]

    def nmea_in(self, line):
        """An NMEA sentence from the AT port (the modem's GNSS)."""
        n = self.nmea
        self.nmea_lines += 1
        if len(n) + len(line) + 2 > NMEA_MAX:
            self.nmea_dropped += 1
            return
        n.extend(line.encode())
        n.extend(b"\r\n")

    def _j_status(self):
        r = yield self.cmd("AT+CREG?", OKERR, ("+CREG:",))
        if r[R_END] == 0 and r[R_INFOS]:
            self.cs_reg = _reg_ok(r[R_INFOS][0])
        r = yield self.cmd("AT+CEREG?", OKERR, ("+CEREG:",))
        if r[R_END] == 0 and r[R_INFOS]:
            self.ps_reg = _reg_ok(r[R_INFOS][0])
        r = yield self.cmd("AT+CSQ", OKERR, ("+CSQ:",))
        if r[R_END] == 0 and r[R_INFOS]:
            self.csq_v = to_int(fields(r[R_INFOS][0])[0], 99)
        c = yield from self.d.cell(self)
        if c is not None:
            self.cell_v = c
            self.cell_at = self.now


def _svc():
    from firmware.modem import services

    return services


def _j_cpin(e, r):
    if r[R_END] == 0 and r[R_INFOS]:
        s = r[R_INFOS][0]
        if s.endswith("READY"):
            e.sim = "ready"
            return "ok"
        if "SIM PIN" in s:
            return "pin"
        if "PUK" in s:
            e.sim = "puk_required"
            return "fail"
        return "retry"
    if r[R_END] == 2:  # +CME ERROR: <n>
        code = to_int(fields(r[R_LINE])[0])
        if code == 10:
            e.sim = "missing"
        elif code == 13 or code == 15:
            e.sim = "failure"
        return "retry"  # 14 SIM busy and the rest: ask again
    return "retry"


def _j_csq(e, r):
    if r[R_END] == 0 and r[R_INFOS]:
        e.csq_v = to_int(fields(r[R_INFOS][0])[0], 99)
        return "ok"
    return "retry"


# Bring-up step table: (name, command, info prefixes, timeout ms, tries,
# retry interval ms, judge). A judge returns "ok", "retry", "pin", "fail", or
# "ri" (ok, and RI now pulses for every URC: ri_urc). The engine's own
# judges below may set its fields; a dialect's only answer.
# The dialect's own steps (dialect.steps) run after these.
BOOT_STEPS = [
    ("echo off", "ATE0", (), 3000, 5, 500, None),
    ("numeric errors", "AT+CMEE=1", (), 3000, 3, 500, None),
    ("sim", "AT+CPIN?", ("+CPIN:",), 5000, 10, 1000, _j_cpin),
    ("sms text mode", "AT+CMGF=1", (), 3000, 5, 1000, None),
    ("signal", "AT+CSQ", ("+CSQ:",), 3000, 3, 500, _j_csq),
]
