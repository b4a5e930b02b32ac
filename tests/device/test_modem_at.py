"""AT channel against command/response sequences from the SIM7500/SIM7600 AT
manual V3.00 (section in each comment), fed whole, one byte at a time and in
odd chunks. Runs on CPython and on MicroPython."""


from firmware.modem.at import AtChannel, P_PROMPT, P_TIMEOUT, fields, norm



OKERR = ("OK", "ERROR", "+CME ERROR:")

# (command, final, info, wire from the module, expected result index,
#  expected final line, expected infos, expected URCs, prompt, hexdata)
TRANSCRIPTS = [
    # 3.2.8 AT+CSQ example
    ("AT+CSQ", OKERR, ("+CSQ:",), b"\r\n+CSQ: 22,0\r\n\r\nOK\r\n", 0, "OK", ["+CSQ:22,0"], [], False, False),
    # 3.2.2 AT+CPIN? (SIM PUK2 example), and a missing SIM (3.3 code 10)
    ("AT+CPIN?", OKERR, ("+CPIN:",), b"\r\n+CPIN: SIM PUK2\r\n\r\nOK\r\n", 0, "OK", ["+CPIN:SIM PUK2"], [], False, False),
    ("AT+CPIN?", OKERR, ("+CPIN:",), b"\r\n+CME ERROR: 10\r\n", 2, "+CME ERROR:10", [], [], False, False),
    # 4.2.x AT+CREG? / AT+CEREG? examples
    ("AT+CREG?", OKERR, ("+CREG:",), b"\r\n+CREG: 0,1\r\n\r\nOK\r\n", 0, "OK", ["+CREG:0,1"], [], False, False),
    ("AT+CEREG?", OKERR, ("+CEREG:",), b"\r\n+CEREG: 0,4\r\n\r\nOK\r\n", 0, "OK", ["+CEREG:0,4"], [], False, False),
    # 11.2.1 AT+NETOPEN: OK first, the result later
    ("AT+NETOPEN", ("+NETOPEN:", "ERROR"), ("+IP ERROR:",), b"\r\nOK\r\n\r\n+NETOPEN: 0\r\n", 0, "+NETOPEN:0", [], ["OK"],
     False, False),
    # 11.2.1 again when already open
    ("AT+NETOPEN", ("+NETOPEN:", "ERROR"), ("+IP ERROR:",), b"\r\n+IP ERROR: Network is already opened\r\n\r\nERROR\r\n",
     1, "ERROR", ["+IP ERROR:Network is already opened"], [], False, False),
    # 11.2.3 AT+CIPOPEN success, and failure with its trailing ERROR
    ('AT+CIPOPEN=0,"TCP","116.236.221.75",6775', ("+CIPOPEN:", "ERROR"), ("+IP ERROR:",),
     b"\r\nOK\r\n\r\n+CIPOPEN: 0,0\r\n", 0, "+CIPOPEN:0,0", [], ["OK"], False, False),
    # 11.2.5 AT+CIPSEND prompt
    ("AT+CIPSEND=2,5", ("ERROR",), ("+CIPERROR:",), b"\r\n>", P_PROMPT, ">", [], [], True, False),
    ("AT+CIPSEND=0,5", ("ERROR",), ("+CIPERROR:",), b"\r\n+CIPERROR: 4\r\n\r\nERROR\r\n", 0, "ERROR",
     ["+CIPERROR:4"], [], True, False),
    # 11.2.6 AT+CIPRXGET=3 (hex) with the URC of 11.4 arriving mid-answer
    ("AT+CIPRXGET=3,0,300", OKERR, ("+CIPRXGET:3,", "+IP ERROR:"),
     b"\r\n+CIPRXGET: 3,0,5,0\r\n\r\n+IPCLOSE: 0,1\r\n\r\n48656C6C6F\r\n\r\nOK\r\n", 0, "OK",
     ["+CIPRXGET:3,0,5,0", "48656C6C6F"], ["+IPCLOSE:0,1"], False, True),
    ("AT+CIPRXGET=3,0,300", OKERR, ("+CIPRXGET:3,", "+IP ERROR:"), b"\r\n+IP ERROR: No data\r\n\r\nERROR\r\n", 1,
     "ERROR", ["+IP ERROR:No data"], [], False, True),
    # 9.2.13 AT+CMGS text mode: prompt, then +CMGS: <mr> and OK
    ('AT+CMGS="13012832788"', ("ERROR", "+CMS ERROR:"), (), b"\r\n> ", P_PROMPT, ">", [], [], True, False),
    ("<payload>", OKERR + ("+CMS ERROR:",), ("+CMGS:",), b"\r\n+CMGS: 46\r\n\r\nOK\r\n", 0, "OK", ["+CMGS:46"], [],
     False, False),
    ("<payload>", OKERR + ("+CMS ERROR:",), ("+CMGS:",), b"\r\n+CMS ERROR: 304\r\n", 3, "+CMS ERROR:304", [], [],
     False, False),
    # 2.2.2 ATD voice call: OK then the URC
    ("ATD10086;", OKERR + ("NO CARRIER",), (), b"\r\nOK\r\n\r\nVOICE CALL: BEGIN\r\n", 0, "OK", [], ["VOICE CALL: BEGIN"], False,
     False),
    ("ATD10086;", OKERR + ("NO CARRIER",), (), b"\r\nNO CARRIER\r\n", 3, "NO CARRIER", [], [], False, False),
    # 2.2.7 ATH with AT+CVHU=0
    ("ATH", OKERR, (), b"\r\nVOICE CALL: END: 000017\r\n\r\nOK\r\n", 0, "OK", [], ["VOICE CALL: END: 000017"], False,
     False),
    # 11.2.5: a URC between OK and the result (11.4 +CIPRXGET: 1,<link>)
    ("<payload>", ("+CIPSEND:", "ERROR"), ("+CIPERROR:",), b"\r\nOK\r\n\r\n+CIPRXGET: 1,0\r\n\r\n+CIPSEND: 0,5,5\r\n",
     0, "+CIPSEND:0,5,5", [], ["OK", "+CIPRXGET:1,0"], False, False),
    # the manual's own text (no space after the colon) matches the same patterns
    ("AT+CIPSEND=0,1", ("+CIPSEND:", "ERROR"), (), b"\r\nOK\r\n\r\n+CIPSEND:0,1,1\r\n", 0, "+CIPSEND:0,1,1", [],
     ["OK"], False, False),
]


def _run(t, chunk):
    cmd, final, info, wire, idx, line, infos, urcs_want, prompt, hexdata = t
    urcs = []
    ch = AtChannel(urcs.append)
    if cmd == "<payload>":
        ch.pending = "x"
        ch.payload(b"", final, info, 1000, 0)
    else:
        ch.send(cmd, final, info, 1000, 0, prompt, hexdata)
    n = len(wire) if chunk == 0 else chunk
    for i in range(0, len(wire), n):
        ch.feed(wire[i : i + n], 5)
    # the OK preceding a +XXX: result goes to the URC handler (the engine drops it)
    return ch.result, ch.infos, urcs, ch


def test_transcripts_whole_bytewise_and_chunked():
    for t in TRANSCRIPTS:
        for chunk in (0, 1, 3, 7):
            res, infos, urcs, ch = _run(t, chunk)
            assert res == (t[4], t[5]), (t[0], chunk, res)
            assert infos == t[6], (t[0], chunk, infos)
            assert urcs == t[7], (t[0], chunk, urcs)
            assert ch.rejected == 0 and ch.overflow == 0


def test_trailing_junk_after_result_goes_to_urc_handler_and_counts_strays():
    urcs = []
    ch = AtChannel(urcs.append)
    ch.send("AT+CSQ", OKERR, ("+CSQ:",), 1000, 0)
    ch.feed(b"\r\n+CSQ: 22,0\r\n\r\nOK\r\n\r\nERROR\r\n\r\nRDY\r\n", 1)
    assert ch.result == (0, "OK")
    assert urcs == ["RDY"] and ch.stray == 1


def test_echo_before_ate0_is_ignored():
    urcs = []
    ch = AtChannel(urcs.append)
    ch.send("AT+CSQ", OKERR, ("+CSQ:",), 1000, 0)
    assert bytes(ch.out) == b"AT+CSQ\r"
    ch.feed(b"AT+CSQ\r\r\n+CSQ: 31,99\r\n\r\nOK\r\n", 0)
    assert ch.result == (0, "OK") and ch.infos == ["+CSQ:31,99"] and urcs == []


def test_garbage_is_counted_and_next_command_works():
    urcs = []
    ch = AtChannel(urcs.append)
    ch.feed(b"\x00\xff\xfe garbage\r\n\x1b[0m\r\n", 0)
    assert ch.rejected == 2 and urcs == []
    ch.feed(b"A" * 2000 + b"\r\n", 0)
    assert ch.overflow == 1
    ch.send("AT", OKERR, (), 1000, 0)
    ch.feed(b"\r\nOK\r\n", 1)
    assert ch.result == (0, "OK")


def test_timeout_ends_the_command():
    ch = AtChannel(lambda line: None)
    ch.send("AT", OKERR, (), 500, 100)
    ch.check(599)
    assert ch.result is None
    ch.check(600)
    assert ch.result == (P_TIMEOUT, "")
    assert ch.deadline() is None


def test_prompt_only_when_asked():
    urcs = []
    ch = AtChannel(urcs.append)
    ch.send("AT+CSQ", OKERR, (), 1000, 0)
    ch.feed(b"\r\n> \r\nOK\r\n", 0)
    assert ch.result == (0, "OK") and urcs == [">"]


def test_prompt_after_noise_on_the_same_line():
    ch = AtChannel(lambda line: None)
    ch.send("AT+CIPSEND=0,5", ("ERROR",), (), 1000, 0, True)
    ch.feed(b"\r\n\xff\x00>", 1)
    assert ch.result == (P_PROMPT, ">") and ch.rejected == 1


def test_norm_and_fields():
    assert norm("+CSQ: 20,99") == "+CSQ:20,99"
    assert norm("+CME ERROR: 10") == "+CME ERROR:10"
    assert norm("VOICE CALL: BEGIN") == "VOICE CALL: BEGIN"
    assert fields('+CIPOPEN:0,"TCP","1.2.3.4",80') == ["0", "TCP", "1.2.3.4", "80"]
