"""Rarely used engine jobs, loaded on first use to keep the engine's
resident size down: SIM PIN entry, covert voice call, hang-up, UART sleep
and wake (power profile "saver": sleep switches the modem off). Each is a generator run as an engine job (see engine.py).

Must stay in sync with: firmware/modem/engine.py (job protocol), docs/modem.md.
"""

from firmware.modem.at import OKERR, Fail


def enter_pin(e):
    if not e.pin:
        e.sim = "pin_required"
        return "fail"
    r = yield e.cmd('AT+CPIN="%s"' % e.pin, OKERR, (), 5000)
    if r[0] != 0:
        e.sim = "pin_rejected"  # never retried: three wrong PINs lock the SIM
        return "fail"
    for _ in range(10):
        yield e.wait(1000)
        r = yield e.cmd("AT+CPIN?", OKERR, ("+CPIN:",), 5000)
        if r[0] == 0 and r[2] and r[2][0].endswith("READY"):
            e.sim = "ready"
            return "ok"
    e.sim = "pin_rejected"
    return "fail"


def j_call(e, number):
    # Covert: speaker to its lowest level before dialling (AT+VMUTE only
    # works once the call is connected; it is sent on VOICE CALL: BEGIN).
    yield e.cmd("AT+CLVL=0")
    yield e.cmd("AT+CMUT=0")  # the centre must hear the room
    yield e.cmd("AT+CVHU=0")  # else ATH is ignored (manual 2.2.7)
    r = yield e.cmd("ATD%s;" % number, OKERR + ("NO CARRIER", "BUSY", "NO ANSWER"), (), e.t["call_timeout_ms"])
    if r[0] != 0:
        raise Fail("dial: %s" % (r[1] or "timeout"))
    if e.call is None:
        e.call = "dialling"
        e.events.append(("call", "dialling"))


def j_mute(e):
    yield e.cmd("AT+VMUTE=1")


def j_hangup(e):
    yield e.cmd("ATH", OKERR, (), 5000)
    if e.call is not None:
        e.call = None
        e.events.append(("call", "ended"))


def j_sleep(e):
    if e.saver:
        yield from _power_off(e)
        return
    r = yield e.cmd("AT+CSCLK=1")
    if r[0] == 0:
        yield ("K", "dtr", 1)
        e.asleep = True


def _power_off(e):
    # saver profile: the modem off until there is work (0 mA instead of
    # 4.6 mA asleep; the next alert pays boot, registration and PDP)
    if e.has_power:
        yield ("K", "power", 0)
    else:
        yield ("K", "pwrkey", 1)
        yield e.wait(e.t["pwrkey_off_ms"])
        yield ("K", "pwrkey", 0)
    if e.data_up:
        e.events.append(("link", False))
    e._down()
    e.booted = False
    e.off = True
    e.asleep = True  # the transport's wake() asks for J_WAKE, which boots it


def j_wake(e):
    yield ("K", "dtr", 0)
    yield e.wait(60)
    e.asleep = False
    r = yield e.cmd("AT", OKERR, ())
    if r[0] != 0:
        yield e.cmd("AT", OKERR, ())
