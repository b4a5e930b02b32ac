"""SIM7600 dialect: the data path and cell info of SIMCom's SIM7500/SIM7600
AT manual V3.00 (AT+NETOPEN, AT+CIPOPEN, AT+CIPSEND, AT+CIPRXGET,
AT+CIPCLOSE, AT+CPSI?), over the generic engine.

Owns: the SIM7600 commands, their answers and URCs (+CIPRXGET: 1,<link>,
+IPCLOSE, +CIPEVENT, late +NETOPEN:). Never does I/O; all its methods are
generators run inside an engine job, or plain parsers.

A dialect provides: steps (bring-up steps after the generic ones), reset(),
urc(engine, line) -> handled?, net_open(e) -> bool, sock_open(e),
sock_send(e, data) -> bytes sent, sock_read(e), cell(e) -> tuple or None,
resync(e) (after an RI wake: what a lost URC could have said), gnss(e, on)
-> bool (the modem's own GNSS; False: not now, try again later).

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
starts a standalone session; AT+CGPSINFOCFG=1,3 (17.2.16) reports GGA and RMC every
second on this AT port (141 bytes/s, against 472 for the manual's mask 31:
RMC gives date, time, position and validity, GGA satellites, HDOP and
altitude, which is all firmware/fix.py uses; polling AT+CGNSSINFO would
cost about as much and need a second parser, and a poll cannot be answered
while a data command holds the port). Stop: AT+CGPSINFOCFG=0,3, AT+CGPS=0
(its "+CGPS: 0" comes later), AT+CVAUXS=0.
Link 0 is the only socket. Received data is read in hex (AT+CIPRXGET=3), so
a binary frame can never be mistaken for a line end, a prompt or a URC.

Must stay in sync with: firmware/modem/engine.py (job protocol),
host_sim/modem.py (the emulator speaks the same answers), docs/modem.md.
"""

import binascii

from firmware.modem.at import OKERR, P_PROMPT, P_TIMEOUT, Fail, cfg as _cfg, fields, to_int
from firmware.modem.engine import IP_MARGIN_MS
from protocol.errors import BadLength
from protocol.stream import Deframer

LINK = 0
# +CIPOPEN:/+CIPERROR: <err> values (manual 11.6) that mean the PDP context is gone
_NET_GONE = (1, 2)


def _apn_cmd(e):
    return 'AT+CGDCONT=1,"IP","%s"' % (_cfg(e.cfg, "apn", "") or "")


def _ri_set(e, r):
    if r[0] == 0:
        e.ri_urc = True
        return "ok"
    return "retry"


def _iptimeout_cmd(e):
    t = e.t
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
        ]

    def reset(self):
        self.deframer = Deframer()

    # ---- URCs -----------------------------------------------------------

    def urc(self, e, line):
        if line.startswith("+CIPRXGET:1,"):
            e.rx_pending = True
            return True
        if line.startswith("+IPCLOSE:"):
            f = fields(line)
            if to_int(f[0]) == LINK:
                e.sock = False  # data already buffered stays readable (an ACK, then close)
            return True
        if line.startswith("+CIPEVENT:"):
            e.net_lost()
            self.deframer = Deframer()
            return True
        if line.startswith("+NETOPEN:"):
            return True  # late answer of a NETOPEN that timed out: the net job asks again
        if line.startswith("+CIPOPEN:") or line.startswith("+CIPSEND:") or line.startswith("+CIPCLOSE:"):
            return True  # late answers of commands that timed out
        if line.startswith("+CIPERROR:") or line.startswith("+IP ERROR:"):
            return True
        if line.startswith("+NETCLOSE:"):
            return True
        if line.startswith("+CPSI:"):
            c = parse_cpsi(line)
            if c is not None:
                e.cell_v = c
                e.cell_at = e.now
            return True
        if line.startswith("+CGPS:"):
            return True  # "+CGPS: 0": a stopped session's end (manual 17.2.1)
        return False

    # ---- after an RI wake -------------------------------------------------

    def resync(self, e):
        """The lost URC could have been +CIPEVENT (data path gone),
        +IPCLOSE (socket closed) or +CIPRXGET: 1,0 (data waiting, and no
        new URC comes until it is read: manual 11.2.6 note 1)."""
        if e.data_up:
            r = yield e.cmd("AT+NETOPEN?", OKERR, ("+NETOPEN:",))
            if r[0] == 0 and r[2] and to_int(fields(r[2][0])[0]) == 0:
                e.net_lost()
                self.deframer = Deframer()
                return
        if e.sock:
            r = yield e.cmd("AT+CIPRXGET=4,%d" % LINK, OKERR, ("+CIPRXGET:4,",))
            if r[0] == 0 and r[2]:
                f = fields(r[2][0])
                if len(f) > 2 and (to_int(f[2]) or 0) > 0:
                    e.rx_pending = True
            elif r[0] != 0:
                e.sock = False  # no such link any more

    # ---- GNSS -------------------------------------------------------------

    def gnss(self, e, on):
        if on:
            for cmd in ("AT+CVAUXV=2800", "AT+CVAUXS=1", "AT+CGPS=1", "AT+CGPSINFOCFG=1,3"):
                r = yield e.cmd(cmd)
                if r[0] != 0:
                    return False  # e.g. CGPS refused for 2-30 s after a stop (manual 17.2.1)
            return True
        for cmd in ("AT+CGPSINFOCFG=0,3", "AT+CGPS=0", "AT+CVAUXS=0"):
            yield e.cmd(cmd)  # an ERROR here (already stopped) changes nothing
        return True

    # ---- data path ------------------------------------------------------

    def net_open(self, e):
        r = yield e.cmd("AT+NETOPEN", ("+NETOPEN:", "ERROR", "+CME ERROR:"), ("+IP ERROR:",), e.t["netopen_timeout_ms"])
        if r[0] == 0:
            return to_int(fields(r[1])[0]) == 0
        if r[0] == 1 and r[2] and "already opened" in r[2][0]:
            return True
        if r[0] == P_TIMEOUT:
            # the +NETOPEN: line may have been lost: ask for the state
            r = yield e.cmd("AT+NETOPEN?", OKERR, ("+NETOPEN:",))
            if r[0] == 0 and r[2] and to_int(fields(r[2][0])[0]) == 1:
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
                        e.t["open_timeout_ms"])
        if r[0] == 3:
            self.urc(e, r[1])
            raise Fail("open: the network closed")
        if r[0] == 0:
            f = fields(r[1])
            err = to_int(f[1]) if len(f) > 1 else None
            if err == 0:
                e.sock = True
                return
            if err == 4 or err == 9:
                # the link is still held from before: close it, open next time
                yield from self.sock_close(e)
            elif err in _NET_GONE:
                e.net_lost()
            yield e.wait(200)  # the ERROR that trails a failed +CIPOPEN
            raise Fail("open: error %s" % f[1] if len(f) > 1 else "open: bad answer")
        if r[0] == P_TIMEOUT:
            yield from self.sock_close(e)
            raise Fail("open: timeout")
        if r[2] and "opened" not in r[2][0]:
            e.net_lost()
        raise Fail("open: %s" % (r[2][0] if r[2] else r[1]))

    def sock_send(self, e, data):
        r = yield e.cmd("AT+CIPSEND=%d,%d" % (LINK, len(data)), ("ERROR", "+CME ERROR:"),
                        ("+CIPERROR:", "+IP ERROR:"), 5000, True)
        if r[0] != P_PROMPT:
            e.sock = False
            if r[2]:
                err = to_int(fields(r[2][0])[0])
                if err in _NET_GONE:
                    e.net_lost()
            raise Fail("send: no prompt")
        r = yield ("P", data, ("+CIPSEND:", "ERROR", "+CME ERROR:"), ("+CIPERROR:",), e.t["send_timeout_ms"])
        if r[0] == 0:
            f = fields(r[1])
            req = to_int(f[1]) if len(f) > 2 else None
            cnf = to_int(f[2]) if len(f) > 2 else None
            if req == len(data) and cnf == req:
                return cnf
            # fewer bytes (or -1: disconnected): the manual says the socket
            # cannot be used further
            yield from self.sock_close(e)
            raise Fail("send: %s of %d bytes" % (f[2] if len(f) > 2 else "?", len(data)))
        yield from self.sock_close(e)
        raise Fail("send: %s" % (r[1] or "timeout"))

    def sock_close(self, e):
        e.sock = False
        self.deframer = Deframer()
        yield e.cmd("AT+CIPCLOSE=%d" % LINK, ("+CIPCLOSE:", "ERROR", "+CME ERROR:"), ("+IP ERROR:",), 5000)

    def sock_read(self, e):
        """Drain the modem's receive buffer, handing whole frames out."""
        for _ in range(20):
            r = yield e.cmd("AT+CIPRXGET=3,%d,%d" % (LINK, e.t["read_chunk"]), OKERR, ("+CIPRXGET:3,", "+IP ERROR:"),
                            5000, False, True)
            if r[0] != 0:
                if r[0] == 1 and r[2] and "No data" not in r[2][0]:
                    e.sock = False  # link not there any more
                return
            infos = r[2]
            if not infos or not infos[0].startswith("+CIPRXGET:3,"):
                e.bad_rx += 1
                return
            f = fields(infos[0])
            n = to_int(f[2]) if len(f) > 3 else None
            rest = to_int(f[3]) if len(f) > 3 else 0
            hexline = infos[1] if len(infos) > 1 else ""
            if n is None or len(hexline) != 2 * n:
                e.bad_rx += 1  # cut or corrupted: the frame is lost, the outbox resends
                yield from self.sock_close(e)
                return
            try:
                frames = self.deframer.feed(binascii.unhexlify(hexline))
            except (BadLength, ValueError):
                e.bad_rx += 1  # no way to resynchronise a length-prefixed stream
                yield from self.sock_close(e)
                return
            e.frames_in(frames)
            if not rest:
                return

    # ---- cell -----------------------------------------------------------

    def cell(self, e):
        r = yield e.cmd("AT+CPSI?", OKERR, ("+CPSI:",), 3000)
        if r[0] == 0 and r[2]:
            return parse_cpsi(r[2][0])
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
