"""SIM7600 answers: what the module prints back to each command line, as
golden transcripts cited to SIMCom's SIM7500/SIM7600 Series AT Command
Manual V3.00 (section numbers after each row).

Owns: the text of every line both the scripted modems and the emulator
say (result codes, information lines, URCs, prompts) and, for each
command line the modem engine sends, its answer in a named state of the
module (ANSWERS). Never does: state,
timing, faults or I/O. Three modems use it:
- host_sim/modem.py, the full emulator, formats those lines from the
  names here (its state machine, timings, faults and the lines only it
  says, such as +CME ERROR: and read commands' answers, stay its own);
- tests/device/modem_script.py (Scripted: the device tests of the modem
  engine on MicroPython and CPython) and bench/mp_firmware.py (the heap
  bench's modem) drive `Registered`: a module that is up and registered
  and answers every line from ANSWERS at once, whatever its state.
tests/test_modem_answers.py holds the three to ANSWERS: the emulator,
brought into each row's state, answers each row's command with the row's
lines.

MicroPython-compatible (the device tests and the heap bench load it as
.mpy beside the firmware): strings, tuples, one small class, no re. Kept
small in names and short strings: MicroPython interns them (the heap
bench's harness shares the firmware's string pools), so the manual
sections are comments.
Must stay in sync with: firmware/modem/engine.py and sim7600.py (what the
engine sends and which lines it waits for), docs/modem.md.

Framing (manual 1.4, ATV1): each line goes out as <CR><LF>text<CR><LF>;
the two data prompts are raw bytes with no line end (bytes in a reply).
"""

# ---- the lines the scripted modems and the emulator both say --------------
# (a % format is filled in by the modem that says it; lines only the
# emulator says, such as +CME ERROR: and read commands' answers, are its
# own: host_sim/modem.py)

OK = "OK"
ERROR = "ERROR"
RDY = "RDY"  # 1.4: start-up done (not sent with auto-bauding)
CPIN = "+CPIN: %s"  # 3.2.2: READY, SIM PIN
CSQ = "+CSQ: %d,%d"  # 3.2.8: <rssi>,<ber> (99: not known)
REG = "%s: %d,%d"  # +CREG 4.2.1, +CGREG 8.2.1, +CEREG 4.2.16: <n>,<stat> (1 home, 2 searching)
REG_URC = "%s: %d"  # the same, unsolicited with <n>=1: <stat> on a change
CPSI = "+CPSI: %s,Online,%03d-%02d,0x%04X,%d,257,EUTRAN-BAND20,6300,5,5,-94,%d,-545,15"  # 4.2.14 (LTE form)
NETOPEN = "+NETOPEN: %d"  # 11.2.1: the result URC <err>, or the read command's <net_state>
NETCLOSE = "+NETCLOSE: %d"  # 11.2.2
IP_ERROR = "+IP ERROR: %s"  # 11.2.6: "No data" (and 11.2.1 "Network is already opened")
CIPOPEN = "+CIPOPEN: 0,%d"  # 11.2.3: <link_num>,<err> (0 ok, 2 network not open, 4 link in use, 10 open failed)
CIPCLOSE = "+CIPCLOSE: 0,%d"  # 11.2.4
CIPSEND = "+CIPSEND: 0,%d,%d"  # 11.2.5: <link_num>,<reqSendLength>,<cnfSendLength> (-1: link gone)
CIPRXGET = "+CIPRXGET: %d,0,%d,%d"  # 11.2.6 modes 2/3: <mode>,<link>,<read_len>,<rest_len>
CIPRXGET_LEFT = "+CIPRXGET: 4,0,%d"  # 11.2.6 mode 4: <rest_len>
CIPRXGET_NEW = "+CIPRXGET: 1,0"  # 11.2.6: data waiting in manual mode (once, until read)
CMGS = "+CMGS: %d"  # 9.2.13: <mr>
CALL_BEGIN = "VOICE CALL: BEGIN"  # 2.2.2
CALL_END = "VOICE CALL: END: 000017"  # 2.2.7, 5.2.2: with the call's length
CGPS_OFF = "+CGPS: 0"  # 17.2.1: a stopped session's end, after its OK
SEND_PROMPT = b"\r\n>"  # 11.2.5: then exactly <length> bytes
SMS_PROMPT = b"\r\n> "  # 9.2.13: then the text and Ctrl-Z (ESC cancels)

# ---- golden transcripts ------------------------------------------------------

# The answer to AT+CIPRXGET=3 with bytes waiting: the count line, the
# bytes in hex, OK (filled in by whoever holds the bytes).
READ = (CIPRXGET, "%s", OK)

# (command line, state, answer), each row citing its manual section. "*"
# ends a command that takes any arguments. The state the answer holds in
# (tests/test_modem_answers.py brings the emulator into each):
#   "up"      booted, echo off, SIM ready, SMS text mode (AT+CMGF=1), registered on
#             LTE (CS and PS), network closed
#   "net"     "up", then AT+NETOPEN done
#   "socket"  "net", manual receive (AT+CIPRXGET=1), link 0 connected, nothing waiting
#   "data"    "socket" with the far end's bytes waiting
#   "call"    "up" with AT+CVHU=0 and a voice call connected
#   "gnss"    "up" with a GNSS session on (AT+CGPS=1)
# After a prompt: the CIPSEND payload gets OK, CIPSEND % (n, n) (11.2.5);
# the SMS text and Ctrl-Z get CMGS % 1, OK (9.2.13: the first since start-up).
# The engine's order first (firmware/modem/engine.py STEPS, sim7600.py).
ANSWERS = (
    ("AT", "up", (OK,)),  # 1.4
    ("ATE0", "up", (OK,)),  # 2.2.16
    ("AT+CMEE=1", "up", (OK,)),  # 3.2.18
    ("AT+CPIN?", "up", (CPIN % "READY", OK)),  # 3.2.2
    ("AT+CMGF=1", "up", (OK,)),  # 9.2.3
    ("AT+CSQ", "up", (CSQ % (21, 99), OK)),  # 3.2.8
    ("AT+CGDCONT=*", "up", (OK,)),  # 8.2.4
    ("AT+CIPRXGET=1", "up", (OK,)),  # 11.2.6
    ("AT+CFGRI=1", "up", (OK,)),  # 19.2.16
    ("AT+CIPTIMEOUT=*", "up", (OK,)),  # 11.2.12
    ("AT+CREG?", "up", (REG % ("+CREG", 0, 1), OK)),  # 4.2.1
    ("AT+CEREG?", "up", (REG % ("+CEREG", 0, 1), OK)),  # 4.2.16
    ("AT+CGREG?", "up", (REG % ("+CGREG", 0, 1), OK)),  # 8.2.1
    ("AT+CREG=1", "up", (OK,)),  # 4.2.1: URC on a change from now on
    ("AT+CGREG=1", "up", (OK,)),  # 8.2.1
    ("AT+CEREG=1", "up", (OK,)),  # 4.2.16
    ("AT+NETOPEN", "up", (OK, NETOPEN % 0)),  # 11.2.1
    ("AT+NETOPEN?", "net", (NETOPEN % 1, OK)),  # 11.2.1
    ("AT+CPSI?", "up", (CPSI % ("LTE", 234, 15, 0x1A2B, 30125732, -971), OK)),  # 4.2.14
    ("AT+CIPOPEN=*", "net", (OK, CIPOPEN % 0)),  # 11.2.3
    ("AT+CIPSEND=*", "socket", (SEND_PROMPT,)),  # 11.2.5
    ("AT+CIPRXGET=4,0", "socket", (CIPRXGET_LEFT % 0, OK)),  # 11.2.6
    ("AT+CIPRXGET=3,*", "data", READ),  # 11.2.6
    ("AT+CIPCLOSE=0", "socket", (OK, CIPCLOSE % 0)),  # 11.2.4
    ("AT+NETCLOSE", "net", (OK, NETCLOSE % 0)),  # 11.2.2
    ("AT+CMGS=*", "up", (SMS_PROMPT,)),  # 9.2.13
    ("AT+CLVL=*", "up", (OK,)),  # 5.2.22
    ("AT+CVHU=0", "up", (OK,)),  # 5.2.1
    ("ATD*", "up", (OK, CALL_BEGIN)),  # 2.2.2
    ("AT+VMUTE=1", "call", (OK,)),  # 5.2.19
    ("AT+CMUT=*", "up", (ERROR,)),  # 5.2.20: "If there is not a connected call, write command can't be used"
    ("ATH", "call", (CALL_END, OK)),  # 2.2.7
    ("AT+CHUP", "call", (CALL_END, OK)),  # 5.2.2
    ("AT+CSCLK=1", "up", (OK,)),  # 19.2.17
    ("AT+CVAUXV=*", "up", (OK,)),  # 19.2.3
    ("AT+CVAUXS=*", "up", (OK,)),  # 19.2.2
    ("AT+CGPS=1", "up", (OK,)),  # 17.2.1
    ("AT+CGPSINFOCFG=*", "up", (OK,)),  # 17.2.16
    ("AT+CGPS=0", "gnss", (OK, CGPS_OFF)),  # 17.2.1
    ("AT+CPOF", "up", (OK,)),  # 3.2.12
)


def answer(line):
    """ANSWERS' answer to a command line, or None for a line it lacks."""
    for row in ANSWERS:
        cmd = row[0]
        if line == cmd or (cmd[-1] == "*" and line.startswith(cmd[:-1])):
            return row[2]
    return None


def frame(answer):
    """The bytes of an answer: each line framed, prompts as they are."""
    out = b""
    for x in answer:
        out += x if isinstance(x, bytes) else b"\r\n" + x.encode() + b"\r\n"
    return out


class Registered:
    """A SIM7600 that is up and registered and answers every command line
    from ANSWERS at once (a line ANSWERS lacks: ERROR, as the module says
    to a command it does not know). What depends on data is the
    subclass's: sent(payload) after a prompt (the CIPSEND bytes or the SMS
    text with its Ctrl-Z) and fetch(), the answer to AT+CIPRXGET=3."""

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
            return self.fetch()
        if isinstance(a[0], bytes):
            self.prompted = True
        return frame(a)

    def sent(self, out):
        if out.endswith(b"\x1a"):
            return frame((CMGS % 1, OK))
        return frame((OK, CIPSEND % (len(out), len(out))))

    def fetch(self):
        raise NotImplementedError
