"""SIM7600 dialect: the data path and cell info of SIMCom's SIM7500/SIM7600
AT manual V3.00 (AT+NETOPEN, AT+CIPOPEN, AT+CIPSEND, AT+CIPRXGET,
AT+CIPCLOSE, AT+CPSI?), over the generic engine.

Owns: the SIM7600 commands, their answers and URCs (+CIPRXGET: 1,<link>,
+IPCLOSE, +CIPEVENT, late +NETOPEN:). Never does I/O; all its methods are
generators run inside an engine job, or plain parsers. Never sets an
engine field: its hooks answer (a value, or the O_* outcome bits of
firmware/modem/at.py) and the engine changes its own state.

A dialect provides (docs/modem.md, "The dialect interface"; e is the
engine, whose request builders and timings the generators use):
  host, port            where sock_open connects (the engine's retarget()
                        changes them: receiver failover, firmware/failover.py)
  steps                 bring-up steps after the generic ones
  reset()               forget what it holds for a link (power cycle)
  urc(line) -> O_*      a line no command claimed; 0: not this dialect's
  cell_of(line)         the (mcc, mnc, tac, cell_id, rsrp) an O_CELL line says, or None
  net_open(e) -> bool   open the data path (generator)
  sock_open(e)          open the socket; returns once open, else raises
                        Fail(reason, O_*) (generator)
  sock_send(e, data) -> bytes confirmed; Fail(reason, O_*) (generator)
  sock_read(e) -> O_*   drain received data, handing whole frames to
                        e.frames_in() as they come (generator)
  cell(e) -> tuple or None     the serving cell (generator)
  resync(e) -> O_*      after an RI wake: what a lost URC could have said
                        (generator)
  gnss(e, on) -> bool   the modem's own GNSS (False: not now, try again
                        later) (generator)
A step's judge(e, r) returns "ok", "retry", "pin", "fail", or "ri" (ok, and
RI now pulses for every URC: the engine records it).

Bring-up steps of this dialect: the APN; manual receive (AT+CIPRXGET=1,
so a frame never arrives inside a line); RI pulsed for every URC
(AT+CFGRI=1, manual 19.2.16, Sleep Mode application note 5: by default RI
moves only for SMS and calls, so a URC would never wake a light-sleeping
ESP32); the module's own IP timeouts (AT+CIPTIMEOUT, manual 11.2.12; its
default is 120 s each) set IP_MARGIN_MS below the engine's, so the module
always answers before the engine gives up on it.

GNSS (manual 17; GNSS application note): the antenna's LNA is fed from the
modem's VDD_AUX (the T-SIM7600E: LilyGO "GPS Enabled: Modem AUXVDD";
AT+CVAUXV=2800, AT+CVAUXS=1, as LilyGO's TinyGSM does); AT+CGPS=1
starts a standalone session; AT+CGPSINFOCFG=<s>,3 (17.2.16) reports GGA and RMC every
<s> seconds on this AT port (the caller asks for 1 until the session's
first fix, then its gnss_report_s; 141 bytes a report, against 472 for the manual's mask 31:
RMC gives date, time, position and validity, GGA satellites, HDOP and
altitude, which is all firmware/fix.py uses; polling AT+CGNSSINFO would
cost about as much and need a second parser, and a poll cannot be answered
while a data command holds the port). Stop: AT+CGPSINFOCFG=0,3, AT+CGPS=0
(its "+CGPS: 0" comes later), AT+CVAUXS=0.
Link 0 is the only socket. Received data is read in hex (AT+CIPRXGET=3), so
a binary frame can never be mistaken for a line end, a prompt or a URC.

Must stay in sync with: firmware/modem/engine.py (job protocol),
host_sim/modem.py (the emulator speaks the same answers), docs/modem.md
(the step and dialect interface tables: tests/test_docs_firmware.py).
"""

import binascii

from firmware.modem.at import (
    O_BAD_RX,
    O_CELL,
    O_CLOSED,
    O_DATA,
    O_DONE,
    O_NET_LOST,
    OKERR,
    P_PROMPT,
    P_TIMEOUT,
    R_END,
    R_INFOS,
    R_LINE,
    Fail,
    cfg as _cfg,
    fields,
    to_int,
)
from firmware.modem.engine import IP_MARGIN_MS
from protocol.errors import BadLength
from protocol.stream import Deframer

LINK = 0
# +CIPOPEN:/+CIPERROR: <err> values (manual 11.6) that mean the PDP context is gone
_NET_GONE = (1, 2)


def _apn_cmd(e):
    return 'AT+CGDCONT=1,"IP","%s"' % (_cfg(e.cfg, "apn", "") or "")


def _ri_set(e, r):
    return "ri" if r[R_END] == 0 else "retry"  # the engine notes that RI pulses for every URC


def _reg_urc(e, r):
    if r[R_END] == 0:
        e.reg_urcs += 1
    return "ok"


def _iptimeout_cmd(e):
    t = e.timings
    return "AT+CIPTIMEOUT=%d,%d,%d" % (_module_ms(t["netopen_timeout_ms"]), _module_ms(t["open_timeout_ms"]),
                                       _module_ms(t["send_timeout_ms"]))


def _module_ms(engine_ms):
    """The module's timeout for an engine timeout: IP_MARGIN_MS less, in
    the range the manual allows (3000..120000 ms, 11.2.12)."""
    ms = engine_ms - IP_MARGIN_MS
    return 3000 if ms < 3000 else (120000 if ms > 120000 else ms)


class Sim7600:
    name = "SIM7600"

    def __init__(self, host, port):
        self.host = host
        self.port = port
        self.deframer = Deframer()
        # (name, command, info, timeout ms, tries, interval ms, judge)
        self.steps = [
            ("apn", _apn_cmd, (), 3000, 3, 1000, None),
            ("manual receive", "AT+CIPRXGET=1", (), 3000, 3, 1000, None),
            ("ri on urc", "AT+CFGRI=1", (), 3000, 3, 1000, _ri_set),
            ("ip timeouts", _iptimeout_cmd, (), 3000, 3, 1000, None),
            # a registration change as a URC (manual 4.2.1, 8.2.1, 4.2.16:
            # <n>=1, "+CREG: <stat>"), so the data path opens when the
            # network comes, not at the next poll; refused: polling only
            ("registration urc", "AT+CREG=1", (), 3000, 1, 0, _reg_urc),
            ("gprs registration urc", "AT+CGREG=1", (), 3000, 1, 0, _reg_urc),
            ("eps registration urc", "AT+CEREG=1", (), 3000, 1, 0, _reg_urc),
        ]

    def reset(self):
        self.deframer = Deframer()

    # ---- URCs -----------------------------------------------------------

    def urc(self, line):
        """What an unclaimed line says, as O_* bits; 0: not this dialect's."""
        if line.startswith("+CIPRXGET:1,"):
            return O_DATA
        if line.startswith("+IPCLOSE:"):
            # data already buffered stays readable (an ACK, then close)
            return O_CLOSED if to_int(fields(line)[0]) == LINK else O_DONE
        if line.startswith("+CIPEVENT:"):
            self.deframer = Deframer()
            return O_NET_LOST
        if line.startswith("+NETOPEN:"):
            return O_DONE  # late answer of a NETOPEN that timed out: the net job asks again
        if line.startswith("+CIPOPEN:") or line.startswith("+CIPSEND:") or line.startswith("+CIPCLOSE:"):
            return O_DONE  # late answers of commands that timed out
        if line.startswith("+CIPERROR:") or line.startswith("+IP ERROR:"):
            return O_DONE
        if line.startswith("+NETCLOSE:"):
            return O_DONE
        if line.startswith("+CPSI:"):
            return O_CELL
        if line.startswith("+CGPS:"):
            return O_DONE  # "+CGPS: 0": a stopped session's end (manual 17.2.1)
        return 0

    def cell_of(self, line):
        return parse_cpsi(line)

    # ---- after an RI wake -------------------------------------------------

    def resync(self, e):
        """The lost URC could have been +CIPEVENT (data path gone),
        +IPCLOSE (socket closed) or +CIPRXGET: 1,0 (data waiting, and no
        new URC comes until it is read: manual 11.2.6 note 1). Returns O_*."""
        if e.data_up:
            r = yield e.cmd("AT+NETOPEN?", OKERR, ("+NETOPEN:",))
            if r[R_END] == 0 and r[R_INFOS] and to_int(fields(r[R_INFOS][0])[0]) == 0:
                self.deframer = Deframer()
                return O_NET_LOST
        if e.sock:
            r = yield e.cmd("AT+CIPRXGET=4,%d" % LINK, OKERR, ("+CIPRXGET:4,",))
            if r[R_END] == 0 and r[R_INFOS]:
                f = fields(r[R_INFOS][0])
                if len(f) > 2 and (to_int(f[2]) or 0) > 0:
                    return O_DATA
            elif r[R_END] != 0:
                return O_CLOSED  # no such link any more
        return 0

    # ---- GNSS -------------------------------------------------------------

    def gnss(self, e, on, every_s=1):
        if on:
            for cmd in ("AT+CVAUXV=2800", "AT+CVAUXS=1", "AT+CGPS=1", "AT+CGPSINFOCFG=%d,3" % every_s):
                r = yield e.cmd(cmd)
                if r[R_END] != 0:
                    return False  # e.g. CGPS refused for 2-30 s after a stop (manual 17.2.1)
            return True
        for cmd in ("AT+CGPSINFOCFG=0,3", "AT+CGPS=0", "AT+CVAUXS=0"):
            yield e.cmd(cmd)  # an ERROR here (already stopped) changes nothing
        return True

    def gnss_rate(self, e, every_s):
        """GGA and RMC every `every_s` s (AT+CGPSINFOCFG <time>, 1-255; the
        session keeps running, only the reports on this port change)."""
        r = yield e.cmd("AT+CGPSINFOCFG=%d,3" % every_s)
        return r[R_END] == 0

    # ---- data path ------------------------------------------------------

    def net_open(self, e):
        r = yield e.cmd("AT+NETOPEN", ("+NETOPEN:", "ERROR", "+CME ERROR:"), ("+IP ERROR:",), e.timings["netopen_timeout_ms"])
        if r[R_END] == 0:
            return to_int(fields(r[R_LINE])[0]) == 0
        if r[R_END] == 1 and r[R_INFOS] and "already opened" in r[R_INFOS][0]:
            return True
        if r[R_END] == P_TIMEOUT:
            # the +NETOPEN: line may have been lost: ask for the state
            r = yield e.cmd("AT+NETOPEN?", OKERR, ("+NETOPEN:",))
            if r[R_END] == 0 and r[R_INFOS] and to_int(fields(r[R_INFOS][0])[0]) == 1:
                return True
        return False

    def sock_open(self, e):
        self.deframer = Deframer()
        cmd = 'AT+CIPOPEN=%d,"TCP","%s",%d' % (LINK, self.host, self.port)
        # +CIPEVENT while it waits: the PDP context is gone and the open
        # cannot succeed; whether the module still answers +CIPOPEN then
        # the manual does not say (pessimistic: it does not), so stop
        # waiting at once instead of at the open timeout
        r = yield e.cmd(cmd, ("+CIPOPEN:", "ERROR", "+CME ERROR:", "+CIPEVENT:"), ("+IP ERROR:",),
                        e.timings["open_timeout_ms"])
        end = r[R_END]
        if end == 3:
            raise Fail("open: the network closed", self.urc(r[R_LINE]))
        if end == 0:
            f = fields(r[R_LINE])
            err = to_int(f[1]) if len(f) > 1 else None
            if err == 0:
                return  # open: the engine notes it
            found = 0
            if err == 4 or err == 9:
                # the link is still held from before: close it, open next time
                yield from self.sock_close(e)
                found = O_CLOSED
            elif err in _NET_GONE:
                found = O_NET_LOST
            yield e.wait(200)  # the ERROR that trails a failed +CIPOPEN
            raise Fail("open: error %s" % f[1] if len(f) > 1 else "open: bad answer", found)
        if end == P_TIMEOUT:
            yield from self.sock_close(e)
            raise Fail("open: timeout", O_CLOSED)
        infos = r[R_INFOS]
        raise Fail("open: %s" % (infos[0] if infos else r[R_LINE]),
                   O_NET_LOST if infos and "opened" not in infos[0] else 0)

    def sock_send(self, e, data):
        r = yield e.cmd("AT+CIPSEND=%d,%d" % (LINK, len(data)), ("ERROR", "+CME ERROR:"),
                        ("+CIPERROR:", "+IP ERROR:"), 5000, True)
        if r[R_END] != P_PROMPT:
            infos = r[R_INFOS]
            gone = infos and to_int(fields(infos[0])[0]) in _NET_GONE
            raise Fail("send: no prompt", O_NET_LOST if gone else O_CLOSED)
        r = yield e.payload(data, ("+CIPSEND:", "ERROR", "+CME ERROR:"), ("+CIPERROR:",), e.timings["send_timeout_ms"])
        if r[R_END] == 0:
            f = fields(r[R_LINE])
            req = to_int(f[1]) if len(f) > 2 else None
            cnf = to_int(f[2]) if len(f) > 2 else None
            if req == len(data) and cnf == req:
                return cnf
            # fewer bytes (or -1: disconnected): the manual says the socket
            # cannot be used further
            yield from self.sock_close(e)
            raise Fail("send: %s of %d bytes" % (f[2] if len(f) > 2 else "?", len(data)), O_CLOSED)
        yield from self.sock_close(e)
        raise Fail("send: %s" % (r[R_LINE] or "timeout"), O_CLOSED)

    def sock_close(self, e):
        """AT+CIPCLOSE; the caller reports O_CLOSED."""
        self.deframer = Deframer()
        yield e.cmd("AT+CIPCLOSE=%d" % LINK, ("+CIPCLOSE:", "ERROR", "+CME ERROR:"), ("+IP ERROR:",), 5000)

    def sock_read(self, e):
        """Drain the modem's receive buffer, handing whole frames to
        e.frames_in() as they come. Returns O_*: what went wrong, if anything."""
        for _ in range(20):
            r = yield e.cmd("AT+CIPRXGET=3,%d,%d" % (LINK, e.timings["read_chunk"]), OKERR, ("+CIPRXGET:3,", "+IP ERROR:"),
                            5000, False, True)
            infos = r[R_INFOS]
            if r[R_END] != 0:
                if r[R_END] == 1 and infos and "No data" not in infos[0]:
                    return O_CLOSED  # link not there any more
                return 0
            if not infos or not infos[0].startswith("+CIPRXGET:3,"):
                return O_BAD_RX
            f = fields(infos[0])
            n = to_int(f[2]) if len(f) > 3 else None
            rest = to_int(f[3]) if len(f) > 3 else 0
            hexline = infos[1] if len(infos) > 1 else ""
            frames = None
            if n is not None and len(hexline) == 2 * n:
                try:
                    frames = self.deframer.feed(binascii.unhexlify(hexline))
                except (BadLength, ValueError):
                    pass  # no way to resynchronise a length-prefixed stream
            if frames is None:
                # cut, corrupted or impossible: the frame is lost, the outbox resends
                yield from self.sock_close(e)
                return O_BAD_RX | O_CLOSED
            e.frames_in(frames)
            if not rest:
                return 0
        return 0

    # ---- cell -----------------------------------------------------------

    def cell(self, e):
        r = yield e.cmd("AT+CPSI?", OKERR, ("+CPSI:",), 3000)
        if r[R_END] == 0 and r[R_INFOS]:
            return parse_cpsi(r[R_INFOS][0])
        return None


def parse_cpsi(line):
    """+CPSI: LTE,Online,<mcc>-<mnc>,<tac hex>,<cell id>,<pci>,<band>,<earfcn>,
    <dlbw>,<ulbw>,<rsrq>,<rsrp x10>,<rssi x10>,<rssnr> -> (mcc, mnc, tac,
    cell_id, rsrp_dbm); GSM gives (mcc, mnc, lac, cell_id, rx level dBm).
    None for no service or anything that does not parse."""
    f = fields(line)
    if len(f) < 5:
        return None
    mm = f[2].split("-")
    if len(mm) != 2:
        return None
    mcc = to_int(mm[0])
    mnc = to_int(mm[1])
    try:
        tac = int(f[3], 16)
    except ValueError:
        return None
    cid = to_int(f[4])
    if mcc is None or mnc is None or cid is None:
        return None
    if f[0] == "LTE" and len(f) >= 12:
        rsrp = to_int(f[11])
        if rsrp is None:
            return None
        rsrp = -((-rsrp + 5) // 10) if rsrp < 0 else rsrp // 10
        return (mcc, mnc, tac, cid, rsrp)
    if f[0] == "GSM" and len(f) >= 7:
        rx = to_int(f[6])
        return (mcc, mnc, tac, cid, rx if rx is not None else 0)
    return None
