"""Modem engine against a scripted SIM7600 (tests/device/modem_script.py):
bring-up, a frame out and its reply back, recovery. Runs on CPython and
MicroPython; the full emulator runs in the host tests (tests/test_modem_*.py)."""


import gc

from fw_child import IN_PLACE, delegate

if IN_PLACE:  # else the tests run in a child VM with the code in ROMFS (fw_child.py)
    from modem_script import REPLY, World, _bringup
    from protocol.stream import pack



def test_bringup_runs_the_step_table_then_opens_the_network():
    for bytewise in (False, True):
        w = _bringup(World(bytewise))
        lines = w.modem.lines
        order = ["AT", "ATE0", "AT+CMEE=1", "AT+CPIN?", "AT+CMGF=1", "AT+CSQ", 'AT+CGDCONT=1,"IP","internet"',
                 "AT+CIPRXGET=1", "AT+CFGRI=1", "AT+CIPTIMEOUT=30000,15000,15000", "AT+CREG=1", "AT+CGREG=1",
                     "AT+CEREG=1", "AT+CREG?", "AT+CEREG?",
                 "AT+NETOPEN"]
        assert lines[: len(order)] == order, lines
        assert ("link", True) in w.events
        assert w.t.sms_ready() and w.t.csq() == 21  # "+CSQ: 21,99" (host_sim/sim7600_answers.py)
        assert w.pins.log == []  # the modem answered AT: no power-on pulse needed

def test_send_frame_and_collect_the_reply_whole_and_bytewise():
    w = None
    for bytewise in (False, True):
        w = None  # the first world's transcript is garbage before the second is built
        gc.collect()
        w = _bringup(World(bytewise))
        raw = bytes(range(100, 150))
        assert w.t.send_frame(raw, w.now)
        assert not w.t.send_frame(raw, w.now)  # busy: refused
        assert w.run(lambda w=w: ("frame", REPLY) in w.events)
        assert ("sent", len(raw)) in w.events
        assert w.modem.payloads[-1] == pack(raw)
        assert 'AT+CIPOPEN=0,"TCP","192.0.2.1",5000' in w.modem.lines
        assert w.t.cell() == (234, 15, 0x1A2B, 30125732, -97)

def test_hung_modem_is_power_cycled_and_comes_back():
    w = _bringup(World())
    w.modem.alive = False
    assert w.t.send_frame(b"x" * 40, w.now)
    assert w.run(lambda: ("send_failed", "modem not answering") in w.events or any(
        e[0] == "send_failed" for e in w.events))
    # no supply switch: PWRKEY held >= 2.5 s, STATUS seen low, then a press
    assert w.run(lambda: w.pins.off_at is not None)
    t_off = w.now
    assert w.run(lambda: w.t.data_ready() and w.t.engine.cycles == 1)
    assert w.pins.log[:2] == [("pwrkey", 1), ("pwrkey", 0)] and w.pins.log[-2:] == [("pwrkey", 1), ("pwrkey", 0)]
    assert w.now - t_off >= 26000  # it waited for STATUS to fall before pressing again
    assert w.t.stats()["power_cycles"] == 1

def test_random_bytes_then_a_normal_exchange_still_works():
    # a small deterministic fuzz that also runs on the board's interpreter
    # (hypothesis does the wide one on the host: tests/test_modem_fuzz.py)
    w = _bringup(World())
    x = 12345
    for _ in range(40):
        junk = bytearray()
        for _ in range(16):
            x = (x * 1103515245 + 12345) & 0x7FFFFFFF
            junk.append((x >> 16) & 0xFF)
        w.stream.rx += bytes(junk)
        w.t.poll(w.now)
        w.now += 7
    w.stream.rx += b"\r\n"
    s = w.t.stats()
    assert s["garbage_lines"] + s["unknown_urcs"] + s["overlong_lines"] > 0
    w.events = []
    assert w.run(lambda: w.t.data_ready() and not w.t.busy())
    assert w.t.send_frame(b"z" * 40, w.now)
    assert w.run(lambda: ("frame", REPLY) in w.events)

def test_quiet_only_with_no_command_outstanding_so_light_sleep_never_loses_a_reply():
    # ESP32 light sleep stops the UART clock (esp-idf#8098): the board may
    # sleep only when the engine waits for nothing
    w = World()
    w.t.poll(w.now)
    assert not w.t.quiet()  # the boot probe is on the wire
    _bringup(w)
    w.t.sleep(w.now)
    assert w.run(lambda: w.t.engine.asleep)
    assert w.t.quiet()
    w.t.ri_wake(w.now)  # a URC pulsed RI while the ESP32 slept: it was lost
    assert not w.t.quiet()
    n = len(w.modem.lines)
    assert w.run(lambda: w.t.engine.asleep and w.t.quiet())
    asked = w.modem.lines[n:]
    assert "AT+NETOPEN?" in asked and "AT+CSCLK=1" in asked  # asked what it missed, then slept again


def test_nmea_on_the_at_port_goes_to_the_fix_not_to_the_urc_counter():
    w = _bringup(World())
    before = w.t.stats()["unknown_urcs"]
    gga = b"$GPGGA,051147.0,3113.320991,N,12121.248076,E,1,10,0.8,47.5,M,0,M,,*45"
    w.stream.rx += b"\r\n" + gga + b"\r\n"
    w.t.poll(w.now)
    assert w.t.nmea() == gga + b"\r\n" and w.t.nmea() is None
    assert w.t.stats()["unknown_urcs"] == before


def test_an_unsolicited_serving_cell_is_kept_with_the_time_it_was_read():
    """A +CPSI: line no command asked for (the dialect answers O_CELL, the
    engine keeps the cell): App.cell puts it in a frame only while it is
    recent, so when it was read must be the time of that line."""
    w = _bringup(World())
    w.now += 70000
    before = w.t.stats()["unknown_urcs"]
    w.stream.rx += b"\r\n+CPSI: LTE,Online,234-10,0x0B0C,4321,257,EUTRAN-BAND20,6300,5,5,-90,-971,-545,15\r\n"
    w.t.poll(w.now)
    assert w.t.cell() == (234, 10, 0x0B0C, 4321, -97)
    assert w.t.cell_read_at() == w.now
    assert w.t.stats()["unknown_urcs"] == before


def test_what_a_step_asks_goes_on_the_wire_in_the_same_instant_and_nothing_twice():
    """The App polls the transport after each step so that what the step
    asked (an ALERT, a call, the GNSS, sleep) starts at once, not a retry
    back-off later; a poll repeated at an instant with nothing asked and
    nothing come writes nothing (the transport skips it)."""
    cases = (
        (lambda w: w.t.send_frame(bytes(range(60)), w.now), "AT+CIP"),
        (lambda w: w.t.start_call("+447700900123", w.now), "AT+CLVL=0"),  # muted first (covert)
        (lambda w: w.t.gnss(True, 1), "AT+CVAUXV=2800"),
        (lambda w: w.t.sleep(w.now), "AT+CSCLK=1"),
        (lambda w: w.t.ri_wake(w.now), "AT"),
    )
    for ask, first in cases:
        w = _bringup(World())
        assert w.run(w.t.quiet)
        w.now += 5
        w.t.poll(w.now)
        n = len(w.modem.lines)
        w.t.poll(w.now)
        assert len(w.modem.lines) == n  # asked nothing: wrote nothing
        ask(w)
        w.t.poll(w.now)
        assert w.modem.lines[n:n + 1] and w.modem.lines[n].startswith(first), (first, w.modem.lines[n:])
        w = None
        gc.collect()


delegate(globals(), "test_modem_engine")
