"""SIM7600 answers: what the module prints back to each command line, as
golden transcripts cited to SIMCom's SIM7500/SIM7600 Series AT Command
Manual V3.00 (section numbers after each row).

Owns: the text of every line the modem says (result codes, information
lines, URCs, prompts) and, for each command line the modem engine sends,
its answer in a named state of the module (ANSWERS). Never does: state,
timing, faults or I/O. Three modems use it:
- host_sim/modem.py, the full emulator, formats its lines from the names
  here (its state machine, timings and faults stay its own);
- tests/device/modem_script.py (Scripted: the device tests of the modem
  engine on MicroPython and CPython) and bench/mp_firmware.py (the heap
  bench's modem) drive `Registered`: a module that is up and registered
  and answers every line from ANSWERS at once, whatever its state.
tests/test_modem_answers.py holds the three to ANSWERS: the emulator,
brought into each row's state, answers each row's command with the row's
lines.

MicroPython-compatible (the device tests and the heap bench load it as
.mpy beside the firmware): strings, tuples, one small class, no re.
Must stay in sync with: firmware/modem/engine.py and sim7600.py (what the
engine sends and which lines it waits for), docs/modem.md.

Framing (manual 1.4, ATV1): each line goes out as <CR><LF>text<CR><LF>;
the two data prompts are raw bytes with no line end (bytes in a reply).
"""

# ---- lines: a % format is filled in by the modem that says it ------------

OK = "OK"
ERROR = "ERROR"
RDY = "RDY"  # 1.4: start-up done (not sent with auto-bauding)
CPIN = "+CPIN: %s"  # 3.2.2: READY, SIM PIN
CME = "+CME ERROR: %d"  # 3.2.18 with AT+CMEE=1, codes 3.3: 3 not allowed, 10 no SIM, 11 PIN, 14 busy, 16 wrong PIN
CMS = "+CMS ERROR: %d"  # 9.2.13, codes 3.4: 305 bad text mode parameter, 331 no network service
CSQ = "+CSQ: %d,%d"  # 3.2.8: <rssi>,<ber> (99: not known)
REG = "%s: 0,%d"  # +CREG 4.2.1, +CGREG 8.2.1, +CEREG 4.2.16: <n>,<stat> (1 home, 2 searching)
CPSI = "+CPSI: %s,Online,%03d-%02d,0x%04X,%d,257,EUTRAN-BAND20,6300,5,5,-94,%d,-545,15"  # 4.2.14 (LTE form)
CPSI_NONE = "+CPSI: NO SERVICE,Online"  # 4.2.14
NETOPEN = "+NETOPEN: %d"  # 11.2.1: the result URC <err>, or the read command's <net_state>
NETCLOSE = "+NETCLOSE: %d"  # 11.2.2
IP_ERROR = "+IP ERROR: %s"  # 11.2.1, 11.2.6: "Network is already opened", "Invalid parameter", "No data"
CIPOPEN = "+CIPOPEN: 0,%d"  # 11.2.3: <link_num>,<err> (0 ok, 2 network not open, 4 link in use, 10 open failed)
CIPCLOSE = "+CIPCLOSE: 0,%d"  # 11.2.4
CIPSEND = "+CIPSEND: 0,%d,%d"  # 11.2.5: <link_num>,<reqSendLength>,<cnfSendLength> (-1: link gone)
CIPERROR = "+CIPERROR: %d"  # 11.2.5, <err> 11.6: 4 link not connected
CIPRXGET = "+CIPRXGET: %d,0,%d,%d"  # 11.2.6 modes 2/3: <mode>,<link>,<read_len>,<rest_len>
CIPRXGET_LEFT = "+CIPRXGET: 4,0,%d"  # 11.2.6 mode 4: <rest_len>
CIPRXGET_MODE = "+CIPRXGET: %d"  # 11.2.6 read command
CIPRXGET_NEW = "+CIPRXGET: 1,0"  # 11.2.6: data waiting in manual mode (once, until read)
IPCLOSE = "+IPCLOSE: 0,%d"  # 11.4: <close_reason> (1 closed by the far end)
CIPEVENT = "+CIPEVENT: NETWORK CLOSED UNEXPECTEDLY"  # 11.4
CMGS = "+CMGS: %d"  # 9.2.13: <mr>
CALL_BEGIN = "VOICE CALL: BEGIN"  # 2.2.2
CALL_END = "VOICE CALL: END: 000017"  # 2.2.7, 5.2.2: with the call's length
NO_CARRIER = "NO CARRIER"  # 2.2.2
CGPS_OFF = "+CGPS: 0"  # 17.2.1: a stopped session's end, after its OK
SEND_PROMPT = b"\r\n>"  # 11.2.5: then exactly <length> bytes
SMS_PROMPT = b"\r\n> "  # 9.2.13: then the text and Ctrl-Z (ESC cancels)

# ---- golden transcripts ------------------------------------------------------

# States a row holds in (tests/test_modem_answers.py builds each in the emulator):
UP = "up"  # booted, echo off, SIM ready, registered on LTE (CS and PS), network closed
NET = "net"  # UP, then AT+NETOPEN done
SOCKET = "socket"  # NET, manual receive (AT+CIPRXGET=1), link 0 connected, nothing waiting
DATA = "data"  # SOCKET with the far end's bytes waiting
CALL = "call"  # UP with AT+CVHU=0, a voice call connected
GNSS = "gnss"  # UP with a GNSS session on (AT+CGPS=1)

# the answer to AT+CIPRXGET=3 (DATA): the count line, the bytes in hex, OK
READ = (CIPRXGET, "%s", OK)
# after the CIPSEND payload: OK, then how much went (11.2.5)
SENT = (OK, CIPSEND)
# after the SMS text and Ctrl-Z (9.2.13): the first message since start-up
SMS_SENT = (CMGS % 1, OK)

# (command line, state, answer, manual section): "*" ends a command that
# takes any arguments; the engine's order (firmware/modem/engine.py
# STEPS, sim7600.py) first
ANSWERS = (
    ("AT", UP, (OK,), "1.4"),
    ("ATE0", UP, (OK,), "2.2.16"),
    ("AT+CMEE=1", UP, (OK,), "3.2.18"),
    ("AT+CPIN?", UP, (CPIN % "READY", OK), "3.2.2"),
    ("AT+CMGF=1", UP, (OK,), "9.2.3"),
    ("AT+CSQ", UP, (CSQ % (21, 99), OK), "3.2.8"),
    ("AT+CGDCONT=*", UP, (OK,), "8.2.4"),
    ("AT+CIPRXGET=1", UP, (OK,), "11.2.6"),
    ("AT+CFGRI=1", UP, (OK,), "19.2.16"),
    ("AT+CIPTIMEOUT=*", UP, (OK,), "11.2.12"),
    ("AT+CREG?", UP, (REG % ("+CREG", 1), OK), "4.2.1"),
    ("AT+CEREG?", UP, (REG % ("+CEREG", 1), OK), "4.2.16"),
    ("AT+CGREG?", UP, (REG % ("+CGREG", 1), OK), "8.2.1"),
    ("AT+NETOPEN", UP, (OK, NETOPEN % 0), "11.2.1"),
    ("AT+NETOPEN?", NET, (NETOPEN % 1, OK), "11.2.1"),
    ("AT+CPSI?", UP, (CPSI % ("LTE", 234, 15, 0x1A2B, 30125732, -971), OK), "4.2.14"),
    ("AT+CIPOPEN=*", NET, (OK, CIPOPEN % 0), "11.2.3"),
    ("AT+CIPSEND=*", SOCKET, (SEND_PROMPT,), "11.2.5"),
    ("AT+CIPRXGET=4,0", SOCKET, (CIPRXGET_LEFT % 0, OK), "11.2.6"),
    ("AT+CIPRXGET=3,*", DATA, READ, "11.2.6"),
    ("AT+CIPCLOSE=0", SOCKET, (OK, CIPCLOSE % 0), "11.2.4"),
    ("AT+NETCLOSE", NET, (OK, NETCLOSE % 0), "11.2.2"),
    ("AT+CMGS=*", UP, (SMS_PROMPT,), "9.2.13"),
    ("AT+CLVL=*", UP, (OK,), "5.2.22"),
    ("AT+CVHU=0", UP, (OK,), "5.2.1"),
    ("ATD*", UP, (OK, CALL_BEGIN), "2.2.2"),
    ("AT+VMUTE=1", CALL, (OK,), "5.2.19"),
    ("AT+CMUT=*", UP, (ERROR,), "5.2.20"),  # "If there is not a connected call, write command can't be used"
    ("ATH", CALL, (CALL_END, OK), "2.2.7"),
    ("AT+CHUP", CALL, (CALL_END, OK), "5.2.2"),
    ("AT+CSCLK=1", UP, (OK,), "19.2.17"),
    ("AT+CVAUXV=*", UP, (OK,), "19.2.3"),
    ("AT+CVAUXS=*", UP, (OK,), "19.2.2"),
    ("AT+CGPS=1", UP, (OK,), "17.2.1"),
    ("AT+CGPSINFOCFG=*", UP, (OK,), "17.2.16"),
    ("AT+CGPS=0", GNSS, (OK, CGPS_OFF), "17.2.1"),
    ("AT+CPOF", UP, (OK,), "3.2.12"),
)


def answer(line):
    """ANSWERS' answer to a command line, or None for a line it lacks."""
    for row in ANSWERS:
        cmd = row[0]
        if line == cmd or (cmd[-1] == "*" and line.startswith(cmd[:-1])):
            return row[2]
    return None


def frame(lines):
    """The bytes of an answer: each line framed, prompts as they are."""
    out = b""
    for x in lines:
        out += x if isinstance(x, bytes) else b"\r\n" + x.encode() + b"\r\n"
    return out


class Registered:
    """A SIM7600 that is up and registered and answers every command line
    from ANSWERS at once (a line ANSWERS lacks: ERROR, as the module says
    to a command it does not know). What depends on data is the
    subclass's: sent(payload) after a prompt (the CIPSEND bytes or the SMS
    text with its Ctrl-Z) and read() for AT+CIPRXGET=3."""

    def __init__(self):
        self.prompted = False

    def answer(self, out):
        if self.prompted:
            self.prompted = False
            return self.sent(out)
        r = b""
        for cmd in out.split(b"\r"):
            if cmd:
                r += self.line(cmd.decode())
        return r

    def line(self, c):
        a = answer(c)
        if a is None:
            return frame((ERROR,))
        if a is READ:
            return self.read()
        if isinstance(a[0], bytes):
            self.prompted = True
        return frame(a)

    def sent(self, out):
        if out.endswith(b"\x1a"):
            return frame(SMS_SENT)
        return frame((OK, CIPSEND % (len(out), len(out))))

    def read(self):
        raise NotImplementedError
