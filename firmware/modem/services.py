"""Rarely used engine jobs, loaded on first use to keep the engine's
resident size down: SIM PIN entry, covert voice call, hang-up, UART sleep
and wake (power profile "saver": sleep switches the modem off). Each is a
generator run as an engine job (see engine.py).

Must stay in sync with: firmware/modem/engine.py (job protocol), docs/modem.md.
"""

from firmware.modem.at import OKERR, Fail
from firmware.transport import EV_CALL, EV_LINK


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
    # Covert: speaker volume to its lowest before dialling (AT+CLVL, stored
    # in the module, manual 5.2.22); AT+CMUT and AT+VMUTE can only be written
    # during a connected call (manual: "If there is not a connected call,
    # write command can't be used"), so the speaker is muted when VOICE
    # CALL: BEGIN arrives (j_mute) and the microphone is never muted (CMUT
    # resets to 0, unmuted, after every call): the centre hears the room.
    yield e.cmd("AT+CLVL=0")
    r = yield e.cmd("ATD%s;" % number, OKERR + ("NO CARRIER", "BUSY", "NO ANSWER"), (), e.timings["call_timeout_ms"])
    if r[0] != 0:
        raise Fail("dial: %s" % (r[1] or "timeout"))
    if e.call is None:
        e.call = "dialling"
        e.events.append((EV_CALL, "dialling"))


def j_mute(e):
    yield e.cmd("AT+VMUTE=1")


def j_hangup(e):
    # AT+CHUP ends a voice call whatever AT+CVHU says (ATH is ignored with
    # CVHU=1, manual 5.2.1-5.2.2); its maximum response time is 120 s
    yield e.cmd("AT+CHUP", OKERR, (), e.timings["hangup_timeout_ms"])
    if e.call is not None:
        e.call = None
        e.events.append((EV_CALL, "ended"))


def j_sleep(e):
    """The caller has nothing for the modem. Saver profile: switch it off
    (AT+CPOF, STATUS seen low). Ready profile: UART sleep (AT+CSCLK=1, DTR
    high: Sleep Mode application note 3.1); it stays registered and keeps
    its data path, and wakes the host by RI for every URC (AT+CFGRI=1, set
    at boot by the dialect)."""
    if e.saver:
        yield from e.power_off(True)
        if e.data_up:
            e.events.append((EV_LINK, False))
        e._down()
        e.booted = False
        e.off = True
        e.asleep = True
        return
    r = yield e.cmd("AT+CSCLK=1")
    if r[0] == 0:
        yield ("K", "dtr", 1)
        e.asleep = True


def j_wake(e):
    """DTR low, then 20 ms before the first byte (UART application note
    3.1.4); one AT shows it is listening (a second only if the first went
    unanswered)."""
    yield ("K", "dtr", 0)
    yield e.wait(e.timings["dtr_wake_ms"])
    e.asleep = False
    r = yield e.cmd("AT", OKERR, ())
    if r[0] != 0:
        yield e.cmd("AT", OKERR, ())
