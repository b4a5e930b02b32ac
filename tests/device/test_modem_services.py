"""Modem engine services against a scripted SIM7600 (tests/device/modem_script.py):
SMS, covert call, sleep, unexpected restart, busy rules, +CPSI parsing.
Runs on CPython and MicroPython."""


from fw_child import IN_PLACE, delegate

if IN_PLACE:  # else the tests run in a child VM with the code in ROMFS (fw_child.py)
    from firmware.modem.engine import Engine, J_SEND, J_SMS, J_CALL, J_HANGUP, J_SLEEP
    from firmware.modem.sim7600 import Sim7600, parse_cpsi
    from firmware.modem.at import norm
    from modem_script import CFG, World, _bringup



def test_sms_text_mode_with_prompt_and_ctrl_z():
    w = _bringup(World(True))
    assert not w.t.send_sms("+44 7700", "PNC1 AAAA", w.now)  # not a number
    assert not w.t.send_sms("+447700900999", "bad\x1atext", w.now)  # Ctrl-Z would end the message
    assert w.t.send_sms("+447700900999", "PNC1 AAAA", w.now)
    assert w.run(lambda: ("sms_sent", 1) in w.events)  # "+CMGS: 1" (host_sim/sim7600_answers.py)
    assert 'AT+CMGS="+447700900999"' in w.modem.lines
    assert w.modem.payloads[-1] == b"PNC1 AAAA\x1a"

def test_covert_call_mutes_speaker_then_hangs_up():
    w = _bringup(World())
    assert w.t.start_call("112", w.now)
    assert w.run(lambda: ("call", "active") in w.events)
    w.run(lambda: "AT+VMUTE=1" in w.modem.lines)
    lines = w.modem.lines
    assert lines.index("AT+CLVL=0") < lines.index("ATD112;") < lines.index("AT+VMUTE=1")
    # the microphone is never muted, and AT+CMUT is only valid in a call (manual 5.2.20)
    assert not [x for x in lines if x.startswith("AT+CMUT")]
    w.t.hang_up(w.now)
    assert w.run(lambda: ("call", "ended") in w.events)
    assert "AT+CHUP" in w.modem.lines  # whatever AT+CVHU says (manual 5.2.2)

def test_urc_rdy_out_of_the_blue_reinitialises():
    w = _bringup(World())
    n = len(w.modem.lines)
    w.stream.rx += b"\r\nRDY\r\n"
    w.run(lambda: len(w.modem.lines) > n and "ATE0" in w.modem.lines[n:])
    assert w.run(w.t.data_ready)
    assert w.modem.lines[n:].count("AT+NETOPEN") == 1

def test_sleep_asks_for_uart_sleep():
    w = _bringup(World())
    w.run(lambda: not w.t.busy() and w.t.engine._job is None)
    w.t.sleep(w.now)
    assert w.run(lambda: w.t.engine.asleep)
    assert "AT+CSCLK=1" in w.modem.lines
    assert w.t.send_frame(b"y" * 40, w.now)  # a request wakes it first
    assert w.run(lambda: any(e[0] == "sent" for e in w.events))
    assert not w.t.engine.asleep

def test_request_queued_when_the_modem_restarts_is_answered_not_left_hanging():
    w = _bringup(World())
    w.run(lambda: w.t.engine._job is None)
    assert w.t.send_frame(b"q" * 40, w.now)
    w.stream.rx += b"\r\nRDY\r\n"  # restarts before the request could run
    assert w.run(lambda: ("send_failed", "modem not ready") in w.events)
    assert not w.t.busy()
    assert w.run(w.t.data_ready)


def test_engine_requests_are_refused_while_busy():
    e = Engine(Sim7600("h", 1), CFG)
    assert e.request(J_SEND, b"a")
    for k in (J_SMS, J_CALL, J_HANGUP, J_SLEEP):
        assert not e.request(k, None)


def test_parse_cpsi():
    # 4.2.x AT+CPSI? (LTE form; RSRP in tenths of a dBm)
    line = norm("+CPSI: LTE,Online,460-00,0x5A1E,187214780,257,EUTRAN-BAND3,1300,5,5,-94,-850,-545,15")
    assert parse_cpsi(line) == (460, 0, 0x5A1E, 187214780, -85)
    gsm = norm("+CPSI: GSM,Online,460-00,0x182d,12401,27 EGSM 900,-64,2110,42-42")
    assert parse_cpsi(gsm) == (460, 0, 0x182D, 12401, -64)
    assert parse_cpsi(norm("+CPSI: NO SERVICE,Online")) is None
    assert parse_cpsi("+CPSI:LTE,Online,xx-yy,0xZZ,1") is None
    assert parse_cpsi("+CPSI:") is None


delegate(globals(), "test_modem_services")
